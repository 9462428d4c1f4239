"""Manual holds: PlaceHold and ReleaseHold (expiry ends them too: see expiry)."""

from __future__ import annotations

from atp.ledger import commands, event_data, timeline, validation
from atp.ledger.errors import AlreadyExists, InsufficientAvailability, NotFound, Shortfall
from atp.ledger.model import Day, Hold, Position, day_of
from atp.ledger.state import EXPIRING_HOLD, LedgerState


def place_hold(state: LedgerState, command: commands.PlaceHold, now: float) -> Hold:
    request_digest = commands.digest(command)
    existing = state.retained_hold(command.hold_id, now)
    if existing is not None and existing.request_digest == request_digest:
        return existing  # a replay: answered even if its expire_time has since passed
    validation.check_hold(command, now)
    if existing is not None:
        raise AlreadyExists("hold", command.hold_id)
    state.node(command.node_id)
    state.known_sku(command.sku)
    position = state.positions.get((command.sku, command.node_id))
    if not command.force:
        _check_hold_fits(command, position, day_of(now))
    if position is None:
        position = state.add_position(command.sku, command.node_id)
    hold = Hold(
        hold_id=command.hold_id, sku=command.sku, node_id=command.node_id,
        quantity=command.quantity, reason=command.reason, expire_time=command.expire_time,
        force=command.force, create_time=now, request_digest=request_digest,
    )
    state.index_hold(hold)
    if hold.expire_time is not None:
        state.expiries.add((hold.expire_time, EXPIRING_HOLD, hold.hold_id))
    position.held += hold.quantity
    state.save_hold(hold)
    state.save_position(position)
    state.emit(now, "HOLD_PLACED", **event_data.hold(hold))
    return hold


def _check_hold_fits(command: commands.PlaceHold, position: Position | None, today: Day) -> None:
    available = 0
    if position is not None:
        available = timeline.available_now(position, today, include_safety_stock=False)
    if command.quantity > available:
        subject = f"hold {command.hold_id} ({command.sku} at {command.node_id})"
        raise InsufficientAvailability(
            [Shortfall(subject, f"{subject}: requested {command.quantity}, available "
                       f"{available} (a forced hold takes them anyway)",
                       command.quantity, available)]
        )


def release_hold(state: LedgerState, command: commands.ReleaseHold, now: float) -> Hold:
    validation.check_release_hold(command)
    hold = state.retained_hold(command.hold_id, now)
    if hold is None:
        raise NotFound("hold", command.hold_id)
    if hold.active:
        end_hold(state, hold, now, "HOLD_RELEASED")
    return hold


def end_hold(state: LedgerState, hold: Hold, now: float, event_type: str) -> None:
    """Ends an active hold (released or expired): its units are free again."""
    position = state.positions[(hold.sku, hold.node_id)]
    position.held -= hold.quantity
    state.retire_hold(hold, now)
    state.save_position(position)
    state.emit(now, event_type, **event_data.hold(hold))
