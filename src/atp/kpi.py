"""Order-promising KPIs computed from the event journal (`atpctl kpi`).

Everything here is a pure function over decoded journal events, so the numbers can be checked
against hand-made event lists. `decode_event` turns an `atp.v1.Event` into a `JournalEvent`;
`event_from_dict` does the same for a plain dict (e.g. a line of `atpctl watch --json`).

Definitions (the window is [since, until); events at or after `until` are ignored, so a report
for a past window reads the same whenever it is made):

- **cohort**: the reservations whose RESERVATION_CREATED falls in the window. Fill rate,
  promises, backorders and outcomes are about the cohort.
- **fill rate**: units shipped (RESERVATION_FULFILLED) / units requested, where a reservation
  requests the held quantity plus the backordered quantity of every line at creation.
- **promise date** of a reservation: its first promise, the one it was created with (never the
  `new_promise_date` of a reallocation): the latest `delivery_date` of its lines at creation, or,
  when the event carries none, the latest `ship_date` of the lines that hold units. A
  reallocation that slipped (RESERVATION_REALLOCATED with `slipped`) breaks the promise; a
  reallocation that did not slip keeps it (its `new_promise_date` is reported, not judged).
  A promise is **kept** when the reservation reached FULFILLED on or before its promise date
  (the UTC day of the event), **late** when after it, **overdue** when still open after it
  at the end of the window. Reservations released or expired without a slip are not judged.
- **backorders**: lines with `backordered > 0` at creation; filled by BACKORDER_FILLED.
- **perfect order** (from DELIVERY_RECORDED, see `atp.ledger.delivery_measures`): the
  reservations with a delivery recorded in the window, each judged on its latest record
  there (a later record is a correction). Per channel, per customer and overall: the on-time
  rate (delivered on or before the first promise date, over the orders that have one: an
  order without a promise date is not judged on time, and is left out of that rate and of
  the all-four share), the in-full rate (units delivered >= units ordered), the damage-free
  and documentation-accurate rates (over every order recorded), the **perfect order rate**
  (the product of the four rates, the compound measure) and the share of orders that met all
  four. Unlike the cohort measures, these are about deliveries recorded in the window,
  whenever their reservation was created.
- **time at risk**: an episode starts at LINE_AT_RISK (a reason change does not restart it)
  within the window and ends at LINE_RECOVERED, a reallocation of the reservation, the line's
  last open unit released or shipped, or the reservation reaching a final state. The mean is
  over the episodes that ended; the ones still open are counted apart.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from atp.ledger.delivery_measures import Measures, measures_met

__all__ = [
    "KPI_EVENT_TYPES",
    "JournalEvent",
    "KpiReport",
    "PerfectOrder",
    "compute_kpis",
    "decode_event",
    "event_from_dict",
    "parse_instant",
    "report_rows",
]

# The journal events the KPIs read (a Watch filter: nothing else needs to cross the wire).
KPI_EVENT_TYPES = (
    "RESERVATION_CREATED",
    "RESERVATION_COMMITTED",
    "RESERVATION_RELEASED",
    "RESERVATION_FULFILLED",
    "RESERVATION_EXPIRED",
    "RESERVATION_REALLOCATED",
    "LINE_AT_RISK",
    "LINE_RECOVERED",
    "BACKORDER_FILLED",
    "DELIVERY_RECORDED",
)
# The groupings of the perfect-order measures (`atpctl kpi --by-channel/--by-customer`).
PERFECT_ORDER_GROUPS = ("channel", "customer")
FINAL_STATES = ("FULFILLED", "RELEASED", "EXPIRED")
OUTCOME_STATES = ("HELD", "COMMITTED", "FULFILLED", "RELEASED", "EXPIRED")


@dataclass(frozen=True)
class JournalEvent:
    """One journal event, decoded: numbers in `data` are ints where they are whole."""

    sequence: int
    time: datetime.datetime  # aware, UTC: the server's clock when the change was made
    type: str
    reservation_id: str = ""
    sku: str = ""
    node_id: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    principal: str = ""  # who made the change ("" for the engine's own, or without auth)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape `atpctl watch --json` prints (and `event_from_dict` reads)."""
        return {
            "sequence": self.sequence,
            "time": format_instant(self.time),
            "type": self.type,
            "reservation_id": self.reservation_id,
            "sku": self.sku,
            "node_id": self.node_id,
            "data": dict(self.data),
            "principal": self.principal,
        }


