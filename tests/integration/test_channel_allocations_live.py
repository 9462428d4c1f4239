"""Channel allocations (quotas) against a real atpd: set and list through the client, the
fence under concurrent Reserve calls of two channels, per-channel availability, validation,
atpctl quota, and a kill -9 restart.

Every loop is bounded in count, and every call has a deadline.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atp.client import AtpError, Client
from atp.v1 import allocation_pb2, allocation_pb2_grpc, reservations_pb2
from tests.cli.test_cli_live import atpctl
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Movement,
    adjust,
    day,
    line,
    movement,
    reserve_request,
    stocked,
    uid,
    upsert_node,
)
from tests.integration.test_concurrency import OK, run_concurrently
from tests.integration.test_fuzz_requests import check_refusal, messages
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

FENCED = "FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY"


@pytest.fixture(scope="module")
def client(module_atpd: AtpdProcess) -> Iterator[Client]:
    with Client(module_atpd.target, timeout_s=CALL_TIMEOUT) as atp:
        yield atp


def open_units(client: Client, sku: str, channel: str) -> int:
    return sum(
        line.quantity - line.fulfilled_quantity - line.released_quantity
        for reservation in client.iter_reservations(sku=sku)
        if reservation.channel == channel
        for line in reservation.lines
    )


def channels_of(message: Any) -> dict[str, tuple[int, int, int]]:
    return {c.channel: (c.allocated, c.consumed, c.available) for c in message.channels}


def reserve_call(request: reservations_pb2.ReserveRequest) -> Callable[..., Awaitable[Any]]:
    return lambda stub: stub.Reserve(request, timeout=CALL_TIMEOUT)


def test_a_fenced_channel_keeps_its_allocation_under_concurrent_reserves(
    api: Api, client: Client, module_atpd: AtpdProcess
) -> None:
    pool, fenced = 60, 40
    sku, node_id = stocked(api, pool + fenced)
    client.set_channel_allocation(sku, "web", node_id=node_id, quantity=fenced)
    rng = random.Random(7)
    # 150 one-unit reserves from the store channel, 30 from web, interleaved at random.
    requests = [reserve_request(None, [line("l1", sku, node_id, 1)], channel="store")
                for _ in range(150)]
    requests += [reserve_request(None, [line("l1", sku, node_id, 1)], channel="web")
                 for _ in range(30)]
    rng.shuffle(requests)
    outcomes = run_concurrently(module_atpd.target, [reserve_call(r) for r in requests])
    by_channel = Counter((r.channel, outcome) for r, outcome in zip(requests, outcomes))
    assert set(outcomes) <= {OK, FENCED}
    # The store channel never took a fenced unit: at most the pool, and here all of it.
    store_held = open_units(client, sku, "store")
    assert store_held == by_channel[("store", OK)] == pool
    assert by_channel[("web", OK)] == 30  # web's own were never refused
    # Web still gets its full allocation.
    web_held = open_units(client, sku, "web")
    client.reserve(uid("res"), [{"line_id": "l1", "sku": sku, "node_id": node_id,
                                 "quantity": fenced - web_held}], channel="web")
    (allocation,) = client.list_channel_allocations(sku=sku).allocations
    assert (allocation.allocated, allocation.consumed, allocation.available) == (fenced, fenced, 0)
    assert open_units(client, sku, "store") == pool


def test_a_sku_wide_allocation_holds_under_concurrent_sourced_reserves(
    api: Api, client: Client, module_atpd: AtpdProcess
) -> None:
    region = uid("region")
    nodes = [upsert_node(api, lanes=[(region, 1, 1)]) for _ in range(2)]
    sku = uid("sku")
    adjust(api, *(movement(sku, node_id, Movement.RECEIPT, 50) for node_id in nodes))
    client.set_channel_allocation(sku, "web", share=0.5)  # 50 of the 100
    requests = [reserve_request(None, [line("l1", sku, "", 2)], channel=channel,
                                destination_region=region)
                for channel in ("store", "market") for _ in range(40)]
    random.Random(11).shuffle(requests)
    outcomes = run_concurrently(module_atpd.target, [reserve_call(r) for r in requests])
    assert set(outcomes) <= {OK, FENCED}
    others = open_units(client, sku, "store") + open_units(client, sku, "market")
    assert others == 50 == 2 * outcomes.count(OK)
    client.reserve(uid("res"), [{"line_id": "l1", "sku": sku, "quantity": 50}],
                   destination_region=region, channel="web")
    totals = client.get_availability([sku], channel="web").totals[0]
    assert channels_of(totals) == {"web": (50, 50, 0)}
    assert totals.available == 0


def test_availability_shows_each_channel_and_available_per_channel(
    api: Api, client: Client
) -> None:
    sku, node_id = stocked(api, 100)
    client.set_channel_allocation(sku, "web", node_id=node_id, quantity=30,
                                  end_date=day(10).isoformat())
    client.set_channel_allocation(sku, "store", node_id=node_id, share=0.2)
    client.reserve(uid("res"), [{"line_id": "l1", "sku": sku, "node_id": node_id,
                                 "quantity": 10}], channel="web")
    web_end = day(10)

    def position(channel: str) -> Any:
        return client.get_availability([sku], channel=channel).positions[0]

    seen = position("web")
    # web: 30 allocated, 10 consumed; store: 20% of 100 = 20, none consumed.
    assert channels_of(seen) == {"store": (20, 0, 20), "web": (30, 10, 20)}
    web = next(c for c in seen.channels if c.channel == "web")
    assert (web.end_date.year, web.end_date.month, web.end_date.day) == (
        web_end.year, web_end.month, web_end.day)
    assert seen.available == 90 - 20  # store's 20 fenced from web
    assert position("store").available == 90 - 20  # web's 20 left fenced from store
    assert position("").available == 90 - 40
    assert position("market").available == 50
    assert not position("market").short


def test_an_allocation_above_the_stock_fences_all_of_it_and_shorts_nothing(
    api: Api, client: Client
) -> None:
    sku, node_id = stocked(api, 20)
    client.set_channel_allocation(sku, "web", node_id=node_id, quantity=30)
    response = client.get_availability([sku], channel="store", include_timeline=True)
    (position,) = response.positions
    assert (position.available, position.short) == (0, False)
    assert [bucket.available for bucket in position.timeline] == [-10]
    assert channels_of(position) == {"web": (30, 0, 30)}
    assert client.get_availability([sku], channel="web").positions[0].available == 20


def test_promise_respects_other_channels_allocations(api: Api, client: Client) -> None:
    region = uid("region")
    node_id = upsert_node(api, lanes=[(region, 1, 1)])
    sku = uid("sku")
    adjust(api, movement(sku, node_id, Movement.RECEIPT, 10))
    client.set_channel_allocation(sku, "web", node_id=node_id, quantity=6)
    order = [{"line_id": "l1", "sku": sku, "quantity": 5}]
    assert not client.promise(order, region, channel="store").complete
    assert client.promise(order, region, channel="web").complete


def test_bad_allocations_are_refused_with_their_field(api: Api, client: Client) -> None:
    sku, node_id = stocked(api, 5)
    cases = [
        ({"quantity": 1, "share": 0.5}, "allocation.share"),
        ({"share": 1.5}, "allocation.share"),
        ({"quantity": -1}, "allocation.quantity"),
        ({"quantity": 1, "end_date": day(-1).isoformat()}, "allocation.end_date"),
    ]
    for fields, path in cases:
        with pytest.raises(AtpError) as refused:
            client.set_channel_allocation(sku, "web", node_id=node_id, **fields)
        assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert path in [v.field for v in refused.value.field_violations]
    with pytest.raises(AtpError) as refused:
        client.set_channel_allocation(sku, "", quantity=1)
    assert "allocation.channel" in [v.field for v in refused.value.field_violations]
    with pytest.raises(AtpError) as refused:
        client.set_channel_allocation(sku, "web", node_id=uid("nowhere"), quantity=1)
    assert refused.value.code is grpc.StatusCode.NOT_FOUND
    assert not client.list_channel_allocations(sku=sku).allocations


def test_atpctl_quota_set_list_clear_and_stock(api: Api, module_atpd: AtpdProcess) -> None:
    sku, node_id = stocked(api, 40)
    target = module_atpd.target
    shown = atpctl(target, "quota", "set", "--sku", sku, "--node", node_id, "--channel", "web",
                   "--quantity", "10", "--end-date", day(30).isoformat()).stdout
    assert "web" in shown and "10" in shown
    atpctl(target, "quota", "set", "--sku", sku, "--channel", "store", "--share", "0.25")
    listed = atpctl(target, "quota", "list", "--sku", sku).stdout
    assert "(network)" in listed and "store" in listed and "web" in listed
    stock = atpctl(target, "stock", "get", sku, "--channel", "store").stdout
    assert "CONSUMED" in stock and "web" in stock
    atpctl(target, "quota", "clear", "--sku", sku, "--node", node_id, "--channel", "web")
    atpctl(target, "quota", "clear", "--sku", sku, "--channel", "store")
    assert "(none)" in atpctl(target, "quota", "list", "--sku", sku).stdout
    atpctl(target, "quota", "set", "--sku", sku, "--channel", "web", "--share", "2", expect=2)


@pytest.mark.one_process_for_time(reason="time: a server of its own for the ledger's "
                                   "allocations; kill -9 behind gateways is tests/gateway's")
def test_allocations_survive_kill_9(tmp_path: Path, gateways: int) -> None:
    server = AtpdProcess(tmp_path / "data", gateways=gateways).start()
    try:
        with Client(server.target, timeout_s=CALL_TIMEOUT) as client:
            api = Api(server.channel())
            sku, node_id = stocked(api, 50)
            api.close()
            client.set_channel_allocation(sku, "web", node_id=node_id, quantity=20,
                                          end_date=day(7).isoformat())
            client.set_channel_allocation(sku, "store", share=0.1)
            client.set_channel_allocation(sku, "market", quantity=3)
            client.set_channel_allocation(sku, "market")  # removed again
            client.reserve(uid("res"), [{"line_id": "l1", "sku": sku, "node_id": node_id,
                                         "quantity": 5}], channel="web")
            before = client.list_channel_allocations()
            availability = client.get_availability([sku])
        server.kill()
        server.start()
        with Client(server.target, timeout_s=CALL_TIMEOUT) as client:
            assert client.list_channel_allocations() == before
            assert client.get_availability([sku]) == availability
            # Still fenced: 50 - 5 held - web's 15 - store's 5 leaves 25 for the market.
            with pytest.raises(AtpError) as refused:
                client.reserve(uid("res"), [{"line_id": "l1", "sku": sku, "node_id": node_id,
                                             "quantity": 26}], channel="market")
            assert "fenced for other channels" in str(refused.value)
            client.reserve(uid("res"), [{"line_id": "l1", "sku": sku, "node_id": node_id,
                                         "quantity": 25}], channel="market")
        assert server.stop() == 0
    finally:
        if server.process is not None:
            server.kill()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(request=st.one_of(
    messages(allocation_pb2.SetChannelAllocationRequest.DESCRIPTOR),
    messages(allocation_pb2.ListChannelAllocationsRequest.DESCRIPTOR),
))
def test_generated_requests_are_answered_or_refused_cleanly(
    module_atpd: AtpdProcess, request: Any
) -> None:
    with module_atpd.channel() as channel:
        stub = allocation_pb2_grpc.AllocationsStub(channel)
        method = ("SetChannelAllocation"
                  if isinstance(request, allocation_pb2.SetChannelAllocationRequest)
                  else "ListChannelAllocations")
        try:
            getattr(stub, method)(request, timeout=CALL_TIMEOUT)
            event(f"{method} OK")
        except grpc.RpcError as error:
            event(f"{method} {error.code().name}")
            check_refusal(error, f"{method}({request})")
        # The server still answers.
        stub.ListChannelAllocations(allocation_pb2.ListChannelAllocationsRequest(),
                                    timeout=CALL_TIMEOUT)
