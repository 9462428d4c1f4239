"""Small faults a review found: blank ids, inbound over the limit, a doubled field path."""

from __future__ import annotations

import datetime

import pytest

from atp import limits
from atp.ledger import Ledger, LedgerConfig, day_of, errors, validation
from atp.ledger import commands
from atp.ledger.model import Lane, Policy
from atp.ledger.promising import OrderLine

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
MAX = limits.quantity_max


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=600))
    ledger.execute(commands.UpsertNode("DC1", lanes=(Lane("EU", 2, 5),)), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),)), NOW)
    ledger.take_changes()
    return ledger


def refused_fields(ledger: Ledger, command: commands.Command) -> dict[str, str]:
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.execute(command, NOW)
    assert not ledger.has_changes
    return {v.field: v.description for v in refused.value.violations}


# ----- 1. blank ids, and whitespace at an id's ends -----------------------------------------

BLANK = "must not be blank (whitespace only)"
EDGES = "must not begin or end with whitespace"


@pytest.mark.parametrize(
    ("value", "problem"),
    [("   ", BLANK), (" ", BLANK), (" A", EDGES), ("A ", EDGES), (" é", EDGES), ("é ", EDGES),
     ("\t", BLANK), ("\u3000", BLANK)],
)
def test_identifier_refuses_blank_ids_and_whitespace_at_the_ends(value: str, problem: str) -> None:
    for required in (True, False):  # an optional id given blank is not an absent one
        violations = validation.Violations()
        violations.identifier("sku", value, required=required)
        assert [(v.field, v.description) for v in violations.items] == [("sku", problem)]


def test_spaces_inside_an_id_stay_valid(ledger: Ledger) -> None:
    """The chosen rule: a space inside an id is fine ("Blue shirt M"); only its ends matter."""
    for value in ("a b", "Blue shirt M", "é b"):
        assert validation.id_problem(value) == ""
    ledger.execute(commands.AdjustStock("r-space", (commands.Movement("Blue shirt", "DC1", "RECEIPT", 2),)), NOW)
    reservation = ledger.execute(commands.Reserve("order 1", (commands.LineRequest("line 1", "Blue shirt", 1, "DC1"),)), NOW)
    assert reservation.reservation_id == "order 1"
    ledger.take_changes()
    # ...and one with an edge space refused, though it is otherwise the same as this one
    assert refused_fields(ledger, commands.Reserve("order 2 ", (commands.LineRequest("l1", "Blue shirt", 1, "DC1"),))) == {
        "reservation_id": EDGES}


def test_a_whitespace_only_reservation_id_is_refused(ledger: Ledger) -> None:
    assert refused_fields(ledger, commands.Reserve("   ", (commands.LineRequest("l1", "A", 1, "DC1"),))) == {
        "reservation_id": BLANK}
    assert "   " not in ledger.reservations


def test_whitespace_ids_in_reserve_lines_are_refused_on_the_fast_path_too(ledger: Ledger) -> None:
    command = commands.Reserve("r1", (commands.LineRequest(" ", "A", 1, "DC1"), commands.LineRequest("l2", "A ", 1, "DC1"),
                               commands.LineRequest("l3", "A", 1, "DC1 ")))
    assert refused_fields(ledger, command) == {
        "lines[0].line_id": BLANK, "lines[1].sku": EDGES, "lines[2].node_id": EDGES}
    assert refused_fields(ledger, commands.Reserve("r1", (commands.LineRequest("l1", "A", 1),),
                                            destination_region="  ", channel=" web")) == {
        "destination_region": BLANK, "channel": EDGES}


def test_whitespace_ids_of_inventory_commands_are_refused(ledger: Ledger) -> None:
    assert refused_fields(ledger, commands.UpsertNode("  ")) == {"node.node_id": BLANK}
    assert refused_fields(ledger, commands.AdjustStock("r2", (commands.Movement("   ", "DC1", "RECEIPT", 1),))) == {
        "movements[0].sku": BLANK}
    assert refused_fields(ledger, commands.AdjustStock("  ", (commands.Movement("A", "DC1", "RECEIPT", 1),))) == {
        "request_id": BLANK}
    assert refused_fields(ledger, commands.UpsertSupply("s1", " A", "DC1", 5, date_after(3))) == {
        "supply.sku": EDGES}
    assert refused_fields(ledger, commands.PlaceHold(" ", "A", "DC1", 1)) == {"hold.hold_id": BLANK}
    assert refused_fields(ledger, commands.SetSafetyStock("A", "DC1 ", 1)) == {"node_id": EDGES}
    assert ("   ", "DC1") not in ledger.positions


