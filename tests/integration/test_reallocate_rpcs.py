"""At-risk demand and Reallocate over a live atpd (docs/architecture.md, At-risk demand).

One server for the module; every test uses its own nodes, SKUs and destination region, so
sourcing in one test never sees another test's nodes.
"""

from __future__ import annotations

from typing import Any

import pytest

from atp.v1 import common_pb2, events_pb2, events_pb2_grpc, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    State,
    adjust,
    assert_position,
    day,
    expect_error,
    get_position,
    get_reservation,
    list_all,
    movement,
    py_date,
    receive,
    reserve,
    snapshot,
    uid,
    upsert_node,
)

pytestmark = pytest.mark.integration


def sourced(sku: str, quantity: int, line_id: str = "l1") -> common_pb2.ReservationLine:
    return common_pb2.ReservationLine(line_id=line_id, sku=sku, quantity=quantity)


def at_risk_ids(api: Api, **filters: Any) -> list[str]:
    request = reservations_pb2.ListReservationsRequest(at_risk=True, **filters)
    return [r.reservation_id for r in list_all(api.reservations.ListReservations, request,
                                               "reservations")]


def reallocate(api: Api, **fields: Any) -> reservations_pb2.ReallocateResponse:
    return api.reservations.Reallocate(reservations_pb2.ReallocateRequest(**fields),
                                       timeout=CALL_TIMEOUT)


def placed(reservation: common_pb2.Reservation) -> list[tuple[str, int]]:
    """(node_id, quantity) of the lines holding units, sorted."""
    return sorted((item.node_id, item.quantity) for item in reservation.lines if item.quantity)


def lines_of(plan_lines: Any) -> list[tuple[str, int]]:
    return sorted((item.node_id, item.quantity) for item in plan_lines if item.quantity)


def node_pair(api: Api, region: str) -> tuple[str, str]:
    """A fast node (1 day to the region) and a slower one (2 days)."""
    fast = upsert_node(api, lanes=[(region, 1, 1)])
    slow = upsert_node(api, lanes=[(region, 2, 1)])
    return fast, slow


def shortage(api: Api) -> dict[str, str]:
    """r1 (4 units, committed, sourced) sits at the fast node until it loses 3 of its 5 units."""
    region = uid("region")
    fast, slow = node_pair(api, region)
    sku = uid("sku")
    receive(api, sku, fast, 5)
    receive(api, sku, slow, 10)
    reservation = reserve(api, sourced(sku, 4), destination_region=region, commit=True)
    assert placed(reservation) == [(fast, 4)]
    adjust(api, movement(sku, fast, Movement.SHRINKAGE, 3, reason="broken pallet"))
    return {"region": region, "fast": fast, "slow": slow, "sku": sku,
            "rid": reservation.reservation_id}


def test_shortage_is_listed_and_counted(api: Api) -> None:
    s = shortage(api)
    assert at_risk_ids(api, sku=s["sku"]) == [s["rid"]]
    assert at_risk_ids(api, node_id=s["fast"]) == [s["rid"]]
    assert at_risk_ids(api, node_id=s["slow"]) == []
    not_at_risk = list_all(
        api.reservations.ListReservations,
        reservations_pb2.ListReservationsRequest(sku=s["sku"], at_risk=False), "reservations")
    assert not_at_risk == []

    [item] = get_reservation(api, s["rid"]).lines
    assert (item.node_id, item.quantity, item.at_risk, item.at_risk_reason) == (
        s["fast"], 4, True, "SHORTAGE")
    assert_position(api, s["sku"], s["fast"], on_hand=2, allocated=4, available=0,
                    short=True, at_risk_quantity=4)
    assert_position(api, s["sku"], s["slow"], on_hand=10, allocated=0, available=10,
                    short=False, at_risk_quantity=0)

    # A receipt that covers it again clears the mark everywhere.
    receive(api, s["sku"], s["fast"], 2)
    assert at_risk_ids(api, sku=s["sku"]) == []
    assert_position(api, s["sku"], s["fast"], short=False, at_risk_quantity=0)
    assert get_reservation(api, s["rid"]).lines[0].at_risk is False