def plain_numbers(value: Any) -> Any:
    """A Struct-decoded value with whole floats as ints (Struct keeps every number a double)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_numbers(item) for item in value]
    return value


def decode_event(message: Any) -> JournalEvent:
    """A JournalEvent from an atp.v1.Event message."""
    from google.protobuf import json_format  # Only this adapter needs protobuf.

    data = json_format.MessageToDict(message.data) if message.HasField("data") else {}
    return JournalEvent(
        sequence=int(message.sequence),
        time=message.time.ToDatetime(tzinfo=datetime.UTC),
        type=message.type,
        reservation_id=message.reservation_id,
        sku=message.sku,
        node_id=message.node_id,
        data=plain_numbers(data),
        principal=message.principal,
    )


def event_from_dict(document: Mapping[str, Any]) -> JournalEvent:
    """A JournalEvent from a dict: time as an ISO string or datetime; ids default from data."""
    data = plain_numbers(dict(document.get("data") or {}))
    time_value = document["time"]
    moment = time_value if isinstance(time_value, datetime.datetime) else parse_instant(time_value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return JournalEvent(
        sequence=int(document["sequence"]),
        time=moment.astimezone(datetime.UTC),
        type=str(document["type"]),
        reservation_id=str(document.get("reservation_id") or data.get("reservation_id") or ""),
        sku=str(document.get("sku") or data.get("sku") or ""),
        node_id=str(document.get("node_id") or data.get("node_id") or ""),
        data=data,
        principal=str(document.get("principal") or ""),
    )


def parse_instant(text: str) -> datetime.datetime:
    """An aware UTC datetime from ISO 8601: a date (midnight UTC) or a date-time (naive: UTC)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.date.fromisoformat(text)
            return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO date or date-time (2026-01-31 or 2026-01-31T12:00:00Z), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def format_instant(moment: datetime.datetime) -> str:
    """ISO 8601 in UTC with a Z, to the microsecond when there is one."""
    text = moment.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    text = text.removesuffix("+00:00")
    return (text.removesuffix(".000000")) + "Z"


def _day(text: Any) -> datetime.date | None:
    if not text or not isinstance(text, str):
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class PerfectOrder:
    """The perfect-order measures of a set of delivered orders; rates are exact fractions
    (None when nothing is there to judge)."""

    orders: int = 0  # reservations with a delivery recorded (their latest record each)
    on_time_judged: int = 0  # of those, the ones with a first promise date
    on_time: int = 0
    in_full: int = 0
    damage_free: int = 0
    documentation_accurate: int = 0
    all_four: int = 0  # judged on time, and met all four measures

    def add(self, measures: Measures) -> None:
        self.orders += 1
        if measures.on_time is not None:
            self.on_time_judged += 1
            self.on_time += measures.on_time
            self.all_four += bool(measures.perfect)
        self.in_full += measures.in_full
        self.damage_free += measures.damage_free
        self.documentation_accurate += measures.documentation_accurate

    @staticmethod
    def _share(part: int, whole: int) -> Fraction | None:
        return Fraction(part, whole) if whole else None

    @property
    def on_time_rate(self) -> Fraction | None:
        return self._share(self.on_time, self.on_time_judged)

    @property
    def in_full_rate(self) -> Fraction | None:
        return self._share(self.in_full, self.orders)

    @property
    def damage_free_rate(self) -> Fraction | None:
        return self._share(self.damage_free, self.orders)

    @property
    def documentation_accurate_rate(self) -> Fraction | None:
        return self._share(self.documentation_accurate, self.orders)

    @property
    def perfect_order_rate(self) -> Fraction | None:
        """The compound measure: the product of the four rates."""
        rates = (self.on_time_rate, self.in_full_rate, self.damage_free_rate,
                 self.documentation_accurate_rate)
        product = Fraction(1)
        for rate in rates:
            if rate is None:
                return None
            product *= rate
        return product

    @property
    def all_four_share(self) -> Fraction | None:
        """Orders that met all four measures, of those judged on all four."""
        return self._share(self.all_four, self.on_time_judged)

    def to_dict(self) -> dict[str, Any]:
        def rate(value: Fraction | None) -> float | None:
            return None if value is None else float(value)

        return {
            "orders": self.orders,
            "perfect_order_rate": rate(self.perfect_order_rate),
            "all_four_share": rate(self.all_four_share),
            "all_four": self.all_four,
            "on_time": {"rate": rate(self.on_time_rate), "met": self.on_time,
                        "judged": self.on_time_judged,
                        "not_judged": self.orders - self.on_time_judged},
            "in_full": {"rate": rate(self.in_full_rate), "met": self.in_full},
            "damage_free": {"rate": rate(self.damage_free_rate), "met": self.damage_free},
            "documentation_accurate": {"rate": rate(self.documentation_accurate_rate),
                                       "met": self.documentation_accurate},
        }


