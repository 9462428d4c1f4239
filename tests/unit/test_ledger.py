"""The domain core with an injected clock: lifecycles, atomicity, idempotency, expiry."""

from __future__ import annotations

import datetime

import pytest

from atp.ledger import Ledger, LedgerConfig, day_of, errors
from atp.ledger import commands
from atp.ledger.model import Lane, Objective, Policy, ReservationState

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=600, safety_stock_priority_min=100))
    ledger.execute(commands.UpsertNode("DC1", lanes=(Lane("EU", 2, 5),)), NOW)
    ledger.execute(commands.UpsertNode("DC2", handling_days=1), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),
                                          commands.Movement("B", "DC1", "RECEIPT", 3))), NOW)
    ledger.take_changes()
    return ledger


def reserve(ledger: Ledger, reservation_id: str, *lines: commands.LineRequest, **options: object) -> object:
    return ledger.execute(commands.Reserve(reservation_id, tuple(lines), **options), NOW)  # type: ignore[arg-type]


def test_multi_line_reserve_is_all_or_nothing(ledger: Ledger) -> None:
    with pytest.raises(errors.InsufficientAvailability) as refused:
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 5, "DC1"), commands.LineRequest("l2", "B", 4, "DC1"))
    assert [s.subject for s in refused.value.shortfalls] == ["line l2"]
    assert refused.value.shortfalls[0].available == 3
    assert ledger.positions[("A", "DC1")].reserved == 0
    assert not ledger.has_changes
    assert "o1" not in ledger.known_reservations()


def test_lines_of_one_request_at_the_same_position_add_up(ledger: Ledger) -> None:
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 6, "DC1"), commands.LineRequest("l2", "A", 5, "DC1"))
    assert ledger.positions[("A", "DC1")].deltas == {}


def test_reserve_is_idempotent_on_reservation_id(ledger: Ledger) -> None:
    first = reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"))
    ledger.take_changes()
    again = reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"))
    assert again is first and not ledger.has_changes
    assert ledger.positions[("A", "DC1")].reserved == 4
    with pytest.raises(errors.AlreadyExists):
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 5, "DC1"))


def test_reserve_digest_is_stable_across_versions() -> None:
    """Stored reservations keep the digest they were created with: a replay after an upgrade
    must still be recognised, so the digest of a given request may never change."""
    command = commands.Reserve(
        "r-1", (commands.LineRequest("l1", "SKU-1", 2, "DC-1", (2026, 12, 1)), commands.LineRequest("l2", "SKU-2", 1)),
        "US-W", Policy(True, 2, False, Objective.CHEAPEST), 600, False, 3, "web", "cust-9",
    )
    assert commands.digest(command) == "9d4c3d3f07afc745e3408f27fb6b2b55"
    assert commands.digest(commands.Reserve("r-2", (commands.LineRequest("l1", "S", 1),))) == "5520d7ef492a8b50bcd3b6fa539d8ac4"


def test_held_reservation_expires_and_returns_its_units(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"), ttl_seconds=60)
    assert ledger.execute(commands.ExpireDue(), NOW + 59) == 0
    assert ledger.execute(commands.ExpireDue(), NOW + 60) == 1
    assert ledger.reservation("o1").state is ReservationState.EXPIRED
    assert ledger.positions[("A", "DC1")].reserved == 0
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(commands.Commit("o1", "commit-1"), NOW + 61)
    assert refused.value.reason == "RESERVATION_EXPIRED"


def test_commit_makes_demand_firm_and_stops_expiry(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"), ttl_seconds=60)
    ledger.execute(commands.Commit("o1", "commit-1"), NOW)
    position = ledger.positions[("A", "DC1")]
    assert (position.reserved, position.allocated) == (0, 4)
    assert ledger.execute(commands.ExpireDue(), NOW + 3600) == 0
    assert ledger.reservation("o1").expire_time is None


def test_request_id_replays_and_conflicts(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"), commit=True)
    ledger.execute(commands.Fulfill("o1", "ship-1", (commands.LineQuantity("l1", 1),)), NOW)
    ledger.execute(commands.Fulfill("o1", "ship-1", (commands.LineQuantity("l1", 1),)), NOW)
    assert ledger.reservation("o1").lines[0].fulfilled_quantity == 1
    assert ledger.positions[("A", "DC1")].on_hand == 9
    with pytest.raises(errors.AlreadyExists):
        ledger.execute(commands.Fulfill("o1", "ship-1", (commands.LineQuantity("l1", 2),)), NOW)


def test_fulfilling_every_unit_closes_the_reservation(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"), commit=True)
    ledger.execute(commands.Release("o1", "cancel-part", (commands.LineQuantity("l1", 1),)), NOW)
    ledger.execute(commands.Fulfill("o1", "ship-rest"), NOW)
    reservation = ledger.reservation("o1")
    assert reservation.state is ReservationState.FULFILLED
    position = ledger.positions[("A", "DC1")]
    assert (position.on_hand, position.allocated) == (7, 0)
    assert ledger.check_invariants() == []


def test_fulfill_requires_a_committed_reservation(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 4, "DC1"))
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(commands.Fulfill("o1", "ship-1"), NOW)
    assert refused.value.reason == "INVALID_STATE"


def test_pre_order_ships_on_the_day_inbound_supply_arrives(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertSupply("po1", "A", "DC1", 5, date_after(10)), NOW)
    reservation = reserve(ledger, "o1", commands.LineRequest("l1", "A", 12, "DC1"), destination_region="EU")
    line = reservation.lines[0]  # type: ignore[attr-defined]
    assert (line.ship_day, line.delivery_day, line.from_inbound) == (TODAY + 10, TODAY + 12, True)
    # Look-ahead: the 12 units at day +10 leave only 3 of today's 10 promisable now.
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "o2", commands.LineRequest("l1", "A", 4, "DC1"))
    reserve(ledger, "o3", commands.LineRequest("l1", "A", 3, "DC1"))


def test_a_ship_date_only_later_supply_covers_is_refused_saying_from_when(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertSupply("po1", "A", "DC1", 5, date_after(6)), NOW)
    with pytest.raises(errors.InsufficientAvailability) as refused:
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 12, "DC1", date_after(2)))
    enough_from = datetime.date.fromordinal(TODAY + 6).isoformat()
    assert refused.value.shortfalls[0].description.endswith(
        f"requested 12, available 10; enough from {enough_from}")
    with pytest.raises(errors.InsufficientAvailability) as refused:  # never enough: no date
        reserve(ledger, "o2", commands.LineRequest("l1", "A", 16, "DC1", date_after(2)))
    assert refused.value.shortfalls[0].description.endswith("requested 16, available 10")


