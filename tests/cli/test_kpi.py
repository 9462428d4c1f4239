"""atp.kpi over hand-made journals: every expected number below is worked out by hand."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from atp import kpi
from atp.v1 import events_pb2

T0 = datetime.datetime(2030, 1, 10, 10, 0, tzinfo=datetime.UTC)
UNTIL = datetime.datetime(2030, 1, 15, tzinfo=datetime.UTC)


def at(**delta: float) -> datetime.datetime:
    return T0 + datetime.timedelta(**delta)


def event(
    sequence: int, moment: datetime.datetime, kind: str, rid: str, **data: Any
) -> dict[str, Any]:
    # Shaped like `atpctl watch --json`: numbers as the Struct gives them (floats).
    floats = json.loads(json.dumps(data), parse_int=float)
    return {
        "sequence": sequence,
        "time": moment.isoformat().replace("+00:00", "Z"),
        "type": kind,
        "reservation_id": rid,
        "data": {"reservation_id": rid, **floats},
    }


def line(
    line_id: str, sku: str, quantity: int, ship: str | None, backordered: int = 0, node: str = "DC1"
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku": sku,
        "node_id": node if quantity else "",
        "quantity": quantity,
        "ship_date": ship,
        "backordered": backordered,
    }


def journal() -> list[dict[str, Any]]:
    """Seven reservations; see the comments for what each one shows."""
    return [
        # r1: 6 units, promise 2030-01-12 (latest ship date), shipped on 01-11: kept.
        event(
            1,
            at(),
            "RESERVATION_CREATED",
            "r1",
            state="HELD",
            lines=[line("l1", "A", 4, "2030-01-11"), line("l2", "B", 2, "2030-01-12")],
        ),
        event(2, at(minutes=1), "RESERVATION_COMMITTED", "r1"),
        # r2: 3 held + 2 backordered, promise 01-11, shipped on 01-12: late.
        event(
            3,
            at(minutes=2),
            "RESERVATION_CREATED",
            "r2",
            state="COMMITTED",
            lines=[line("l1", "A", 3, "2030-01-11", backordered=2)],
        ),
        # r3: 5 units, reallocated with a slip: broken; at risk twice (10m->30m, then open).
        event(
            4,
            at(minutes=3),
            "RESERVATION_CREATED",
            "r3",
            state="HELD",
            lines=[line("l1", "A", 5, "2030-01-11")],
        ),
        # r4: wholly backordered (no promise date), partly filled, then expires: not judged.
        event(
            5,
            at(minutes=4),
            "RESERVATION_CREATED",
            "r4",
            state="HELD",
            lines=[line("l1", "C", 0, None, backordered=3)],
        ),
        event(6, at(minutes=10), "LINE_AT_RISK", "r3", line_id="l1", quantity=5, reason="SHORTAGE"),
        # r1 l1 at risk 11m -> 20m (540 s); the reason change at 12m is the same episode.
        event(7, at(minutes=11), "LINE_AT_RISK", "r1", line_id="l1", quantity=4, reason="SHORTAGE"),
        event(
            8,
            at(minutes=12),
            "LINE_AT_RISK",
            "r1",
            line_id="l1",
            quantity=4,
            reason="NODE_INACTIVE",
        ),
        event(9, at(minutes=20), "LINE_RECOVERED", "r1", line_id="l1", quantity=4, reason=""),
        event(
            10,
            at(minutes=30),
            "RESERVATION_REALLOCATED",
            "r3",
            old_promise_date="2030-01-13",
            new_promise_date="2030-01-15",
            slipped=True,
            unfilled=0,
        ),
        event(
            11, at(days=1), "BACKORDER_FILLED", "r2", line_id="l1", sku="A", filled=2, remaining=0
        ),
        event(
            12,
            at(days=1, hours=2),
            "RESERVATION_FULFILLED",
            "r1",
            state="FULFILLED",
            lines=[{"line_id": "l1", "quantity": 4}, {"line_id": "l2", "quantity": 2}],
        ),
        event(
            13,
            at(days=1, hours=23),
            "RESERVATION_FULFILLED",
            "r2",
            state="FULFILLED",
            lines=[{"line_id": "l1", "quantity": 3}, {"line_id": "l1/2", "quantity": 2}],
        ),
        event(
            14, at(days=2), "BACKORDER_FILLED", "r4", line_id="l1", sku="C", filled=1, remaining=2
        ),
        event(15, at(days=2, hours=1), "RESERVATION_EXPIRED", "r4"),
        event(
            16,
            at(days=2, hours=2),
            "LINE_AT_RISK",
            "r3",
            line_id="l1",
            quantity=5,
            reason="SHORTAGE",
        ),
        # r5: promise 01-20, still open on 01-15: not yet due.
        event(
            17,
            at(days=2, hours=3),
            "RESERVATION_CREATED",
            "r5",
            state="HELD",
            lines=[line("l1", "A", 1, "2030-01-20")],
        ),
        # r6: promise 01-13, still open on 01-15: overdue.
        event(
            18,
            at(days=2, hours=3, minutes=30),
            "RESERVATION_CREATED",
            "r6",
            state="COMMITTED",
            lines=[line("l1", "A", 2, "2030-01-13")],
        ),
        # r7: released without a slip: not judged.
        event(
            19,
            at(days=2, hours=4),
            "RESERVATION_CREATED",
            "r7",
            state="HELD",
            lines=[line("l1", "A", 1, "2030-01-13")],
        ),
        event(
            20,
            at(days=2, hours=5),
            "RESERVATION_RELEASED",
            "r7",
            state="RELEASED",
            lines=[{"line_id": "l1", "quantity": 1}],
        ),
    ]


def test_every_kpi_over_the_whole_journal() -> None:
    report = kpi.compute_kpis(journal(), until=UNTIL)
    assert report.events_read == 20
    assert (report.first_sequence, report.last_sequence) == (1, 20)
    assert report.reservations_created == 7
    # Requested: r1 6, r2 3+2, r3 5, r4 0+3, r5 1, r6 2, r7 1 = 23; shipped: r1 6 + r2 5.
    assert (report.units_requested, report.units_fulfilled) == (23, 11)
    assert report.fill_rate == pytest.approx(11 / 23)
    # kept r1, late r2, slipped r3, overdue r6; pending r5; not judged r4 (expired), r7.
    assert report.promises_kept == 1
    assert report.promises_late == 1
    assert report.promises_slipped == 1
    assert report.promises_overdue == 1
    assert report.promises_pending == 1
    assert report.promises_not_judged == 2
    assert report.promises_kept_share == pytest.approx(0.25)
    # Backordered at creation: r2 l1 (2 units, filled) and r4 l1 (3 units, 1 filled).
    assert (report.backordered_lines, report.backordered_units) == (2, 5)
    assert (report.backordered_lines_filled, report.backorder_units_filled) == (1, 3)
    assert report.backordered_lines_open == 1
    # Episodes: r3 10m->30m (1200 s), r1 11m->20m (540 s), r3 again (still open).
    assert report.at_risk_episodes == 3
    assert report.at_risk_episodes_open == 1
    assert report.mean_seconds_at_risk == pytest.approx((1200 + 540) / 2)
    assert report.at_risk_by_reason == {"SHORTAGE": 3}
    assert report.at_risk_ended_by == {"reallocated": 1, "recovered": 1}
    assert (report.reservations_reallocated, report.reservations_slipped) == (1, 1)
    assert report.outcomes == {
        "HELD": 2, "COMMITTED": 1, "FULFILLED": 2, "RELEASED": 1, "EXPIRED": 1,
    }  # fmt: skip


def test_until_leaves_out_what_came_later() -> None:
    until = datetime.datetime(2030, 1, 11, 11, 0, tzinfo=datetime.UTC)  # after event 11
    report = kpi.compute_kpis(journal(), until=until)
    assert report.events_read == 11
    assert report.reservations_created == 4
    assert (report.units_requested, report.units_fulfilled) == (19, 0)
    assert report.fill_rate == 0.0
    # r1 (promise 01-12) and r2 (promise 01-11) are open on 01-11: not yet due; r3 slipped.
    assert (report.promises_kept, report.promises_slipped, report.promises_pending) == (0, 1, 2)
    assert report.promises_kept_share == 0.0
    assert report.promises_not_judged == 1  # r4: no promise date
    assert (report.backordered_lines_filled, report.backorder_units_filled) == (1, 2)
    assert (report.at_risk_episodes, report.at_risk_episodes_open) == (2, 0)
    assert report.mean_seconds_at_risk == pytest.approx(870.0)
    assert report.outcomes["HELD"] == 2 and report.outcomes["COMMITTED"] == 2


def test_since_picks_the_cohort_and_the_episodes_that_start_in_the_window() -> None:
    since = at(minutes=2, seconds=30)  # after r2 was created, before r3
    report = kpi.compute_kpis(journal(), since=since, until=UNTIL)
    assert report.reservations_created == 5  # r3..r7
    assert (report.units_requested, report.units_fulfilled) == (12, 0)
    assert (report.promises_slipped, report.promises_overdue, report.promises_kept) == (1, 1, 0)
    assert report.promises_judged == 2
    assert (report.backordered_lines, report.backordered_units) == (1, 3)
    assert (report.backordered_lines_filled, report.backorder_units_filled) == (0, 1)
    # At-risk episodes are counted by when they start, whichever reservation they concern.
    assert report.at_risk_episodes == 3
    assert report.outcomes["FULFILLED"] == 0 and report.outcomes["EXPIRED"] == 1


def test_overdue_is_judged_against_now_when_there_is_no_until() -> None:
    events = [
        event(
            1,
            at(),
            "RESERVATION_CREATED",
            "r1",
            state="COMMITTED",
            lines=[line("l1", "A", 2, "2030-01-11")],
        ),
    ]
    before = kpi.compute_kpis(events, now=datetime.datetime(2030, 1, 11, 23, tzinfo=datetime.UTC))
    after = kpi.compute_kpis(events, now=datetime.datetime(2030, 1, 12, 1, tzinfo=datetime.UTC))
    assert (before.promises_pending, before.promises_overdue) == (1, 0)
    assert (after.promises_pending, after.promises_overdue) == (0, 1)
    assert after.promises_kept_share == 0.0
    # Without either, the last event's time is the end: nothing is overdue yet.
    assert kpi.compute_kpis(events).promises_pending == 1


def test_a_delivery_date_in_the_event_is_the_promise() -> None:
    events = [
        event(
            1,
            at(),
            "RESERVATION_CREATED",
            "r1",
            state="COMMITTED",
            lines=[{**line("l1", "A", 2, "2030-01-11"), "delivery_date": "2030-01-13"}],
        ),
        event(
            2,
            at(days=2, hours=1),
            "RESERVATION_FULFILLED",
            "r1",
            state="FULFILLED",
            lines=[{"line_id": "l1", "quantity": 2}],
        ),
    ]
    report = kpi.compute_kpis(events)  # shipped 01-12, promised for 01-13
    assert (report.promises_kept, report.promises_late) == (1, 0)
    assert report.fill_rate == 1.0


def test_the_first_promise_date_of_the_event_is_the_promise() -> None:
    """RESERVATION_CREATED's first_promise_date (a delivery date) wins over the lines' ship
    dates: shipped 01-12, one day after the ship date, still kept for 01-13."""
    def created(first_promise: str | None) -> list[dict[str, Any]]:
        return [
            event(1, at(), "RESERVATION_CREATED", "r1", state="COMMITTED",
                  lines=[line("l1", "A", 2, "2030-01-11")], first_promise_date=first_promise),
            event(2, at(days=2, hours=1), "RESERVATION_FULFILLED", "r1", state="FULFILLED",
                  lines=[{"line_id": "l1", "quantity": 2}]),
        ]

    kept = kpi.compute_kpis(created("2030-01-13"))
    assert (kept.promises_kept, kept.promises_late) == (1, 0)
    late = kpi.compute_kpis(created(None))  # an older journal: the ship date is the promise
    assert (late.promises_kept, late.promises_late) == (0, 1)


def test_releasing_the_last_units_of_a_line_ends_its_episode() -> None:
    events = [
        event(
            1,
            at(),
            "RESERVATION_CREATED",
            "r1",
            state="HELD",
            lines=[line("l1", "A", 2, "2030-01-11"), line("l2", "A", 1, "2030-01-11")],
        ),
        event(2, at(seconds=10), "LINE_AT_RISK", "r1", line_id="l1", quantity=2, reason="SHORTAGE"),
        event(3, at(seconds=20), "LINE_AT_RISK", "r1", line_id="l2", quantity=1, reason="SHORTAGE"),
        # 1 of 2 units of l1: still at risk. Then the rest: its episode ends (30 s).
        event(
            4,
            at(seconds=30),
            "RESERVATION_RELEASED",
            "r1",
            state="HELD",
            lines=[{"line_id": "l1", "quantity": 1}],
        ),
        event(
            5,
            at(seconds=40),
            "RESERVATION_RELEASED",
            "r1",
            state="HELD",
            lines=[{"line_id": "l1", "quantity": 1}],
        ),
        # l2 is shipped whole: the reservation is done, its episode (20 s -> 60 s) ends.
        event(6, at(seconds=50), "RESERVATION_COMMITTED", "r1"),
        event(
            7,
            at(seconds=60),
            "RESERVATION_FULFILLED",
            "r1",
            state="FULFILLED",
            lines=[{"line_id": "l2", "quantity": 1}],
        ),
    ]
    report = kpi.compute_kpis(events)
    assert report.at_risk_ended_by == {"released": 1, "fulfilled": 1}
    assert report.mean_seconds_at_risk == pytest.approx((30 + 40) / 2)
    assert report.at_risk_episodes_open == 0
    assert (report.units_requested, report.units_fulfilled) == (3, 1)


def test_an_empty_journal_has_no_rates() -> None:
    report = kpi.compute_kpis([])
    assert report.fill_rate is None
    assert report.promises_kept_share is None
    assert report.mean_seconds_at_risk is None
    document = report.to_dict()
    assert document["fill_rate"]["rate"] is None
    assert document["outcomes"] == dict.fromkeys(kpi.OUTCOME_STATES, 0)
    assert ("fill rate", "n/a (0 of 0 units shipped)") in kpi.report_rows(report)


def test_events_are_taken_in_sequence_order() -> None:
    events = journal()
    shuffled = events[10:] + events[:10]
    assert (
        kpi.compute_kpis(shuffled, until=UNTIL).to_dict()
        == kpi.compute_kpis(events, until=UNTIL).to_dict()
    )


def test_report_as_json_and_rows() -> None:
    report = kpi.compute_kpis(journal(), until=UNTIL)
    document = json.loads(json.dumps(report.to_dict()))
    assert document["window"] == {
        "since": None,
        "until": "2030-01-15T00:00:00Z",
        "as_of": "2030-01-15T00:00:00Z",
    }
    assert document["fill_rate"] == {
        "rate": pytest.approx(11 / 23),
        "units_fulfilled": 11,
        "units_requested": 23,
    }
    assert document["promises"]["kept_share"] == 0.25
    assert document["at_risk"]["mean_seconds"] == 870.0
    rows = dict(kpi.report_rows(report))
    assert rows["fill rate"] == "47.8% (11 of 23 units shipped)"
    assert rows["promises kept"].startswith("25.0% (1 of 4;")
    assert rows["mean time at risk"] == "870.0 s (2 episodes ended, 1 still at risk)"
    assert rows["outcome FULFILLED"] == "2"


def test_decode_event_from_the_wire_message() -> None:
    message = events_pb2.Event(
        sequence=7,
        time=timestamp_pb2.Timestamp(seconds=1_894_276_800, nanos=500_000_000),
        type="BACKORDER_FILLED",
        reservation_id="r2",
        sku="A",
    )
    message.data.update({"reservation_id": "r2", "line_id": "l1", "filled": 2, "remaining": 0})
    decoded = kpi.decode_event(message)
    assert decoded.sequence == 7
    assert decoded.time == datetime.datetime(2030, 1, 10, 12, 0, 0, 500_000, tzinfo=datetime.UTC)
    assert decoded.data == {"reservation_id": "r2", "line_id": "l1", "filled": 2, "remaining": 0}
    assert isinstance(decoded.data["filled"], int)  # the Struct's 2.0 comes back as 2
    assert kpi.event_from_dict(decoded.to_dict()) == decoded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-10", datetime.datetime(2030, 1, 10, tzinfo=datetime.UTC)),
        ("2030-01-10T12:30:00Z", datetime.datetime(2030, 1, 10, 12, 30, tzinfo=datetime.UTC)),
        ("2030-01-10T12:30", datetime.datetime(2030, 1, 10, 12, 30, tzinfo=datetime.UTC)),
        ("2030-01-10T14:30+02:00", datetime.datetime(2030, 1, 10, 12, 30, tzinfo=datetime.UTC)),
    ],
)
def test_parse_instant(text: str, expected: datetime.datetime) -> None:
    assert kpi.parse_instant(text) == expected


def test_parse_instant_says_what_it_expects() -> None:
    with pytest.raises(ValueError, match="expected an ISO date or date-time"):
        kpi.parse_instant("yesterday")