@dataclass
class KpiReport:
    since: datetime.datetime | None
    until: datetime.datetime | None
    as_of: datetime.datetime | None  # `until`, else the time of the last event read
    events_read: int = 0
    first_sequence: int = 0
    # When the first event read happened: the journal keeps a retention window
    # (--journal-retention), so the KPIs cover nothing before it.
    first_event_time: datetime.datetime | None = None
    last_sequence: int = 0
    reservations_created: int = 0
    units_requested: int = 0
    units_fulfilled: int = 0
    promises_kept: int = 0
    promises_late: int = 0
    promises_slipped: int = 0
    promises_overdue: int = 0
    promises_pending: int = 0  # open, promise date not yet passed
    promises_not_judged: int = 0  # released or expired without a slip, or no promise date
    backordered_lines: int = 0
    backordered_units: int = 0
    backordered_lines_filled: int = 0
    backorder_units_filled: int = 0
    at_risk_episodes: int = 0
    at_risk_episodes_open: int = 0
    at_risk_seconds_total: float = 0.0
    at_risk_by_reason: dict[str, int] = field(default_factory=dict)
    at_risk_ended_by: dict[str, int] = field(default_factory=dict)
    reservations_reallocated: int = 0
    reservations_slipped: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    perfect_order: PerfectOrder = field(default_factory=PerfectOrder)
    # The same measures by the reservation's channel and customer ("" when it had none).
    perfect_order_by_channel: dict[str, PerfectOrder] = field(default_factory=dict)
    perfect_order_by_customer: dict[str, PerfectOrder] = field(default_factory=dict)

    def perfect_order_groups(self, group: str) -> dict[str, PerfectOrder]:
        """The perfect-order measures by `group` (one of PERFECT_ORDER_GROUPS)."""
        if group == "channel":
            return self.perfect_order_by_channel
        if group == "customer":
            return self.perfect_order_by_customer
        raise ValueError(f"no grouping {group!r}: one of {', '.join(PERFECT_ORDER_GROUPS)}")

    @property
    def fill_rate(self) -> float | None:
        return self.units_fulfilled / self.units_requested if self.units_requested else None

    @property
    def promises_judged(self) -> int:
        return (
            self.promises_kept + self.promises_late + self.promises_slipped + self.promises_overdue
        )

    @property
    def promises_kept_share(self) -> float | None:
        judged = self.promises_judged
        return self.promises_kept / judged if judged else None

    @property
    def backordered_lines_open(self) -> int:
        return self.backordered_lines - self.backordered_lines_filled

    @property
    def at_risk_episodes_closed(self) -> int:
        return self.at_risk_episodes - self.at_risk_episodes_open

    @property
    def mean_seconds_at_risk(self) -> float | None:
        closed = self.at_risk_episodes_closed
        return self.at_risk_seconds_total / closed if closed else None

    @property
    def covered_since(self) -> datetime.datetime | None:
        """The start of what the retained journal covers of the window: the later of
        `since` and the first event read (None: no event)."""
        if self.first_event_time is None:
            return None
        if self.since is None or self.since < self.first_event_time:
            return self.first_event_time
        return self.since

    def to_dict(self, by: Iterable[str] = ()) -> dict[str, Any]:
        """The report as JSON-ready data (`atpctl kpi --json`); the perfect-order measures
        also by each grouping in `by` (PERFECT_ORDER_GROUPS)."""
        perfect_order = self.perfect_order.to_dict()
        for group in by:
            perfect_order[f"by_{group}"] = {
                name: measures.to_dict()
                for name, measures in sorted(self.perfect_order_groups(group).items())
            }

        def instant(moment: datetime.datetime | None) -> str | None:
            return format_instant(moment) if moment is not None else None

        return {
            "window": {
                "since": instant(self.since),
                "until": instant(self.until),
                "as_of": instant(self.as_of),
            },
            "journal": {
                "events_read": self.events_read,
                "first_sequence": self.first_sequence,
                "first_event_time": instant(self.first_event_time),
                # What the KPIs can cover: from the oldest retained event read to until/now.
                "covers_since": instant(self.covered_since),
                "last_sequence": self.last_sequence,
            },
            "reservations_created": self.reservations_created,
            "fill_rate": {
                "rate": self.fill_rate,
                "units_fulfilled": self.units_fulfilled,
                "units_requested": self.units_requested,
            },
            "promises": {
                "kept_share": self.promises_kept_share,
                "judged": self.promises_judged,
                "kept": self.promises_kept,
                "late": self.promises_late,
                "slipped": self.promises_slipped,
                "overdue": self.promises_overdue,
                "pending": self.promises_pending,
                "not_judged": self.promises_not_judged,
            },
            "backorders": {
                "lines": self.backordered_lines,
                "units": self.backordered_units,
                "lines_filled": self.backordered_lines_filled,
                "units_filled": self.backorder_units_filled,
                "lines_open": self.backordered_lines_open,
            },
            "at_risk": {
                "episodes": self.at_risk_episodes,
                "closed": self.at_risk_episodes_closed,
                "open": self.at_risk_episodes_open,
                "mean_seconds": self.mean_seconds_at_risk,
                "by_reason": dict(sorted(self.at_risk_by_reason.items())),
                "ended_by": dict(sorted(self.at_risk_ended_by.items())),
            },
            "reallocations": {
                "reservations": self.reservations_reallocated,
                "slipped": self.reservations_slipped,
            },
            "outcomes": {state: self.outcomes.get(state, 0) for state in OUTCOME_STATES},
            "perfect_order": perfect_order,
        }