def test_requested_ship_date_before_handling_days_is_infeasible(ledger: Ledger) -> None:
    ledger.execute(commands.AdjustStock("r2", (commands.Movement("A", "DC2", "RECEIPT", 5),)), NOW)
    with pytest.raises(errors.FailedPrecondition) as refused:
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 1, "DC2", date_after(0)))
    assert refused.value.reason == "SHIP_DATE_INFEASIBLE"
    line = reserve(ledger, "o2", commands.LineRequest("l1", "A", 1, "DC2")).lines[0]  # type: ignore[attr-defined]
    assert line.ship_day == TODAY + 1


def test_safety_stock_is_visible_only_to_protected_priority(ledger: Ledger) -> None:
    ledger.execute(commands.SetSafetyStock("A", "DC1", 4), NOW)
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 7, "DC1"), priority=99)
    reserve(ledger, "o2", commands.LineRequest("l1", "A", 7, "DC1"), priority=100)


def test_allow_partial_holds_what_it_can_and_backorders_the_rest(ledger: Ledger) -> None:
    line = reserve(
        ledger, "o1", commands.LineRequest("l1", "B", 5, "DC1"), policy=Policy(allow_partial=True)
    ).lines[0]  # type: ignore[attr-defined]
    assert (line.quantity, line.backordered_quantity) == (3, 2)


def test_shipping_the_held_units_keeps_the_backordered_ones_waiting(ledger: Ledger) -> None:
    partial = Policy(allow_partial=True)
    reserve(ledger, "o1", commands.LineRequest("l1", "B", 5, "DC1"), policy=partial, commit=True)
    shipped = ledger.execute(commands.Fulfill("o1", "ship-1"), NOW)
    assert shipped.state is ReservationState.COMMITTED  # 2 units still wait for supply
    assert (shipped.lines[0].fulfilled_quantity, shipped.lines[0].backordered_quantity) == (3, 2)
    ledger.execute(commands.AdjustStock("more", (commands.Movement("B", "DC1", "RECEIPT", 5),)), NOW)
    filled = ledger.reservation("o1")
    assert [(line.quantity, line.backordered_quantity) for line in filled.lines] == [(3, 0), (2, 0)]
    ledger.execute(commands.Fulfill("o1", "ship-2"), NOW)
    assert filled.state is ReservationState.FULFILLED


def test_a_wholly_backordered_reservation_has_nothing_to_ship(ledger: Ledger) -> None:
    partial = Policy(allow_partial=True)
    reserve(ledger, "o1", commands.LineRequest("l1", "B", 3, "DC1"))
    reserve(ledger, "o2", commands.LineRequest("l1", "B", 3, "DC1"), policy=partial, commit=True)
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(commands.Fulfill("o2", "ship-1"), NOW)
    assert refused.value.reason == "QUANTITY_EXCEEDS_OPEN"
    assert "3 units are backordered" in refused.value.message
    assert ledger.reservation("o2").state is ReservationState.COMMITTED


def test_release_cancels_backordered_units_before_held_ones(ledger: Ledger) -> None:
    partial = Policy(allow_partial=True)
    reserve(ledger, "o1", commands.LineRequest("l1", "B", 5, "DC1"), policy=partial)
    released = ledger.execute(commands.Release("o1", "rel-1", (commands.LineQuantity("l1", 3),)), NOW)
    line = released.lines[0]
    assert (line.backordered_quantity, line.released_quantity, line.open_quantity) == (0, 1, 2)
    assert not ledger.backorders.get("B")
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(commands.Release("o1", "rel-2", (commands.LineQuantity("l1", 3),)), NOW)
    assert refused.value.reason == "QUANTITY_EXCEEDS_OPEN"
    whole = ledger.execute(commands.Release("o1", "rel-3"), NOW)
    assert whole.state is ReservationState.RELEASED
    assert ledger.positions[("B", "DC1")].reserved == 0


