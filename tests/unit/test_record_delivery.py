"""Reservations.RecordDelivery in the ledger: its validation, the states that allow it, replay
and correction, the DELIVERY_RECORDED data, the metrics' counters, and a closed reservation's
record written again so that the delivery survives a restart."""

from __future__ import annotations

import datetime

import pytest

from atp.ledger import Ledger, Refused, commands, errors
from atp.ledger.delivery_measures import OTHER_CHANNEL, DeliveryTally, measures_met
from atp.ledger.errors import FieldViolation
from atp.ledger.model import Delivery, Policy, Reservation, ReservationState, day_of
from atp.ledger.state import Changes, LedgerConfig
from atp.persistence import encode_batch, ledger_from_records
from atp.persistence.archive import StoreArchive
from atp.persistence.replica import apply_records
from atp.store import MemoryStore

NOW = 1_790_000_000.0  # 2026-09-21T...Z
DAY_S = 86_400.0
TODAY = datetime.date.fromordinal(day_of(NOW))
CLOSED_RETENTION_S = 7 * DAY_S


def ymd(day: datetime.date) -> tuple[int, int, int]:
    return (day.year, day.month, day.day)


def days(n: int) -> datetime.date:
    return TODAY + datetime.timedelta(days=n)


def stocked(units: int = 20) -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=600, closed_retention_s=CLOSED_RETENTION_S))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", units),)),
                   NOW)
    return ledger


def reserved(ledger: Ledger, reservation_id: str = "o1", quantity: int = 4, commit: bool = True,
             ship: datetime.date | None = None, **options: object) -> Reservation:
    line = commands.LineRequest("l1", "A", quantity, "DC1", ymd(ship or days(2)))
    return ledger.execute(  # type: ignore[return-value]
        commands.Reserve(reservation_id, (line,), commit=commit, channel="web",
                         customer_id="c1", **options),  # type: ignore[arg-type]
        NOW)


def shipped(ledger: Ledger, reservation_id: str = "o1", units: int | None = None) -> Reservation:
    lines = () if units is None else (commands.LineQuantity("l1", units),)
    return ledger.execute(  # type: ignore[return-value]
        commands.Fulfill(reservation_id, f"ship-{reservation_id}-{units}", lines), NOW)


def delivery(request_id: str = "d1", reservation_id: str = "o1", *,
             date: tuple[int, int, int] | None = None, units: int = 4, damaged: int = 0,
             documentation_correct: bool = True) -> commands.RecordDelivery:
    return commands.RecordDelivery(reservation_id, request_id,
                                   ymd(days(1)) if date is None else date, units, damaged,
                                   documentation_correct)


def recorded(ledger: Ledger, command: commands.RecordDelivery, now: float = NOW) -> Reservation:
    outcome = ledger.apply(command, now)
    assert isinstance(outcome, Reservation), outcome
    return outcome


def refused(ledger: Ledger, command: commands.Command, now: float = NOW) -> Refused:
    sequence, tally = ledger.sequence, dict(ledger.delivery_tally.recorded)
    before = {rid: repr(r) for rid, r in ledger.known_reservations().items()}
    outcome = ledger.apply(command, now)
    assert isinstance(outcome, Refused), outcome
    assert ledger.sequence == sequence, "a refusal emitted an event"
    assert {rid: repr(r) for rid, r in ledger.known_reservations().items()} == before
    assert ledger.delivery_tally.recorded == tally
    return outcome


def violations(outcome: Refused) -> list[FieldViolation]:
    assert isinstance(outcome.error, errors.InvalidArgument), outcome
    return outcome.error.violations


def last_event_data(ledger: Ledger) -> dict[str, object]:
    event = ledger.changes.events[-1]
    assert event.type == "DELIVERY_RECORDED"
    return event.data


