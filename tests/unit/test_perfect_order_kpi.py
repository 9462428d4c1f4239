"""The perfect-order KPIs (atp.kpi) over hand-made DELIVERY_RECORDED events: each expected
rate below is worked out by hand, as an exact fraction."""

from __future__ import annotations

import datetime
import json
from fractions import Fraction
from typing import Any

from google.protobuf import struct_pb2

from atp import kpi
from atp.v1 import events_pb2

T0 = datetime.datetime(2030, 1, 10, 10, 0, tzinfo=datetime.UTC)
PROMISE = "2030-01-12"


def at(hours: float) -> datetime.datetime:
    return T0 + datetime.timedelta(hours=hours)


def delivered(
    sequence: int, rid: str, *, channel: str, customer: str, date: str = "2030-01-11",
    units: int = 4, ordered: int = 4, damaged: int = 0, documents: bool = True,
    promise: str | None = PROMISE, hours: float = 0,
) -> dict[str, Any]:
    data = {
        "reservation_id": rid, "channel": channel, "customer_id": customer,
        "delivered_date": date, "units_delivered": units, "damaged_units": damaged,
        "documentation_correct": documents, "units_ordered": ordered,
        "first_promise_date": promise,
    }
    return {
        "sequence": sequence, "time": at(hours).isoformat(), "type": "DELIVERY_RECORDED",
        "reservation_id": rid,
        # Numbers as the journal's Struct gives them (floats), as `atpctl watch --json` prints.
        "data": json.loads(json.dumps(data), parse_int=float),
    }


def journal() -> list[dict[str, Any]]:
    """Four orders in channel web, two in store; customers c1 and c2."""
    return [
        # w1: on time (01-11 <= 01-12), in full, undamaged, paperwork right: perfect.
        delivered(1, "w1", channel="web", customer="c1"),
        # w2: late (01-13 > 01-12); the rest met.
        delivered(2, "w2", channel="web", customer="c1", date="2030-01-13"),
        # w3: first recorded perfect, then corrected: 3 of 4 units, paperwork wrong.
        delivered(3, "w3", channel="web", customer="c2"),
        delivered(7, "w3", channel="web", customer="c2", units=3, documents=False, hours=5),
        # w4: on time on the promise day itself, in full (5 >= 4), 1 unit damaged.
        delivered(4, "w4", channel="web", customer="c2", date=PROMISE, units=5, damaged=1),
        # s1: no promise date: not judged on time; in full, undamaged, paperwork right.
        delivered(5, "s1", channel="store", customer="c1", promise=None),
        # s2: perfect.
        delivered(6, "s2", channel="store", customer="c2"),
    ]


def test_the_web_channel_four_orders_by_hand() -> None:
    web = kpi.compute_kpis(journal()).perfect_order_by_channel["web"]
    assert web.orders == 4
    assert web.on_time_rate == Fraction(3, 4)  # w1, w3, w4 of 4
    assert web.in_full_rate == Fraction(3, 4)  # w1, w2, w4 (w3 corrected to 3 of 4)
    assert web.damage_free_rate == Fraction(3, 4)  # all but w4
    assert web.documentation_accurate_rate == Fraction(3, 4)  # all but w3 (corrected)
    assert web.perfect_order_rate == Fraction(81, 256)  # (3/4)^4
    assert web.all_four_share == Fraction(1, 4)  # w1 only
    assert web.all_four == 1


def test_an_order_without_a_promise_date_is_not_judged_on_time() -> None:
    store = kpi.compute_kpis(journal()).perfect_order_by_channel["store"]
    assert (store.orders, store.on_time_judged, store.on_time) == (2, 1, 1)
    assert store.on_time_rate == 1 and store.in_full_rate == 1
    assert store.perfect_order_rate == 1
    assert store.all_four_share == 1  # s2 of the one judged on all four


def test_overall_and_per_customer_by_hand() -> None:
    report = kpi.compute_kpis(journal())
    overall = report.perfect_order
    assert overall.orders == 6
    assert overall.on_time_rate == Fraction(4, 5)  # judged: all but s1
    assert overall.in_full_rate == Fraction(5, 6)
    assert overall.damage_free_rate == Fraction(5, 6)
    assert overall.documentation_accurate_rate == Fraction(5, 6)
    assert overall.perfect_order_rate == Fraction(4, 5) * Fraction(5, 6) ** 3 == Fraction(25, 54)
    assert overall.all_four_share == Fraction(2, 5)  # w1, s2
    c1, c2 = report.perfect_order_by_customer["c1"], report.perfect_order_by_customer["c2"]
    # c1: w1, w2, s1.  c2: w3, w4, s2.
    assert (c1.on_time_rate, c1.in_full_rate, c1.perfect_order_rate, c1.all_four_share) == (
        Fraction(1, 2), Fraction(1), Fraction(1, 2), Fraction(1, 2))
    assert (c2.on_time_rate, c2.in_full_rate, c2.damage_free_rate,
            c2.documentation_accurate_rate) == (
        Fraction(1), Fraction(2, 3), Fraction(2, 3), Fraction(2, 3))
    assert c2.perfect_order_rate == Fraction(8, 27)
    assert c2.all_four_share == Fraction(1, 3)


