"""Typed event payloads: atp.v1.Event's `payload` oneof, built from a journal event's data.

Watch streams are a hot path: each payload is built straight from the journal record's dict
(as keyword arguments that the message constructor takes, nested messages as dicts, in C),
without a JSON round trip. Keys follow ledger/event_data.py and the handlers' emit() calls;
the typed fields take the resource messages' names (`backordered` is
`backordered_quantity`, ...). Every value is read with .get(): events journaled by an older
version lack some keys, and a missing one leaves its field unset rather than failing the
stream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date

from atp.v1 import common_pb2, events_pb2

Data = Mapping[str, Any]
Fields = dict[str, Any]

_MOVEMENT_TYPES: dict[str, int] = dict(events_pb2.StockMoved.Type.items())
_SUPPLY_STATES: dict[str, int] = dict(common_pb2.Supply.State.items())
_RESERVATION_STATES: dict[str, int] = dict(common_pb2.Reservation.State.items())


@functools.lru_cache(maxsize=4096)
def _date_of(iso: str) -> Date:
    """A Date of an ISO day (YYYY-MM-DD), cached: events name a few distinct days. Shared:
    the message constructor copies it."""
    return Date(year=int(iso[0:4]), month=int(iso[5:7]), day=int(iso[8:10]))


def _date(iso: object) -> Date | None:
    return _date_of(iso) if isinstance(iso, str) and len(iso) == 10 else None


def _node_upserted(d: Data) -> Fields:
    return {"node_id": d.get("node_id"), "active": d.get("active")}


def _stock_moved(d: Data) -> Fields:
    get = d.get
    return {
        "sku": get("sku"), "node_id": get("node_id"),
        "type": _MOVEMENT_TYPES.get(get("movement"), 0),  # type: ignore[arg-type]
        "quantity": get("quantity"), "delta": get("delta"), "on_hand": get("on_hand"),
        "to_node_id": get("to_node_id"), "from_node_id": get("from_node_id"),
        "reason": get("reason"),
    }


def _safety_stock_set(d: Data) -> Fields:
    return {"sku": d.get("sku"), "node_id": d.get("node_id"), "quantity": d.get("quantity")}


def _supply(d: Data) -> Fields:
    get = d.get
    return {
        "supply_id": get("supply_id"), "sku": get("sku"), "node_id": get("node_id"),
        "quantity": get("quantity"), "expected_date": _date(get("expected_date")),
        "state": _SUPPLY_STATES.get(get("state"), 0),  # type: ignore[arg-type]
    }


def _supply_updated(d: Data) -> Fields:
    fields = _supply(d)
    fields["slipped"] = d.get("slipped")
    return fields


def _supply_received(d: Data) -> Fields:
    fields = _supply(d)
    fields["receipt_quantity"] = d.get("received")
    fields["on_hand"] = d.get("on_hand")
    return fields


def _hold(d: Data) -> Fields:
    get = d.get
    return {
        "hold_id": get("hold_id"), "sku": get("sku"), "node_id": get("node_id"),
        "quantity": get("quantity"), "reason": get("reason"), "force": get("force"),
    }


def _lines(d: Data) -> list[Fields]:
    """ReservationEventLine fields of the event's lines (event_data.line)."""
    return [
        {
            "line_id": line.get("line_id"), "sku": line.get("sku"),
            "node_id": line.get("node_id"), "quantity": line.get("quantity"),
            "ship_date": _date(line.get("ship_date")),
            "backordered_quantity": line.get("backordered"),
        }
        for line in d.get("lines") or ()
    ]


def _line_units(d: Data) -> list[Fields]:
    """LineUnits fields of a release's or fulfillment's lines (event_data.line_quantity)."""
    return [
        {
            "line_id": line.get("line_id"), "sku": line.get("sku"),
            "node_id": line.get("node_id"), "quantity": line.get("quantity"),
        }
        for line in d.get("lines") or ()
    ]


def _reservation_state(d: Data) -> int:
    return _RESERVATION_STATES.get(d.get("state"), 0)  # type: ignore[arg-type]


def _reservation_created(d: Data) -> Fields:
    return {"reservation_id": d.get("reservation_id"), "state": _reservation_state(d),
            "lines": _lines(d), "first_promise_date": _date(d.get("first_promise_date"))}


def _reservation_lines(d: Data) -> Fields:
    """RESERVATION_COMMITTED and RESERVATION_EXPIRED."""
    return {"reservation_id": d.get("reservation_id"), "lines": _lines(d)}


def _reservation_units(d: Data) -> Fields:
    """RESERVATION_RELEASED and RESERVATION_FULFILLED."""
    return {"reservation_id": d.get("reservation_id"), "state": _reservation_state(d),
            "lines": _line_units(d)}


def _reservation_reallocated(d: Data) -> Fields:
    get = d.get
    return {
        "reservation_id": get("reservation_id"),
        "old_promise_date": _date(get("old_promise_date")),
        "new_promise_date": _date(get("new_promise_date")),
        "slipped": get("slipped"), "unfilled_quantity": get("unfilled"), "lines": _lines(d),
    }