# ----- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "field", "words"), [
    (commands.RecordDelivery("", "d1", ymd(TODAY), 1), "reservation_id", "required"),
    (commands.RecordDelivery("o1", "", ymd(TODAY), 1), "request_id", "required"),
    (commands.RecordDelivery("o1", "d1", None, 1), "delivery.delivered_date", "required"),
    (commands.RecordDelivery("o1", "d1", (2026, 2, 30), 1), "delivery.delivered_date",
     "not a calendar date"),
    (commands.RecordDelivery("o1", "d1", ymd(TODAY), -1), "delivery.units_delivered",
     "at least 0"),
    (commands.RecordDelivery("o1", "d1", ymd(TODAY), 10**12 + 1), "delivery.units_delivered",
     "at most 1000000000000"),
    (commands.RecordDelivery("o1", "d1", ymd(TODAY), 4, -1), "delivery.damaged_units",
     "at least 0"),
    (commands.RecordDelivery("o1", "d1", ymd(TODAY), 4, 5), "delivery.damaged_units",
     "at most units_delivered (4)"),
])
def test_a_malformed_record_is_refused_naming_its_field(
    command: commands.RecordDelivery, field: str, words: str
) -> None:
    ledger = stocked()
    reserved(ledger)
    shipped(ledger)
    found = violations(refused(ledger, command))
    assert [v.field for v in found] == [field]
    assert words in found[0].description


def test_the_delivered_date_lies_between_the_reservations_creation_and_tomorrow() -> None:
    ledger = stocked()
    reserved(ledger)
    shipped(ledger)
    before = violations(refused(ledger, delivery(date=ymd(days(-1)))))
    assert before[0].field == "delivery.delivered_date"
    assert "before the reservation was created" in before[0].description
    ahead = violations(refused(ledger, delivery(date=ymd(days(2)))))
    assert ahead[0].field == "delivery.delivered_date"
    assert "in the future" in ahead[0].description
    # Tomorrow is allowed (a carrier's day ahead of UTC); so is the creation day itself.
    assert recorded(ledger, delivery("d1", date=ymd(days(1)))).delivery is not None
    assert recorded(ledger, delivery("d2", date=ymd(TODAY))).delivery is not None


def test_zero_units_delivered_is_a_delivery_that_is_not_in_full() -> None:
    ledger = stocked()
    reserved(ledger)
    shipped(ledger)
    reservation = recorded(ledger, delivery(units=0))
    assert reservation.delivery is not None and reservation.delivery.units_delivered == 0
    assert ledger.delivery_tally.met.get(("web", "in_full"), 0) == 0


# ----- states --------------------------------------------------------------------------------


def test_an_unknown_reservation_is_not_found() -> None:
    outcome = refused(stocked(), delivery(reservation_id="nope"))
    assert outcome.reason == errors.NOT_FOUND


@pytest.mark.parametrize(("setup", "reason", "words"), [
    ("held", errors.INVALID_STATE, "it is HELD (commit and fulfil it first)"),
    ("committed", errors.INVALID_STATE, "COMMITTED with nothing shipped yet (fulfil it first)"),
    ("released", errors.INVALID_STATE, "it is RELEASED (nothing was shipped"),
    ("expired", errors.RESERVATION_EXPIRED, "it is EXPIRED"),
])
def test_a_reservation_that_shipped_nothing_has_no_delivery(
    setup: str, reason: str, words: str
) -> None:
    ledger = stocked()
    reserved(ledger, commit=setup != "held" and setup != "expired", ttl_seconds=60)
    now = NOW
    if setup == "released":
        ledger.execute(commands.Release("o1", "cancel"), NOW)
    elif setup == "expired":
        now = NOW + 120
        ledger.execute(commands.ExpireDue(), now)
    outcome = refused(ledger, delivery(), now)
    assert outcome.reason == reason
    assert words in outcome.message
    assert outcome.error.metadata["reservation_id"] == "o1"  # type: ignore[attr-defined]


