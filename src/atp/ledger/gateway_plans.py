"""Sourcing planned on a gateway's copy of the ledger, taken by the writer when still valid.

Planning where a sourced Reserve's lines go is the costliest part of a reserve. A gateway of
`atpd --gateways N` plans it on its copy, as of the copy's commit, and sends the plan with
the command (commands.PlannedReserve). The ledger takes the plan only if nothing the plan
read has changed after that commit: the positions of the lines' SKUs, the nodes, the day;
and only for the plain case planning alone decides (every line sourced, no substitutes, no
channel allocation fencing anything). Otherwise it plans itself, as it always did. Taking a
valid plan gives the very result planning would have (tests/property/test_gateway_plans.py).

Change marks are commits: the writer keeps `change_mark` at the commit that will carry what
is applied now (the next one, or the one after it while a batch is being written), and a
command's touched positions mark their SKUs with it. A plan made at commit C is valid while
every mark it depends on is <= C.
"""

from __future__ import annotations

from collections.abc import Callable

from atp.ledger import commands
from atp.ledger.errors import LedgerError
from atp.ledger.model import Day, day_of
from atp.ledger.promising import OrderLine, OrderPlan, Planner
from atp.ledger.state import LedgerState


def plannable(state: LedgerState, command: commands.Reserve) -> bool:
    """Whether planning alone decides where the command's lines go."""
    return bool(command.lines) and not state.channel_allocations and all(
        not line.node_id and not (command.allow_substitution and line.substitute_skus)
        for line in command.lines)


def offer(state: LedgerState, command: commands.Command, clock: Callable[[], float],
          planned_at: int) -> commands.Command:
    """On a gateway: the command with a plan made on `state` (its copy at `planned_at`) when
    the command is plannable and plans without error; else the command itself. A vetted
    Reserve stays vetted, with its Reserve planned. `clock` is read only to plan (most
    Reserves name their nodes: this runs for every write a gateway sends)."""
    reserve = command.reserve if isinstance(command, commands.VettedReserve) else command
    if not isinstance(reserve, commands.Reserve) or not plannable(state, reserve):
        return command
    planned = _planned(state, reserve, clock(), planned_at)
    if planned is reserve:
        return command
    if isinstance(command, commands.VettedReserve):
        return commands.VettedReserve(planned, command.digest)
    return planned


def _planned(state: LedgerState, command: commands.Reserve, now: float,
             planned_at: int) -> commands.Reserve | commands.PlannedReserve:
    today = day_of(now)
    try:
        planner = Planner(state, today, command.destination_region, command.policy,
                          command.priority)
        plan = planner.plan([OrderLine(line.line_id, line.sku, line.quantity)
                             for line in command.lines])
    except LedgerError:
        return command  # the writer refuses it with the same error, planning itself
    return commands.PlannedReserve(command, plan, planned_at, today)


def usable_plan(state: LedgerState, command: commands.PlannedReserve,
                today: Day) -> OrderPlan | None:
    """In the ledger that applies it: the offered plan if nothing it read has changed since
    it was made (else None: the ledger plans itself)."""
    plan, planned_at = command.plan, command.planned_at
    if (not isinstance(plan, OrderPlan) or command.day != today
            or planned_at < state.everything_changed
            or not plannable(state, command.reserve)):
        return None
    changed = state.sku_changed
    for line in command.reserve.lines:
        if changed.get(line.sku, 0) > planned_at:
            return None
    return plan


def note_changes(state: LedgerState) -> None:
    """After a command: the SKUs whose positions it touched changed at the change mark."""
    mark = state.change_mark
    changed = state.sku_changed
    for sku, _node_id in state.touched:
        changed[sku] = mark
