"""At-risk demand, reallocation and backorder fill (docs/architecture.md): worked scenarios.

Every expected outcome here was computed by hand from the rule of §4: place a position's open
lines in policy order (priority descending, then creation time) against on_hand today plus
inbound supply on its dates, less holds; a line that no longer fits at its ship date is at
risk. The ledger is driven directly with a fixed `now`.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from atp.ledger import Ledger, LedgerConfig, day_of, errors
from atp.ledger import commands
from atp.ledger.model import Event, Lane, Policy, ReservationState
from atp.ledger.errors import PLAN_STALE
from atp.ledger.reallocation import Scope

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


def iso_after(days: int) -> str:
    return datetime.date.fromordinal(TODAY + days).isoformat()


@pytest.fixture
def ledger() -> Ledger:
    """DC1 (1 day to EU), DC2 (2 days), DC3 (4 days); all handle orders the same day."""
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600, safety_stock_priority_min=100))
    ledger.execute(commands.UpsertNode("DC1", lanes=(Lane("EU", 1, 1),)), NOW)
    ledger.execute(commands.UpsertNode("DC2", lanes=(Lane("EU", 2, 1),)), NOW)
    ledger.execute(commands.UpsertNode("DC3", lanes=(Lane("EU", 4, 1),)), NOW)
    ledger.take_changes()
    return ledger


_counter = iter(range(1, 10**9))


def run(ledger: Ledger, command: commands.Command) -> Any:
    return ledger.execute(command, NOW)


def move(ledger: Ledger, sku: str, node: str, kind: str, quantity: int) -> None:
    run(ledger, commands.AdjustStock(f"adj-{next(_counter)}", (commands.Movement(sku, node, kind, quantity),)))


def reserve_at(
    ledger: Ledger, reservation_id: str, sku: str, node: str, quantity: int, *,
    priority: int = 0, ship_in: int | None = None, **options: Any,
) -> Any:
    line = commands.LineRequest("l1", sku, quantity, node,
                         date_after(ship_in) if ship_in is not None else None)
    return run(ledger, commands.Reserve(reservation_id, (line,), priority=priority, **options))


def reserve_sourced(
    ledger: Ledger, reservation_id: str, sku: str, quantity: int, *, priority: int = 0,
    **options: Any,
) -> Any:
    return run(ledger, commands.Reserve(reservation_id, (commands.LineRequest("l1", sku, quantity),),
                                 destination_region="EU", priority=priority, **options))


def at_risk(ledger: Ledger) -> dict[tuple[str, str], str]:
    """(reservation_id, line_id) -> reason of every marked line, read from the reservations."""
    marked = {
        (reservation.reservation_id, line.line_id): line.at_risk_reason
        for reservation in ledger.known_reservations().values()
        for line in reservation.lines
        if line.at_risk
    }
    indexed = {key for position in ledger.positions.values() for key in position.at_risk}
    assert indexed == set(marked), "position at-risk sets disagree with the line marks"
    assert ledger.at_risk_count == len(marked)
    assert ledger.check_invariants() == []
    return marked


def events(ledger: Ledger, *types: str) -> list[Event]:
    """The events since the last take, only of the given types (all when none given)."""
    taken = ledger.take_changes().events
    return [event for event in taken if not types or event.type in types]


def risk_events(ledger: Ledger) -> set[tuple[str, str, str, str, int]]:
    """{(type, reservation_id, line_id, reason, quantity)} of LINE_AT_RISK/LINE_RECOVERED."""
    return {
        (e.type, str(e.data["reservation_id"]), str(e.data["line_id"]), str(e.data["reason"]),
         int(e.data["quantity"]))  # type: ignore[call-overload]
        for e in events(ledger, "LINE_AT_RISK", "LINE_RECOVERED")
    }


def state_of(ledger: Ledger) -> dict[str, Any]:
    """Everything a dry run must leave alone, by value."""
    return {
        "positions": {
            key: (p.on_hand, p.allocated, p.reserved, p.held, p.inbound, tuple(sorted(p.deltas.items())),
                  sorted(p.lines), sorted(p.at_risk))
            for key, p in ledger.positions.items()
        },
        "reservations": {key: repr(r) for key, r in ledger.known_reservations().items()},
        "backorders": {sku: sorted(keys) for sku, keys in ledger.backorders.items()},
        "sequence": ledger.sequence,
        "at_risk_count": ledger.at_risk_count,
    }


# ----- shortage: policy order -------------------------------------------------------------------


def test_shrinkage_puts_lowest_priority_newest_lines_at_risk_first(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 10)
    reserve_at(ledger, "old", "A", "DC1", 3)               # priority 0, oldest
    reserve_at(ledger, "mid", "A", "DC1", 4)               # priority 0
    reserve_at(ledger, "new", "A", "DC1", 2)               # priority 0, newest
    reserve_at(ledger, "vip", "A", "DC1", 1, priority=10)  # created last, placed first
    events(ledger)
    assert at_risk(ledger) == {}

    # on_hand 7: vip 1 (6 left), old 3 (3 left), mid 4 does not fit, new 2 still fits (1 left).
    move(ledger, "A", "DC1", "SHRINKAGE", 3)
    assert at_risk(ledger) == {("mid", "l1"): "SHORTAGE"}
    assert risk_events(ledger) == {("LINE_AT_RISK", "mid", "l1", "SHORTAGE", 4)}
    assert ledger.positions[("A", "DC1")].at_risk == {("mid", "l1")}
    assert ledger.reservation("new").lines[0].at_risk is False

    # on_hand 5: vip 1 (4), old 3 (1), mid 4 no, new 2 no.
    move(ledger, "A", "DC1", "SHRINKAGE", 2)
    assert at_risk(ledger) == {("mid", "l1"): "SHORTAGE", ("new", "l1"): "SHORTAGE"}
    assert risk_events(ledger) == {("LINE_AT_RISK", "new", "l1", "SHORTAGE", 2)}

    # A cycle count finding 9: vip 1 (8), old 3 (5), mid 4 (1), new 2 no.
    move(ledger, "A", "DC1", "CYCLE_COUNT", 9)
    assert at_risk(ledger) == {("new", "l1"): "SHORTAGE"}
    assert risk_events(ledger) == {("LINE_RECOVERED", "mid", "l1", "", 4)}

    # A receipt of 1 makes everything fit again.
    move(ledger, "A", "DC1", "RECEIPT", 1)
    assert at_risk(ledger) == {}
    assert risk_events(ledger) == {("LINE_RECOVERED", "new", "l1", "", 2)}


def test_priority_beats_age_and_commitment_state(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 6)
    reserve_at(ledger, "firm", "A", "DC1", 4, commit=True)      # committed, priority 0
    reserve_at(ledger, "key", "A", "DC1", 2, priority=5)        # held, priority 5, newer
    move(ledger, "A", "DC1", "SHRINKAGE", 1)
    # key 2 first (3 left); firm 4 does not fit.
    assert at_risk(ledger) == {("firm", "l1"): "SHORTAGE"}


def test_a_later_ship_date_can_still_fit_on_inbound_supply(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 5)
    run(ledger, commands.UpsertSupply("po-1", "A", "DC1", 5, date_after(3)))
    reserve_at(ledger, "now", "A", "DC1", 5)              # ships today from stock
    reserve_at(ledger, "later", "A", "DC1", 5, ship_in=4)  # ships on day 4 (pre-order)
    events(ledger)
    # on_hand 3: net is 3 today..day 2, 8 from day 3. "now" needs 5 from today: min 3, at risk.
    # "later" needs 5 from day 4: 8, fits; the older line is the one at risk.
    move(ledger, "A", "DC1", "SHRINKAGE", 2)
    assert at_risk(ledger) == {("now", "l1"): "SHORTAGE"}
    # Releasing the pre-order does not help "now": it needs units today.
    run(ledger, commands.Release("later", "rel-later"))
    assert at_risk(ledger) == {("now", "l1"): "SHORTAGE"}
    # Receiving the PO early does.
    run(ledger, commands.ReceiveSupply("rcv-1", "po-1", 2))
    assert at_risk(ledger) == {}


def test_partially_shipped_line_counts_only_its_open_units(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 10)
    reserve_at(ledger, "big", "A", "DC1", 6, commit=True)
    reserve_at(ledger, "small", "A", "DC1", 4)
    run(ledger, commands.Fulfill("big", "ful-1", (commands.LineQuantity("l1", 5),)))  # on_hand 5, big open 1
    move(ledger, "A", "DC1", "SHRINKAGE", 1)  # on_hand 4: big 1 (3 left), small 4 no
    assert at_risk(ledger) == {("small", "l1"): "SHORTAGE"}
    events(ledger)
    run(ledger, commands.Release("small", "rel-s", (commands.LineQuantity("l1", 1),)))  # small open 3: fits
    assert at_risk(ledger) == {}
    assert risk_events(ledger) == {("LINE_RECOVERED", "small", "l1", "", 3)}


def test_safety_stock_does_not_put_placed_lines_at_risk(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 10)
    reserve_at(ledger, "r1", "A", "DC1", 8)
    run(ledger, commands.SetSafetyStock("A", "DC1", 5))
    assert at_risk(ledger) == {}
    assert not ledger.positions[("A", "DC1")].at_risk


# ----- supply slip ------------------------------------------------------------------------------


def test_supply_slip_puts_preorders_at_risk_and_moving_back_recovers(ledger: Ledger) -> None:
    move(ledger, "P", "DC1", "CYCLE_COUNT", 0)
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 5, date_after(5)))
    first = reserve_at(ledger, "pre1", "P", "DC1", 3)
    second = reserve_at(ledger, "pre2", "P", "DC1", 2)
    assert first.lines[0].ship_day == TODAY + 5 and first.lines[0].from_inbound
    assert second.lines[0].ship_day == TODAY + 5
    events(ledger)

    # Moving the PO earlier is no slip.
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 5, date_after(4)))
    assert at_risk(ledger) == {}
    assert risk_events(ledger) == set()

    # The PO slips to day 8: neither pre-order fits at day 5 any more.
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 5, date_after(8)))
    assert at_risk(ledger) == {("pre1", "l1"): "SUPPLY_SLIPPED", ("pre2", "l1"): "SUPPLY_SLIPPED"}
    taken = events(ledger)
    assert [e.type for e in taken if e.type == "SUPPLY_UPDATED"] == ["SUPPLY_UPDATED"]
    assert next(e for e in taken if e.type == "SUPPLY_UPDATED").data["slipped"] is True
    assert {(e.data["reservation_id"], e.data["reason"]) for e in taken
            if e.type == "LINE_AT_RISK"} == {("pre1", "SUPPLY_SLIPPED"), ("pre2", "SUPPLY_SLIPPED")}

    # Back to day 5: both recover.
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 5, date_after(5)))
    assert at_risk(ledger) == {}
    assert risk_events(ledger) == {("LINE_RECOVERED", "pre1", "l1", "", 3),
                                   ("LINE_RECOVERED", "pre2", "l1", "", 2)}


def test_supply_shrinking_or_cancelled_puts_the_newest_preorder_at_risk(ledger: Ledger) -> None:
    move(ledger, "P", "DC1", "CYCLE_COUNT", 0)
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 5, date_after(5)))
    reserve_at(ledger, "pre1", "P", "DC1", 3)
    reserve_at(ledger, "pre2", "P", "DC1", 2)
    events(ledger)
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 4, date_after(5)))  # pre1 3 fits, pre2 2 no
    assert at_risk(ledger) == {("pre2", "l1"): "SUPPLY_SLIPPED"}
    run(ledger, commands.UpsertSupply("po-p", "P", "DC1", 0, date_after(5)))  # cancelled
    assert at_risk(ledger) == {("pre1", "l1"): "SUPPLY_SLIPPED", ("pre2", "l1"): "SUPPLY_SLIPPED"}
    assert ledger.positions[("P", "DC1")].inbound == 0


# ----- forced holds -----------------------------------------------------------------------------


def test_forced_hold_puts_lines_at_risk_and_its_release_recovers_them(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 10)
    reserve_at(ledger, "r1", "A", "DC1", 6)
    reserve_at(ledger, "r2", "A", "DC1", 4)
    with pytest.raises(errors.InsufficientAvailability):
        run(ledger, commands.PlaceHold("h0", "A", "DC1", 3))  # without force: nothing available
    events(ledger)
    run(ledger, commands.PlaceHold("h1", "A", "DC1", 3, reason="damaged", force=True))
    # net 10 - 3 held: r1 6 fits (1 left), r2 4 does not.
    assert at_risk(ledger) == {("r2", "l1"): "SHORTAGE"}
    assert risk_events(ledger) == {("LINE_AT_RISK", "r2", "l1", "SHORTAGE", 4)}
    run(ledger, commands.ReleaseHold("h1"))
    assert at_risk(ledger) == {}
    assert risk_events(ledger) == {("LINE_RECOVERED", "r2", "l1", "", 4)}


def test_forced_hold_expiry_recovers_lines(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 4)
    reserve_at(ledger, "r1", "A", "DC1", 4, commit=True)
    run(ledger, commands.PlaceHold("h1", "A", "DC1", 1, expire_time=NOW + 60, force=True))
    assert at_risk(ledger) == {("r1", "l1"): "SHORTAGE"}
    assert ledger.execute(commands.ExpireDue(), NOW + 60) == 1
    assert at_risk(ledger) == {}


# ----- node deactivation ------------------------------------------------------------------------


def test_deactivating_a_node_puts_all_its_open_lines_at_risk(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 10)
    move(ledger, "B", "DC1", "RECEIPT", 10)
    move(ledger, "A", "DC2", "RECEIPT", 10)
    reserve_at(ledger, "r1", "A", "DC1", 2)
    reserve_at(ledger, "r2", "B", "DC1", 3, commit=True)
    reserve_at(ledger, "r3", "A", "DC2", 4)
    run(ledger, commands.Fulfill("r2", "ful-r2", (commands.LineQuantity("l1", 1),)))
    events(ledger)

    run(ledger, commands.UpsertNode("DC1", active=False, lanes=(Lane("EU", 1, 1),)))
    assert at_risk(ledger) == {("r1", "l1"): "NODE_INACTIVE", ("r2", "l1"): "NODE_INACTIVE"}
    assert risk_events(ledger) == {("LINE_AT_RISK", "r1", "l1", "NODE_INACTIVE", 2),
                                   ("LINE_AT_RISK", "r2", "l1", "NODE_INACTIVE", 2)}
    with pytest.raises(errors.FailedPrecondition) as refused:
        reserve_at(ledger, "r4", "A", "DC1", 1)
    assert refused.value.reason == "NODE_INACTIVE"

    run(ledger, commands.UpsertNode("DC1", active=True, lanes=(Lane("EU", 1, 1),)))
    assert at_risk(ledger) == {}
    assert risk_events(ledger) == {("LINE_RECOVERED", "r1", "l1", "", 2),
                                   ("LINE_RECOVERED", "r2", "l1", "", 2)}


def test_node_inactive_reason_overrides_an_earlier_shortage(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 4)
    reserve_at(ledger, "r1", "A", "DC1", 4)
    move(ledger, "A", "DC1", "SHRINKAGE", 1)
    assert at_risk(ledger) == {("r1", "l1"): "SHORTAGE"}
    run(ledger, commands.UpsertNode("DC1", active=False, lanes=(Lane("EU", 1, 1),)))
    assert at_risk(ledger) == {("r1", "l1"): "NODE_INACTIVE"}


def test_reactivated_node_does_not_keep_the_node_inactive_reason(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 4)
    reserve_at(ledger, "r1", "A", "DC1", 4)
    run(ledger, commands.UpsertNode("DC1", active=False, lanes=(Lane("EU", 1, 1),)))
    move(ledger, "A", "DC1", "SHRINKAGE", 1)
    run(ledger, commands.UpsertNode("DC1", active=True, lanes=(Lane("EU", 1, 1),)))
    # Still at risk (3 on hand for 4), but no longer because the node is inactive.
    assert at_risk(ledger) == {("r1", "l1"): "SHORTAGE"}


# ----- reallocation -----------------------------------------------------------------------------


def _shortage_at_dc1(ledger: Ledger) -> None:
    """r1 (4 units, sourced to EU) sits at DC1, the fastest node, until a shrinkage there."""
    move(ledger, "A", "DC1", "RECEIPT", 5)
    move(ledger, "A", "DC2", "RECEIPT", 10)
    move(ledger, "A", "DC3", "RECEIPT", 10)
    placed = reserve_sourced(ledger, "r1", "A", 4)
    assert [(line.node_id, line.quantity) for line in placed.lines] == [("DC1", 4)]
    move(ledger, "A", "DC1", "SHRINKAGE", 3)
    assert at_risk(ledger) == {("r1", "l1"): "SHORTAGE"}
    events(ledger)


def test_reallocation_moves_at_risk_lines_to_the_next_best_node(ledger: Ledger) -> None:
    _shortage_at_dc1(ledger)
    result = run(ledger, commands.Reallocate())
    assert result.applied
    [plan] = result.plans
    assert plan.reservation_id == "r1"
    assert [(line.node_id, line.quantity, line.at_risk) for line in plan.old_lines] == [("DC1", 4, True)]
    assert [(line.line_id, line.node_id, line.quantity) for line in plan.new_lines] == [("l1", "DC2", 4)]
    assert (plan.old_promise_day, plan.new_promise_day) == (TODAY + 1, TODAY + 2)
    assert plan.slipped and plan.unfilled_quantity == 0

    r1 = ledger.reservation("r1")
    assert [(line.line_id, line.node_id, line.quantity, line.ship_day, line.delivery_day,
             line.at_risk) for line in r1.lines] == [("l1", "DC2", 4, TODAY, TODAY + 2, False)]
    dc1, dc2, dc3 = (ledger.positions[("A", node)] for node in ("DC1", "DC2", "DC3"))
    assert (dc1.on_hand, dc1.reserved, dict(dc1.deltas)) == (2, 0, {})
    assert (dc2.on_hand, dc2.reserved, dict(dc2.deltas)) == (10, 4, {TODAY: -4})
    assert dc3.reserved == 0
    assert at_risk(ledger) == {}
    [moved] = events(ledger, "RESERVATION_REALLOCATED")
    assert {key: moved.data[key] for key in (
        "reservation_id", "old_promise_date", "new_promise_date", "slipped", "unfilled")} == {
        "reservation_id": "r1", "old_promise_date": iso_after(1),
        "new_promise_date": iso_after(2), "slipped": True, "unfilled": 0}
    # Nothing left to do: a second run plans nothing.
    assert run(ledger, commands.Reallocate()).plans == []


def test_reallocation_splits_and_leaves_the_rest_unfilled(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 6)
    move(ledger, "A", "DC2", "RECEIPT", 2)
    reserve_sourced(ledger, "r1", "A", 6, commit=True)
    move(ledger, "A", "DC1", "CYCLE_COUNT", 1)
    assert at_risk(ledger) == {("r1", "l1"): "SHORTAGE"}
    # Re-sourced with allow_partial forced on: DC1 has 1, DC2 has 2, 3 cannot be filled.
    [plan] = run(ledger, commands.Reallocate(sku="A")).plans
    assert sorted((line.node_id, line.quantity) for line in plan.new_lines) == [("DC1", 1), ("DC2", 2)]
    assert plan.unfilled_quantity == 3 and plan.slipped
    r1 = ledger.reservation("r1")
    assert sum(line.quantity for line in r1.lines) == 3
    assert sum(line.backordered_quantity for line in r1.lines) == 3
    assert {line.line_id for line in r1.lines} == {"l1", "l1/2"}
    assert ledger.positions[("A", "DC1")].allocated == 1
    assert ledger.positions[("A", "DC2")].allocated == 2
    assert at_risk(ledger) == {}
    # The unfilled units are a backorder: a receipt at DC3 fills them.
    events(ledger)
    move(ledger, "A", "DC3", "RECEIPT", 5)
    [filled] = events(ledger, "BACKORDER_FILLED")
    assert filled.data["reservation_id"] == "r1" and filled.data["filled"] == 3
    assert filled.data["remaining"] == 0
    assert ledger.positions[("A", "DC3")].allocated == 3
    assert sum(line.backordered_quantity for line in ledger.reservation("r1").lines) == 0
    assert ledger.check_invariants() == []


def test_reallocation_without_destination_waits_for_later_supply_at_the_same_node(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 4)
    move(ledger, "A", "DC2", "RECEIPT", 10)
    run(ledger, commands.UpsertSupply("po-1", "A", "DC1", 6, date_after(3)))
    reserve_at(ledger, "r1", "A", "DC1", 4)  # no destination: may not move to DC2
    move(ledger, "A", "DC1", "SHRINKAGE", 2)
    assert at_risk(ledger) == {("r1", "l1"): "SHORTAGE"}
    [plan] = ledger.plan_reallocation(Scope(node_id="DC1"), NOW).plans
    # Now: 2 on hand, 6 more on day 3: the whole line waits for day 3 at DC1.
    assert [(line.node_id, line.quantity, line.ship_day) for line in plan.new_lines] == [
        ("DC1", 4, TODAY + 3)]
    assert (plan.old_promise_day, plan.new_promise_day) == (TODAY, TODAY + 3)
    assert plan.slipped and plan.unfilled_quantity == 0


def test_dry_run_changes_nothing(ledger: Ledger) -> None:
    _shortage_at_dc1(ledger)
    before = state_of(ledger)
    result = ledger.plan_reallocation(Scope(), NOW)
    assert not result.applied and result.plan_sequence == ledger.sequence
    [plan] = result.plans
    assert [(line.node_id, line.quantity) for line in plan.new_lines] == [("DC2", 4)]
    assert state_of(ledger) == before
    assert not ledger.has_changes and events(ledger) == []
    # The same plan is what applying gives.
    applied = run(ledger, commands.Reallocate(plan_sequence=result.plan_sequence))
    assert [(p.reservation_id, [(line.node_id, line.quantity) for line in p.new_lines])
            for p in applied.plans] == [("r1", [("DC2", 4)])]


def test_apply_with_a_stale_plan_sequence_is_refused(ledger: Ledger) -> None:
    _shortage_at_dc1(ledger)
    stale = ledger.plan_reallocation(Scope(), NOW).plan_sequence
    move(ledger, "Z", "DC3", "RECEIPT", 1)  # an unrelated change moves the ledger on
    events(ledger)
    before = state_of(ledger)
    with pytest.raises(errors.FailedPrecondition) as refused:
        run(ledger, commands.Reallocate(plan_sequence=stale))
    assert refused.value.reason == PLAN_STALE
    assert state_of(ledger) == before and not ledger.has_changes
    fresh = ledger.plan_reallocation(Scope(), NOW).plan_sequence
    assert fresh == ledger.sequence > stale
    assert run(ledger, commands.Reallocate(plan_sequence=fresh)).applied
    assert ledger.reservation("r1").lines[0].node_id == "DC2"


def test_reallocate_scope_by_reservation_ids(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 6)
    move(ledger, "A", "DC2", "RECEIPT", 10)
    reserve_sourced(ledger, "r1", "A", 3)
    reserve_sourced(ledger, "r2", "A", 3)
    run(ledger, commands.UpsertNode("DC1", active=False, lanes=(Lane("EU", 1, 1),)))
    assert set(at_risk(ledger)) == {("r1", "l1"), ("r2", "l1")}
    [plan] = run(ledger, commands.Reallocate(reservation_ids=("r2",))).plans
    assert plan.reservation_id == "r2"
    assert at_risk(ledger) == {("r1", "l1"): "NODE_INACTIVE"}
    assert ledger.reservation("r2").lines[0].node_id == "DC2"
    with pytest.raises(errors.NotFound):
        ledger.plan_reallocation(Scope(reservation_ids=("nope",)), NOW)


def test_node_deactivation_then_reallocation_by_node(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 10)
    move(ledger, "A", "DC3", "RECEIPT", 10)
    reserve_sourced(ledger, "lo", "A", 4)
    reserve_sourced(ledger, "hi", "A", 4, priority=7)
    move(ledger, "A", "DC2", "RECEIPT", 5)  # DC2 (2 days) can take one of them
    run(ledger, commands.UpsertNode("DC1", active=False, lanes=(Lane("EU", 1, 1),)))
    events(ledger)
    result = run(ledger, commands.Reallocate(node_id="DC1"))
    # Policy order: hi first gets DC2 (earlier than DC3), lo then gets DC3.
    assert [p.reservation_id for p in result.plans] == ["hi", "lo"]
    assert ledger.reservation("hi").lines[0].node_id == "DC2"
    assert ledger.reservation("lo").lines[0].node_id == "DC3"
    assert ledger.positions[("A", "DC1")].reserved == 0
    assert at_risk(ledger) == {}
    assert [e.data["reservation_id"] for e in events(ledger, "RESERVATION_REALLOCATED")] == ["hi", "lo"]


# ----- backorder fill ---------------------------------------------------------------------------


def test_receipt_fills_backorders_in_priority_then_fifo_order(ledger: Ledger) -> None:
    move(ledger, "B", "DC1", "CYCLE_COUNT", 0)
    partial = Policy(allow_partial=True)
    reserve_sourced(ledger, "b1", "B", 3, policy=partial)               # prio 0, oldest
    reserve_sourced(ledger, "b2", "B", 2, priority=5, policy=partial)  # prio 5
    reserve_sourced(ledger, "b3", "B", 2, policy=partial)               # prio 0, newest
    for reservation_id in ("b1", "b2", "b3"):
        [line] = ledger.reservation(reservation_id).lines
        assert (line.node_id, line.quantity) == ("", 0) and line.backordered_quantity > 0
    events(ledger)

    # 6 units: b2 takes 2, then b1 3, then b3 the last 1 (1 still backordered).
    move(ledger, "B", "DC1", "RECEIPT", 6)
    fills = events(ledger, "BACKORDER_FILLED")
    assert [(e.data["reservation_id"], e.data["filled"], e.data["remaining"]) for e in fills] == [
        ("b2", 2, 0), ("b1", 3, 0), ("b3", 1, 1)]
    shape = {
        rid: [(line.line_id, line.node_id, line.quantity, line.backordered_quantity)
              for line in ledger.reservation(rid).lines]
        for rid in ("b1", "b2", "b3")
    }
    # A wholly backordered sourced line is taken over in place.
    assert shape == {"b1": [("l1", "DC1", 3, 0)], "b2": [("l1", "DC1", 2, 0)],
                     "b3": [("l1", "DC1", 1, 1)]}
    assert ledger.positions[("B", "DC1")].reserved == 6
    assert ledger.backorders["B"] == {("b3", "l1")}

    # One more unit: b3's rest becomes a second part l1/2.
    move(ledger, "B", "DC1", "RECEIPT", 1)
    [fill] = events(ledger, "BACKORDER_FILLED")
    assert (fill.data["reservation_id"], fill.data["filled"], fill.data["remaining"]) == ("b3", 1, 0)
    assert [(line.line_id, line.quantity, line.backordered_quantity)
            for line in ledger.reservation("b3").lines] == [("l1", 1, 0), ("l1/2", 1, 0)]
    assert not ledger.backorders["B"]
    assert at_risk(ledger) == {}


def test_backorder_at_a_named_node_fills_there_from_new_supply(ledger: Ledger) -> None:
    move(ledger, "C", "DC1", "RECEIPT", 1)
    move(ledger, "C", "DC2", "RECEIPT", 10)  # another node: not for a reservation without region
    reserve_at(ledger, "n1", "C", "DC1", 3, policy=Policy(allow_partial=True), commit=True)
    [line] = ledger.reservation("n1").lines
    assert (line.quantity, line.backordered_quantity) == (1, 2)
    events(ledger)
    run(ledger, commands.UpsertSupply("po-c", "C", "DC1", 5, date_after(2)))
    [fill] = events(ledger, "BACKORDER_FILLED")
    assert (fill.data["filled"], fill.data["remaining"]) == (2, 0)
    assert [(line.line_id, line.node_id, line.quantity, line.ship_day, line.backordered_quantity)
            for line in ledger.reservation("n1").lines] == [
        ("l1", "DC1", 1, TODAY, 0), ("l1/2", "DC1", 2, TODAY + 2, 0)]
    assert ledger.positions[("C", "DC1")].allocated == 3
    assert ledger.positions[("C", "DC2")].allocated == 0


def test_release_frees_units_for_a_backorder(ledger: Ledger) -> None:
    move(ledger, "B", "DC1", "RECEIPT", 2)
    reserve_sourced(ledger, "first", "B", 2)
    reserve_sourced(ledger, "waiting", "B", 2, policy=Policy(allow_partial=True))
    assert ledger.reservation("waiting").lines[0].backordered_quantity == 2
    events(ledger)
    run(ledger, commands.Release("first", "rel-first"))
    [fill] = events(ledger, "BACKORDER_FILLED")
    assert fill.data["reservation_id"] == "waiting"
    assert ledger.reservation("waiting").lines[0].quantity == 2


def test_reserve_does_not_fill_backorders_and_closed_reservations_are_not_filled(ledger: Ledger) -> None:
    move(ledger, "B", "DC1", "CYCLE_COUNT", 0)
    reserve_sourced(ledger, "gone", "B", 2, policy=Policy(allow_partial=True))
    run(ledger, commands.Release("gone", "rel-gone"))
    assert ledger.reservation("gone").state is ReservationState.RELEASED
    events(ledger)
    move(ledger, "B", "DC1", "RECEIPT", 5)
    assert events(ledger, "BACKORDER_FILLED") == []
    assert ledger.positions[("B", "DC1")].reserved == 0


# ----- known bugs (strict xfail: they start failing loudly once fixed) --------------------------


def test_reallocation_serves_at_risk_reservations_in_policy_order(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 6)
    reserve_at(ledger, "a", "A", "DC1", 3)  # older
    reserve_at(ledger, "b", "A", "DC1", 3)  # newer, same priority
    move(ledger, "A", "DC1", "CYCLE_COUNT", 2)
    assert at_risk(ledger) == {("a", "l1"): "SHORTAGE", ("b", "l1"): "SHORTAGE"}
    plans = {p.reservation_id: p for p in ledger.plan_reallocation(Scope(), NOW).plans}
    # Both are moved; in policy order "a" comes first and takes the 2 units left at DC1.
    assert [(line.node_id, line.quantity) for line in plans["a"].new_lines
            if line.quantity] == [("DC1", 2)]
    assert plans["a"].unfilled_quantity == 1
    assert plans["b"].unfilled_quantity == 3


def test_unfilled_line_without_destination_is_filled_when_stock_returns(ledger: Ledger) -> None:
    move(ledger, "A", "DC1", "RECEIPT", 4)
    reserve_at(ledger, "r1", "A", "DC1", 4, commit=True)
    move(ledger, "A", "DC1", "CYCLE_COUNT", 0)
    [plan] = run(ledger, commands.Reallocate()).plans
    assert plan.unfilled_quantity == 4
    events(ledger)
    move(ledger, "A", "DC1", "RECEIPT", 10)
    assert [e.data["filled"] for e in events(ledger, "BACKORDER_FILLED")] == [4]
    lines = ledger.reservation("r1").lines
    assert sum(line.quantity for line in lines if line.node_id == "DC1") == 4
    assert sum(line.backordered_quantity for line in lines) == 0
    assert ledger.positions[("A", "DC1")].allocated == 4
