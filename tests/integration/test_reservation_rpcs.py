"""The reservation lifecycle over a real atpd: Reserve, Commit, Release, Fulfill, reads,
batch and stream."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from atp.v1 import common_pb2, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    State,
    adjust,
    assert_position,
    check_failure,
    commit,
    day,
    expect_error,
    failure_from_status,
    fulfill,
    get_position,
    get_reservation,
    line,
    list_all,
    list_pages,
    movement,
    pb_date,
    py_date,
    release,
    reserve,
    reserve_request,
    snapshot,
    stocked,
    timeline_of,
    today,
    uid,
    upsert_node,
)

pytestmark = pytest.mark.integration

DEFAULT_TTL_S = 900


def _supply(api: Api, sku: str, node_id: str, quantity: int, offset: int) -> None:
    api.inventory.UpsertSupply(
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=uid("po"),
                sku=sku,
                node_id=node_id,
                quantity=quantity,
                expected_date=pb_date(day(offset)),
            )
        ),
        timeout=CALL_TIMEOUT,
    )


def _lines(reservation: common_pb2.Reservation) -> dict[str, common_pb2.ReservationLine]:
    return {item.line_id: item for item in reservation.lines}


# ----- Reserve -------------------------------------------------------------------------------


def test_single_line_reserve_holds_units_until_the_default_ttl(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    started = time.time()
    reservation = reserve(
        api, line("l1", sku, node_id, 3), channel="web", customer_id="c-1", priority=5
    )
    assert reservation.state == State.HELD
    assert (reservation.channel, reservation.customer_id, reservation.priority) == ("web", "c-1", 5)
    [held] = reservation.lines
    assert (held.line_id, held.sku, held.node_id, held.quantity) == ("l1", sku, node_id, 3)
    assert (held.fulfilled_quantity, held.released_quantity, held.backordered_quantity) == (0, 0, 0)
    assert not held.from_inbound
    assert py_date(held.ship_date) == today()
    assert py_date(held.delivery_date) is None  # no destination region
    assert py_date(reservation.promise_date) == today()
    created = reservation.create_time.ToNanoseconds() / 1e9
    assert started - 5 <= created <= time.time() + 5
    ttl = reservation.expire_time.ToNanoseconds() / 1e9 - created
    assert abs(ttl - DEFAULT_TTL_S) < 1, ttl
    assert_position(api, sku, node_id, on_hand=10, reserved=3, allocated=0, available=7)


def test_ttl_seconds_sets_the_expire_time(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 1), ttl_seconds=120)
    ttl = (reservation.expire_time.ToNanoseconds() - reservation.create_time.ToNanoseconds()) / 1e9
    assert abs(ttl - 120) < 1, ttl


def test_reserve_sets_delivery_dates_from_lanes_and_promise_date_to_the_latest(api: Api) -> None:
    sku = uid("sku")
    near = upsert_node(api, handling_days=1, lanes=[("EU", 2, 5)])
    far = upsert_node(api, handling_days=2, lanes=[("EU", 4, 1), ("US", 1, 1)])
    no_lane = upsert_node(api, handling_days=0, lanes=[("US", 1, 1)])
    for node_id in (near, far, no_lane):
        adjust(api, movement(sku, node_id, Movement.RECEIPT, 10))

    reservation = reserve(
        api, line("a", sku, near, 2), line("b", sku, far, 3), destination_region="EU"
    )
    lines = _lines(reservation)
    assert (py_date(lines["a"].ship_date), py_date(lines["a"].delivery_date)) == (day(1), day(3))
    assert (py_date(lines["b"].ship_date), py_date(lines["b"].delivery_date)) == (day(2), day(6))
    assert py_date(reservation.promise_date) == day(6)
    assert reservation.destination_region == "EU"

    # A node without a lane to the region: no delivery date; the promise uses its ship date.
    only_ship = reserve(api, line("c", sku, no_lane, 1), destination_region="EU")
    assert py_date(only_ship.lines[0].delivery_date) is None
    assert py_date(only_ship.promise_date) == today()
    assert_position(api, sku, near, reserved=2, available=8)
    assert_position(api, sku, far, reserved=3, available=7)
    assert_position(api, sku, no_lane, reserved=1, available=9)


def test_multi_line_reserve_is_all_or_nothing(api: Api) -> None:
    sku_a, node_a = stocked(api, 10)
    sku_b, node_b = stocked(api, 2)
    before = snapshot(api, [sku_a, sku_b])
    request = reserve_request(None, [line("l1", sku_a, node_a, 5), line("l2", sku_b, node_b, 5)])
    failure = expect_error(
        api.reservations.Reserve, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    [violation] = failure.precondition.violations
    assert violation.subject == "line l2"
    assert "requested 5, available 2" in violation.description
    assert snapshot(api, [sku_a, sku_b]) == before
    expect_error(
        api.reservations.GetReservation,
        reservations_pb2.GetReservationRequest(reservation_id=request.reservation_id),
        Code.NOT_FOUND,
        resource_type="reservation",
    )

    # Two short lines: one violation each.
    request = reserve_request(
        None,
        [line("x", sku_a, node_a, 11), line("y", sku_b, node_b, 3), line("z", sku_a, node_a, 1)],
    )
    failure = expect_error(
        api.reservations.Reserve, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    subjects = {v.subject: v.description for v in failure.precondition.violations}
    assert set(subjects) == {"line x", "line y"}
    assert "requested 11, available 10" in subjects["line x"]
    assert "requested 3, available 2" in subjects["line y"]
    assert snapshot(api, [sku_a, sku_b]) == before


def test_lines_on_the_same_position_count_together(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    before = snapshot(api, [sku])
    request = reserve_request(None, [line("l1", sku, node_id, 6), line("l2", sku, node_id, 5)])
    failure = expect_error(
        api.reservations.Reserve, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    assert [v.subject for v in failure.precondition.violations] == ["line l2"]
    assert snapshot(api, [sku]) == before
    reservation = reserve(api, line("l1", sku, node_id, 6), line("l2", sku, node_id, 4))
    assert [(item.line_id, item.quantity) for item in reservation.lines] == [("l1", 6), ("l2", 4)]
    assert_position(api, sku, node_id, reserved=10, available=0)


def test_reserve_at_a_requested_ship_date(api: Api) -> None:
    sku, node_id = stocked(api, 10, handling_days=1)
    reservation = reserve(api, line("l1", sku, node_id, 4, ship_date=day(3)))
    assert py_date(reservation.lines[0].ship_date) == day(3)
    assert py_date(reservation.promise_date) == day(3)
    # Earliest feasible when no date is asked: today + handling days.
    earliest = reserve(api, line("l1", sku, node_id, 1))
    assert py_date(earliest.lines[0].ship_date) == day(1)
    assert_position(api, sku, node_id, reserved=5, available=5)
    # Demand dated later still counts against what can be promised today.
    assert timeline_of(get_position(api, sku, node_id, timeline=True)) == [(today(), 5)]


def test_preorder_reserves_against_inbound_supply(api: Api) -> None:
    sku, node_id = stocked(api, 3)
    _supply(api, sku, node_id, 10, 4)
    assert_position(api, sku, node_id, on_hand=3, inbound=10, available=3)

    from_stock = reserve(api, line("l1", sku, node_id, 2))
    assert py_date(from_stock.lines[0].ship_date) == today()
    assert not from_stock.lines[0].from_inbound
    # ATP: today 1, day 4: 11.
    preorder = reserve(api, line("l1", sku, node_id, 5), destination_region="EU")
    [held] = preorder.lines
    assert py_date(held.ship_date) == day(4)
    assert held.from_inbound
    assert py_date(preorder.promise_date) == day(4)
    assert preorder.state == State.HELD
    assert_position(api, sku, node_id, on_hand=3, inbound=10, reserved=7, available=1)
    # net(today) = 3 - 2 = 1; net(day 4) = 1 + 10 - 5 = 6.
    assert timeline_of(get_position(api, sku, node_id, timeline=True)) == [
        (today(), 1),
        (day(4), 6),
    ]
    # More than today's stock plus the inbound cannot be promised on any day.
    request = reserve_request(None, [line("l1", sku, node_id, 7)])
    expect_error(
        api.reservations.Reserve, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    assert_position(api, sku, node_id, reserved=7, available=1)


def test_preorder_with_a_requested_ship_date_before_the_supply_is_refused(api: Api) -> None:
    sku, node_id = stocked(api, 0)
    _supply(api, sku, node_id, 10, 5)
    request = reserve_request(None, [line("l1", sku, node_id, 4, ship_date=day(2))])
    expect_error(
        api.reservations.Reserve, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    reservation = reserve(api, line("l1", sku, node_id, 4, ship_date=day(6)))
    assert py_date(reservation.lines[0].ship_date) == day(6)
    assert reservation.lines[0].from_inbound
    assert_position(api, sku, node_id, reserved=4, inbound=10, available=0)


def test_allow_partial_holds_what_it_can_and_backorders_the_rest(api: Api) -> None:
    sku, node_id = stocked(api, 4)
    reservation = reserve(
        api,
        line("l1", sku, node_id, 10),
        policy=common_pb2.FulfillmentPolicy(allow_partial=True),
    )
    [held] = reservation.lines
    assert (held.quantity, held.backordered_quantity) == (4, 6)
    assert reservation.policy.allow_partial
    assert_position(api, sku, node_id, reserved=4, available=0)


def test_commit_true_creates_a_committed_reservation_that_never_expires(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 6), commit=True)
    assert reservation.state == State.COMMITTED
    assert not reservation.HasField("expire_time")
    assert_position(api, sku, node_id, on_hand=10, reserved=0, allocated=6, available=4)


def test_reserve_replay_returns_the_existing_reservation_and_changes_nothing(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    request = reserve_request(None, [line("l1", sku, node_id, 3)], ttl_seconds=600, channel="pos")
    first = api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
    replay = api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
    assert replay == first
    assert_position(api, sku, node_id, reserved=3, available=7)
    # Still a replay after the reservation moved on: the current state comes back.
    commit(api, request.reservation_id)
    replay = api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
    assert replay.state == State.COMMITTED
    assert_position(api, sku, node_id, reserved=0, allocated=3, available=7)


def test_reserve_same_id_with_a_different_request_is_already_exists(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    request = reserve_request(None, [line("l1", sku, node_id, 3)])
    api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
    before = snapshot(api, [sku])
    changed = reservations_pb2.ReserveRequest()
    changed.CopyFrom(request)
    changed.lines[0].quantity = 4
    expect_error(
        api.reservations.Reserve,
        changed,
        Code.ALREADY_EXISTS,
        resource_type="reservation",
        resource_name=request.reservation_id,
    )
    changed.CopyFrom(request)
    changed.commit = True
    expect_error(api.reservations.Reserve, changed, Code.ALREADY_EXISTS)
    assert snapshot(api, [sku]) == before


# ----- Commit, Release, Fulfill --------------------------------------------------------------


def test_commit_moves_reserved_to_allocated_and_stops_expiry(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    held = reserve(api, line("l1", sku, node_id, 4))
    assert held.HasField("expire_time")
    request_id = uid("commit")
    committed = commit(api, held.reservation_id, request_id)
    assert committed.state == State.COMMITTED
    assert not committed.HasField("expire_time")
    assert [(item.line_id, item.quantity) for item in committed.lines] == [("l1", 4)]
    assert_position(api, sku, node_id, on_hand=10, reserved=0, allocated=4, available=6)
    # Replay of the same commit: same answer, nothing changes.
    assert commit(api, held.reservation_id, request_id) == committed
    assert_position(api, sku, node_id, reserved=0, allocated=4, available=6)
    # The same request id for another call is ALREADY_EXISTS.
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(reservation_id=held.reservation_id, request_id=request_id),
        Code.ALREADY_EXISTS,
    )
    assert get_reservation(api, held.reservation_id).state == State.COMMITTED


def test_release_whole_reservation_returns_every_unit(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 4), line("l2", sku, node_id, 2))
    released = release(api, reservation.reservation_id)
    assert released.state == State.RELEASED
    assert {i.line_id: i.released_quantity for i in released.lines} == {"l1": 4, "l2": 2}
    assert not released.HasField("expire_time")
    assert_position(api, sku, node_id, on_hand=10, reserved=0, available=10)


def test_partial_release_per_line_keeps_the_rest_held(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 5), line("l2", sku, node_id, 3))
    request_id = uid("rel")
    partly = release(api, reservation.reservation_id, [("l1", 2)], request_id=request_id)
    assert partly.state == State.HELD
    assert {i.line_id: i.released_quantity for i in partly.lines} == {"l1": 2, "l2": 0}
    assert_position(api, sku, node_id, reserved=6, available=4)
    # Replay: no second release.
    assert release(api, reservation.reservation_id, [("l1", 2)], request_id=request_id) == partly
    assert_position(api, sku, node_id, reserved=6, available=4)

    done = release(api, reservation.reservation_id, [("l1", 3), ("l2", 3)])
    assert done.state == State.RELEASED
    assert {i.line_id: i.released_quantity for i in done.lines} == {"l1": 5, "l2": 3}
    assert_position(api, sku, node_id, reserved=0, available=10)


def test_partial_release_of_a_committed_reservation_reduces_allocated(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 5), commit=True)
    after = release(api, reservation.reservation_id, [("l1", 2)])
    assert after.state == State.COMMITTED
    assert_position(api, sku, node_id, allocated=3, reserved=0, available=7)


def test_fulfill_whole_reservation_ships_every_unit(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 4), line("l2", sku, node_id, 1))
    commit(api, reservation.reservation_id)
    shipped = fulfill(api, reservation.reservation_id)
    assert shipped.state == State.FULFILLED
    assert {i.line_id: i.fulfilled_quantity for i in shipped.lines} == {"l1": 4, "l2": 1}
    assert_position(api, sku, node_id, on_hand=5, allocated=0, reserved=0, available=5)


def test_partial_fulfill_then_the_rest(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(
        api, line("l1", sku, node_id, 4), line("l2", sku, node_id, 3), commit=True
    )
    request_id = uid("ful")
    partly = fulfill(api, reservation.reservation_id, [("l1", 1), ("l2", 3)], request_id=request_id)
    assert partly.state == State.COMMITTED
    assert {i.line_id: i.fulfilled_quantity for i in partly.lines} == {"l1": 1, "l2": 3}
    assert_position(api, sku, node_id, on_hand=6, allocated=3, available=3)
    # Replay ships nothing more.
    assert (
        fulfill(api, reservation.reservation_id, [("l1", 1), ("l2", 3)], request_id=request_id)
        == partly
    )
    assert_position(api, sku, node_id, on_hand=6, allocated=3, available=3)

    rest = fulfill(api, reservation.reservation_id)
    assert rest.state == State.FULFILLED
    assert {i.line_id: i.fulfilled_quantity for i in rest.lines} == {"l1": 4, "l2": 3}
    assert_position(api, sku, node_id, on_hand=3, allocated=0, available=3)


def test_release_part_and_fulfill_the_rest_ends_fulfilled(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 5), commit=True)
    release(api, reservation.reservation_id, [("l1", 2)])
    shipped = fulfill(api, reservation.reservation_id)
    assert shipped.state == State.FULFILLED
    [shipped_line] = shipped.lines
    assert (shipped_line.fulfilled_quantity, shipped_line.released_quantity) == (3, 2)
    assert_position(api, sku, node_id, on_hand=7, allocated=0, available=7)


def test_release_more_than_open_on_a_line_is_refused_and_changes_nothing(api: Api) -> None:
    """More units than a line has open: the reservation's state refuses it (as supply does);
    a line the reservation lacks is a bad request."""
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 5))
    before = snapshot(api, [sku])
    failure = expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(
            reservation_id=reservation.reservation_id,
            request_id=uid("rel"),
            lines=[common_pb2.LineQuantity(line_id="l1", quantity=6)],
        ),
        Code.FAILED_PRECONDITION,
        "QUANTITY_EXCEEDS_OPEN",
    )
    assert failure.error_info is not None
    assert dict(failure.error_info.metadata) == {
        "reservation_id": reservation.reservation_id, "line_id": "l1", "open_quantity": "5",
        "backordered_quantity": "0"}
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(
            reservation_id=reservation.reservation_id,
            request_id=uid("rel"),
            lines=[common_pb2.LineQuantity(line_id="nope", quantity=1)],
        ),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].line_id"],
    )
    assert snapshot(api, [sku]) == before


# ----- reads ---------------------------------------------------------------------------------


def test_get_reservation_returns_what_reserve_returned(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(
        api,
        line("l1", sku, node_id, 2),
        destination_region="EU",
        customer_id="cust",
        channel="b2b",
        priority=3,
    )
    assert get_reservation(api, reservation.reservation_id) == reservation


def test_list_reservations_filters_by_state_sku_and_node(api: Api) -> None:
    sku, node_a = stocked(api, 100)
    node_b = upsert_node(api)
    adjust(api, movement(sku, node_b, Movement.RECEIPT, 100))
    other_sku, _ = stocked(api, 10)
    adjust(api, movement(other_sku, node_b, Movement.RECEIPT, 10))

    held = reserve(api, line("l1", sku, node_a, 1)).reservation_id
    committed = reserve(api, line("l1", sku, node_b, 1), commit=True).reservation_id
    released = reserve(api, line("l1", sku, node_a, 1)).reservation_id
    release(api, released)
    mixed = reserve(
        api, line("l1", sku, node_a, 1), line("l2", other_sku, node_b, 1)
    ).reservation_id
    shipped = reserve(api, line("l1", sku, node_b, 1), commit=True).reservation_id
    fulfill(api, shipped)

    def ids(**filters: object) -> list[str]:
        request = reservations_pb2.ListReservationsRequest(**filters)  # type: ignore[arg-type]
        return [
            r.reservation_id
            for r in list_all(api.reservations.ListReservations, request, "reservations")
        ]

    assert ids(sku=sku) == sorted([held, committed, released, mixed, shipped])
    assert ids(sku=sku, state=State.HELD) == sorted([held, mixed])
    assert ids(sku=sku, state=State.COMMITTED) == [committed]
    assert ids(sku=sku, state=State.RELEASED) == [released]
    assert ids(sku=sku, state=State.FULFILLED) == [shipped]
    assert ids(node_id=node_a) == sorted([held, released, mixed])
    assert ids(sku=sku, node_id=node_b) == sorted([committed, shipped])
    # Both filters must match the same line.
    assert ids(sku=other_sku, node_id=node_b) == [mixed]
    assert ids(sku=other_sku, node_id=node_a) == []
    assert ids(node_id=node_b, state=State.HELD) == [mixed]


def test_list_reservations_pages_in_reservation_id_order(api: Api) -> None:
    sku, node_id = stocked(api, 100)
    created = sorted(reserve(api, line("l1", sku, node_id, 1)).reservation_id for _ in range(5))
    pages = list_pages(
        api.reservations.ListReservations, reservations_pb2.ListReservationsRequest(sku=sku, page_size=2), "reservations", "reservation_id"
    )
    assert pages == [created[0:2], created[2:4], created[4:5]]


# ----- ReserveBatch --------------------------------------------------------------------------


def test_reserve_batch_answers_each_item_on_its_own(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    other_sku, other_node = stocked(api, 5)
    good_1 = reserve_request(None, [line("l1", sku, node_id, 3)])
    short = reserve_request(
        None, [line("l1", sku, node_id, 2), line("l2", other_sku, other_node, 6)]
    )
    invalid = reserve_request(None, [line("l1", sku, node_id, 0)])
    good_2 = reserve_request(
        None, [line("l1", sku, node_id, 2), line("l2", other_sku, other_node, 5)], commit=True
    )
    competing = reserve_request(None, [line("l1", sku, node_id, 6)])  # only 5 left by now
    unknown_node = reserve_request(None, [line("l1", sku, uid("no-node"), 1)])
    replay = good_1
    requests = [good_1, short, invalid, good_2, competing, unknown_node, replay]

    reply = api.reservations.ReserveBatch(
        reservations_pb2.ReserveBatchRequest(requests=requests), timeout=CALL_TIMEOUT
    )
    results = list(reply.results)
    assert [r.reservation_id for r in results] == [r.reservation_id for r in requests]
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == [
        "reservation",
        "status",
        "status",
        "reservation",
        "status",
        "status",
        "reservation",
    ]

    assert results[0].reservation.state == State.HELD and results[0].reason == ""
    assert results[3].reservation.state == State.COMMITTED
    assert results[6].reservation == results[0].reservation

    short_failure = check_failure(
        failure_from_status(results[1].status),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )
    assert results[1].reason == "INSUFFICIENT_AVAILABILITY"
    assert [v.subject for v in short_failure.precondition.violations] == ["line l2"]
    check_failure(
        failure_from_status(results[2].status), Code.INVALID_ARGUMENT, fields=["lines[0].quantity"]
    )
    assert results[2].reason == "INVALID_ARGUMENT"
    competing_failure = check_failure(
        failure_from_status(results[4].status),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )
    assert "requested 6, available 5" in competing_failure.precondition.violations[0].description
    check_failure(failure_from_status(results[5].status), Code.NOT_FOUND, resource_type="node")

    # Only the two good items hold anything; the short multi-line item held nothing.
    assert_position(api, sku, node_id, on_hand=10, reserved=3, allocated=2, available=5)
    assert_position(api, other_sku, other_node, on_hand=5, reserved=0, allocated=5, available=0)
    for failed in (short, invalid, competing, unknown_node):
        expect_error(
            api.reservations.GetReservation,
            reservations_pb2.GetReservationRequest(reservation_id=failed.reservation_id),
            Code.NOT_FOUND,
        )


# ----- ReserveStream -------------------------------------------------------------------------


def test_reserve_stream_answers_in_order_and_a_bad_message_fails_only_itself(api: Api) -> None:
    sku, node_id = stocked(api, 30)
    requests = [reserve_request(None, [line("l1", sku, node_id, 2)]) for _ in range(12)]
    requests[3] = reserve_request(None, [line("l1", sku, node_id, -1)])  # invalid
    requests[6] = reserve_request(None, [line("l1", sku, node_id, 1000)])  # short
    requests[9] = reserve_request("", [line("l1", sku, node_id, 1)])  # no id
    requests.append(requests[0])  # replay inside the stream
    good = [i for i in range(12) if i not in (3, 6, 9)]

    outbox: queue.Queue[reservations_pb2.ReserveRequest | None] = queue.Queue()
    for request in requests:  # every message is sent before any answer is read
        outbox.put(request)
    outbox.put(None)

    def messages():  # type: ignore[no-untyped-def]
        while (item := outbox.get(timeout=CALL_TIMEOUT)) is not None:
            yield item

    results = list(api.reservations.ReserveStream(messages(), timeout=CALL_TIMEOUT))
    assert [r.reservation_id for r in results] == [r.reservation_id for r in requests]
    for index in good:
        assert results[index].WhichOneof("result") == "reservation", (index, results[index])
        assert results[index].reservation.state == State.HELD
    assert results[12].reservation == results[0].reservation
    check_failure(
        failure_from_status(results[3].status), Code.INVALID_ARGUMENT, fields=["lines[0].quantity"]
    )
    check_failure(
        failure_from_status(results[6].status),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )
    assert results[6].reason == "INSUFFICIENT_AVAILABILITY"
    check_failure(
        failure_from_status(results[9].status), Code.INVALID_ARGUMENT, fields=["reservation_id"]
    )
    assert_position(
        api, sku, node_id, on_hand=30, reserved=2 * len(good), available=30 - 2 * len(good)
    )


def test_reserve_stream_answers_each_message_while_the_stream_stays_open(api: Api) -> None:
    sku, node_id = stocked(api, 5)
    outbox: queue.Queue[reservations_pb2.ReserveRequest | None] = queue.Queue()

    def messages():  # type: ignore[no-untyped-def]
        while (item := outbox.get(timeout=CALL_TIMEOUT)) is not None:
            yield item

    call = api.reservations.ReserveStream(messages(), timeout=CALL_TIMEOUT)
    try:
        for _ in range(3):
            request = reserve_request(None, [line("l1", sku, node_id, 1)])
            outbox.put(request)
            result = next(call)  # answered before the next message is sent
            assert result.reservation_id == request.reservation_id
            assert result.reservation.state == State.HELD
            assert get_position(api, sku, node_id).reserved == _ + 1
    finally:
        outbox.put(None)
    assert list(call) == []
    assert_position(api, sku, node_id, reserved=3, available=2)


def test_reserve_batch_from_many_threads_never_oversells(api: Api) -> None:
    sku, node_id = stocked(api, 50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        requests = [reserve_request(None, [line("l1", sku, node_id, 1)]) for _ in range(20)]
        reply = api.reservations.ReserveBatch(
            reservations_pb2.ReserveBatchRequest(requests=requests), timeout=CALL_TIMEOUT
        )
        with lock:
            outcomes.extend(
                r.WhichOneof("result") if not r.reason else r.reason for r in reply.results
            )

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CALL_TIMEOUT)
    assert outcomes.count("reservation") == 50
    assert outcomes.count("INSUFFICIENT_AVAILABILITY") == 30
    assert_position(api, sku, node_id, reserved=50, available=0)