@dataclass
class _Reservation:
    created: datetime.datetime
    state: str
    promise_day: datetime.date | None
    in_cohort: bool
    open_by_line: dict[str, int]
    slipped: bool = False
    reallocated: bool = False
    fulfilled_at: datetime.datetime | None = None


@dataclass
class _Episode:
    start: datetime.datetime
    reason: str
    counted: bool  # started within the window


class _Calculator:
    def __init__(
        self,
        since: datetime.datetime | None,
        until: datetime.datetime | None,
        as_of: datetime.datetime | None,
    ) -> None:
        self.since = since
        self.until = until
        self.report = KpiReport(since, until, as_of)
        self.reservations: dict[str, _Reservation] = {}
        self.episodes: dict[tuple[str, str], _Episode] = {}
        self.backorders: dict[tuple[str, str], int] = {}  # cohort line -> units still open
        # reservation -> the data of its latest DELIVERY_RECORDED in the window.
        self.deliveries: dict[str, Mapping[str, Any]] = {}
        self.last_time: datetime.datetime | None = None

    def in_window(self, moment: datetime.datetime) -> bool:
        return self.since is None or moment >= self.since

    def feed(self, event: JournalEvent) -> None:
        report = self.report
        report.events_read += 1
        report.first_sequence = report.first_sequence or event.sequence
        report.first_event_time = report.first_event_time or event.time
        report.last_sequence = event.sequence
        self.last_time = event.time if self.last_time is None else max(self.last_time, event.time)
        handler = getattr(self, f"on_{event.type.lower()}", None)
        if handler is not None:
            handler(event, event.reservation_id or str(event.data.get("reservation_id") or ""))

    # ----- reservations ------------------------------------------------------------------

    def on_reservation_created(self, event: JournalEvent, reservation_id: str) -> None:
        lines = [line for line in event.data.get("lines") or () if isinstance(line, Mapping)]
        in_cohort = self.in_window(event.time)
        self.reservations[reservation_id] = _Reservation(
            created=event.time,
            state=str(event.data.get("state") or "HELD"),
            promise_day=_promise_day(lines),
            in_cohort=in_cohort,
            open_by_line={str(line.get("line_id")): _int(line.get("quantity")) for line in lines},
        )
        if not in_cohort:
            return
        report = self.report
        report.reservations_created += 1
        for line in lines:
            backordered = _int(line.get("backordered"))
            report.units_requested += _int(line.get("quantity")) + backordered
            if backordered > 0:
                report.backordered_lines += 1
                report.backordered_units += backordered
                self.backorders[(reservation_id, str(line.get("line_id")))] = backordered

    def on_reservation_committed(self, event: JournalEvent, reservation_id: str) -> None:
        reservation = self.reservations.get(reservation_id)
        if reservation is not None and reservation.state == "HELD":
            reservation.state = "COMMITTED"

    def on_reservation_released(self, event: JournalEvent, reservation_id: str) -> None:
        self._reduce_lines(event, reservation_id, "released")

    def on_reservation_fulfilled(self, event: JournalEvent, reservation_id: str) -> None:
        reservation = self.reservations.get(reservation_id)
        if reservation is not None and reservation.in_cohort:
            self.report.units_fulfilled += sum(
                _int(line.get("quantity"))
                for line in event.data.get("lines") or ()
                if isinstance(line, Mapping)
            )
        self._reduce_lines(event, reservation_id, "fulfilled")

    def on_reservation_expired(self, event: JournalEvent, reservation_id: str) -> None:
        reservation = self.reservations.get(reservation_id)
        if reservation is not None:
            reservation.state = "EXPIRED"
        self._end_episodes(reservation_id, None, event.time, "expired")

    def on_reservation_reallocated(self, event: JournalEvent, reservation_id: str) -> None:
        reservation = self.reservations.get(reservation_id)
        if reservation is not None:
            reservation.reallocated = True
            reservation.slipped = reservation.slipped or bool(event.data.get("slipped"))
        self._end_episodes(reservation_id, None, event.time, "reallocated")

    def _reduce_lines(self, event: JournalEvent, reservation_id: str, ended_by: str) -> None:
        reservation = self.reservations.get(reservation_id)
        state = str(event.data.get("state") or "")
        if reservation is None:
            if state in FINAL_STATES:
                self._end_episodes(reservation_id, None, event.time, ended_by)
            return
        for line in event.data.get("lines") or ():
            if not isinstance(line, Mapping):
                continue
            line_id = str(line.get("line_id"))
            if line_id not in reservation.open_by_line:
                continue  # a line made later (reallocation, backorder fill): not tracked
            left = reservation.open_by_line[line_id] - _int(line.get("quantity"))
            reservation.open_by_line[line_id] = left
            if left <= 0:
                self._end_episodes(reservation_id, line_id, event.time, ended_by)
        if state:
            reservation.state = state
        if state in FINAL_STATES:
            self._end_episodes(reservation_id, None, event.time, ended_by)
        if state == "FULFILLED" and reservation.fulfilled_at is None:
            reservation.fulfilled_at = event.time

    # ----- backorders and risk -----------------------------------------------------------

    def on_backorder_filled(self, event: JournalEvent, reservation_id: str) -> None:
        key = (reservation_id, str(event.data.get("line_id")))
        if key not in self.backorders:
            return
        self.report.backorder_units_filled += _int(event.data.get("filled"))
        remaining = event.data.get("remaining")
        left = (
            _int(remaining)
            if remaining is not None
            else (self.backorders[key] - _int(event.data.get("filled")))
        )
        if left <= 0 and self.backorders[key] > 0:
            self.report.backordered_lines_filled += 1
        self.backorders[key] = left

    def on_line_at_risk(self, event: JournalEvent, reservation_id: str) -> None:
        key = (reservation_id, str(event.data.get("line_id")))
        if key in self.episodes:
            return  # a new reason for a line already at risk: the same episode
        reason = str(event.data.get("reason") or "")
        counted = self.in_window(event.time)
        self.episodes[key] = _Episode(event.time, reason, counted)
        if counted:
            self.report.at_risk_episodes += 1
            by_reason = self.report.at_risk_by_reason
            by_reason[reason] = by_reason.get(reason, 0) + 1

    def on_line_recovered(self, event: JournalEvent, reservation_id: str) -> None:
        line_id = str(event.data.get("line_id"))
        self._end_episodes(reservation_id, line_id, event.time, "recovered")

    def _end_episodes(
        self, reservation_id: str, line_id: str | None, moment: datetime.datetime, ended_by: str
    ) -> None:
        keys = [
            key for key in self.episodes
            if key[0] == reservation_id and (line_id is None or key[1] == line_id)
        ]  # fmt: skip
        for key in keys:
            episode = self.episodes.pop(key)
            if episode.counted:
                report = self.report
                report.at_risk_seconds_total += max(0.0, (moment - episode.start).total_seconds())
                report.at_risk_ended_by[ended_by] = report.at_risk_ended_by.get(ended_by, 0) + 1

    # ----- deliveries --------------------------------------------------------------------

    def on_delivery_recorded(self, event: JournalEvent, reservation_id: str) -> None:
        if self.in_window(event.time):
            self.deliveries[reservation_id] = event.data  # a later record corrects it

    def _judge_deliveries(self) -> None:
        report = self.report
        for data in self.deliveries.values():
            delivered_day = _day(data.get("delivered_date"))
            if delivered_day is None:
                continue  # not a delivery the server would record
            promise_day = _day(data.get("first_promise_date"))
            measures = measures_met(
                delivered_day.toordinal(),
                None if promise_day is None else promise_day.toordinal(),
                _int(data.get("units_delivered")), _int(data.get("units_ordered")),
                _int(data.get("damaged_units")), data.get("documentation_correct") is not False,
            )
            report.perfect_order.add(measures)
            channel, customer = str(data.get("channel") or ""), str(data.get("customer_id") or "")
            report.perfect_order_by_channel.setdefault(channel, PerfectOrder()).add(measures)
            report.perfect_order_by_customer.setdefault(customer, PerfectOrder()).add(measures)

    # ----- the end -----------------------------------------------------------------------

    def finish(self) -> KpiReport:
        report = self.report
        if report.as_of is None:
            report.as_of = self.last_time
        report.at_risk_episodes_open = sum(1 for e in self.episodes.values() if e.counted)
        as_of_day = report.as_of.date() if report.as_of is not None else None
        outcomes: Counter[str] = Counter()
        for reservation in self.reservations.values():
            if not reservation.in_cohort:
                continue
            outcomes[reservation.state] += 1
            report.reservations_reallocated += reservation.reallocated
            report.reservations_slipped += reservation.slipped
            self._judge_promise(reservation, as_of_day)
        report.outcomes = {state: outcomes.get(state, 0) for state in OUTCOME_STATES}
        report.outcomes.update({s: n for s, n in outcomes.items() if s not in OUTCOME_STATES})
        self._judge_deliveries()
        return report

    def _judge_promise(self, reservation: _Reservation, as_of_day: datetime.date | None) -> None:
        report = self.report
        promise_day = reservation.promise_day
        if reservation.slipped:
            report.promises_slipped += 1
        elif reservation.fulfilled_at is not None and promise_day is not None:
            if reservation.fulfilled_at.date() <= promise_day:
                report.promises_kept += 1
            else:
                report.promises_late += 1
        elif reservation.state in FINAL_STATES or promise_day is None:
            report.promises_not_judged += 1
        elif as_of_day is not None and as_of_day > promise_day:
            report.promises_overdue += 1
        else:
            report.promises_pending += 1


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(str(value))
    except ValueError:
        return 0