def test_dry_run_returns_the_plan_and_changes_nothing(api: Api) -> None:
    s = shortage(api)
    before = snapshot(api, [s["sku"]])
    plan_reply = reallocate(api, sku=s["sku"], dry_run=True)
    assert not plan_reply.applied and plan_reply.plan_sequence > 0
    [plan] = plan_reply.plans
    assert plan.reservation_id == s["rid"]
    assert [(item.node_id, item.quantity, item.at_risk) for item in plan.old_lines] == [
        (s["fast"], 4, True)]
    assert lines_of(plan.new_lines) == [(s["slow"], 4)]
    assert (py_date(plan.old_promise_date), py_date(plan.new_promise_date)) == (day(1), day(2))
    assert plan.slipped and plan.unfilled_quantity == 0
    assert snapshot(api, [s["sku"]]) == before
    # The same dry run again gives the same answer at the same sequence.
    assert reallocate(api, sku=s["sku"], dry_run=True) == plan_reply


def test_apply_with_the_plan_sequence_moves_the_lines(api: Api) -> None:
    s = shortage(api)
    plan_reply = reallocate(api, reservation_ids=[s["rid"]], dry_run=True)
    applied = reallocate(api, reservation_ids=[s["rid"]], plan_sequence=plan_reply.plan_sequence)
    assert applied.applied
    assert [p.reservation_id for p in applied.plans] == [s["rid"]]
    assert lines_of(applied.plans[0].new_lines) == lines_of(plan_reply.plans[0].new_lines)

    reservation = get_reservation(api, s["rid"])
    assert reservation.state == State.COMMITTED
    assert placed(reservation) == [(s["slow"], 4)]
    assert not any(item.at_risk for item in reservation.lines)
    assert py_date(reservation.promise_date) == day(2)
    assert_position(api, s["sku"], s["fast"], on_hand=2, allocated=0, available=2,
                    short=False, at_risk_quantity=0)
    assert_position(api, s["sku"], s["slow"], on_hand=10, allocated=4, available=6,
                    short=False, at_risk_quantity=0)
    assert at_risk_ids(api, sku=s["sku"]) == []

    # Announced once, after the plan's sequence.
    events = list(events_pb2_grpc.EventsStub(api.channel).Watch(
        events_pb2.WatchRequest(after_sequence=plan_reply.plan_sequence, stop_at_head=True,
                                reservation_id=s["rid"], types=["RESERVATION_REALLOCATED"]),
        timeout=CALL_TIMEOUT))
    assert len(events) == 1
    assert events[0].data.fields["slipped"].bool_value is True
    # Nothing left to move.
    assert reallocate(api, sku=s["sku"], dry_run=True).plans == []


def test_apply_after_an_intervening_change_is_plan_stale(api: Api) -> None:
    s = shortage(api)
    stale = reallocate(api, sku=s["sku"], dry_run=True).plan_sequence
    receive(api, s["sku"], s["slow"], 1)  # the ledger moves on
    before = snapshot(api, [s["sku"]])
    failure = expect_error(
        api.reservations.Reallocate,
        reservations_pb2.ReallocateRequest(sku=s["sku"], plan_sequence=stale),
        Code.FAILED_PRECONDITION, "PLAN_STALE",
    )
    assert failure.error_info is not None
    assert failure.error_info.metadata["plan_sequence"] == str(stale)
    assert snapshot(api, [s["sku"]]) == before
    assert at_risk_ids(api, sku=s["sku"]) == [s["rid"]]
    # A fresh plan applies.
    fresh = reallocate(api, sku=s["sku"], dry_run=True)
    assert fresh.plan_sequence > stale
    assert reallocate(api, sku=s["sku"], plan_sequence=fresh.plan_sequence).applied
    assert placed(get_reservation(api, s["rid"])) == [(s["slow"], 4)]