def test_expiry_ends_the_backorder_too(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "B", 5, "DC1"), policy=Policy(allow_partial=True))
    ledger.execute(commands.ExpireDue(), NOW + 601)
    expired = ledger.reservation("o1")
    assert expired.state is ReservationState.EXPIRED
    assert expired.lines[0].backordered_quantity == 0 and not ledger.backorders.get("B")
    ledger.execute(commands.AdjustStock("more", (commands.Movement("B", "DC1", "RECEIPT", 5),)), NOW + 602)
    assert ledger.positions[("B", "DC1")].reserved == 0


def test_inactive_node_takes_no_reservation(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertNode("DC1", active=False), NOW)
    with pytest.raises(errors.FailedPrecondition) as refused:
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 1, "DC1"))
    assert refused.value.reason == "NODE_INACTIVE"


def test_hold_takes_only_available_units_unless_forced(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 8, "DC1"))
    with pytest.raises(errors.InsufficientAvailability):
        ledger.execute(commands.PlaceHold("h1", "A", "DC1", 3), NOW)
    ledger.execute(commands.PlaceHold("h1", "A", "DC1", 3, force=True), NOW)
    position = ledger.positions[("A", "DC1")]
    assert position.held == 3
    ledger.execute(commands.ReleaseHold("h1"), NOW)
    assert position.held == 0


def test_stock_movements_are_atomic(ledger: Ledger) -> None:
    movements = (commands.Movement("A", "DC1", "RECEIPT", 5), commands.Movement("A", "DC1", "SHRINKAGE", 50))
    with pytest.raises(errors.InsufficientOnHand):
        ledger.execute(commands.AdjustStock("adj", movements), NOW)
    assert ledger.positions[("A", "DC1")].on_hand == 10
    assert "adj" not in ledger.requests


def test_transfer_moves_only_available_units(ledger: Ledger) -> None:
    reserve(ledger, "o1", commands.LineRequest("l1", "A", 7, "DC1"))
    with pytest.raises(errors.InsufficientAvailability):
        ledger.execute(commands.AdjustStock("t1", (commands.Movement("A", "DC1", "TRANSFER", 4, "DC2"),)), NOW)
    ledger.execute(commands.AdjustStock("t2", (commands.Movement("A", "DC1", "TRANSFER", 3, "DC2"),)), NOW)
    assert ledger.positions[("A", "DC1")].on_hand == 7
    assert ledger.positions[("A", "DC2")].on_hand == 3


def test_cycle_count_sets_on_hand_and_journals_the_difference(ledger: Ledger) -> None:
    ledger.execute(commands.AdjustStock("count", (commands.Movement("A", "DC1", "CYCLE_COUNT", 6),)), NOW)
    event = ledger.take_changes().events[-1]
    assert (event.type, event.data["delta"], event.data["on_hand"]) == ("STOCK_MOVED", -4, 6)


def test_supply_receipt_moves_units_from_inbound_to_on_hand(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertSupply("po1", "A", "DC1", 5, date_after(3)), NOW)
    ledger.execute(commands.ReceiveSupply("rcv-1", "po1", 2), NOW)
    position = ledger.positions[("A", "DC1")]
    assert (position.on_hand, position.inbound) == (12, 3)
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(commands.ReceiveSupply("rcv-2", "po1", 4), NOW)
    assert refused.value.reason == "QUANTITY_EXCEEDS_OPEN"
    ledger.execute(commands.UpsertSupply("po1", "", "", 0, date_after(3)), NOW)
    assert position.inbound == 0
    assert ledger.supplies["po1"].state.value == "CANCELLED"


def test_unknown_sku_and_node_are_not_found(ledger: Ledger) -> None:
    with pytest.raises(errors.NotFound) as missing_sku:
        reserve(ledger, "o1", commands.LineRequest("l1", "ZZZ", 1, "DC1"))
    assert missing_sku.value.resource_type == "sku"
    with pytest.raises(errors.NotFound) as missing_node:
        reserve(ledger, "o1", commands.LineRequest("l1", "A", 1, "NOPE"))
    assert missing_node.value.resource_type == "node"


def test_malformed_reserve_names_every_bad_field(ledger: Ledger) -> None:
    lines = (commands.LineRequest("l1", "A", 0, "DC1"), commands.LineRequest("l1", "", 10**12 + 1, "DC1"))
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.execute(commands.Reserve("", lines, ttl_seconds=-1), NOW)
    fields = {violation.field for violation in refused.value.violations}
    assert fields == {
        "reservation_id", "ttl_seconds", "lines[0].quantity", "lines[1].sku",
        "lines[1].quantity", "lines[1].line_id",
    }
