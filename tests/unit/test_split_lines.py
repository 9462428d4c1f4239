"""A sourced line split across nodes: every part names the request line it came from
(ReservationLine.request_line_id), in memory, on disk (records written before the field
still load) and in the answer; Release and Fulfill name one part each, and a part asked for
more than it has is refused with a message naming every part."""

from __future__ import annotations

import copy

import orjson
import pytest

from atp.ledger import Ledger, commands, errors
from atp.ledger.promising import Allocation
from atp.ledger.reallocation import replacement_lines
from atp.persistence import codec
from atp.server import convert
from atp.store.base import RESERVATIONS
from tests.unit.test_promising import CASES, NOW, build, reserve_sourced, state_of

SPLIT = next(case for case in CASES if case.name.startswith("max_nodes=0 splits"))
WHOLE = next(case for case in CASES if case.name.startswith("cheapest takes"))


@pytest.fixture
def ledger() -> Ledger:
    ledger = build(SPLIT)
    reserve_sourced(ledger, SPLIT)  # l1: 10 units as l1 (4 at A), l1/2 (4 at C), l1/3 (2 at B)
    ledger.take_changes()
    return ledger


def test_every_part_names_its_request_line(ledger: Ledger) -> None:
    lines = ledger.reservation("order-1").lines
    assert [(line.line_id, line.request_line_id, line.request_line_of) for line in lines] == [
        ("l1", "", "l1"), ("l1/2", "l1", "l1"), ("l1/3", "l1", "l1")]
    message = convert.reservation_message(ledger.reservation("order-1"))
    assert [(line.line_id, line.request_line_id) for line in message.lines] == [
        ("l1", "l1"), ("l1/2", "l1"), ("l1/3", "l1")]


def test_a_line_not_split_names_itself() -> None:
    ledger = build(WHOLE)
    reservation = reserve_sourced(ledger, WHOLE)
    [line] = reservation.lines
    assert (line.request_line_id, line.request_line_of) == ("", line.line_id)
    [message] = convert.reservation_message(reservation).lines
    assert message.request_line_id == message.line_id == line.line_id


def test_stored_lines_round_trip_and_old_records_still_load(ledger: Ledger) -> None:
    reservation = ledger.reservation("order-1")
    data = codec.encode_record(RESERVATIONS, reservation)
    assert data is not None
    raw = orjson.loads(data)
    # A line not split is stored as before the field existed; a part carries it.
    assert [len(line) for line in raw["lines"]] == [12, 13, 13]
    assert codec.decode_record(RESERVATIONS, data) == reservation
    # A record written before the field: 12 items a line, even for parts.
    for line in raw["lines"]:
        del line[12:]
    old = codec.decode_record(RESERVATIONS, orjson.dumps(raw))
    assert [line.request_line_of for line in old.lines] == ["l1", "l1/2", "l1/3"]


def test_release_or_fulfil_of_a_part_acts_on_that_part_only(ledger: Ledger) -> None:
    ledger.execute(commands.Release("order-1", "rel-1", (commands.LineQuantity("l1", 3),)), NOW)
    lines = {line.line_id: line for line in ledger.reservation("order-1").lines}
    assert [(lid, lines[lid].released_quantity, lines[lid].open_quantity)
            for lid in ("l1", "l1/2", "l1/3")] == [("l1", 3, 1), ("l1/2", 0, 4), ("l1/3", 0, 2)]
    assert ledger.positions[("X", "A")].reserved == 1
    assert ledger.positions[("X", "C")].reserved == 4
    ledger.execute(commands.Commit("order-1", "commit-1"), NOW)
    on_hand_c = ledger.positions[("X", "C")].on_hand
    ledger.execute(commands.Fulfill("order-1", "ship-1", (commands.LineQuantity("l1/2", 4),)), NOW)
    assert ledger.positions[("X", "C")].on_hand == on_hand_c - 4
    assert ledger.positions[("X", "A")].allocated == 1  # untouched
    assert ledger.check_invariants() == []


@pytest.mark.parametrize("action", ["release", "fulfill"])
def test_the_request_line_id_with_its_whole_quantity_is_refused_naming_the_parts(
    ledger: Ledger, action: str,
) -> None:
    if action == "fulfill":
        ledger.execute(commands.Commit("order-1", "commit-1"), NOW)
        ledger.take_changes()
    before = copy.deepcopy(state_of(ledger))
    command_type = commands.Release if action == "release" else commands.Fulfill
    command = command_type("order-1", "whole-l1", (commands.LineQuantity("l1", 10),))
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(command, NOW)
    error = refused.value
    assert error.reason == errors.QUANTITY_EXCEEDS_OPEN
    assert error.metadata["parts"] == "l1,l1/2,l1/3"
    assert (error.metadata["line_id"], error.metadata["open_quantity"]) == ("l1", "4")
    assert ("it is one part of request line 'l1', split across nodes into 'l1' (4 open at A), "
            "'l1/2' (4 open at C), 'l1/3' (2 open at B): name each part") in error.message
    assert state_of(ledger) == before
    assert not ledger.take_changes().events
    # Naming each part does it.
    parts = tuple(commands.LineQuantity(line_id, quantity)
                  for line_id, quantity in (("l1", 4), ("l1/2", 4), ("l1/3", 2)))
    done = ledger.execute(command_type("order-1", "each-part", parts), NOW)
    assert done.state.value == ("RELEASED" if action == "release" else "FULFILLED")


def test_a_line_not_split_is_refused_without_parts() -> None:
    ledger = build(WHOLE)
    reservation = reserve_sourced(ledger, WHOLE)
    [line] = reservation.lines
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(commands.Release(
            "order-1", "too-much", (commands.LineQuantity(line.line_id, line.quantity + 1),)), NOW)
    assert "parts" not in refused.value.metadata
    assert "part of request line" not in refused.value.message


def test_a_part_moved_again_still_names_the_request_line(ledger: Ledger) -> None:
    part = next(line for line in ledger.reservation("order-1").lines if line.line_id == "l1/2")
    day = part.ship_day
    allocations = [Allocation("A", 1, day, day + 1, False, 0),
                   Allocation("B", 3, day, day + 1, False, 0)]
    taken = {"l1", "l1/2", "l1/3"}
    moved = replacement_lines(part, allocations, 0, taken, True)
    assert [(line.line_id, line.request_line_of) for line in moved] == [
        ("l1/2", "l1"), ("l1/2/2", "l1")]
    part.fulfilled_quantity = 1  # with history, the part keeps it and every new line is new
    moved = replacement_lines(part, allocations, 2, {"l1", "l1/2", "l1/3"}, True)
    assert [(line.line_id, line.quantity, line.request_line_of, line.backordered_quantity)
            for line in moved] == [
        ("l1/2", 1, "l1", 0), ("l1/2/2", 1, "l1", 2), ("l1/2/3", 3, "l1", 0)]


def test_a_backorder_filled_later_names_the_request_line() -> None:
    case = next(case for case in CASES if case.name.startswith("backorder with no date"))
    ledger = build(case)
    reserve_sourced(ledger, case)  # l1: 4 held at A, 6 backordered
    ledger.execute(commands.AdjustStock("more", (commands.Movement("X", "A", "RECEIPT", 6),)), NOW)
    lines = ledger.reservation("order-1").lines
    assert [(line.line_id, line.quantity, line.backordered_quantity, line.request_line_of)
            for line in lines] == [("l1", 4, 0, "l1"), ("l1/2", 6, 0, "l1")]
    assert ledger.check_invariants() == []
