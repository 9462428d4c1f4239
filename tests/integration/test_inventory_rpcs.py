"""Every Inventory and Availability RPC against a real atpd, numbers computed by hand."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atp.v1 import availability_pb2, common_pb2, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    SupplyState,
    adjust,
    assert_position,
    day,
    expect_error,
    get_position,
    line,
    list_all,
    list_pages,
    movement,
    pb_date,
    py_date,
    receive,
    reserve,
    reserve_request,
    snapshot,
    stocked,
    timeline_of,
    today,
    uid,
    upsert_node,
    wait_for,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration


# ----- nodes ---------------------------------------------------------------------------------


def test_new_node_defaults_to_kind_dc_and_active(api: Api) -> None:
    node_id = uid("node")
    reply = api.inventory.UpsertNode(
        inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id=node_id)), timeout=CALL_TIMEOUT
    )
    assert reply.node_id == node_id
    assert reply.kind == "DC"
    assert reply.active is True
    listed = {n.node_id: n for n in api.inventory.ListNodes(inventory_pb2.ListNodesRequest()).nodes}
    assert listed[node_id].kind == "DC" and listed[node_id].active


def test_upsert_node_replaces_the_node_and_list_nodes_is_ordered(api: Api) -> None:
    node_id = uid("node")
    first = api.inventory.UpsertNode(
        inventory_pb2.UpsertNodeRequest(
            node=common_pb2.Node(
                node_id=node_id,
                kind="store",
                region="eu-west",
                handling_days=2,
                lanes=[common_pb2.Lane(region="EU", transit_days=3, cost=7)],
            )
        ),
        timeout=CALL_TIMEOUT,
    )
    assert first.kind == "STORE"  # lower case folded
    assert (first.region, first.handling_days, first.active) == ("eu-west", 2, True)
    assert [(lane.region, lane.transit_days, lane.cost) for lane in first.lanes] == [("EU", 3, 7)]

    second = api.inventory.UpsertNode(
        inventory_pb2.UpsertNodeRequest(
            node=common_pb2.Node(
                node_id=node_id,
                kind="3PL",
                active=False,
                handling_days=1,
                lanes=[
                    common_pb2.Lane(region="US", transit_days=5, cost=1),
                    common_pb2.Lane(region="CA", transit_days=6, cost=2),
                ],
            )
        ),
        timeout=CALL_TIMEOUT,
    )
    assert (second.kind, second.region, second.active, second.handling_days) == (
        "3PL",
        "",
        False,
        1,
    )

    nodes = api.inventory.ListNodes(inventory_pb2.ListNodesRequest(), timeout=CALL_TIMEOUT).nodes
    ids = [n.node_id for n in nodes]
    assert ids == sorted(ids)
    assert ids.count(node_id) == 1
    stored = nodes[ids.index(node_id)]
    assert stored == second


# ----- stock movements -----------------------------------------------------------------------


def test_receipt_and_return_add_and_shrinkage_and_damage_subtract(api: Api) -> None:
    node_id = upsert_node(api)
    sku = uid("sku")
    reply = adjust(
        api,
        movement(sku, node_id, Movement.RECEIPT, 10, reason="PO 1"),
        movement(sku, node_id, Movement.RETURN, 3, reason="RMA 7"),
    )
    assert [(p.sku, p.node_id, p.on_hand, p.available) for p in reply.positions] == [
        (sku, node_id, 13, 13)
    ]
    reply = adjust(
        api,
        movement(sku, node_id, Movement.SHRINKAGE, 2),
        movement(sku, node_id, Movement.DAMAGE, 1),
    )
    assert reply.positions[0].on_hand == 10
    assert_position(api, sku, node_id, on_hand=10, available=10, reserved=0, allocated=0, held=0)


def test_shrinkage_beyond_on_hand_is_refused_and_changes_nothing(api: Api) -> None:
    sku, node_id = stocked(api, 5)
    before = snapshot(api, [sku])
    request = inventory_pb2.AdjustStockRequest(
        request_id=uid("adj"), movements=[movement(sku, node_id, Movement.SHRINKAGE, 6)]
    )
    failure = expect_error(
        api.inventory.AdjustStock, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_ON_HAND"
    )
    assert failure.precondition is not None
    assert "requested 6, on hand 5" in failure.precondition.violations[0].description
    request.movements[0].type = Movement.DAMAGE
    expect_error(
        api.inventory.AdjustStock, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_ON_HAND"
    )
    assert snapshot(api, [sku]) == before


def test_cycle_count_sets_on_hand_including_to_zero(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    assert adjust(api, movement(sku, node_id, Movement.CYCLE_COUNT, 4)).positions[0].on_hand == 4
    assert adjust(api, movement(sku, node_id, Movement.CYCLE_COUNT, 25)).positions[0].on_hand == 25
    assert adjust(api, movement(sku, node_id, Movement.CYCLE_COUNT, 0)).positions[0].on_hand == 0
    assert_position(api, sku, node_id, on_hand=0, available=0)


def test_cycle_count_makes_a_new_sku_known(api: Api) -> None:
    node_id = upsert_node(api)
    sku = uid("sku")
    adjust(api, movement(sku, node_id, Movement.CYCLE_COUNT, 7))
    assert_position(api, sku, node_id, on_hand=7, available=7)


def test_transfer_moves_only_available_units(api: Api) -> None:
    sku, source = stocked(api, 10)
    target = upsert_node(api)
    reserve(api, line("l1", sku, source, 4))  # 6 left available at the source
    before = snapshot(api, [sku])
    too_many = inventory_pb2.AdjustStockRequest(
        request_id=uid("adj"),
        movements=[movement(sku, source, Movement.TRANSFER, 7, to_node_id=target)],
    )
    failure = expect_error(
        api.inventory.AdjustStock, too_many, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    assert "requested 7" in failure.precondition.violations[0].description
    assert snapshot(api, [sku]) == before

    reply = adjust(api, movement(sku, source, Movement.TRANSFER, 6, to_node_id=target))
    by_node = {p.node_id: p for p in reply.positions}
    assert set(by_node) == {source, target}
    assert (by_node[source].on_hand, by_node[target].on_hand) == (4, 6)
    assert_position(api, sku, source, on_hand=4, reserved=4, available=0)
    assert_position(api, sku, target, on_hand=6, reserved=0, available=6)


def test_transfer_does_not_move_safety_stock(api: Api) -> None:
    sku, source = stocked(api, 10)
    target = upsert_node(api)
    api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=source, quantity=3),
        timeout=CALL_TIMEOUT,
    )
    assert_position(api, sku, source, on_hand=10, safety_stock=3, available=7)
    request = inventory_pb2.AdjustStockRequest(
        request_id=uid("adj"),
        movements=[movement(sku, source, Movement.TRANSFER, 10, to_node_id=target)],
    )
    expect_error(
        api.inventory.AdjustStock, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    adjust(api, movement(sku, source, Movement.TRANSFER, 7, to_node_id=target))
    assert_position(api, sku, source, on_hand=3, available=0)


def test_multi_movement_request_is_atomic_when_a_later_movement_fails(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    other_node = upsert_node(api)
    new_sku = uid("sku")
    before = snapshot(api, [sku])
    # Three good movements, then a shrinkage of more than is on hand: nothing may stick.
    request = inventory_pb2.AdjustStockRequest(
        request_id=uid("adj"),
        movements=[
            movement(sku, node_id, Movement.RECEIPT, 5),
            movement(new_sku, node_id, Movement.RECEIPT, 5),
            movement(sku, node_id, Movement.TRANSFER, 3, to_node_id=other_node),
            movement(sku, node_id, Movement.SHRINKAGE, 100),
        ],
    )
    expect_error(
        api.inventory.AdjustStock, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_ON_HAND"
    )
    assert snapshot(api, [sku]) == before
    expect_error(
        api.availability.GetAvailability,
        availability_pb2.GetAvailabilityRequest(skus=[new_sku]),
        Code.NOT_FOUND,
        resource_type="sku",
    )
    # A later movement naming an unknown node: same, nothing applied.
    request.request_id = uid("adj")
    request.movements[3].CopyFrom(movement(sku, uid("no-such-node"), Movement.RECEIPT, 1))
    expect_error(api.inventory.AdjustStock, request, Code.NOT_FOUND, resource_type="node")
    assert snapshot(api, [sku]) == before
    # The same request id may be used again after a refusal: refused requests leave no key.
    request.movements.pop()
    reply = api.inventory.AdjustStock(request, timeout=CALL_TIMEOUT)
    assert {p.node_id: p.on_hand for p in reply.positions if p.sku == sku} == {
        node_id: 12,
        other_node: 3,
    }


def test_adjust_stock_replay_returns_current_positions_and_applies_nothing(api: Api) -> None:
    sku, node_id = stocked(api, 0)
    request = inventory_pb2.AdjustStockRequest(
        request_id=uid("adj"), movements=[movement(sku, node_id, Movement.RECEIPT, 10)]
    )
    assert api.inventory.AdjustStock(request, timeout=CALL_TIMEOUT).positions[0].on_hand == 10
    receive(api, sku, node_id, 5)
    replay = api.inventory.AdjustStock(request, timeout=CALL_TIMEOUT)
    assert [(p.sku, p.node_id, p.on_hand) for p in replay.positions] == [(sku, node_id, 15)]
    assert_position(api, sku, node_id, on_hand=15)

    request.movements[0].quantity = 11
    expect_error(api.inventory.AdjustStock, request, Code.ALREADY_EXISTS)
    assert_position(api, sku, node_id, on_hand=15)


# ----- safety stock --------------------------------------------------------------------------


def test_safety_stock_is_unavailable_below_priority_100_and_visible_at_100(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    position = api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_id, quantity=3),
        timeout=CALL_TIMEOUT,
    )
    assert (position.sku, position.node_id, position.safety_stock) == (sku, node_id, 3)
    assert get_position(api, sku, node_id, priority=0).available == 7
    assert get_position(api, sku, node_id, priority=99).available == 7
    assert get_position(api, sku, node_id, priority=100).available == 10
    assert get_position(api, sku, node_id, priority=500).available == 10

    # Normal-priority demand cannot take 8; priority-100 demand can.
    expect_error(
        api.reservations.Reserve,
        _reserve_request(sku, node_id, 8, priority=99),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )
    reserve(api, line("l1", sku, node_id, 8), priority=100)
    assert get_position(api, sku, node_id, priority=0).available == 0
    assert get_position(api, sku, node_id, priority=100).available == 2
    assert_position(api, sku, node_id, on_hand=10, reserved=8, safety_stock=3)

    # Safety stock 0 gives the buffer back to everyone.
    api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_id, quantity=0),
        timeout=CALL_TIMEOUT,
    )
    assert get_position(api, sku, node_id, priority=0).available == 2


def test_set_safety_stock_makes_a_new_sku_known(api: Api) -> None:
    node_id = upsert_node(api)
    sku = uid("sku")
    api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_id, quantity=4),
        timeout=CALL_TIMEOUT,
    )
    position = get_position(api, sku, node_id)
    assert (position.on_hand, position.safety_stock, position.available) == (0, 4, 0)


def _reserve_request(
    sku: str, node_id: str, quantity: int, **fields: object
) -> reservations_pb2.ReserveRequest:
    return reserve_request(None, [line("l1", sku, node_id, quantity)], **fields)


# ----- inbound supply ------------------------------------------------------------------------


def _upsert_supply(
    api: Api, supply_id: str, sku: str, node_id: str, quantity: int, offset: int
) -> common_pb2.Supply:
    return api.inventory.UpsertSupply(
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=supply_id,
                sku=sku,
                node_id=node_id,
                quantity=quantity,
                expected_date=pb_date(day(offset)),
            )
        ),
        timeout=CALL_TIMEOUT,
    )


def _receive_supply(
    api: Api, supply_id: str, quantity: int, request_id: str | None = None
) -> common_pb2.Supply:
    return api.inventory.ReceiveSupply(
        inventory_pb2.ReceiveSupplyRequest(
            request_id=request_id or uid("rcv"), supply_id=supply_id, quantity=quantity
        ),
        timeout=CALL_TIMEOUT,
    )


def _timeline(api: Api, sku: str, node_id: str) -> list[tuple[object, int]]:
    return timeline_of(get_position(api, sku, node_id, timeline=True))


def test_supply_create_slip_partial_receive_and_cancel_move_inbound_and_timeline(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    s1, s2 = uid("po"), uid("po")
    assert _timeline(api, sku, node_id) == [(today(), 10)]

    created = _upsert_supply(api, s1, sku, node_id, 20, 5)
    assert (created.state, created.quantity, created.received_quantity) == (SupplyState.OPEN, 20, 0)
    assert py_date(created.expected_date) == day(5)
    assert_position(api, sku, node_id, on_hand=10, inbound=20, available=10)
    assert _timeline(api, sku, node_id) == [(today(), 10), (day(5), 30)]

    _upsert_supply(api, s2, sku, node_id, 5, 3)
    assert_position(api, sku, node_id, on_hand=10, inbound=25, available=10)
    assert _timeline(api, sku, node_id) == [(today(), 10), (day(3), 15), (day(5), 35)]

    # Slip: s1 moves from day 5 to day 9.
    slipped = _upsert_supply(api, s1, sku, node_id, 20, 9)
    assert py_date(slipped.expected_date) == day(9) and slipped.quantity == 20
    assert_position(api, sku, node_id, on_hand=10, inbound=25, available=10)
    assert _timeline(api, sku, node_id) == [(today(), 10), (day(3), 15), (day(9), 35)]

    # Partial receipt of s1: 8 of 20 arrive early.
    partial = _receive_supply(api, s1, 8)
    assert (partial.state, partial.quantity, partial.received_quantity) == (SupplyState.OPEN, 12, 8)
    assert_position(api, sku, node_id, on_hand=18, inbound=17, available=18)
    assert _timeline(api, sku, node_id) == [(today(), 18), (day(3), 23), (day(9), 35)]

    # Cancel s2 (quantity 0).
    cancelled = _upsert_supply(api, s2, sku, node_id, 0, 3)
    assert (cancelled.state, cancelled.quantity) == (SupplyState.CANCELLED, 0)
    assert_position(api, sku, node_id, on_hand=18, inbound=12, available=18)
    assert _timeline(api, sku, node_id) == [(today(), 18), (day(9), 30)]

    # The rest of s1 arrives.
    received = _receive_supply(api, s1, 12)
    assert (received.state, received.quantity, received.received_quantity) == (
        SupplyState.RECEIVED,
        0,
        20,
    )
    assert_position(api, sku, node_id, on_hand=30, inbound=0, available=30)
    assert _timeline(api, sku, node_id) == [(today(), 30)]

    # A retry of s1's creating upsert must not reopen it as 20 phantom inbound units (found
    # by a contract review against 01834d6): received in full, it takes no change.
    expect_error(
        api.inventory.UpsertSupply,
        inventory_pb2.UpsertSupplyRequest(supply=common_pb2.Supply(
            supply_id=s1, sku=sku, node_id=node_id, quantity=20, expected_date=pb_date(day(5)))),
        Code.FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    assert_position(api, sku, node_id, on_hand=30, inbound=0, available=30)

    open_only = api.inventory.ListSupply(
        inventory_pb2.ListSupplyRequest(sku=sku), timeout=CALL_TIMEOUT
    )
    assert list(open_only.supplies) == []
    closed = api.inventory.ListSupply(
        inventory_pb2.ListSupplyRequest(sku=sku, include_closed=True), timeout=CALL_TIMEOUT
    )
    assert {s.supply_id: s.state for s in closed.supplies} == {
        s1: SupplyState.RECEIVED,
        s2: SupplyState.CANCELLED,
    }


def test_receive_supply_replay_changes_nothing_and_a_different_request_is_already_exists(
    api: Api,
) -> None:
    sku, node_id = stocked(api, 0)
    supply_id = uid("po")
    _upsert_supply(api, supply_id, sku, node_id, 10, 2)
    request_id = uid("rcv")
    first = _receive_supply(api, supply_id, 4, request_id)
    assert (first.quantity, first.received_quantity) == (6, 4)
    again = _receive_supply(api, supply_id, 4, request_id)
    assert (again.quantity, again.received_quantity) == (6, 4)
    assert_position(api, sku, node_id, on_hand=4, inbound=6)
    expect_error(
        api.inventory.ReceiveSupply,
        inventory_pb2.ReceiveSupplyRequest(request_id=request_id, supply_id=supply_id, quantity=5),
        Code.ALREADY_EXISTS,
    )
    assert_position(api, sku, node_id, on_hand=4, inbound=6)


def test_supply_dated_in_the_past_counts_as_arriving_today(api: Api) -> None:
    sku, node_id = stocked(api, 2)
    _upsert_supply(api, uid("po"), sku, node_id, 5, -3)
    assert_position(api, sku, node_id, on_hand=2, inbound=5, available=7)
    assert _timeline(api, sku, node_id) == [(today(), 7)]


def test_upsert_supply_makes_a_new_sku_known_with_only_inbound(api: Api) -> None:
    node_id = upsert_node(api)
    sku = uid("sku")
    _upsert_supply(api, uid("po"), sku, node_id, 9, 4)
    assert_position(api, sku, node_id, on_hand=0, inbound=9, available=0)
    assert _timeline(api, sku, node_id) == [(today(), 0), (day(4), 9)]


def test_timeline_has_one_bucket_per_day_on_which_atp_changes(api: Api) -> None:
    """Proto: 'one bucket per day on which it changes'. A pre-order that uses part of an
    inbound supply leaves ATP flat from today: net(today)=10, net(day 5)=10+20-25=5, so
    ATP(today)=ATP(day 5)=5 and the timeline is a single bucket."""
    sku, node_id = stocked(api, 10)
    _upsert_supply(api, uid("po"), sku, node_id, 20, 5)
    reserved = reserve(api, line("l1", sku, node_id, 25))
    assert py_date(reserved.lines[0].ship_date) == day(5)
    raw = timeline_of(get_position(api, sku, node_id, timeline=True))
    assert raw == [(today(), 5)]


# ----- holds ---------------------------------------------------------------------------------


def _place_hold(
    api: Api, hold_id: str, sku: str, node_id: str, quantity: int, **fields: object
) -> common_pb2.Hold:
    return api.inventory.PlaceHold(
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(
                hold_id=hold_id, sku=sku, node_id=node_id, quantity=quantity, **fields
            )
        ),
        timeout=CALL_TIMEOUT,
    )


def _release_hold(api: Api, hold_id: str) -> common_pb2.Hold:
    return api.inventory.ReleaseHold(
        inventory_pb2.ReleaseHoldRequest(hold_id=hold_id), timeout=CALL_TIMEOUT
    )


def _active_holds(api: Api, **filters: str) -> list[str]:
    return [
        h.hold_id
        for h in list_all(
            api.inventory.ListHolds, inventory_pb2.ListHoldsRequest(**filters), "holds"
        )
    ]


def test_hold_takes_only_available_units_unless_forced(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    reserve(api, line("l1", sku, node_id, 4))
    assert_position(api, sku, node_id, on_hand=10, reserved=4, held=0, available=6)

    h1, h2 = uid("hold"), uid("hold")
    before = snapshot(api, [sku])
    failure = expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(hold_id=h1, sku=sku, node_id=node_id, quantity=7)
        ),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )
    assert "requested 7" in failure.precondition.violations[0].description
    assert snapshot(api, [sku]) == before

    placed = _place_hold(api, h1, sku, node_id, 5, reason="quality check")
    assert (placed.hold_id, placed.quantity, placed.reason, placed.force) == (
        h1,
        5,
        "quality check",
        False,
    )
    assert placed.HasField("create_time")
    assert_position(api, sku, node_id, held=5, available=1, short=False)

    forced = _place_hold(api, h2, sku, node_id, 5, force=True, reason="damaged")
    assert forced.force and forced.quantity == 5
    # net = 10 - 4 reserved - 10 held = -4: the position is short, nothing available.
    assert_position(api, sku, node_id, on_hand=10, reserved=4, held=10, available=0, short=True)
    assert sorted(_active_holds(api, sku=sku)) == sorted([h1, h2])
    assert _active_holds(api, sku=sku, node_id=node_id) == sorted([h1, h2])

    released = _release_hold(api, h1)
    assert (released.hold_id, released.quantity) == (h1, 0)
    assert_position(api, sku, node_id, held=5, available=1, short=False)
    assert _active_holds(api, sku=sku) == [h2]
    # Releasing a released hold returns it again and changes nothing.
    assert _release_hold(api, h1).quantity == 0
    assert_position(api, sku, node_id, held=5, available=1)

    _release_hold(api, h2)
    assert_position(api, sku, node_id, held=0, available=6)
    assert _active_holds(api, sku=sku) == []


def test_place_hold_is_idempotent_on_hold_id(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    hold_id = uid("hold")
    first = _place_hold(api, hold_id, sku, node_id, 3, reason="event")
    again = _place_hold(api, hold_id, sku, node_id, 3, reason="event")
    assert again == first
    assert_position(api, sku, node_id, held=3, available=7)
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(
                hold_id=hold_id, sku=sku, node_id=node_id, quantity=4, reason="event"
            )
        ),
        Code.ALREADY_EXISTS,
        resource_type="hold",
    )
    assert_position(api, sku, node_id, held=3, available=7)


def test_hold_with_expire_time_is_released_automatically(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    hold_id = uid("hold")
    expire = Timestamp()
    expire.FromNanoseconds(time.time_ns() + 1_500_000_000)
    placed = _place_hold(api, hold_id, sku, node_id, 6, expire_time=expire)
    assert abs(placed.expire_time.ToNanoseconds() - expire.ToNanoseconds()) < 1_000
    assert_position(api, sku, node_id, held=6, available=4)
    assert _active_holds(api, sku=sku) == [hold_id]

    wait_for(lambda: get_position(api, sku, node_id).held == 0, timeout_s=10)
    assert time.time_ns() >= expire.ToNanoseconds() - 50_000_000  # not (much) early
    assert_position(api, sku, node_id, held=0, available=10)
    assert _active_holds(api, sku=sku) == []
    assert _release_hold(api, hold_id).quantity == 0


def test_place_hold_keeps_expire_time_to_the_microsecond(api: Api) -> None:
    """Proto: instants are kept to the microsecond."""
    sku, node_id = stocked(api, 10)
    exact = Timestamp(seconds=int(time.time()) + 3600, nanos=123_456_000)
    placed = _place_hold(api, uid("hold"), sku, node_id, 1, expire_time=exact)
    listed = api.inventory.ListHolds(inventory_pb2.ListHoldsRequest(sku=sku), timeout=CALL_TIMEOUT)
    assert (placed.expire_time, listed.holds[0].expire_time) == (exact, exact)
    finer = Timestamp(seconds=exact.seconds, nanos=987_654_321)
    placed = _place_hold(api, uid("hold"), sku, node_id, 1, expire_time=finer)
    assert placed.expire_time.seconds == finer.seconds
    assert placed.expire_time.nanos % 1000 == 0
    assert abs(placed.expire_time.nanos - finer.nanos) < 1000


def test_place_hold_retry_after_its_expire_time_returns_the_hold(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    request = inventory_pb2.PlaceHoldRequest(
        hold=common_pb2.Hold(hold_id=uid("hold"), sku=sku, node_id=node_id, quantity=2)
    )
    request.hold.expire_time.FromNanoseconds(time.time_ns() + 500_000_000)
    api.inventory.PlaceHold(request, timeout=CALL_TIMEOUT)
    wait_for(lambda: get_position(api, sku, node_id).held == 0, timeout_s=10)
    # A client retrying after a lost answer: same hold, same request.
    again = api.inventory.PlaceHold(request, timeout=CALL_TIMEOUT)
    assert (again.hold_id, again.quantity) == (request.hold.hold_id, 0)
    assert_position(api, sku, node_id, held=0, available=10)


# ----- listing and paging --------------------------------------------------------------------


def test_list_holds_pages_with_page_size_and_page_token(api: Api) -> None:
    sku, node_id = stocked(api, 100)
    hold_ids = sorted(uid("hold") for _ in range(5))
    for hold_id in hold_ids:
        _place_hold(api, hold_id, sku, node_id, 1)
    pages = list_pages(
        api.inventory.ListHolds, inventory_pb2.ListHoldsRequest(sku=sku, page_size=2), "holds", "hold_id"
    )
    assert pages == [hold_ids[0:2], hold_ids[2:4], hold_ids[4:5]]
    # page_size 0 means the default (100): one page.
    reply = api.inventory.ListHolds(inventory_pb2.ListHoldsRequest(sku=sku), timeout=CALL_TIMEOUT)
    assert [h.hold_id for h in reply.holds] == hold_ids and reply.next_page_token == ""


def test_list_supply_pages_and_filters_by_node(api: Api) -> None:
    sku, node_a = stocked(api, 0)
    node_b = upsert_node(api)
    at_a = sorted(uid("po") for _ in range(3))
    at_b = uid("po")
    for supply_id in at_a:
        _upsert_supply(api, supply_id, sku, node_a, 1, 2)
    _upsert_supply(api, at_b, sku, node_b, 1, 2)
    first = api.inventory.ListSupply(
        inventory_pb2.ListSupplyRequest(sku=sku, node_id=node_a, page_size=2), timeout=CALL_TIMEOUT
    )
    assert [s.supply_id for s in first.supplies] == at_a[:2] and first.next_page_token
    second = api.inventory.ListSupply(
        inventory_pb2.ListSupplyRequest(
            sku=sku, node_id=node_a, page_size=2, page_token=first.next_page_token
        ),
        timeout=CALL_TIMEOUT,
    )
    assert [s.supply_id for s in second.supplies] == at_a[2:] and second.next_page_token == ""
    everything = list_all(
        api.inventory.ListSupply, inventory_pb2.ListSupplyRequest(sku=sku, page_size=1), "supplies"
    )
    assert [s.supply_id for s in everything] == sorted([*at_a, at_b])


# ----- availability --------------------------------------------------------------------------


def test_get_availability_returns_positions_by_node_and_network_totals(api: Api) -> None:
    sku, other_sku = sorted([uid("sku"), uid("sku")])
    node_a, node_b, node_c = sorted(upsert_node(api) for _ in range(3))
    receive(api, sku, node_b, 7)
    receive(api, sku, node_a, 5)
    receive(api, other_sku, node_c, 1)
    api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_b, quantity=2),
        timeout=CALL_TIMEOUT,
    )
    reserve(api, line("l1", sku, node_a, 1))

    reply = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=[sku, other_sku]), timeout=CALL_TIMEOUT
    )
    assert [(p.sku, p.node_id) for p in reply.positions] == [
        (sku, node_a),
        (sku, node_b),
        (other_sku, node_c),
    ]
    assert [t.sku for t in reply.totals] == [sku, other_sku]
    total = reply.totals[0]
    assert (total.on_hand, total.reserved, total.safety_stock, total.available) == (12, 1, 2, 4 + 5)
    assert all(len(p.timeline) == 0 for p in reply.positions)

    only_b = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(
            skus=[sku], node_ids=[node_b], include_timeline=True
        ),
        timeout=CALL_TIMEOUT,
    )
    assert [(p.node_id, p.available) for p in only_b.positions] == [(node_b, 5)]
    assert timeline_of(only_b.positions[0]) == [(today(), 5)]
    assert only_b.totals[0].on_hand == 7

    # A known node without a position of the SKU contributes nothing.
    none_at_c = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=[sku], node_ids=[node_c]), timeout=CALL_TIMEOUT
    )
    assert list(none_at_c.positions) == []
    assert none_at_c.totals[0].on_hand == 0


def test_get_availability_positions_are_ordered_by_sku_then_node_whatever_the_request_order(
    api: Api,
) -> None:
    first_sku, second_sku = sorted([uid("sku"), uid("sku")])
    node_a, node_b = sorted([upsert_node(api), upsert_node(api)])
    receive(api, second_sku, node_b, 1)
    receive(api, second_sku, node_a, 1)
    receive(api, first_sku, node_b, 1)
    reply = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=[second_sku, first_sku]), timeout=CALL_TIMEOUT
    )
    # Totals follow the request order; positions are ordered by sku, then node_id.
    assert [t.sku for t in reply.totals] == [second_sku, first_sku]
    assert [(p.sku, p.node_id) for p in reply.positions] == [
        (first_sku, node_b),
        (second_sku, node_a),
        (second_sku, node_b),
    ]


# ----- health and reflection -----------------------------------------------------------------


def test_health_reports_serving_for_the_server_and_each_service(module_atpd: AtpdProcess) -> None:
    with grpc.insecure_channel(module_atpd.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "atp.v1.Inventory", "atp.v1.Availability", "atp.v1.Reservations"):
            reply = health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_public_services(module_atpd: AtpdProcess) -> None:
    with grpc.insecure_channel(module_atpd.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                timeout=CALL_TIMEOUT,
            )
        )
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"atp.v1.Inventory", "atp.v1.Availability", "atp.v1.Reservations"} <= names
        replies = list(
            stub.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol="atp.v1.Reservations"
                        )
                    ]
                ),
                timeout=CALL_TIMEOUT,
            )
        )
        assert replies[0].file_descriptor_response.file_descriptor_proto


def test_an_inactive_node_has_nothing_available_and_the_network_total_leaves_it_out(api: Api) -> None:
    """It takes no new demand, so nothing there can be promised now; the stock stays on hand."""
    sku, open_node = stocked(api, 10)
    closed_node = upsert_node(api)
    adjust(api, movement(sku, closed_node, Movement.RECEIPT, 7))
    upsert_node(api, closed_node, active=False)
    assert_position(api, sku, closed_node, on_hand=7, available=0)
    assert_position(api, sku, open_node, on_hand=10, available=10)
    reply = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=[sku], include_timeline=True), timeout=CALL_TIMEOUT)
    assert (reply.totals[0].on_hand, reply.totals[0].available) == (17, 10)
    closed = next(p for p in reply.positions if p.node_id == closed_node)
    assert [bucket.available for bucket in closed.timeline] == [7]  # the stock's ATP, for planners
    upsert_node(api, closed_node, active=True)
    assert_position(api, sku, closed_node, on_hand=7, available=7)


def test_a_node_going_inactive_makes_its_positions_with_open_lines_short(api: Api) -> None:
    """A position goes short when its node is deactivated; its lines go at risk (a trigger)."""
    sku, node_id = stocked(api, 10)
    idle_sku = uid("sku")
    adjust(api, movement(idle_sku, node_id, Movement.RECEIPT, 4))
    reserve(api, line("l1", sku, node_id, 6))
    upsert_node(api, node_id, active=False)
    assert_position(api, sku, node_id, short=True, at_risk_quantity=6, available=0)
    assert_position(api, idle_sku, node_id, short=False, available=0)  # no lines, none at risk
    upsert_node(api, node_id, active=True)
    assert_position(api, sku, node_id, short=False, at_risk_quantity=0, available=4)