def test_a_whitespace_region_is_refused_by_promise(ledger: Ledger) -> None:
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.promise([OrderLine("l1", "A", 1)], " ", Policy(), 0, NOW)
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("destination_region", BLANK)]


# ----- 2. inbound over quantity_max on one position -----------------------------------------


def test_upserts_cannot_take_a_positions_inbound_over_the_limit(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertSupply("s1", "A", "DC1", MAX, date_after(3)), NOW)
    ledger.take_changes()
    description = f"inbound would exceed {MAX} ({MAX} open at this SKU and node)"
    assert refused_fields(ledger, commands.UpsertSupply("s2", "A", "DC1", 1, date_after(4))) == {
        "supply.quantity": description}
    assert "s2" not in ledger.supplies
    assert ledger.positions[("A", "DC1")].inbound == MAX
    # Another date or another position is no way round it; another SKU is its own position.
    assert refused_fields(ledger, commands.UpsertSupply("s3", "A", "DC1", MAX, date_after(40))) == {
        "supply.quantity": description}
    ledger.execute(commands.UpsertSupply("s4", "B", "DC1", MAX, date_after(3)), NOW)


def test_updating_a_supply_counts_only_its_change(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertSupply("s1", "A", "DC1", 6 * MAX // 10, date_after(3)), NOW)
    ledger.execute(commands.UpsertSupply("s2", "A", "DC1", 4 * MAX // 10, date_after(5)), NOW)
    ledger.take_changes()
    refused = refused_fields(ledger, commands.UpsertSupply("s2", "A", "DC1", 4 * MAX // 10 + 1, date_after(5)))
    assert list(refused) == ["supply.quantity"]
    assert ledger.supplies["s2"].quantity == 4 * MAX // 10
    assert ledger.positions[("A", "DC1")].inbound == MAX
    # Moving its date at the same quantity, lowering it, or cancelling and reopening within the
    # limit are all fine; reopening a cancelled supply over it is not.
    ledger.execute(commands.UpsertSupply("s2", "A", "DC1", 4 * MAX // 10, date_after(9)), NOW)
    ledger.execute(commands.UpsertSupply("s2", "A", "DC1", 0, date_after(9)), NOW)
    ledger.execute(commands.UpsertSupply("s1", "A", "DC1", MAX, date_after(3)), NOW)
    ledger.take_changes()
    assert list(refused_fields(ledger, commands.UpsertSupply("s2", "A", "DC1", 1, date_after(9)))) == [
        "supply.quantity"]
    assert ledger.positions[("A", "DC1")].inbound == MAX


def test_on_hand_and_inbound_are_each_within_the_limit(ledger: Ledger) -> None:
    """The chosen reading: each quantity of a position stays within quantity_max (on_hand as
    before, inbound now), not their sum; a receipt keeps on_hand + inbound as it was."""
    ledger.execute(commands.AdjustStock("fill", (commands.Movement("A", "DC1", "RECEIPT", MAX - 10),)), NOW)
    ledger.execute(commands.UpsertSupply("s1", "A", "DC1", MAX, date_after(3)), NOW)
    position = ledger.positions[("A", "DC1")]
    assert (position.on_hand, position.inbound) == (MAX, MAX)
    ledger.take_changes()
    assert refused_fields(ledger, commands.UpsertSupply("s2", "A", "DC1", 1, date_after(3))) == {
        "supply.quantity": f"inbound would exceed {MAX} ({MAX} open at this SKU and node)"}


# ----- 3. ReceiveSupply names its own field ---------------------------------------------------


def test_receive_over_the_on_hand_limit_names_the_request_field_quantity(ledger: Ledger) -> None:
    ledger.execute(commands.AdjustStock("fill", (commands.Movement("A", "DC1", "RECEIPT", MAX - 10),)), NOW)
    ledger.execute(commands.UpsertSupply("s1", "A", "DC1", 5, date_after(3)), NOW)
    ledger.take_changes()
    assert refused_fields(ledger, commands.ReceiveSupply("rcv1", "s1", 1)) == {
        "quantity": f"on_hand would exceed {MAX}"}
    assert ledger.supplies["s1"].quantity == 5
    # the movement paths keep naming the movement's own field
    assert refused_fields(ledger, commands.AdjustStock("more", (commands.Movement("A", "DC1", "RETURN", 1),))) == {
        "movements[0].quantity": f"on_hand would exceed {MAX}"}
