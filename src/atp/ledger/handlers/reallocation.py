"""Reallocate (re-source at-risk lines by the planner's plans) and filling backorders from
supply that freed up or arrived (run after each command that may free units)."""

from __future__ import annotations

from atp.ledger import commands, event_data, validation
from atp.ledger.errors import PLAN_STALE, FailedPrecondition
from atp.ledger.model import (
    HELD,
    Day,
    Reservation,
    ReservationLine,
    day_of,
)
from atp.ledger.promising import free_part_id, line_from
from atp.ledger.reallocation import (
    ReallocationResult,
    Reallocator,
    ReservationPlan,
    Scope,
)
from atp.ledger.state import LedgerState


def reallocate(
    state: LedgerState, command: commands.Reallocate, now: float
) -> ReallocationResult:
    scope = Scope(command.node_id, command.sku, command.reservation_ids)
    validation.check_scope(scope.node_id, scope.sku, scope.reservation_ids)
    if command.plan_sequence and command.plan_sequence != state.sequence:
        raise FailedPrecondition(
            PLAN_STALE,
            f"the ledger moved since the plan (sequence {command.plan_sequence}, now "
            f"{state.sequence}); plan again",
            {"plan_sequence": str(command.plan_sequence), "sequence": str(state.sequence)},
        )
    planned_at = state.sequence
    plans = Reallocator(state, day_of(now)).plan(scope)
    for plan in plans:
        _apply_plan(state, plan, now)
    return ReallocationResult(plans, applied=True, plan_sequence=planned_at)


def _apply_plan(state: LedgerState, plan: ReservationPlan, now: float) -> None:
    reservation = state.reservations[plan.reservation_id]
    held = reservation.state is HELD
    lines: list[ReservationLine] = []
    for line in reservation.lines:
        replacements = plan.replacements.get(line.line_id)
        if replacements is None:
            lines.append(line)
            continue
        if line.open_quantity:
            state.reduce_line(reservation, line, line.open_quantity)
        state.backorders.get(line.sku, set()).discard((reservation.reservation_id, line.line_id))
        for new in replacements:
            _hold_new_line(state, reservation, held, new)
            lines.append(new)
    reservation.lines = lines
    state.save_reservation(reservation)
    state.emit(
        now, "RESERVATION_REALLOCATED", reservation_id=reservation.reservation_id,
        old_promise_date=event_data.iso_or_none(plan.old_promise_day),
        new_promise_date=event_data.iso_or_none(plan.new_promise_day),
        slipped=plan.slipped, unfilled=plan.unfilled_quantity,
        lines=[event_data.line(line) for line in plan.old_lines + reservation.lines],
    )


def _hold_new_line(
    state: LedgerState, reservation: Reservation, held: bool, line: ReservationLine
) -> None:
    """Puts a new line's open units on its position's timeline and sums."""
    state.note_backorder(reservation.reservation_id, line)
    if not line.node_id or not line.open_quantity:
        return
    position = state.positions[(line.sku, line.node_id)]
    position.add_delta(line.ship_day, -line.open_quantity)
    state.count_line(reservation.reservation_id, held, position, line, reservation.channel)


def fill_backorders(state: LedgerState, sku: str, now: float, today: Day) -> None:
    """Gives backordered units of a sku what supply now allows, in policy order."""
    for reservation, line, allocations in Reallocator(state, today).backorder_fills(sku):
        held = reservation.state is HELD
        taken = {existing.line_id for existing in reservation.lines}
        filled = sum(allocation.quantity for allocation in allocations)
        remaining = line.backordered_quantity - filled
        line.backordered_quantity = remaining
        if line.quantity == 0:  # a placeholder: the first allocation takes it over
            first, allocations = allocations[0], allocations[1:]
            line.node_id, line.quantity, line.ship_day = (
                first.node_id, first.quantity, first.ship_day
            )
            line.delivery_day = first.delivery_day if reservation.destination_region else None
            line.from_inbound = first.from_inbound
            _hold_new_line(state, reservation, held, line)
        else:
            state.note_backorder(reservation.reservation_id, line)
        for allocation in allocations:
            part = line_from(allocation, free_part_id(line.line_id, taken), sku,
                             bool(reservation.destination_region), line.request_line_of,
                             line.unit_value, line.substitute_for)
            reservation.lines.append(part)
            _hold_new_line(state, reservation, held, part)
        _announce_fill(state, reservation, line, sku, filled, remaining, now)


def _announce_fill(
    state: LedgerState, reservation: Reservation, line: ReservationLine, sku: str,
    filled: int, remaining: int, now: float,
) -> None:
    state.save_reservation(reservation)
    state.emit(
        now, "BACKORDER_FILLED", reservation_id=reservation.reservation_id,
        line_id=line.line_id, sku=sku, filled=filled, remaining=remaining,
    )
