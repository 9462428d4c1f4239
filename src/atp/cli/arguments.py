"""Argument types: the shapes atpctl reads from the command line (lines, lanes, dates...)."""

from __future__ import annotations

import argparse
import datetime
import re
from typing import Any

from atp import kpi, limits
from atp.v1 import common_pb2

LINE_PATTERN = re.compile(
    r"^(?P<line_id>[^:]+):(?P<sku>.+):(?P<quantity>\d+)"
    r"(?:@(?P<node_id>[^@/]+))?(?:/(?P<ship_date>\d{4}-\d{2}-\d{2}))?$"
)

ORDER_LINE_PATTERN = re.compile(r"^(?P<line_id>[^:]+):(?P<sku>.+):(?P<quantity>\d+)$")

LINE_QUANTITY_PATTERN = re.compile(r"^(?P<line_id>.+)=(?P<quantity>\d+)$")

LANE_PATTERN = re.compile(r"^(?P<region>[^:]+):(?P<transit_days>\d+)(?::(?P<cost>\d+))?$")

MOVEMENT_TYPES_BY_HAND = ("RECEIPT", "RETURN", "SHRINKAGE", "DAMAGE")

RESERVATION_STATES = tuple(
    common_pb2.Reservation.State.Name(value)
    for value in common_pb2.Reservation.State.values()
    if value
)

RESERVATION_LIST_LIMIT_DEFAULT = 100

PAGE_SIZE_MAX = limits.page_size_max

def positive_int(text: str) -> int:
    value = _whole_number(text)
    if not value:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value

def whole_count(text: str) -> int:
    value = _whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value

def _whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None

def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value

def instant(text: str) -> datetime.datetime:
    try:
        return kpi.parse_instant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None

def event_types(text: str) -> list[str]:
    types = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not types or not all(re.fullmatch(r"[A-Z0-9_]+", item) for item in types):
        raise argparse.ArgumentTypeError(f"expected event types like LINE_AT_RISK, got {text!r}")
    return types

def date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None

def _matched(pattern: re.Pattern[str], text: str, shape: str) -> dict[str, str]:
    match = pattern.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")
    return {name: value for name, value in match.groupdict().items() if value is not None}

def reservation_line(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = _matched(LINE_PATTERN, text, "LINE_ID:SKU:QTY[@NODE][/YYYY-MM-DD]")
    fields["quantity"] = positive_int(fields["quantity"])
    if "ship_date" in fields:
        fields["ship_date"] = date(fields["ship_date"])
    return fields

def order_line(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = _matched(ORDER_LINE_PATTERN, text, "LINE_ID:SKU:QTY")
    fields["quantity"] = positive_int(fields["quantity"])
    return fields

def line_quantity(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = _matched(LINE_QUANTITY_PATTERN, text, "LINE_ID=QTY")
    fields["quantity"] = positive_int(fields["quantity"])
    return fields

def lane(text: str) -> dict[str, Any]:
    fields = _matched(LANE_PATTERN, text, "REGION:TRANSIT_DAYS[:COST]")
    transit_days = int(fields["transit_days"])
    if transit_days > limits.days_max:
        raise argparse.ArgumentTypeError(
            f"transit days are 0..{limits.days_max}, got {transit_days} in {text!r}"
        )
    return {
        "region": fields["region"],
        "transit_days": transit_days,
        "cost": int(fields.get("cost", "0")),
    }


NODE_KIND_PATTERN = re.compile(rf"^[A-Z0-9_]{{1,{limits.node_kind_chars_max}}}$")


def node_kind(text: str) -> str:
    """A node kind the server takes: 1..32 characters of A-Z, 0-9 and _ in either case (the
    server folds it to upper case)."""
    if not (text.isascii() and NODE_KIND_PATTERN.match(text.upper())):
        raise argparse.ArgumentTypeError(
            f"expected 1..{limits.node_kind_chars_max} characters of A-Z, 0-9 and _ "
            f"(DC, STORE, 3PL...), got {text!r}"
        )
    return text
