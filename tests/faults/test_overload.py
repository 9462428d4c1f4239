"""Overload is refused with RESOURCE_EXHAUSTED and a retry hint, never a bare CANCELLED.

Found by a review: 2,000 concurrent unary calls against one atpd got 104-181 CANCELLED with no
details: never applied, not counted in the metrics, not retried by the client. grpc core
dropped the calls beyond its backlog of 1,000 not yet taken up by the event loop. atpd now
lets core hold more, and its own admission gate refuses calls beyond --concurrent-rpcs-max
with ErrorInfo OVERLOADED and a RetryInfo, counted; atp.client backs off and retries them.

Every burst is bounded in count, and every call has a deadline.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atp.client import AsyncClient
from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    reservations_pb2,
    reservations_pb2_grpc,
)
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    assert_position,
    get_reservation,
    line,
    reserve_request,
    stocked,
    uid,
)
from tests.support.atpd import AtpdProcess, free_port

pytestmark = pytest.mark.integration

BOUND = 4  # --concurrent-rpcs-max of the bounded atpd
BURST = 300  # concurrent calls against it: far more than the bound
GRPC_DEFAULT_BACKLOG = 1000  # grpc.server.max_pending_requests, beyond which core cancelled
Code = grpc.StatusCode


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for sample in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)", sample)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[tuple[AtpdProcess, int]]:
    """An atpd admitting BOUND unary calls at once, with its metrics port."""
    port = free_port()
    server = AtpdProcess(tmp_path / "data", "--metrics-port", str(port),
                         "--concurrent-rpcs-max", str(BOUND)).start()
    try:
        yield server, port
    finally:
        server.kill()


def reserve_all_at_once(
    target: str, requests: list[reservations_pb2.ReserveRequest]
) -> list[grpc.aio.AioRpcError | None]:
    """Sends every Reserve at once over two raw grpc.aio channels (no retries): for each, None
    when it succeeded, else its error."""

    async def main() -> list[grpc.aio.AioRpcError | None]:
        channels = [grpc.aio.insecure_channel(target) for _ in range(2)]
        stubs = [reservations_pb2_grpc.ReservationsStub(channel) for channel in channels]

        async def one(
            index: int, request: reservations_pb2.ReserveRequest
        ) -> grpc.aio.AioRpcError | None:
            try:
                await stubs[index % 2].Reserve(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                return error
            return None

        try:
            return await asyncio.wait_for(
                asyncio.gather(*(one(i, request) for i, request in enumerate(requests))), 60)
        finally:
            for channel in channels:
                await channel.close()

    return asyncio.run(main())


def assert_overload_refusal(error: grpc.aio.AioRpcError) -> None:
    """RESOURCE_EXHAUSTED with ErrorInfo OVERLOADED (domain atp.v1) and a positive RetryInfo."""
    assert error.code() is Code.RESOURCE_EXHAUSTED, f"{error.code()}: {error.details()}"
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    error_info = error_details_pb2.ErrorInfo()
    retry_info = error_details_pb2.RetryInfo()
    kinds = {detail.TypeName() for detail in status.details}
    assert kinds == {error_info.DESCRIPTOR.full_name, retry_info.DESCRIPTOR.full_name}, kinds
    for detail in status.details:
        detail.Unpack(error_info if detail.Is(error_info.DESCRIPTOR) else retry_info)
    assert (error_info.reason, error_info.domain) == ("OVERLOADED", "atp.v1")
    assert error_info.metadata["concurrent_rpcs_max"] == str(BOUND)
    assert retry_info.retry_delay.ToNanoseconds() > 0


def test_calls_beyond_the_bound_are_refused_with_a_retry_hint_counted_and_unapplied(
    bounded: tuple[AtpdProcess, int],
) -> None:
    server, metrics_port = bounded
    api = Api(server.channel())
    sku, node_id = stocked(api, BURST)
    requests = [reserve_request(None, [line("l1", sku, node_id, 1)]) for _ in range(BURST)]

    outcomes = reserve_all_at_once(server.target, requests)

    codes = Counter("OK" if error is None else error.code().name for error in outcomes)
    assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes  # never CANCELLED nor UNKNOWN
    for error in outcomes:
        if error is not None:
            assert_overload_refusal(error)
    served = [request.reservation_id for request, error in zip(requests, outcomes) if not error]
    refused = [request.reservation_id for request, error in zip(requests, outcomes) if error]
    # Exactly the served reservations exist: a refused call changed nothing.
    for reservation_id in served:
        assert get_reservation(api, reservation_id).reservation_id == reservation_id
    for reservation_id in refused:
        with pytest.raises(grpc.RpcError) as raised:
            get_reservation(api, reservation_id)
        assert raised.value.code() is Code.NOT_FOUND
    assert_position(api, sku, node_id, reserved=len(served), available=BURST - len(served))
    samples = _scrape(metrics_port)
    assert samples['atp_rpc_overload_refusals_total{method="Reserve"}'] == len(refused)
    assert samples['atp_rpc_total{code="RESOURCE_EXHAUSTED",method="Reserve"}'] == len(refused)
    assert samples['atp_rpc_total{code="OK",method="Reserve"}'] == len(served)
    assert samples["atp_rpc_in_flight_calls"] == 0
    api.close()


def test_atp_client_retries_refused_calls_until_every_one_is_served(
    bounded: tuple[AtpdProcess, int],
) -> None:
    server, metrics_port = bounded
    api = Api(server.channel())
    sku, node_id = stocked(api, BURST)
    reservation_ids = [uid("retried") for _ in range(BURST)]
    one_unit = [{"line_id": "l1", "sku": sku, "node_id": node_id, "quantity": 1}]

    async def reserve_all() -> list[common_pb2.Reservation]:
        async with AsyncClient(server.target, timeout_s=CALL_TIMEOUT, retries=12) as client:
            return await asyncio.gather(*(client.reserve(reservation_id, one_unit)
                                          for reservation_id in reservation_ids))

    reservations = asyncio.run(reserve_all())

    assert [reservation.reservation_id for reservation in reservations] == reservation_ids
    assert_position(api, sku, node_id, reserved=BURST, available=0)  # each applied once
    assert _scrape(metrics_port)['atp_rpc_overload_refusals_total{method="Reserve"}'] > 0
    api.close()


def test_a_burst_beyond_grpcs_default_backlog_is_never_cancelled(tmp_path: Path) -> None:
    burst = 2 * GRPC_DEFAULT_BACKLOG
    with AtpdProcess(tmp_path / "data") as server:
        api = Api(server.channel())
        sku, _node_id = stocked(api, 10)
        request = availability_pb2.GetAvailabilityRequest(skus=[sku])

        async def read_all_at_once() -> list[str]:
            async with grpc.aio.insecure_channel(server.target) as channel:
                stub = availability_pb2_grpc.AvailabilityStub(channel)

                async def one() -> str:
                    try:
                        await stub.GetAvailability(request, timeout=CALL_TIMEOUT)
                    except grpc.aio.AioRpcError as error:
                        return error.code().name
                    return "OK"

                return await asyncio.wait_for(
                    asyncio.gather(*(one() for _ in range(burst))), 60)

        codes = Counter(asyncio.run(read_all_at_once()))
        api.close()

    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
