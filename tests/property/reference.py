"""A plain-dict reference model of the ledger, written from the contract alone.

It shares no code with src/atp/ledger: quantities are recomputed from the model's own records
on every question, and ATP is the naive formula of docs/contract.md evaluated day by day.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (sku, node_id)

HELD = "HELD"
COMMITTED = "COMMITTED"
FULFILLED = "FULFILLED"
RELEASED = "RELEASED"
EXPIRED = "EXPIRED"
OPEN_STATES = (HELD, COMMITTED)


def ordinal(date: tuple[int, int, int]) -> int:
    return datetime.date(*date).toordinal()


def date_of(day: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(day)
    return (value.year, value.month, value.day)


def day_of_instant(now: float) -> int:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).date().toordinal()


@dataclass
class ModelLine:
    line_id: str
    sku: str
    node_id: str
    quantity: int
    ship_day: int
    released: int = 0
    fulfilled: int = 0

    @property
    def key(self) -> Key:
        return (self.sku, self.node_id)

    @property
    def open(self) -> int:
        return self.quantity - self.released - self.fulfilled


@dataclass
class ModelReservation:
    command: Any
    state: str
    lines: list[ModelLine]
    expire_time: float | None

    def line(self, line_id: str) -> ModelLine | None:
        return next((line for line in self.lines if line.line_id == line_id), None)


@dataclass
class ModelHold:
    command: Any
    active: bool = True


@dataclass
class ModelSupply:
    sku: str
    node_id: str
    quantity: int  # still open (not received)
    day: int
    received: int = 0
    state: str = "OPEN"


@dataclass
class ModelPosition:
    on_hand: int = 0
    safety_stock: int = 0


@dataclass
class Model:
    nodes: dict[str, tuple[int, bool]] = field(default_factory=dict)  # node -> (handling, active)
    positions: dict[Key, ModelPosition] = field(default_factory=dict)
    reservations: dict[str, ModelReservation] = field(default_factory=dict)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    supplies: dict[str, ModelSupply] = field(default_factory=dict)
    requests: dict[str, Any] = field(default_factory=dict)  # request_id -> first command

    # ----- sums over records ------------------------------------------------------------------

    def known_skus(self) -> set[str]:
        return {sku for sku, _ in self.positions}

    def open_lines(self, key: Key) -> list[tuple[str, ModelLine]]:
        return [
            (reservation.state, line)
            for reservation in self.reservations.values()
            if reservation.state in OPEN_STATES
            for line in reservation.lines
            if line.key == key and line.open > 0
        ]

    def reserved(self, key: Key) -> int:
        return sum(line.open for state, line in self.open_lines(key) if state == HELD)

    def allocated(self, key: Key) -> int:
        return sum(line.open for state, line in self.open_lines(key) if state == COMMITTED)

    def held(self, key: Key) -> int:
        return sum(
            hold.command.quantity
            for hold in self.holds.values()
            if hold.active and (hold.command.sku, hold.command.node_id) == key
        )

    def open_supply(self, key: Key) -> list[ModelSupply]:
        return [
            supply
            for supply in self.supplies.values()
            if (supply.sku, supply.node_id) == key and supply.quantity > 0
        ]

    def inbound(self, key: Key) -> int:
        return sum(supply.quantity for supply in self.open_supply(key))

    # ----- the naive ATP formula --------------------------------------------------------------

    def dated(self, key: Key, today: int, extra: Sequence[tuple[Key, int, int]] = ()) -> list[tuple[int, int]]:
        """(day, signed units) of every supply and demand at the position; the past is today."""
        events = [(max(supply.day, today), supply.quantity) for supply in self.open_supply(key)]
        events += [(max(line.ship_day, today), -line.open) for _, line in self.open_lines(key)]
        events += [(max(day, today), amount) for extra_key, day, amount in extra if extra_key == key]
        return events

    def net(
        self, key: Key, today: int, t: int, include_safety_stock: bool,
        on_hand: int | None = None, extra: Sequence[tuple[Key, int, int]] = (),
    ) -> int:
        """net(t) = S(t) - D(t) - held - safety_stock, summed from scratch."""
        dated = self.dated(key, today, extra)
        return self.undated(key, include_safety_stock, on_hand) + net_by(dated, t)

    def undated(self, key: Key, include_safety_stock: bool, on_hand: int | None = None) -> int:
        """The terms of net(t) that do not depend on t: on hand - held - safety stock."""
        position = self.positions.get(key, ModelPosition())
        base = position.on_hand if on_hand is None else on_hand
        safety = 0 if include_safety_stock else position.safety_stock
        return base - self.held(key) - safety

    def last_day(self, key: Key, today: int, extra: Sequence[tuple[Key, int, int]] = ()) -> int:
        return max([today] + [day for day, _ in self.dated(key, today, extra)])

    def atp(
        self, key: Key, today: int, day: int, include_safety_stock: bool,
        on_hand: int | None = None, extra: Sequence[tuple[Key, int, int]] = (),
    ) -> int:
        """ATP(d) = min over t >= d of net(t); net is constant after the last dated event."""
        last = max(day, self.last_day(key, today, extra))
        return min(
            self.net(key, today, t, include_safety_stock, on_hand, extra)
            for t in range(max(day, today), last + 1)
        )

    def atp_table(self, key: Key, today: int, last: int, include_safety_stock: bool) -> dict[int, int]:
        """{d: ATP(d)} for today <= d <= last (at least), each net(t) summed from scratch once
        (over the dated events listed once: listing them per t made this the model test's
        slowest step)."""
        dated = self.dated(key, today)
        end = max(last, today, *(day for day, _ in dated))
        undated = self.undated(key, include_safety_stock)
        nets = [undated + net_by(dated, t) for t in range(today, end + 1)]
        return {today + index: min(nets[index:]) for index in range(len(nets))}

    def earliest(
        self, key: Key, today: int, not_before: int, quantity: int, include_safety_stock: bool,
        extra: Sequence[tuple[Key, int, int]] = (),
    ) -> int | None:
        last = max(not_before, self.last_day(key, today, extra))
        for day in range(not_before, last + 1):
            if self.atp(key, today, day, include_safety_stock, extra=extra) >= quantity:
                return day
        return None


def net_by(dated: Sequence[tuple[int, int]], t: int) -> int:
    """The signed units of the dated supply and demand due on or before day t."""
    return sum(amount for day, amount in dated if day <= t)

