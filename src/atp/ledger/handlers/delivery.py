"""RecordDelivery: what reached the customer for a reservation that shipped.

The outcome is stored on the reservation (so GetReservation shows it, and it survives
restarts with the reservation's record) and announced as DELIVERY_RECORDED, from which the
perfect-order KPIs are computed (atp.kpi); the metrics' counters are kept as it is recorded.
A FULFILLED reservation is closed: it is read from the archive and its closed record is
written again (retention still runs from when it closed: past it, the reservation is
NOT_FOUND and so is its delivery).
"""

from __future__ import annotations

from atp.ledger import commands, event_data, validation
from atp.ledger.delivery_measures import measures_met
from atp.ledger.errors import InvalidArgument, NotFound
from atp.ledger.model import COMMITTED, Day, Delivery, Reservation, ReservationState, day_of
from atp.ledger.refusals import wrong_state
from atp.ledger.state import LedgerState

# How far past today a delivered date may be: a carrier's "today" in a time zone ahead of UTC.
DELIVERED_DAYS_AHEAD_MAX = 1


def record_delivery(
    state: LedgerState, command: commands.RecordDelivery, now: float
) -> Reservation:
    delivered_day = validation.check_record_delivery(command)
    reservation = state.retained_reservation(command.reservation_id, now)
    if reservation is None:
        raise NotFound("reservation", command.reservation_id)
    if state.is_replay(command.request_id, command):
        return reservation
    if not _shipped(reservation):
        raise wrong_state(reservation, "record a delivery for", hint=_why_not(reservation))
    _check_delivered_day(reservation, delivered_day, day_of(now))
    delivery = Delivery(delivered_day, command.units_delivered, command.damaged_units,
                        command.documentation_correct, now)
    if delivery == reservation.delivery:  # the same record again: nothing changes (version)
        state.remember_request(command.request_id, command, now)
        return reservation
    reservation.delivery = delivery
    state.remember_request(command.request_id, command, now)
    state.save_reservation(reservation)
    units_ordered = ordered_units(reservation)
    state.delivery_tally.count(reservation.channel, measures_met(
        delivered_day, reservation.first_promise_day, delivery.units_delivered, units_ordered,
        delivery.damaged_units, delivery.documentation_correct))
    state.emit(
        now, "DELIVERY_RECORDED", reservation_id=reservation.reservation_id,
        channel=reservation.channel, customer_id=reservation.customer_id,
        delivered_date=event_data.iso(delivered_day),
        units_delivered=delivery.units_delivered, damaged_units=delivery.damaged_units,
        documentation_correct=delivery.documentation_correct, units_ordered=units_ordered,
        first_promise_date=event_data.iso_or_none(reservation.first_promise_day),
    )
    return reservation


def ordered_units(reservation: Reservation) -> int:
    """Units the customer still wanted: each line's units less those released, plus those
    backordered (shipped or not). In full means at least these were delivered."""
    return sum(line.quantity - line.released_quantity + line.backordered_quantity
               for line in reservation.lines)


def _shipped(reservation: Reservation) -> bool:
    """FULFILLED, or COMMITTED with units already shipped (a partial shipment delivered)."""
    if reservation.state is ReservationState.FULFILLED:
        return True
    return reservation.state is COMMITTED and any(
        line.fulfilled_quantity for line in reservation.lines)


def _why_not(reservation: Reservation) -> str:
    if reservation.state is COMMITTED:
        return " with nothing shipped yet (fulfil it first)"
    if reservation.state is ReservationState.HELD:
        return " (commit and fulfil it first)"
    return " (nothing was shipped: only a reservation that shipped units has a delivery)"


def _check_delivered_day(reservation: Reservation, delivered_day: Day, today: Day) -> None:
    created_day = day_of(reservation.create_time)
    if delivered_day < created_day:
        raise InvalidArgument.single(
            "delivery.delivered_date",
            f"{event_data.iso(delivered_day)} is before the reservation was created "
            f"({event_data.iso(created_day)})")
    if delivered_day > today + DELIVERED_DAYS_AHEAD_MAX:
        raise InvalidArgument.single(
            "delivery.delivered_date",
            f"{event_data.iso(delivered_day)} is in the future (today is "
            f"{event_data.iso(today)})")
