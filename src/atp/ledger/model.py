"""The ledger's records: nodes, positions, supply, holds and reservations.

Days are proleptic ordinals (datetime.date.toordinal()); instants are epoch seconds (float).
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

Day = int
EPOCH_ORDINAL = 719163  # datetime.date(1970, 1, 1).toordinal()


def day_of(now: float) -> Day:
    """The UTC calendar day of an instant, as an ordinal."""
    return int(now // 86400) + EPOCH_ORDINAL


class ReservationState(enum.Enum):
    HELD = "HELD"
    COMMITTED = "COMMITTED"
    FULFILLED = "FULFILLED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"

    # Members are singletons compared by identity, so identity hashing is exact; Enum's own
    # __hash__ is a Python call (hash of the name), ~0.7 us of every reserve through the
    # per-state counts (a Counter keyed by state) on Python 3.11.
    __hash__ = object.__hash__


# The open states as module names: reading a member off its Enum class costs ~160 ns on
# Python 3.11 (the class's __getattr__ path), a module global ~15 ns (timeit); the ledger
# tests a reservation's state on every command.
HELD = ReservationState.HELD
COMMITTED = ReservationState.COMMITTED
OPEN_RESERVATION_STATES = (HELD, COMMITTED)


class SupplyState(enum.Enum):
    OPEN = "OPEN"
    RECEIVED = "RECEIVED"
    CANCELLED = "CANCELLED"


class MovementType(enum.Enum):
    RECEIPT = "RECEIPT"
    RETURN = "RETURN"
    SHRINKAGE = "SHRINKAGE"
    DAMAGE = "DAMAGE"
    CYCLE_COUNT = "CYCLE_COUNT"
    TRANSFER = "TRANSFER"


class Objective(enum.Enum):
    EARLIEST = "EARLIEST"
    CHEAPEST = "CHEAPEST"


@dataclass(frozen=True, slots=True)
class Lane:
    region: str
    transit_days: int
    cost: int = 0


@dataclass(slots=True)
class Node:
    node_id: str
    kind: str = "DC"
    region: str = ""
    active: bool = True
    handling_days: int = 0
    lanes: tuple[Lane, ...] = ()

    def lane_to(self, region: str) -> Lane | None:
        for lane in self.lanes:
            if lane.region == region:
                return lane
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    ship_complete: bool = False
    max_nodes: int = 0
    allow_partial: bool = False
    objective: Objective = Objective.EARLIEST

    def __reduce__(self) -> tuple[Callable[..., Policy], tuple[bool, int, bool, str]]:
        # Pickled as its values, unpickled through a cache: every Reserve a gateway sends
        # carries a Policy, and the default pickling of a frozen slots dataclass (and of its
        # enum) runs Python code on each; a cache hit is one C call.
        return policy_of, (self.ship_complete, self.max_nodes, self.allow_partial,
                           self.objective._value_)


@functools.lru_cache(maxsize=256)
def policy_of(ship_complete: bool, max_nodes: int, allow_partial: bool, objective: str) -> Policy:
    """The Policy of these values (objective by its value): one shared instance per
    combination, which is safe as a Policy is frozen. Unpickling a Policy comes here."""
    return Policy(ship_complete, max_nodes, allow_partial, Objective(objective))


@dataclass(slots=True)
class ReservationLine:
    line_id: str
    sku: str
    node_id: str
    quantity: int
    ship_day: Day
    delivery_day: Day | None = None
    fulfilled_quantity: int = 0
    released_quantity: int = 0
    backordered_quantity: int = 0
    from_inbound: bool = False
    at_risk: bool = False
    at_risk_reason: str = ""
    # The Reserve request's line this one holds part of, when the request's line was split
    # across nodes (its first part keeps the request's line id, the others get l1/2, l1/3,
    # ...; a line moved by Reallocate or filled from backorder likewise). "" for a line that
    # is its request's own line (request_line_of gives the id either way).
    request_line_id: str = ""
    # What one unit is worth to the business (minor units): the VALUE allocation criterion.
    unit_value: int = 0
    # The SKU the request asked for, when this line holds a substitute for it ("" otherwise).
    substitute_for: str = ""

    @property
    def request_line_of(self) -> str:
        """The id of the request's line this line holds (part of)."""
        return self.request_line_id or self.line_id

    @property
    def open_quantity(self) -> int:
        """Units still demanded at the node: neither shipped nor released."""
        return self.quantity - self.fulfilled_quantity - self.released_quantity


