"""Tables and views: how atpctl shows nodes, positions, reservations and plans to people."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from atp.v1 import availability_pb2, common_pb2, reservations_pb2


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns separated by two spaces; integer columns right-aligned."""
    data = [list(row) for row in rows]
    if not data:
        return "  ".join(headers) + "\n(none)"
    numeric = [
        all(isinstance(row[index], int) and not isinstance(row[index], bool) for row in data)
        for index in range(len(headers))
    ]
    cells = [list(headers)] + [[plain_text(value) for value in row] for row in data]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = []
    for row in cells:
        aligned = [
            cell.rjust(width) if is_numeric else cell.ljust(width)
            for cell, width, is_numeric in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(aligned).rstrip())
    return "\n".join(lines)

def plain_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())

def date_text(date: Any) -> str:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}" if date.year else ""

def _time_text(message: Message, field: str) -> str:
    if not message.HasField(field):
        return ""
    moment = getattr(message, field).ToDatetime(tzinfo=datetime.UTC)
    return str(moment.strftime("%Y-%m-%d %H:%M:%SZ"))

def lane_text(lane: common_pb2.Lane) -> str:
    return f"{lane.region}:{lane.transit_days}" + (f":{lane.cost}" if lane.cost else "")

POSITION_HEADERS = (
    "SKU", "NODE", "ON_HAND", "ALLOCATED", "RESERVED", "HELD", "SAFETY_STOCK", "INBOUND",
    "AVAILABLE", "SHORT",
)  # fmt: skip

def positions_table(
    positions: Iterable[common_pb2.Position],
    totals: Iterable[availability_pb2.NetworkAvailability] = (),
) -> str:
    rows: list[tuple[Any, ...]] = [
        (
            position.sku, position.node_id, position.on_hand, position.allocated,
            position.reserved, position.held, position.safety_stock, position.inbound,
            position.available, position.short,
        )
        for position in positions
    ]  # fmt: skip
    rows += [
        (
            total.sku, "(network)", total.on_hand, total.allocated, total.reserved, total.held,
            total.safety_stock, total.inbound, total.available, "",
        )
        for total in totals
    ]  # fmt: skip
    return format_table(POSITION_HEADERS, rows)

def timeline_table(positions: Iterable[common_pb2.Position]) -> str:
    rows = [
        (position.sku, position.node_id, date_text(bucket.date), bucket.available)
        for position in positions
        for bucket in position.timeline
    ]
    return format_table(("SKU", "NODE", "FROM", "AVAILABLE"), rows)

def holds_table(
    holds: Iterable[common_pb2.Hold], *, state: str = "ACTIVE", held: int | None = None
) -> str:
    """Holds with their state; a released hold (its wire quantity is 0) shows `held`, the
    units it held, when known."""
    rows = [
        (
            hold.hold_id, hold.sku, hold.node_id,
            hold.quantity if state == "ACTIVE" else ("" if held is None else held),
            hold.force, state, _time_text(hold, "expire_time"), hold.reason,
        )
        for hold in holds
    ]  # fmt: skip
    headers = ("HOLD", "SKU", "NODE", "QUANTITY", "FORCED", "STATE", "EXPIRES", "REASON")
    return format_table(headers, rows)


def reservation_state_name(reservation: common_pb2.Reservation) -> str:
    return str(common_pb2.Reservation.State.Name(reservation.state))

def reservations_table(reservations: Iterable[common_pb2.Reservation]) -> str:
    rows = [
        (
            reservation.reservation_id,
            reservation_state_name(reservation),
            len(reservation.lines),
            sum(line.quantity for line in reservation.lines),
            date_text(reservation.promise_date),
            any(line.at_risk for line in reservation.lines),
            _time_text(reservation, "expire_time"),
        )
        for reservation in reservations
    ]
    headers = ("RESERVATION", "STATE", "LINES", "UNITS", "PROMISE_DATE", "AT_RISK", "EXPIRES")
    return format_table(headers, rows)

def reservation_view(reservation: common_pb2.Reservation) -> str:
    fields = [
        ("reservation", reservation.reservation_id),
        ("state", reservation_state_name(reservation)),
        ("version", str(reservation.version or "")),
        ("promise date", date_text(reservation.promise_date)),
        ("destination", reservation.destination_region),
        ("priority", str(reservation.priority)),
        ("channel", reservation.channel),
        ("customer", reservation.customer_id),
        ("created", _time_text(reservation, "create_time")),
        ("expires", _time_text(reservation, "expire_time")),
        ("delivery", delivery_text(reservation)),
    ]
    heading = format_table(("FIELD", "VALUE"), [(name, value) for name, value in fields if value])
    return heading.split("\n", 1)[1] + "\n\n" + _reservation_lines_table(reservation.lines)

def delivery_text(reservation: common_pb2.Reservation) -> str:
    """The recorded delivery outcome, e.g. "2026-12-05: 4 units, 1 damaged, documentation
    wrong" ("" when none is recorded)."""
    if not reservation.HasField("delivery"):
        return ""
    delivery = reservation.delivery
    text = (f"{date_text(delivery.delivered_date)}: "
            f"{plural(delivery.units_delivered, 'unit')}")
    if delivery.damaged_units:
        text += f", {delivery.damaged_units} damaged"
    if not delivery.documentation_correct:
        text += ", documentation wrong"
    return text

