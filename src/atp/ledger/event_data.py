"""The data of journal events, built from the records a command changed (one shape per kind
of record, shared by every handler that announces a change to it)."""

from __future__ import annotations

import datetime
import functools

from atp.ledger import commands
from atp.ledger.model import Day, Hold, Position, ReservationLine, Supply

EventData = dict[str, object]


@functools.lru_cache(maxsize=4096)
def iso(day: Day) -> str:
    """Cached: every reservation event names its lines' ship dates, a few distinct days."""
    return datetime.date.fromordinal(day).isoformat()


def iso_or_none(day: Day | None) -> str | None:
    return iso(day) if day is not None else None


def instant(seconds: float) -> str:
    """A wall-clock time as RFC 3339 in UTC, e.g. 2026-12-03T21:00:00.250000Z."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def movement(movement: commands.Movement, position: Position, delta: int) -> EventData:
    return {
        "sku": movement.sku,
        "node_id": movement.node_id,
        "movement": movement.type,
        "quantity": movement.quantity,
        "delta": delta,
        "on_hand": position.on_hand,
        "to_node_id": movement.to_node_id,
        "reason": movement.reason,
    }


def transfer_in(movement: commands.Movement, target: Position) -> EventData:
    return {
        "sku": movement.sku,
        "node_id": movement.to_node_id,
        "movement": "TRANSFER_IN",
        "quantity": movement.quantity,
        "delta": movement.quantity,
        "on_hand": target.on_hand,
        "from_node_id": movement.node_id,
        "reason": movement.reason,
    }


def supply(supply: Supply) -> EventData:
    return {
        "supply_id": supply.supply_id,
        "sku": supply.sku,
        "node_id": supply.node_id,
        "quantity": supply.quantity,
        "expected_date": iso(supply.expected_day),
        "state": supply.state.value,
    }


def hold(hold: Hold) -> EventData:
    return {
        "hold_id": hold.hold_id,
        "sku": hold.sku,
        "node_id": hold.node_id,
        "quantity": hold.quantity,
        "force": hold.force,
        "reason": hold.reason,
    }


def line_quantity(line: ReservationLine, quantity: int) -> EventData:
    return {"line_id": line.line_id, "sku": line.sku, "node_id": line.node_id, "quantity": quantity}


def line(line: ReservationLine) -> EventData:
    data: EventData = {
        "line_id": line.line_id,
        "sku": line.sku,
        "node_id": line.node_id,
        "quantity": line.quantity,
        "ship_date": iso(line.ship_day),
        "backordered": line.backordered_quantity,
    }
    if line.substitute_for:  # only when set: the journal of every other line stays as it was
        data["substitute_for"] = line.substitute_for
    return data
