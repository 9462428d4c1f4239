"""Outcomes as data: each command returns its result or a Refused value, a batch of commands
gives a batch of outcomes, and outcomes pickle (they may cross a process boundary)."""

from __future__ import annotations

import pickle

from atp.ledger import Ledger, Refused, commands, errors
from atp.ledger.model import Hold, Lane, Node, Position, Reservation, ReservationState, Supply
from atp.ledger.reallocation import ReallocationResult

NOW = 1_790_000_000.0


def stocked() -> Ledger:
    ledger = Ledger()
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),)), NOW)
    return ledger


def reserve(reservation_id: str, quantity: int) -> commands.Reserve:
    return commands.Reserve(reservation_id, (commands.LineRequest("l1", "A", quantity, "DC1"),))


def test_each_command_returns_its_result_type() -> None:
    ledger = Ledger()
    expected = [
        (commands.UpsertNode("DC1"), Node),
        (commands.AdjustStock("s", (commands.Movement("A", "DC1", "RECEIPT", 10),)), list),
        (commands.SetSafetyStock("A", "DC1", 1), Position),
        (commands.UpsertSupply("P1", "A", "DC1", 5, (2026, 12, 20)), Supply),
        (commands.ReceiveSupply("r", "P1", 2), Supply),
        (commands.PlaceHold("H1", "A", "DC1", 1), Hold),
        (commands.ReleaseHold("H1"), Hold),
        (reserve("o1", 2), Reservation),
        (commands.Commit("o1", "c1"), Reservation),
        (commands.Fulfill("o1", "f1"), Reservation),
        (reserve("o2", 1), Reservation),
        (commands.Release("o2", "x2"), Reservation),
        (commands.Reallocate(), ReallocationResult),
        (commands.ExpireDue(), int),
    ]
    outcomes = ledger.apply_batch([command for command, _ in expected], NOW)
    for (command, result_type), outcome in zip(expected, outcomes):
        assert isinstance(outcome, result_type), (command, outcome)
    assert all(not isinstance(outcome, Refused) for outcome in outcomes)
    assert ledger.check_invariants() == []


def test_a_refusal_is_a_value_and_changes_nothing() -> None:
    ledger = stocked()
    ledger.take_changes()
    sequence = ledger.sequence
    outcome = ledger.apply(reserve("o1", 11), NOW)
    assert isinstance(outcome, Refused)
    assert isinstance(outcome.error, errors.InsufficientAvailability)
    assert outcome.reason == errors.INSUFFICIENT_AVAILABILITY
    assert "requested 11, available 10" in outcome.message
    assert ledger.sequence == sequence and not ledger.has_changes
    assert ledger.positions[("A", "DC1")].reserved == 0


def test_a_batch_gives_an_outcome_per_command_in_order() -> None:
    ledger = stocked()
    outcomes = ledger.apply_batch(
        [reserve("o1", 4), reserve("o2", 7), reserve("o3", 6), commands.Commit("nope", "c")], NOW
    )
    kinds = [type(o.error).__name__ if isinstance(o, Refused) else o.state for o in outcomes]
    assert kinds == [ReservationState.HELD, "InsufficientAvailability", ReservationState.HELD,
                     "NotFound"]


def test_outcomes_pickle_with_their_reasons_and_details() -> None:
    ledger = stocked()
    batch = [
        reserve("o1", 4),
        reserve("o2", 70),  # shortfalls
        commands.Reserve("", ()),  # field violations
        commands.Commit("missing", "c1"),  # not found
        reserve("o1", 5),  # already exists, other content
        commands.Fulfill("o1", "f1"),  # failed precondition, with metadata
        commands.ExpireDue(),
    ]
    outcomes = ledger.apply_batch(batch, NOW)
    copied = pickle.loads(pickle.dumps(outcomes))
    for original, copy in zip(outcomes, copied):
        if isinstance(original, Refused):
            assert isinstance(copy, Refused)
            assert type(copy.error) is type(original.error)
            assert vars(copy.error) == vars(original.error)
            assert copy.error == original.error and str(copy.error) == str(original.error)
        else:
            assert copy == original or (
                isinstance(copy, Reservation) and copy.reservation_id == original.reservation_id)
    refused = [o for o in copied if isinstance(o, Refused)]
    assert [o.reason for o in refused] == [
        errors.INSUFFICIENT_AVAILABILITY, "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS",
        errors.INVALID_STATE,
    ]
    assert refused[0].error.shortfalls[0].requested == 70
    assert refused[1].error.violations[0].field == "reservation_id"
    assert refused[4].error.metadata == {"reservation_id": "o1", "state": "HELD"}


def test_a_sourced_shortfall_says_whether_any_node_serves_the_region() -> None:
    """'available 0' alone does not tell a newcomer that the fix is a lane, not stock."""
    ledger = stocked()
    ledger.execute(commands.UpsertNode("DC1", lanes=(Lane("EAST", 1, 2),)), NOW)

    def refusal(region: str, quantity: int) -> str:
        line = commands.LineRequest("l1", "A", quantity)
        outcome = ledger.apply(commands.Reserve("o1", (line,), destination_region=region), NOW)
        assert isinstance(outcome, Refused)
        assert outcome.reason == errors.INSUFFICIENT_AVAILABILITY
        return outcome.message

    assert "requested 2, no active node has a lane to region WEST" in refusal("WEST", 2)
    assert "requested 20, available 10 across the 1 active node serving EAST" in refusal(
        "EAST", 20
    )