def _reservation_extended(d: Data) -> Fields:
    expire_time = d.get("expire_time")
    fields: Fields = {
        "reservation_id": d.get("reservation_id"), "ttl_seconds": d.get("ttl_seconds"),
    }
    if isinstance(expire_time, str):
        fields["expire_time"] = _timestamp(expire_time)
    return fields


def _timestamp(text: str) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromJsonString(text)
    return timestamp


def _backorder_filled(d: Data) -> Fields:
    get = d.get
    return {
        "reservation_id": get("reservation_id"), "line_id": get("line_id"), "sku": get("sku"),
        "filled_quantity": get("filled"), "backordered_quantity": get("remaining"),
    }


def _line_risk(d: Data) -> Fields:
    get = d.get
    return {
        "reservation_id": get("reservation_id"), "line_id": get("line_id"), "sku": get("sku"),
        "node_id": get("node_id"), "quantity": get("quantity"),
    }


def _line_at_risk(d: Data) -> Fields:
    fields = _line_risk(d)
    fields["at_risk_reason"] = d.get("reason")
    fields["decided_by"] = d.get("decided_by")
    return fields


def _delivery_recorded(d: Data) -> Fields:
    get = d.get
    return {
        "reservation_id": get("reservation_id"), "channel": get("channel"),
        "customer_id": get("customer_id"), "delivered_date": _date(get("delivered_date")),
        "units_delivered": get("units_delivered"), "damaged_units": get("damaged_units"),
        "documentation_correct": get("documentation_correct"),
        "units_ordered": get("units_ordered"),
        "first_promise_date": _date(get("first_promise_date")),
    }


def _allocation_policy_set(d: Data) -> Fields:
    get = d.get
    return {"sku": get("sku"), "node_id": get("node_id"), "criteria": get("criteria"),
            "channel_ranks": get("channel_ranks")}


def _channel_allocation_set(d: Data) -> Fields:
    get = d.get
    return {
        "sku": get("sku"), "node_id": get("node_id"), "channel": get("channel"),
        "quantity": get("quantity"), "share": get("share"), "end_date": _date(get("end_date")),
    }


def _stock_level(d: Data) -> Fields:
    get = d.get
    return {"sku": get("sku"), "node_id": get("node_id"), "on_hand": get("on_hand"),
            "safety_stock": get("safety_stock")}


# Event type -> (its `payload` member, the builder of that member's fields).
PAYLOADS: dict[str, tuple[str, Callable[[Data], Fields]]] = {
    "NODE_UPSERTED": ("node_upserted", _node_upserted),
    "STOCK_MOVED": ("stock_moved", _stock_moved),
    "SAFETY_STOCK_SET": ("safety_stock_set", _safety_stock_set),
    "SUPPLY_CREATED": ("supply_created", _supply),
    "SUPPLY_UPDATED": ("supply_updated", _supply_updated),
    "SUPPLY_RECEIVED": ("supply_received", _supply_received),
    "HOLD_PLACED": ("hold_placed", _hold),
    "HOLD_RELEASED": ("hold_released", _hold),
    "HOLD_EXPIRED": ("hold_expired", _hold),
    "RESERVATION_CREATED": ("reservation_created", _reservation_created),
    "RESERVATION_COMMITTED": ("reservation_committed", _reservation_lines),
    "RESERVATION_RELEASED": ("reservation_released", _reservation_units),
    "RESERVATION_FULFILLED": ("reservation_fulfilled", _reservation_units),
    "RESERVATION_EXPIRED": ("reservation_expired", _reservation_lines),
    "RESERVATION_REALLOCATED": ("reservation_reallocated", _reservation_reallocated),
    "RESERVATION_EXTENDED": ("reservation_extended", _reservation_extended),
    "BACKORDER_FILLED": ("backorder_filled", _backorder_filled),
    "LINE_AT_RISK": ("line_at_risk", _line_at_risk),
    "LINE_RECOVERED": ("line_recovered", _line_risk),
    "POSITION_OUT_OF_STOCK": ("position_out_of_stock", _stock_level),
    "POSITION_BACK_IN_STOCK": ("position_back_in_stock", _stock_level),
    "POSITION_BELOW_SAFETY_STOCK": ("position_below_safety_stock", _stock_level),
    "DELIVERY_RECORDED": ("delivery_recorded", _delivery_recorded),
    "ALLOCATION_POLICY_SET": ("allocation_policy_set", _allocation_policy_set),
    "CHANNEL_ALLOCATION_SET": ("channel_allocation_set", _channel_allocation_set),
}

def payload_fields(event_type: str, data: Data) -> Fields:
    """{member: its fields} to pass to the Event constructor; {} for a type without one (an
    event type journaled by a newer version)."""
    entry = PAYLOADS.get(event_type)
    if entry is None:
        return {}
    return {entry[0]: entry[1](data)}