@dataclass(frozen=True, slots=True)
class Delivery:
    """A reservation's delivery outcome, for the perfect-order KPIs."""

    delivered_day: Day
    units_delivered: int
    damaged_units: int = 0
    documentation_correct: bool = True
    record_time: float = 0.0


@dataclass(slots=True)
class Reservation:
    reservation_id: str
    state: ReservationState
    lines: list[ReservationLine]
    create_time: float
    expire_time: float | None
    priority: int = 0
    channel: str = ""
    customer_id: str = ""
    destination_region: str = ""
    policy: Policy = Policy()
    request_digest: str = ""
    create_sequence: int = 0
    # When it closed (FULFILLED, RELEASED, EXPIRED): its closed-retention window starts then.
    close_time: float | None = None
    # Changes with every change of the reservation (1 when created): a caller that read it
    # may make its Commit/Release/Fulfill/Extend conditional on it (expected_version).
    version: int = 0
    # The promise day it was created with (promise_day then; never moves): the DUE_DATE
    # allocation criterion and the on-time KPI judge by it. None when nothing was dated.
    first_promise_day: Day | None = None
    # What reached the customer, once recorded (RecordDelivery).
    delivery: Delivery | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_RESERVATION_STATES

    def line(self, line_id: str) -> ReservationLine | None:
        for line in self.lines:
            if line.line_id == line_id:
                return line
        return None

    @property
    def promise_day(self) -> Day | None:
        return promise_day_of(self.lines)

    def __reduce__(self) -> tuple[Callable[..., Reservation], tuple[Any, ...]]:
        # Pickled as plain values (the writer pickles every Reserve's answer for its gateway):
        # the default pickling of slots dataclasses writes every field's name for each object
        # and pickles the state enum with a Python call; this is one call for the reservation,
        # with C-built tuples for its lines (see reservation_from).
        values = _RESERVATION_VALUES(self)
        lines = [_LINE_VALUES(line) for line in self.lines]
        return reservation_from, (values[0], self.state._value_, lines, *values[3:])


# Every field's value in field order, read in C: a field added later is pickled with the rest.
_LINE_VALUES = operator.attrgetter(*(each.name for each in fields(ReservationLine)))
_RESERVATION_VALUES = operator.attrgetter(*(each.name for each in fields(Reservation)))
# A state by its value: a dict lookup, where calling the enum runs Python code (unpickling
# and decoding a reservation come here).
RESERVATION_STATES_BY_VALUE = {state._value_: state for state in ReservationState}


def reservation_from(
    reservation_id: str, state: str, lines: list[tuple[Any, ...]], *rest: Any
) -> Reservation:
    """A pickled Reservation back (Reservation.__reduce__): its fields in order, the state by
    value, the lines as tuples of their fields."""
    return Reservation(reservation_id, RESERVATION_STATES_BY_VALUE[state],
                       [ReservationLine(*line) for line in lines], *rest)


def promise_day_of(lines: list[ReservationLine]) -> Day | None:
    """The latest delivery day of the lines (ship day where a line has no delivery day)."""
    days = [
        line.delivery_day if line.delivery_day is not None else line.ship_day
        for line in lines
        if line.quantity > 0
    ]
    return max(days) if days else None


@dataclass(slots=True)
class Supply:
    supply_id: str
    sku: str
    node_id: str
    quantity: int
    expected_day: Day
    received_quantity: int = 0
    state: SupplyState = SupplyState.OPEN


@dataclass(slots=True)
class Hold:
    hold_id: str
    sku: str
    node_id: str
    quantity: int
    reason: str
    expire_time: float | None
    force: bool
    create_time: float
    active: bool = True
    request_digest: str = ""
    # When it was released or expired: its closed-retention window starts then.
    end_time: float | None = None


@dataclass(slots=True)
class RequestRecord:
    """An idempotency key already used: the digest of the request that used it, and when."""

    digest: str
    time: float