def _promise_day(lines: list[Mapping[str, Any]]) -> datetime.date | None:
    """The latest delivery date of the lines, else the latest ship date of lines holding units."""
    delivery_days = [day for line in lines if (day := _day(line.get("delivery_date")))]
    if delivery_days:
        return max(delivery_days)
    ship_days = [
        day for line in lines
        if _int(line.get("quantity")) > 0 and (day := _day(line.get("ship_date")))
    ]  # fmt: skip
    return max(ship_days) if ship_days else None


def compute_kpis(
    events: Iterable[JournalEvent | Mapping[str, Any]],
    *,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    now: datetime.datetime | None = None,
) -> KpiReport:
    """The KPIs of the reservations created in [since, until), from journal events in any order.

    Promises still open are overdue when their date is before the day of `as_of`: `until`,
    else `now` (the caller's clock), else the time of the last event read.
    """
    decoded = [e if isinstance(e, JournalEvent) else event_from_dict(e) for e in events]
    as_of = until if now is None else (now if until is None else min(now, until))
    calculator = _Calculator(since, until, as_of)
    for event in sorted(decoded, key=lambda e: e.sequence):
        if until is not None and event.time >= until:
            continue
        calculator.feed(event)
    return calculator.finish()


# ---------------------------------------------------------------------------------------------
# For people


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.1f}%"