def _reservation_lines_table(lines: Iterable[common_pb2.ReservationLine]) -> str:
    rows = [
        (
            line.line_id,
            f"{line.sku} (substitute for {line.substitute_for})" if line.substitute_for
            else line.sku,
            line.node_id, line.quantity, line.fulfilled_quantity,
            line.released_quantity, line.backordered_quantity, date_text(line.ship_date),
            date_text(line.delivery_date), line.from_inbound, line.at_risk,
        )
        for line in lines
    ]  # fmt: skip
    headers = (
        "LINE", "SKU", "NODE", "QUANTITY", "FULFILLED", "RELEASED", "BACKORDERED", "SHIP_DATE",
        "DELIVERY_DATE", "INBOUND", "AT_RISK",
    )  # fmt: skip
    return format_table(headers, rows)

def reallocation_view(
    response: reservations_pb2.ReallocateResponse,
    scope: Mapping[str, Any] | None = None,
    *,
    stale: bool = False,
) -> str:
    """The plan per reservation: promise dates, slip, unfilled units, each move old -> new."""
    if not response.plans:
        return "nothing to reallocate: no at-risk line in scope"
    blocks = [_plan_block(plan) for plan in response.plans]
    slipped = sum(1 for plan in response.plans if plan.slipped)
    unfilled = sum(plan.unfilled_quantity for plan in response.plans)
    summary = (
        f"{plural(len(response.plans), 'reservation')}, {slipped} slipped, "
        f"{plural(unfilled, 'unit')} unfilled (plan sequence {response.plan_sequence})"
    )
    if response.applied:
        footer = f"applied: {summary}"
    elif stale:
        footer = f"NOT applied: {summary}"
    else:
        footer = (
            f"dry run: {summary}\nto apply exactly this plan: atpctl reallocate --apply "
            f"--plan-sequence {response.plan_sequence}{scope_arguments(scope or {})}"
        )
    return "\n\n".join([*blocks, footer])

def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")

def scope_arguments(scope: Mapping[str, Any]) -> str:
    parts = []
    if scope.get("node_id"):
        parts.append(f" --node {scope['node_id']}")
    if scope.get("sku"):
        parts.append(f" --sku {scope['sku']}")
    if scope.get("reservation_ids"):
        parts.append(" --ids " + " ".join(scope["reservation_ids"]))
    return "".join(parts)

def _plan_block(plan: reservations_pb2.ReallocationPlan) -> str:
    old_promise = date_text(plan.old_promise_date) or "none"
    new_promise = date_text(plan.new_promise_date) or "none"
    heading = (
        f"reservation {plan.reservation_id}: promise {old_promise} -> {new_promise}, "
        f"slipped: {plain_text(plan.slipped)}, unfilled: {plan.unfilled_quantity}"
    )
    if plan.decided_by:  # the allocation-policy criterion that put it after the plan before
        heading += f", after the previous by {plan.decided_by}"
    moves = [
        (old.line_id, old.sku, _line_place(old), "->", " + ".join(_line_place(n) for n in new))
        for old, new in _line_moves(plan)
    ]
    if not moves:
        return heading + "\n  (no line moves)"
    table = format_table(("LINE", "SKU", "NOW", "", "AFTER"), moves)
    return heading + "\n" + "\n".join("  " + row for row in table.split("\n"))

def _line_moves(
    plan: reservations_pb2.ReallocationPlan,
) -> list[tuple[common_pb2.ReservationLine, list[common_pb2.ReservationLine]]]:
    """Each old line that changes, with the new lines that carry its units (l1, l1/2, ...)."""
    old_ids = {line.line_id for line in plan.old_lines}
    new_by_id = {line.line_id: line for line in plan.new_lines}
    moves = []
    for old in plan.old_lines:
        same = new_by_id.get(old.line_id)
        parts = [
            line for line in plan.new_lines
            if line.line_id.startswith(old.line_id + "/") and line.line_id not in old_ids
        ]  # fmt: skip
        unchanged = same is not None and not parts and _placement(same) == _placement(old)
        if unchanged:
            continue
        moves.append((old, ([same] if same is not None else []) + parts))
    return moves

def _placement(line: common_pb2.ReservationLine) -> tuple[Any, ...]:
    return (
        line.node_id, line.quantity, date_text(line.ship_date), date_text(line.delivery_date),
        line.backordered_quantity,
    )  # fmt: skip

def _line_place(line: common_pb2.ReservationLine) -> str:
    """4 @ DC2 ship 2026-01-02 deliver 2026-01-04 (+2 backordered)."""
    if line.node_id:
        text = f"{line.quantity} @ {line.node_id}"
        if line.ship_date.year:
            text += f" ship {date_text(line.ship_date)}"
        if line.delivery_date.year:
            text += f" deliver {date_text(line.delivery_date)}"
    else:
        text = "no node"
    if line.backordered_quantity:
        text += f" (+{line.backordered_quantity} backordered)"
    return text
