"""Which demand of a position is at risk (docs/architecture.md, "At-risk demand").

The position's open lines are placed in policy order (priority descending, then creation
time, then ids for determinism) against its supply: on_hand today plus inbound supply on its
dates, less holds. A line that no longer fits at its ship date is at risk. Safety stock is a
promising buffer, not demand, so it does not put placed lines at risk.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from atp.ledger.model import Day, Position, Reservation

LineKey = tuple[str, str]  # (reservation_id, line_id)


def lines_at_risk(
    position: Position, reservations: Mapping[str, Reservation], today: Day
) -> set[LineKey]:
    """The open lines of the position that do not fit when placed in policy order."""
    supply = _supply_deltas(position)
    days = sorted({today, *(max(day, today) for day in supply), *(
        max(line.ship_day, today) for line in position.lines.values())})
    net = _cumulative(position.on_hand - position.held, supply, days, today)
    at_risk: set[LineKey] = set()
    for key in sorted(position.lines, key=lambda k: policy_order(reservations[k[0]], k[1])):
        line = position.lines[key]
        start = bisect.bisect_left(days, max(line.ship_day, today))
        quantity = line.open_quantity
        if min(net[start:]) >= quantity:
            for index in range(start, len(net)):
                net[index] -= quantity
        else:
            at_risk.add(key)
    return at_risk


def policy_order(reservation: Reservation, line_id: str) -> tuple[int, int, str, str]:
    """Sort key: priority descending, then creation (FIFO), then ids."""
    return (-reservation.priority, reservation.create_sequence, reservation.reservation_id, line_id)


def _supply_deltas(position: Position) -> dict[Day, int]:
    """The position's dated deltas without its demand: inbound supply only."""
    supply = dict(position.deltas)
    for line in position.lines.values():
        supply[line.ship_day] = supply.get(line.ship_day, 0) + line.open_quantity
    return {day: amount for day, amount in supply.items() if amount}


def _cumulative(base: int, deltas: dict[Day, int], days: list[Day], today: Day) -> list[int]:
    """net supply on each of `days` (deltas dated before today count as today)."""
    by_day: dict[Day, int] = {}
    for day, amount in deltas.items():
        effective = max(day, today)
        by_day[effective] = by_day.get(effective, 0) + amount
    result = []
    running = base
    for day in days:
        running += by_day.get(day, 0)
        result.append(running)
    return result