def report_rows(report: KpiReport) -> list[tuple[str, str]]:
    """(KPI, value) rows for a two-column table."""

    def instant(moment: datetime.datetime | None, missing: str) -> str:
        return format_instant(moment) if moment is not None else missing

    window = f"{instant(report.since, 'start')} .. {instant(report.until, 'now')}"
    if report.events_read:
        journal = (
            f"{report.events_read} events read, sequences {report.first_sequence}.."
            f"{report.last_sequence}; covers from {instant(report.covered_since, '-')} "
            "(the journal keeps --journal-retention)"
        )
    else:
        journal = "no events"
    mean = report.mean_seconds_at_risk
    rows = [
        ("window", window),
        ("as of", instant(report.as_of, "-")),
        ("journal", journal),
        ("reservations created", str(report.reservations_created)),
        (
            "fill rate",
            (
                f"{_percent(report.fill_rate)} ({report.units_fulfilled} of "
                f"{report.units_requested} units shipped)"
            ),
        ),
        (
            "promises kept",
            (
                f"{_percent(report.promises_kept_share)} ({report.promises_kept} of "
                f"{report.promises_judged}; late {report.promises_late}, slipped "
                f"{report.promises_slipped}, overdue {report.promises_overdue}; not yet due "
                f"{report.promises_pending}, not judged {report.promises_not_judged})"
            ),
        ),
        (
            "backordered lines",
            (
                f"{report.backordered_lines} ({report.backordered_units} units); filled "
                f"{report.backordered_lines_filled} ({report.backorder_units_filled} units), "
                f"open {report.backordered_lines_open}"
            ),
        ),
        (
            "mean time at risk",
            ("n/a" if mean is None else f"{mean:.1f} s")
            + f" ({report.at_risk_episodes_closed} episodes ended, "
            f"{report.at_risk_episodes_open} still at risk)",
        ),
    ]
    if report.at_risk_by_reason:
        rows.append(("at risk by reason", _counts(report.at_risk_by_reason)))
    if report.at_risk_ended_by:
        rows.append(("at risk ended by", _counts(report.at_risk_ended_by)))
    rows.append(
        (
            "reallocated",
            (
                f"{report.reservations_reallocated} reservations "
                f"({report.reservations_slipped} slipped)"
            ),
        )
    )
    rows += [(f"outcome {state}", str(count)) for state, count in report.outcomes.items()]
    rows += perfect_order_rows(report.perfect_order)
    return rows