def test_a_committed_reservation_that_shipped_part_records_its_delivery() -> None:
    ledger = stocked()
    reserved(ledger)
    assert shipped(ledger, units=3).state is ReservationState.COMMITTED
    reservation = recorded(ledger, delivery(units=3))
    assert reservation.state is ReservationState.COMMITTED
    assert reservation.delivery == Delivery(days(1).toordinal(), 3, 0, True, NOW)
    # Still open: its record is the open one.
    assert "o1" in ledger.changes.reservations and "o1" not in ledger.changes.closed


def test_a_fulfilled_reservation_records_its_delivery_and_the_event_says_it_all() -> None:
    ledger = stocked()
    created = reserved(ledger, ship=days(2))
    assert created.first_promise_day == days(2).toordinal()
    version = shipped(ledger).version
    reservation = recorded(ledger, delivery(units=4, damaged=1, documentation_correct=False))
    assert reservation.state is ReservationState.FULFILLED
    assert reservation.version == version + 1
    assert reservation.delivery == Delivery(days(1).toordinal(), 4, 1, False, NOW)
    assert last_event_data(ledger) == {
        "reservation_id": "o1", "channel": "web", "customer_id": "c1",
        "delivered_date": days(1).isoformat(), "units_delivered": 4, "damaged_units": 1,
        "documentation_correct": False, "units_ordered": 4,
        "first_promise_date": days(2).isoformat(),
    }


def test_units_ordered_leave_out_released_units_and_count_backordered_ones() -> None:
    ledger = stocked(units=5)
    line = commands.LineRequest("l1", "A", 8, "DC1")
    policy = Policy(allow_partial=True)
    ledger.execute(commands.Reserve("o1", (line,), commit=True, policy=policy), NOW)
    held = ledger.reservation("o1").lines[0]
    assert (held.quantity, held.backordered_quantity) == (5, 3)
    ledger.execute(commands.Release("o1", "less", (commands.LineQuantity("l1", 1),)), NOW)
    # 1 released from the backorder first: 5 held, 2 backordered; ship 3 of the 5 held.
    shipped(ledger, units=3)
    recorded(ledger, delivery(units=3))
    assert last_event_data(ledger)["units_ordered"] == 7
    assert ledger.delivery_tally.met.get(("", "in_full"), 0) == 0


# ----- replay and correction -----------------------------------------------------------------


def test_a_replay_changes_nothing_and_the_same_key_with_other_content_is_refused() -> None:
    ledger = stocked()
    reserved(ledger)
    shipped(ledger)
    first = recorded(ledger, delivery("d1", units=4))
    sequence, version = ledger.sequence, first.version
    again = recorded(ledger, delivery("d1", units=4), NOW + 60)
    assert again.version == version and again.delivery == first.delivery
    assert ledger.sequence == sequence
    assert ledger.delivery_tally.recorded == {"web": 1}
    outcome = refused(ledger, delivery("d1", units=3))
    assert outcome.reason == errors.ALREADY_EXISTS


def test_a_record_under_a_new_request_id_corrects_the_earlier_one() -> None:
    ledger = stocked()
    reserved(ledger)
    shipped(ledger)
    recorded(ledger, delivery("d1", units=3, damaged=2))
    corrected = recorded(ledger, delivery("d2", units=4), NOW + 3600)
    assert corrected.delivery == Delivery(days(1).toordinal(), 4, 0, True, NOW + 3600)
    kinds = [event.type for event in ledger.changes.events]
    assert kinds.count("DELIVERY_RECORDED") == 2
    # Each record counts for the metrics (the KPIs take the latest one per reservation).
    assert ledger.delivery_tally.recorded == {"web": 2}
    assert ledger.delivery_tally.met[("web", "in_full")] == 1
    assert ledger.delivery_tally.met[("web", "perfect")] == 1


# ----- the closed record, written again; restart ---------------------------------------------


