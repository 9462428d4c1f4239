"""Many clients at once against one atpd: no overselling, no lost or doubled updates.

Every loop is bounded in count, and every call has a deadline.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from atp.v1 import common_pb2, inventory_pb2, reservations_pb2, reservations_pb2_grpc
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Movement,
    State,
    assert_position,
    failure_of,
    get_reservation,
    line,
    list_all,
    movement,
    reserve,
    reserve_request,
    stocked,
    uid,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

OK = "OK"


def run_concurrently(
    target: str,
    calls: list[Callable[[reservations_pb2_grpc.ReservationsStub], Awaitable[Any]]],
    channels: int = 4,
) -> list[str]:
    """Runs every call at once over a few grpc.aio channels; returns OK or 'CODE REASON' each."""

    async def main() -> list[str]:
        opened = [grpc.aio.insecure_channel(target) for _ in range(channels)]
        try:
            stubs = [reservations_pb2_grpc.ReservationsStub(channel) for channel in opened]

            async def one(index: int, call: Callable[..., Awaitable[Any]]) -> str:
                try:
                    await call(stubs[index % channels])
                    return OK
                except grpc.aio.AioRpcError as error:
                    failure = failure_of(error)
                    return f"{failure.code.name} {failure.reason}"

            return await asyncio.wait_for(
                asyncio.gather(*(one(i, call) for i, call in enumerate(calls))), timeout=60
            )
        finally:
            for channel in opened:
                await channel.close()

    return asyncio.run(main())


def test_300_concurrent_one_unit_reserves_against_100_units_grant_exactly_100(
    api: Api, module_atpd: AtpdProcess
) -> None:
    sku, node_id = stocked(api, 100)
    requests = [reserve_request(None, [line("l1", sku, node_id, 1)]) for _ in range(300)]

    def reserve_call(request: reservations_pb2.ReserveRequest) -> Callable[..., Awaitable[Any]]:
        return lambda stub: stub.Reserve(request, timeout=CALL_TIMEOUT)

    outcomes = run_concurrently(module_atpd.target, [reserve_call(r) for r in requests])
    assert Counter(outcomes) == {OK: 100, "FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY": 200}
    assert_position(api, sku, node_id, on_hand=100, reserved=100, allocated=0, available=0)

    granted = {r.reservation_id for r, outcome in zip(requests, outcomes) if outcome == OK}
    listed = list_all(
        api.reservations.ListReservations,
        reservations_pb2.ListReservationsRequest(sku=sku, page_size=37),
        "reservations",
    )
    assert {r.reservation_id for r in listed} == granted
    assert all(r.state == State.HELD and r.lines[0].quantity == 1 for r in listed)


def test_concurrent_replays_of_one_reserve_hold_its_units_once(
    api: Api, module_atpd: AtpdProcess
) -> None:
    sku, node_id = stocked(api, 10)
    request = reserve_request(None, [line("l1", sku, node_id, 4)])
    outcomes = run_concurrently(
        module_atpd.target, [lambda stub: stub.Reserve(request, timeout=CALL_TIMEOUT)] * 50
    )
    assert outcomes == [OK] * 50
    assert_position(api, sku, node_id, reserved=4, available=6)


def test_concurrent_commits_and_releases_do_not_corrupt_counters(
    api: Api, module_atpd: AtpdProcess
) -> None:
    sku, node_id = stocked(api, 300)
    reservations = [
        reserve(api, line("l1", sku, node_id, 2), line("l2", sku, node_id, 1)).reservation_id
        for _ in range(90)
    ]
    assert_position(api, sku, node_id, reserved=270, allocated=0, available=30)

    rng = random.Random(7)
    calls: list[Callable[..., Awaitable[Any]]] = []
    for index, reservation_id in enumerate(reservations):
        group = index % 3
        commit_id, release_id = uid("c"), uid("r")
        commit_call = reservations_pb2.CommitRequest(
            reservation_id=reservation_id, request_id=commit_id
        )
        if group == 0:  # commit, with replays of the same request racing it
            calls += [lambda s, r=commit_call: s.Commit(r, timeout=CALL_TIMEOUT)] * 3
        elif group == 1:  # partial release, then release the rest, racing a commit
            partial = reservations_pb2.ReleaseRequest(
                reservation_id=reservation_id,
                request_id=release_id,
                lines=[common_pb2.LineQuantity(line_id="l1", quantity=1)],
            )
            calls += [lambda s, r=partial: s.Release(r, timeout=CALL_TIMEOUT)] * 2
            calls.append(lambda s, r=commit_call: s.Commit(r, timeout=CALL_TIMEOUT))
        else:  # commit and a whole release race: either order is legal
            whole = reservations_pb2.ReleaseRequest(
                reservation_id=reservation_id, request_id=release_id
            )
            calls.append(lambda s, r=commit_call: s.Commit(r, timeout=CALL_TIMEOUT))
            calls.append(lambda s, r=whole: s.Release(r, timeout=CALL_TIMEOUT))
    rng.shuffle(calls)
    outcomes = run_concurrently(module_atpd.target, calls)
    # The only legal refusal: a commit that lost the race to a whole release.
    assert set(outcomes) <= {OK, "FAILED_PRECONDITION INVALID_STATE"}, Counter(outcomes)

    # Counters must equal what the reservations themselves say.
    reserved = allocated = 0
    states: Counter[int] = Counter()
    for index, reservation_id in enumerate(reservations):
        reservation = get_reservation(api, reservation_id)
        states[reservation.state] += 1
        open_units = sum(
            item.quantity - item.fulfilled_quantity - item.released_quantity
            for item in reservation.lines
        )
        if reservation.state == State.HELD:
            reserved += open_units
        elif reservation.state == State.COMMITTED:
            allocated += open_units
        else:
            assert reservation.state == State.RELEASED and open_units == 0
        group = index % 3
        if group == 0:
            assert reservation.state == State.COMMITTED and open_units == 3
        elif group == 1:
            assert reservation.state == State.COMMITTED and open_units == 2
            assert [i.released_quantity for i in reservation.lines] == [1, 0]
        else:
            # Commit first: the release then releases the committed units; release first:
            # the commit is refused. Either way it ends RELEASED.
            assert reservation.state == State.RELEASED
    assert states[State.HELD] == 0
    assert_position(
        api,
        sku,
        node_id,
        on_hand=300,
        reserved=reserved,
        allocated=allocated,
        available=300 - reserved - allocated,
    )
    assert allocated == 30 * 3 + 30 * 2


def test_concurrent_partial_fulfils_ship_each_unit_once(api: Api, module_atpd: AtpdProcess) -> None:
    sku, node_id = stocked(api, 20)
    reservation_id = reserve(api, line("l1", sku, node_id, 10), commit=True).reservation_id
    requests = [
        reservations_pb2.FulfillRequest(
            reservation_id=reservation_id,
            request_id=uid("f"),
            lines=[common_pb2.LineQuantity(line_id="l1", quantity=1)],
        )
        for _ in range(15)
    ]
    outcomes = run_concurrently(
        module_atpd.target, [lambda s, r=r: s.Fulfill(r, timeout=CALL_TIMEOUT) for r in requests]
    )
    # The late ones find the reservation FULFILLED.
    assert Counter(outcomes) == {OK: 10, "FAILED_PRECONDITION INVALID_STATE": 5}
    reservation = get_reservation(api, reservation_id)
    assert reservation.state == State.FULFILLED
    assert reservation.lines[0].fulfilled_quantity == 10
    assert_position(api, sku, node_id, on_hand=10, allocated=0, reserved=0, available=10)


def test_concurrent_receipts_with_replays_count_each_request_once(api: Api) -> None:
    sku, node_id = stocked(api, 0)
    request_ids = [uid("adj") for _ in range(200)]

    def send(request_id: str) -> int:
        reply = api.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                request_id=request_id, movements=[movement(sku, node_id, Movement.RECEIPT, 1)]
            ),
            timeout=CALL_TIMEOUT,
        )
        return reply.positions[0].on_hand

    with ThreadPoolExecutor(16) as pool:
        # Every request id twice: a client retrying after a lost answer.
        on_hands = list(pool.map(send, request_ids + request_ids[::-1]))
    assert max(on_hands) == 200
    assert_position(api, sku, node_id, on_hand=200, available=200)


def test_concurrent_reserves_and_stock_movements_stay_consistent(
    api: Api, module_atpd: AtpdProcess
) -> None:
    """Reserves race shrinkage and receipts: reserved never exceeds what was granted, and the
    counters add up with the movements that were acknowledged."""
    sku, node_id = stocked(api, 50)
    reserve_requests = [reserve_request(None, [line("l1", sku, node_id, 1)]) for _ in range(100)]
    adjust_futures = []
    with ThreadPoolExecutor(4) as pool:
        for index in range(20):
            kind = Movement.RECEIPT if index % 2 else Movement.SHRINKAGE
            adjust_futures.append(
                pool.submit(
                    api.inventory.AdjustStock,
                    inventory_pb2.AdjustStockRequest(
                        request_id=uid("adj"), movements=[movement(sku, node_id, kind, 1)]
                    ),
                    timeout=CALL_TIMEOUT,
                )
            )
        outcomes = run_concurrently(
            module_atpd.target,
            [lambda s, r=r: s.Reserve(r, timeout=CALL_TIMEOUT) for r in reserve_requests],
        )
        adjusted = []
        for future in adjust_futures:
            try:
                future.result()
                adjusted.append(OK)
            except grpc.RpcError as error:
                adjusted.append(failure_of(error).reason)
    assert set(outcomes) <= {OK, "FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY"}
    granted = outcomes.count(OK)
    # Shrinkage only needs on_hand (not availability), so all 20 movements apply.
    assert adjusted == [OK] * 20
    assert 40 <= granted <= 60
    position = assert_position(api, sku, node_id, on_hand=50, reserved=granted)
    assert position.available == max(0, 50 - granted)
    assert position.short == (granted > 50)