def _fraction(rate: Fraction | None, met: int, whole: int) -> str:
    return f"{_percent(None if rate is None else float(rate))} ({met} of {whole})"


def perfect_order_rows(measures: PerfectOrder) -> list[tuple[str, str]]:
    """(KPI, value) rows of the perfect-order measures."""
    not_judged = measures.orders - measures.on_time_judged
    rate = measures.perfect_order_rate
    return [
        ("deliveries recorded", str(measures.orders)),
        ("on time", _fraction(measures.on_time_rate, measures.on_time, measures.on_time_judged)
         + (f"; {not_judged} without a promise date, not judged" if not_judged else "")),
        ("in full", _fraction(measures.in_full_rate, measures.in_full, measures.orders)),
        ("damage free", _fraction(measures.damage_free_rate, measures.damage_free,
                                  measures.orders)),
        ("documentation accurate", _fraction(
            measures.documentation_accurate_rate, measures.documentation_accurate,
            measures.orders)),
        ("perfect order rate", _percent(None if rate is None else float(rate))
         + " (on time x in full x damage free x documentation accurate)"),
        ("perfect on all four", _fraction(measures.all_four_share, measures.all_four,
                                          measures.on_time_judged)),
    ]


def perfect_order_table_rows(groups: Mapping[str, PerfectOrder]) -> list[tuple[Any, ...]]:
    """One row per group: name ("-" for none), orders, the four rates, the perfect order rate
    and the all-four share, as percentages."""

    def percent(rate: Fraction | None) -> str:
        return _percent(None if rate is None else float(rate))

    return [
        (name or "-", m.orders, percent(m.on_time_rate), percent(m.in_full_rate),
         percent(m.damage_free_rate), percent(m.documentation_accurate_rate),
         percent(m.perfect_order_rate), percent(m.all_four_share))
        for name, m in sorted(groups.items())
    ]


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
