"""The audit after every command (invariants.position_problems) stops the ledger when a
touched position's reserved units disagree with its open lines: at once for a position
with up to limits.audit_lines_per_touch lines, within a bounded number of touches for a
bigger one, whose recount is spread over its touches so that a hot position costs each
command a bounded recount."""

from __future__ import annotations

import datetime
import math

import pytest

from atp import limits
from atp.ledger import Ledger, LedgerConfig, commands
from atp.ledger.errors import InvariantViolation

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()


def _ledger_with_lines(count: int) -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("seed", (
        commands.Movement("A", "DC1", "RECEIPT", 10_000),)), NOW)
    for index in range(count):
        ledger.execute(commands.Reserve(f"r{index}", (
            commands.LineRequest("l1", "A", 1, "DC1"),)), NOW)
    return ledger


def _touch(ledger: Ledger, number: int) -> None:
    ledger.execute(commands.Reserve(f"t{number}", (
        commands.LineRequest("l1", "A", 1, "DC1"),)), NOW)


def test_a_small_position_gone_wrong_stops_the_next_command_that_touches_it() -> None:
    ledger = _ledger_with_lines(limits.audit_lines_per_touch - 1)
    position = ledger.positions[("A", "DC1")]
    position.reserved += 1  # a bookkeeping bug: the lines say otherwise
    position.deltas[max(position.deltas)] -= 1  # ... and the timeline agrees with it
    with pytest.raises(InvariantViolation, match="its lines say"):
        _touch(ledger, 0)


def test_a_big_position_gone_wrong_is_caught_within_its_share_of_touches() -> None:
    lines = 5 * limits.audit_lines_per_touch
    ledger = _ledger_with_lines(lines)
    position = ledger.positions[("A", "DC1")]
    position.reserved += 1
    position.deltas[max(position.deltas)] -= 1
    touches_max = math.ceil((lines + 8) / limits.audit_lines_per_touch) + 1
    with pytest.raises(InvariantViolation, match="its lines say"):
        for number in range(touches_max):
            _touch(ledger, number)


def test_a_big_position_is_recounted_every_few_touches_not_every_one() -> None:
    budget, touches = limits.audit_lines_per_touch, 40
    first_lines = 4 * budget
    ledger = _ledger_with_lines(first_lines)
    position = ledger.positions[("A", "DC1")]
    recounts = 0
    for number in range(touches):
        before = position.audit_budget
        _touch(ledger, number)
        recounts += position.audit_budget == 0 and before != 0
    # One touch in lines / budget, as the position grows by a line a touch: one in four at
    # first, fewer later.
    assert touches * budget // (first_lines + touches) <= recounts
    assert recounts <= math.ceil(touches * budget / first_lines)
    assert ledger.check_invariants() == []
