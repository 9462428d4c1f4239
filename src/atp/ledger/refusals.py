"""Refusals more than one handler builds: a position's shortfall, a reservation in the wrong
state, a quantity over its limit."""

from __future__ import annotations

from atp import limits
from atp.ledger.errors import (
    INVALID_STATE,
    RESERVATION_EXPIRED,
    FailedPrecondition,
    InvalidArgument,
    Shortfall,
)
from atp.ledger.model import Position, Reservation, ReservationState


def shortfall(
    subject: str, position: Position, requested: int, available: int, what: str,
    line_id: str = "", note: str = "",
) -> Shortfall:
    """What a line or movement at `position` lacks, described for the caller."""
    label = f"line {line_id}" if line_id else subject
    where = f"{position.sku} at {position.node_id}"
    named = label if label == where else f"{label} ({where})"
    return Shortfall(
        subject=label,
        description=f"{named}: requested {requested}, {what} {available}{note}",
        requested=requested,
        available=available,
    )


def wrong_state(reservation: Reservation, action: str, hint: str = "") -> FailedPrecondition:
    state = reservation.state.value
    reason = RESERVATION_EXPIRED if reservation.state is ReservationState.EXPIRED else INVALID_STATE
    return FailedPrecondition(
        reason,
        f"cannot {action} reservation {reservation.reservation_id!r}: it is {state}{hint}",
        {"reservation_id": reservation.reservation_id, "state": state},
    )


def check_on_hand_limit(field_path: str, on_hand: int) -> None:
    if on_hand > limits.quantity_max:
        raise InvalidArgument.single(field_path, f"on_hand would exceed {limits.quantity_max}")