class Durable:
    """A ledger with a store behind it, made durable by hand as the writer does: changes
    encoded and committed, then forgotten from memory (the archive answers for them)."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.ledger = stocked()
        self.ledger.archive = StoreArchive(self.store)
        self.flush()

    def flush(self) -> Changes:
        changes = self.ledger.take_changes()
        self.store.commit(encode_batch(changes))
        self.ledger.forget_durable(changes)
        return changes

    def restarted(self, now: float) -> Ledger:
        ledger = ledger_from_records(self.store.iter_records, self.store.last_sequence(),
                                     self.ledger.config, now)
        ledger.archive = StoreArchive(self.store)
        return ledger


def test_a_closed_reservations_record_is_written_again_and_read_back_after_a_restart() -> None:
    durable = Durable()
    reserved(durable.ledger)
    shipped(durable.ledger)
    durable.flush()
    assert "o1" not in durable.ledger.closed  # only the archive has it now
    reservation = recorded(durable.ledger, delivery(units=4, damaged=1), NOW + 60)
    # Until durable, memory answers with the new version (the archive still has the old).
    assert durable.ledger.reservation("o1") is reservation
    changes = durable.flush()
    assert set(changes.closed) == {"o1"} and not changes.reservations
    from_archive = durable.ledger.reservation("o1")
    assert from_archive is not reservation
    assert from_archive.delivery == Delivery(days(1).toordinal(), 4, 1, True, NOW + 60)
    assert from_archive.close_time == NOW  # retention still runs from when it closed
    assert from_archive.version == reservation.version
    restarted = durable.restarted(NOW + 120)
    again = restarted.reservation("o1")
    assert again.delivery == from_archive.delivery and again.version == reservation.version
    assert restarted.check_invariants() == []
    # The replay still answers after the restart (the idempotency record is stored).
    assert recorded(restarted, delivery(units=4, damaged=1), NOW + 180).version == again.version


def test_a_follower_counts_the_closing_once_and_not_the_rewritten_closed_record() -> None:
    durable = Durable()
    reserved(durable.ledger)
    follower = durable.restarted(NOW)
    shipped(durable.ledger)
    closing = encode_batch(durable.flush())
    apply_records(follower, closing.records)
    assert follower.closed_counts[ReservationState.FULFILLED] == 1
    recorded(durable.ledger, delivery(), NOW + 60)
    rewrite = encode_batch(durable.flush())
    assert ("closed", b"o1") in rewrite.records
    apply_records(follower, rewrite.records)
    assert follower.closed_counts[ReservationState.FULFILLED] == 1


def test_a_reservation_past_closed_retention_is_not_found() -> None:
    durable = Durable()
    reserved(durable.ledger)
    shipped(durable.ledger)
    durable.flush()
    late = NOW + CLOSED_RETENTION_S + 1
    outcome = refused(durable.ledger, delivery(date=ymd(TODAY)), late)
    assert outcome.reason == errors.NOT_FOUND


# ----- the metrics' counters -----------------------------------------------------------------


def test_measures_and_the_perfect_one() -> None:
    assert measures_met(10, 10, 4, 4, 0, True).perfect is True
    assert measures_met(11, 10, 4, 4, 0, True).on_time is False
    assert measures_met(10, None, 4, 4, 0, True).perfect is None  # not judged
    late = measures_met(10, 10, 3, 4, 1, False)
    assert (late.in_full, late.damage_free, late.documentation_accurate, late.perfect) == (
        False, False, False, False)


def test_the_tally_bounds_its_channels_and_counts_the_rest_as_other() -> None:
    tally = DeliveryTally(channels_max=2)
    perfect = measures_met(1, 1, 1, 1, 0, True)
    for channel in ("web", "store", "phone", "fax", "web"):
        tally.count(channel, perfect)
    assert tally.recorded == {"web": 2, "store": 1, OTHER_CHANNEL: 2}
    assert tally.met[(OTHER_CHANNEL, "perfect")] == 2
    assert len({channel for channel, _ in tally.met}) == 3
