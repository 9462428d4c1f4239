"""Expiry: ExpireDue ends HELD reservations and holds whose time has come, earliest first."""

from __future__ import annotations

from atp.ledger import commands, event_data
from atp.ledger.handlers.holds import end_hold
from atp.ledger.handlers.reservations import release_units
from atp.ledger.model import Reservation, ReservationState
from atp.ledger.state import EXPIRING_HOLD, LedgerState


def expire_due(state: LedgerState, command: commands.ExpireDue, now: float) -> int:
    """Expires every HELD reservation and hold whose time has come (at most command.limit,
    0: all); returns how many."""
    expired = 0
    expiries = state.expiries
    while expiries and expiries[0][0] <= now and expired != (command.limit or -1):
        _, kind, item_id = expiries[0]
        if kind == EXPIRING_HOLD:
            end_hold(state, state.holds[item_id], now, "HOLD_EXPIRED")
        else:
            expire_reservation(state, state.reservations[item_id], now)
        expired += 1
    return expired


def expire_reservation(state: LedgerState, reservation: Reservation, now: float) -> None:
    for line in reservation.lines:
        release_units(state, reservation, line, line.open_quantity + line.backordered_quantity)
    state.stop_expiry(reservation)
    state.set_state(reservation, ReservationState.EXPIRED)
    state.expired_total += 1
    state.save_reservation(reservation)
    state.emit(now, "RESERVATION_EXPIRED", reservation_id=reservation.reservation_id,
               lines=[event_data.line(line) for line in reservation.lines])
