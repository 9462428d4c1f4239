"""atp.client's retries of overload refusals: which calls, how long it waits, and never past
the call's deadline. Against the fake atpd (real gRPC on 127.0.0.1:0)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

import atp.client
from atp.client import AsyncClient, AtpError, Client
from atp.v1 import availability_pb2, common_pb2, inventory_pb2

from . import FakeAtpd, abort_with, fake_atpd

__all__ = ["fake_atpd"]  # The fixture is used by name.

LINE = {"line_id": "l1", "sku": "A", "quantity": 1}
RESERVATION = common_pb2.Reservation(reservation_id="o1")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exponential backoff in milliseconds, so that only a server's hint makes a test wait."""
    monkeypatch.setattr(atp.client, "backoff_first_s", 0.001)


@pytest.fixture
def client(fake_atpd: FakeAtpd) -> Iterator[Client]:
    with Client(fake_atpd.target, timeout_s=10.0) as connected:
        yield connected


def overload_details(retry_delay_s: float) -> list[Any]:
    """What atpd's admission gate sends with RESOURCE_EXHAUSTED."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(retry_delay_s * 1e9))
    return [
        error_details_pb2.ErrorInfo(reason="OVERLOADED", domain="atp.v1"),
        error_details_pb2.RetryInfo(retry_delay=delay),
    ]


def overloaded_then(answer: Any, refusals: int, retry_delay_s: float = 0.0) -> Any:
    """A handler refusing `refusals` times as an overloaded atpd does, then answering."""
    calls = {"count": 0}

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        calls["count"] += 1
        if calls["count"] <= refusals:
            abort_with(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "busy",
                       *overload_details(retry_delay_s))
        return answer

    return handler


def always_unavailable_after(seconds: float) -> Any:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(seconds)
        abort_with(context, grpc.StatusCode.UNAVAILABLE, "storage busy")

    return handler


# ---------------------------------------------------------------------------------------------
# What is retried


def test_an_overloaded_reserve_is_retried_with_the_same_reservation_id(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("Reserve", overloaded_then(RESERVATION, refusals=2))

    assert client.reserve("o1", [LINE]) == RESERVATION

    attempts = fake_atpd.requests("Reserve")
    assert [attempt.reservation_id for attempt in attempts] == ["o1"] * 3


READS: list[tuple[str, Any, Callable[[Client], Any]]] = [
    ("GetAvailability", availability_pb2.GetAvailabilityResponse(),
     lambda client: client.get_availability(["A"])),
    ("GetReservation", RESERVATION, lambda client: client.get_reservation("o1")),
    ("ListNodes", inventory_pb2.ListNodesResponse(), lambda client: client.list_nodes()),
    ("Promise", availability_pb2.PromiseResponse(),
     lambda client: client.promise([{"line_id": "l1", "sku": "A", "quantity": 1}], "EAST")),
]


@pytest.mark.parametrize(("method", "answer", "call"), READS, ids=[read[0] for read in READS])
def test_an_overloaded_read_is_retried(
    fake_atpd: FakeAtpd, client: Client, method: str, answer: Any, call: Callable[[Client], Any]
) -> None:
    fake_atpd.answer(method, overloaded_then(answer, refusals=1))

    assert call(client) == answer
    assert len(fake_atpd.requests(method)) == 2


KEYED: list[tuple[str, Any, Callable[[Client, str], Any]]] = [
    ("Commit", RESERVATION, lambda client, key: client.commit("o1", request_id=key)),
    ("Release", RESERVATION, lambda client, key: client.release("o1", request_id=key)),
    ("Fulfill", RESERVATION, lambda client, key: client.fulfill("o1", request_id=key)),
    ("AdjustStock", inventory_pb2.AdjustStockResponse(),
     lambda client, key: client.adjust_stock([], request_id=key)),
    ("ReceiveSupply", common_pb2.Supply(),
     lambda client, key: client.receive_supply("s1", 5, request_id=key)),
    ("Reserve", RESERVATION, lambda client, key: client.reserve(key, [LINE])),
]


@pytest.mark.parametrize(("method", "answer", "call"), KEYED, ids=[keyed[0] for keyed in KEYED])
def test_a_write_is_retried_only_with_its_idempotency_key(
    fake_atpd: FakeAtpd,
    client: Client,
    method: str,
    answer: Any,
    call: Callable[[Client, str], Any],
) -> None:
    fake_atpd.answer(method, overloaded_then(answer, refusals=1))
    assert call(client, "key-1") == answer
    assert len(fake_atpd.requests(method)) == 2

    fake_atpd.answer(method, overloaded_then(answer, refusals=1))
    with pytest.raises(AtpError) as raised:
        call(client, "")  # no key: a second attempt could act twice
    assert raised.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(fake_atpd.requests(method)) == 3


def test_a_write_without_a_given_request_id_gets_one_and_is_retried(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("Commit", overloaded_then(RESERVATION, refusals=2))

    assert client.commit("o1") == RESERVATION

    keys = {attempt.request_id for attempt in fake_atpd.requests("Commit")}
    assert len(keys) == 1 and len(keys.pop()) == 32


def test_resource_exhausted_other_than_overload_is_not_retried(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    def too_many_lines(request: Any, context: grpc.ServicerContext) -> Any:
        abort_with(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many lines",
                   error_details_pb2.ErrorInfo(reason="QUOTA_EXCEEDED"))

    fake_atpd.answer("GetAvailability", too_many_lines)

    with pytest.raises(AtpError) as raised:
        client.get_availability(["A"])

    assert raised.value.reason == "QUOTA_EXCEEDED" and not raised.value.transient
    assert len(fake_atpd.requests("GetAvailability")) == 1


def test_the_async_client_retries_overload_refusals(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("Reserve", overloaded_then(RESERVATION, refusals=2, retry_delay_s=0.02))

    async def reserve() -> common_pb2.Reservation:
        async with AsyncClient(fake_atpd.target, timeout_s=10.0) as client:
            return await client.reserve("o1", [LINE])

    assert asyncio.run(reserve()) == RESERVATION
    assert len(fake_atpd.requests("Reserve")) == 3


# ---------------------------------------------------------------------------------------------
# How long it waits


def test_retries_wait_at_least_the_servers_retry_delay(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("GetReservation", overloaded_then(RESERVATION, refusals=2,
                                                       retry_delay_s=0.1))

    started = time.monotonic()
    client.get_reservation("o1")

    assert 0.2 <= time.monotonic() - started < 2.0


def test_a_retry_delay_beyond_the_deadline_fails_at_once(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("GetReservation", overloaded_then(RESERVATION, refusals=1,
                                                       retry_delay_s=30.0))

    started = time.monotonic()
    with Client(fake_atpd.target, timeout_s=1.0) as client, pytest.raises(AtpError) as raised:
        client.get_reservation("o1")

    assert time.monotonic() - started < 0.9
    assert raised.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.retry_delay_s == 30.0
    assert len(fake_atpd.requests("GetReservation")) == 1


def test_retries_never_run_past_the_calls_deadline(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("ListNodes", always_unavailable_after(0.1))

    started = time.monotonic()
    with (
        Client(fake_atpd.target, timeout_s=0.6, retries=1000) as client,
        pytest.raises(AtpError) as raised,
    ):
        client.list_nodes()

    assert time.monotonic() - started < 0.6 + 0.3  # the deadline, and a margin for a slow host
    assert raised.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert 2 <= len(fake_atpd.requests("ListNodes")) <= 6


def test_the_wait_is_the_hint_with_jitter_or_the_backoff_whichever_is_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(atp.client, "backoff_first_s", 0.05)
    far = time.monotonic() + 60.0
    hinted = AtpError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", overload_details(0.5))
    for _ in range(20):
        delay_s = atp.client._retry_delay_s(hinted, 1, 4, far)
        assert delay_s is not None and 0.5 <= delay_s <= 0.5 * atp.client.retry_hint_jitter_max

    unhinted = AtpError(grpc.StatusCode.UNAVAILABLE, "down")
    delay_s = atp.client._retry_delay_s(unhinted, 2, 4, far)
    assert delay_s is not None and 0.05 <= delay_s <= 0.1  # 0.05 * 2**1, jittered down to half


def test_no_wait_when_the_call_must_fail_now() -> None:
    far = time.monotonic() + 60.0
    overloaded = AtpError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", overload_details(0.01))
    assert atp.client._retry_delay_s(overloaded, 4, 4, far) is None  # no attempt left
    assert atp.client._retry_delay_s(overloaded, 1, 4, time.monotonic()) is None  # no time
    answer = AtpError(grpc.StatusCode.FAILED_PRECONDITION, "short")
    assert atp.client._retry_delay_s(answer, 1, 4, far) is None  # an answer, not a failure


def test_an_error_tells_its_retry_delay_and_whether_it_is_transient() -> None:
    overloaded = AtpError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", overload_details(0.25))
    assert overloaded.retry_delay_s == 0.25 and overloaded.reason == "OVERLOADED"
    assert overloaded.transient
    assert AtpError(grpc.StatusCode.UNAVAILABLE, "down").transient
    bare = AtpError(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max")
    assert bare.retry_delay_s is None and not bare.transient