def test_node_deactivation_then_reallocate_by_node(api: Api) -> None:
    region = uid("region")
    down = upsert_node(api, lanes=[(region, 1, 1)])
    second = upsert_node(api, lanes=[(region, 2, 1)])
    third = upsert_node(api, lanes=[(region, 4, 1)])
    sku, other_sku = uid("sku"), uid("sku")
    receive(api, sku, down, 20)
    receive(api, other_sku, down, 20)
    receive(api, sku, second, 5)
    receive(api, sku, third, 20)
    receive(api, other_sku, third, 20)
    low = reserve(api, sourced(sku, 4), destination_region=region).reservation_id
    high = reserve(api, sourced(sku, 4), destination_region=region, priority=9).reservation_id
    mixed = reserve(api, sourced(sku, 2), sourced(other_sku, 3, "l2"), destination_region=region,
                    commit=True).reservation_id
    for rid in (low, high, mixed):
        assert {item.node_id for item in get_reservation(api, rid).lines} == {down}

    upsert_node(api, down, lanes=[(region, 1, 1)], active=False)
    assert at_risk_ids(api, node_id=down) == sorted([low, high, mixed])
    reasons = {item.at_risk_reason for rid in (low, high, mixed)
               for item in get_reservation(api, rid).lines}
    assert reasons == {"NODE_INACTIVE"}
    assert_position(api, sku, down, at_risk_quantity=10)
    assert_position(api, other_sku, down, at_risk_quantity=3)

    plan_reply = reallocate(api, node_id=down, dry_run=True)
    # Policy order: the priority-9 reservation first, then the others by creation.
    assert [p.reservation_id for p in plan_reply.plans] == [high, low, mixed]
    applied = reallocate(api, node_id=down, plan_sequence=plan_reply.plan_sequence)
    assert [p.reservation_id for p in applied.plans] == [high, low, mixed]
    assert all(p.unfilled_quantity == 0 for p in applied.plans)

    # high takes the 5 at the 2-day node; the rest goes to the 4-day node.
    assert placed(get_reservation(api, high)) == [(second, 4)]
    assert placed(get_reservation(api, low)) == [(third, 4)]
    assert placed(get_reservation(api, mixed)) == [(third, 2), (third, 3)]
    assert get_reservation(api, mixed).state == State.COMMITTED
    assert_position(api, sku, down, reserved=0, allocated=0, at_risk_quantity=0)
    assert_position(api, other_sku, down, reserved=0, allocated=0, at_risk_quantity=0)
    assert_position(api, sku, second, reserved=4, allocated=0)
    assert_position(api, sku, third, reserved=4, allocated=2)
    assert_position(api, other_sku, third, allocated=3)
    assert at_risk_ids(api, node_id=down) == []
    assert at_risk_ids(api, sku=sku) == [] and at_risk_ids(api, sku=other_sku) == []


def test_reallocate_scope_errors(api: Api) -> None:
    expect_error(api.reservations.Reallocate,
                 reservations_pb2.ReallocateRequest(node_id="no-such-node", dry_run=True),
                 Code.NOT_FOUND)
    expect_error(api.reservations.Reallocate,
                 reservations_pb2.ReallocateRequest(reservation_ids=["no-such-res"], dry_run=True),
                 Code.NOT_FOUND)
    expect_error(api.reservations.Reallocate,
                 reservations_pb2.ReallocateRequest(sku="no-such-sku"),
                 Code.NOT_FOUND)
    # An empty scope with nothing at risk anywhere in it plans nothing and succeeds.
    region = uid("region")
    node = upsert_node(api, lanes=[(region, 1, 1)])
    sku = uid("sku")
    receive(api, sku, node, 3)
    assert reallocate(api, sku=sku, dry_run=True).plans == []
    assert get_position(api, sku, node).at_risk_quantity == 0
