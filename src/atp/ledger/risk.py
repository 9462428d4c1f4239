"""Which demand of a position is at risk (docs/architecture.md, "At-risk demand").

The position's open lines are placed in the order of the position's allocation policy
(atp.ledger.allocation_policy; by default priority descending, then creation time, then ids
for determinism) against its supply: on_hand today plus inbound supply on its dates, less
holds. A line that no longer fits at its ship date is at risk. Safety stock is a promising
buffer, not demand, so it does not put placed lines at risk.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import NamedTuple

from atp.ledger.allocation_policy import DEFAULT_POLICY, AllocationPolicy, SortKey
from atp.ledger.model import Day, Position, Reservation

LineKey = tuple[str, str]  # (reservation_id, line_id)


class Placed(NamedTuple):
    """One open line of a position, in policy order: whether it fits, and the criterion
    that placed it after the last line ahead of it that fits ("" when none does)."""

    key: LineKey
    sort_key: SortKey
    fits: bool
    decided_by: str


def lines_at_risk(
    position: Position, reservations: Mapping[str, Reservation], today: Day,
    policy: AllocationPolicy = DEFAULT_POLICY,
) -> set[LineKey]:
    """The open lines of the position that do not fit when placed in policy order."""
    return {placed.key for placed in place_lines(position, reservations, today, policy)
            if not placed.fits}


def place_lines(
    position: Position, reservations: Mapping[str, Reservation], today: Day,
    policy: AllocationPolicy = DEFAULT_POLICY,
) -> list[Placed]:
    """The position's open lines in policy order, each placed against what the lines ahead
    of it left of the supply at its ship date."""
    supply = _supply_deltas(position)
    days = sorted({today, *(max(day, today) for day in supply), *(
        max(line.ship_day, today) for line in position.lines.values())})
    net = _cumulative(position.on_hand - position.held, supply, days, today)
    keyed = sorted(
        (policy.key(reservations[key[0]], line), key) for key, line in position.lines.items())
    placed: list[Placed] = []
    last_fit: SortKey | None = None
    for sort_key, key in keyed:
        line = position.lines[key]
        start = bisect.bisect_left(days, max(line.ship_day, today))
        quantity = line.open_quantity
        if min(net[start:]) >= quantity:
            for index in range(start, len(net)):
                net[index] -= quantity
            placed.append(Placed(key, sort_key, True, ""))
            last_fit = sort_key
        else:
            decided = "" if last_fit is None else policy.deciding(last_fit, sort_key)
            placed.append(Placed(key, sort_key, False, decided))
    return placed


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