@dataclass(slots=True)
class Event:
    sequence: int
    time: float
    type: str
    data: dict[str, object]
    # Who made the change (the caller's authenticated principal; "" for the engine itself,
    # e.g. expiry, or when atpd runs without authentication): the audit trail.
    principal: str = ""


# Every type of journal event the ledger emits (Watch refuses filters naming any other).
EVENT_TYPES = frozenset({
    "NODE_UPSERTED", "STOCK_MOVED", "SAFETY_STOCK_SET",
    "SUPPLY_CREATED", "SUPPLY_UPDATED", "SUPPLY_RECEIVED",
    "HOLD_PLACED", "HOLD_RELEASED", "HOLD_EXPIRED",
    "RESERVATION_CREATED", "RESERVATION_COMMITTED", "RESERVATION_RELEASED",
    "RESERVATION_FULFILLED", "RESERVATION_EXPIRED", "RESERVATION_REALLOCATED",
    "RESERVATION_EXTENDED",
    "BACKORDER_FILLED", "LINE_AT_RISK", "LINE_RECOVERED",
    "POSITION_OUT_OF_STOCK", "POSITION_BACK_IN_STOCK", "POSITION_BELOW_SAFETY_STOCK",
    "DELIVERY_RECORDED", "ALLOCATION_POLICY_SET", "CHANNEL_ALLOCATION_SET",
})


NO_LINES: frozenset[tuple[str, str]] = frozenset()


@dataclass(eq=False, slots=True)
class Position:
    """Stock of one SKU at one node, with the dated deltas its ATP timeline is built from.

    Only on_hand and safety_stock are stored; the other quantities are sums over the
    reservation lines, holds and supply that reference the position, kept incrementally.
    """

    sku: str
    node_id: str
    on_hand: int = 0
    safety_stock: int = 0
    allocated: int = 0
    reserved: int = 0
    held: int = 0
    inbound: int = 0
    # Day -> supply minus demand dated that day (inbound supply +, reservation lines -). A
    # plain dict: positions hold few distinct days, and sorting a few items beats a tree.
    deltas: dict[Day, int] = field(default_factory=dict)
    # Day -> open inbound supply expected that day (the supply part of deltas).
    supply_days: dict[Day, int] = field(default_factory=dict)
    # Open reservation lines at this position, keyed by (reservation_id, line_id).
    lines: dict[tuple[str, str], ReservationLine] = field(default_factory=dict)
    # Keys of the open lines that are at risk. Replaced, never changed in place, so the
    # million positions with none can share one empty frozenset.
    at_risk: frozenset[tuple[str, str]] = NO_LINES
    # (available > 0, below safety stock) as last announced; None until first evaluated.
    stock_flags: tuple[bool, bool] | None = None
    # Lines of recount the per-command audit has earned towards this position's next one
    # (invariants.position_problems, limits.audit_lines_per_touch).
    audit_budget: int = field(default=0, repr=False)

    def add_delta(self, day: Day, amount: int) -> None:
        _add(self.deltas, day, amount)

    def add_supply(self, day: Day, amount: int) -> None:
        """Inbound supply expected on `day` (negative: less of it)."""
        self.inbound += amount
        _add(self.deltas, day, amount)
        _add(self.supply_days, day, amount)

    @property
    def key(self) -> tuple[str, str]:
        return (self.sku, self.node_id)


def _add(by_day: dict[Day, int], day: Day, amount: int) -> None:
    total = by_day.get(day, 0) + amount
    if total:
        by_day[day] = total
    else:
        by_day.pop(day, None)


@dataclass(frozen=True, slots=True)
class ChannelAllocation:
    """A channel's allocation (quota) of a SKU (atp.ledger.quotas says what it does)."""

    sku: str
    node_id: str  # "" across every node of the SKU
    channel: str
    quantity: int = 0  # units fenced; or, when 0,
    share: float = 0.0  # a share of the scope's supply, in (0, 1]
    end_day: Day | None = None  # the last day it is fenced

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.channel)

    @property
    def removed(self) -> bool:
        return not self.quantity and not self.share

    def in_force(self, today: Day) -> bool:
        return self.end_day is None or today <= self.end_day