def test_the_window_picks_the_records_made_in_it_and_the_latest_there_wins() -> None:
    events = journal()
    # Until before w3's correction (5 h after T0): its first record, perfect, stands.
    before = kpi.compute_kpis(events, until=at(4)).perfect_order_by_channel["web"]
    assert before.in_full_rate == 1 and before.all_four_share == Fraction(2, 4)
    # Since after every first record: only w3's correction is in the window.
    later = kpi.compute_kpis(events, since=at(1)).perfect_order
    assert later.orders == 1 and later.in_full_rate == 0 and later.on_time_rate == 1


def test_nothing_recorded_has_no_rates() -> None:
    report = kpi.compute_kpis([])
    assert report.perfect_order.perfect_order_rate is None
    assert report.perfect_order.all_four_share is None
    document = report.to_dict()["perfect_order"]
    assert document["orders"] == 0 and document["perfect_order_rate"] is None
    rows = dict(kpi.report_rows(report))
    assert rows["perfect order rate"].startswith("n/a")


def test_the_report_as_json_and_rows() -> None:
    report = kpi.compute_kpis(journal())
    document = json.loads(json.dumps(report.to_dict(by=("channel", "customer"))))
    perfect = document["perfect_order"]
    assert perfect["orders"] == 6
    assert perfect["perfect_order_rate"] == float(Fraction(25, 54))
    assert perfect["on_time"] == {"rate": 0.8, "met": 4, "judged": 5, "not_judged": 1}
    assert perfect["by_channel"]["web"]["perfect_order_rate"] == 81 / 256
    assert set(perfect["by_customer"]) == {"c1", "c2"}
    assert "by_channel" not in report.to_dict()["perfect_order"]
    rows = dict(kpi.report_rows(report))
    assert rows["deliveries recorded"] == "6"
    assert rows["on time"] == "80.0% (4 of 5); 1 without a promise date, not judged"
    assert rows["in full"] == "83.3% (5 of 6)"
    assert rows["perfect order rate"].startswith("46.3% ")
    assert rows["perfect on all four"] == "40.0% (2 of 5)"
    table = kpi.perfect_order_table_rows(report.perfect_order_by_channel)
    assert table == [
        ("store", 2, "100.0%", "100.0%", "100.0%", "100.0%", "100.0%", "100.0%"),
        ("web", 4, "75.0%", "75.0%", "75.0%", "75.0%", "31.6%", "25.0%"),
    ]


def test_a_wire_event_decodes_with_a_null_promise_and_false_paperwork() -> None:
    message = events_pb2.Event(sequence=1, type="DELIVERY_RECORDED", reservation_id="x")
    message.time.FromDatetime(T0.replace(tzinfo=None))
    data = struct_pb2.Struct()
    data.update({"reservation_id": "x", "channel": "", "customer_id": "",
                 "delivered_date": "2030-01-11", "units_delivered": 2, "damaged_units": 0,
                 "documentation_correct": False, "units_ordered": 2,
                 "first_promise_date": None})
    message.data.CopyFrom(data)
    measures = kpi.compute_kpis([kpi.decode_event(message)]).perfect_order_by_channel[""]
    assert (measures.on_time_judged, measures.in_full, measures.documentation_accurate) == (
        0, 1, 0)


# ----- promises kept vs broken: judged against the first promise date -------------------------


def test_promises_are_judged_against_the_date_the_reservation_was_created_with() -> None:
    def created(sequence: int, rid: str) -> dict[str, Any]:
        line = {"line_id": "l1", "sku": "A", "node_id": "DC1", "quantity": 2.0,
                "ship_date": PROMISE, "backordered": 0.0}
        return {"sequence": sequence, "time": at(0).isoformat(), "type": "RESERVATION_CREATED",
                "reservation_id": rid, "data": {"state": "COMMITTED", "lines": [line]}}

    def fulfilled(sequence: int, rid: str, when: datetime.datetime) -> dict[str, Any]:
        return {"sequence": sequence, "time": when.isoformat(), "type": "RESERVATION_FULFILLED",
                "reservation_id": rid,
                "data": {"state": "FULFILLED", "lines": [
                    {"line_id": "l1", "sku": "A", "node_id": "DC1", "quantity": 2.0}]}}

    events = [
        created(1, "kept"), created(2, "late"), created(3, "slipped"),
        # Re-sourced to ship a day earlier (not a slip): still judged against 01-12.
        {"sequence": 4, "time": at(1).isoformat(), "type": "RESERVATION_REALLOCATED",
         "reservation_id": "kept",
         "data": {"slipped": False, "new_promise_date": "2030-01-11"}},
        fulfilled(5, "kept", datetime.datetime(2030, 1, 12, 9, tzinfo=datetime.UTC)),
        fulfilled(6, "late", datetime.datetime(2030, 1, 13, 9, tzinfo=datetime.UTC)),
        # A slip breaks the promise, even if shipped by the first date.
        {"sequence": 7, "time": at(1).isoformat(), "type": "RESERVATION_REALLOCATED",
         "reservation_id": "slipped",
         "data": {"slipped": True, "new_promise_date": "2030-01-14"}},
        fulfilled(8, "slipped", datetime.datetime(2030, 1, 12, 9, tzinfo=datetime.UTC)),
    ]
    report = kpi.compute_kpis(events)
    assert (report.promises_kept, report.promises_late, report.promises_slipped) == (1, 1, 1)
