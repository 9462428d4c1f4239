"""Commands: the only way to change the ledger. Plain, immutable values built by the edge.

Their repr is deterministic, so a digest of it identifies "the same request" for idempotency.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from atp.ledger.model import Lane, Policy

Date = tuple[int, int, int]  # (year, month, day) as received; validated by the ledger


@dataclass(frozen=True)
class UpsertNode:
    node_id: str
    kind: str = ""
    region: str = ""
    active: bool = True
    handling_days: int = 0
    lanes: tuple[Lane, ...] = ()


@dataclass(frozen=True)
class Movement:
    sku: str
    node_id: str
    type: str
    quantity: int
    to_node_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class AdjustStock:
    request_id: str
    movements: tuple[Movement, ...]


@dataclass(frozen=True)
class SetSafetyStock:
    sku: str
    node_id: str
    quantity: int


@dataclass(frozen=True)
class UpsertSupply:
    supply_id: str
    sku: str
    node_id: str
    quantity: int
    expected_date: Date | None


@dataclass(frozen=True)
class ReceiveSupply:
    request_id: str
    supply_id: str
    quantity: int


@dataclass(frozen=True)
class PlaceHold:
    hold_id: str
    sku: str
    node_id: str
    quantity: int
    reason: str = ""
    expire_time: float | None = None
    force: bool = False


@dataclass(frozen=True)
class ReleaseHold:
    hold_id: str


class LineRequest(NamedTuple):
    """A NamedTuple, not a frozen dataclass, like Reserve: built for every line reserved,
    and a NamedTuple is built in under half the time."""

    line_id: str
    sku: str
    quantity: int
    node_id: str = ""
    ship_date: Date | None = None
    # What one unit is worth (margin or revenue, minor units): the VALUE allocation criterion.
    unit_value: int = 0
    # Substitute SKUs in preference order (taken only when the Reserve allows substitution),
    # and the latest acceptable delivery (ship) date that decides when the line's own SKU is
    # not good enough.
    substitute_skus: tuple[str, ...] = ()
    need_by_date: Date | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return _pickled_tuple(self)


def _pickled_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    """How the NamedTuples a gateway sends the writer for every reserve pickle: rebuilt by
    tuple.__new__ (C) rather than by their generated Python __new__ (writer_step: loading a
    node-given Reserve ~5.4 -> ~3.4 us on a slow day; a test holds them equal)."""
    return tuple.__new__, (type(value), tuple(value))


class Reserve(NamedTuple):
    reservation_id: str
    lines: tuple[LineRequest, ...]
    destination_region: str = ""
    policy: Policy = Policy()  # Policy is frozen: one shared default is safe
    ttl_seconds: int = 0
    commit: bool = False
    priority: int = 0
    channel: str = ""
    customer_id: str = ""
    allow_substitution: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        return _pickled_tuple(self)


@dataclass(frozen=True)
class LineQuantity:
    line_id: str
    quantity: int


@dataclass(frozen=True)
class Commit:
    reservation_id: str
    request_id: str
    # Refused (VERSION_MISMATCH) unless the reservation is at this version; 0: not checked.
    # A precondition, not content: out of repr, so out of the request's digest (a retry is
    # the same request, and digests taken before versions existed still match).
    expected_version: int = field(default=0, repr=False)


@dataclass(frozen=True)
class Release:
    reservation_id: str
    request_id: str
    lines: tuple[LineQuantity, ...] = ()
    expected_version: int = field(default=0, repr=False)  # as Commit's


@dataclass(frozen=True)
class Fulfill:
    reservation_id: str
    request_id: str
    lines: tuple[LineQuantity, ...] = ()
    expected_version: int = field(default=0, repr=False)  # as Commit's


@dataclass(frozen=True)
class Extend:
    """Moves a HELD reservation's expiry to ttl_seconds from now (0: the server's default
    TTL); never earlier than it already was."""

    reservation_id: str
    request_id: str
    ttl_seconds: int = 0
    expected_version: int = field(default=0, repr=False)  # as Commit's


@dataclass(frozen=True)
class Reallocate:
    """Re-sources the at-risk lines in scope (all at-risk lines when the scope is empty)."""

    node_id: str = ""
    sku: str = ""
    reservation_ids: tuple[str, ...] = ()
    # Refuse (PLAN_STALE) unless the ledger is still at this sequence; 0 plans afresh.
    plan_sequence: int = 0


@dataclass(frozen=True)
class RecordDelivery:
    """What reached the customer for a reservation that shipped (the perfect-order KPIs):
    a later record with another request_id replaces the earlier one (a correction)."""

    reservation_id: str
    request_id: str
    delivered_date: Date | None
    units_delivered: int
    damaged_units: int = 0
    documentation_correct: bool = True


@dataclass(frozen=True)
class ExpireDue:
    """Expires HELD reservations and holds whose expire_time has passed (issued by the clock),
    the earliest first, at most `limit` of them (0: all) so that a large backlog (after a
    clock step, say) is worked off in slices between other commands."""

    limit: int = 0


@dataclass(frozen=True)
class SetAllocationPolicy:
    """Sets the allocation policy of a SKU (node_id "") or of a SKU at a node; no criteria
    removes it. Criteria by name (PRIORITY, CHANNEL_RANK, VALUE, DUE_DATE, FIFO), as given:
    the handler validates them."""

    sku: str
    node_id: str = ""
    criteria: tuple[str, ...] = ()
    channel_ranks: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetChannelAllocation:
    """Sets (or, quantity and share both 0, removes) a channel's allocation of a SKU."""

    sku: str
    node_id: str
    channel: str
    quantity: int = 0
    share: float = 0.0
    end_date: Date | None = None


class PlannedReserve(NamedTuple):
    """A Reserve whose lines (all sourced: none names a node) a gateway of `atpd --gateways
    N` planned on its copy of the ledger, as it was at commit `planned_at` on `day`. The
    ledger takes `plan` only if nothing the plan read has changed since (the lines' SKUs'
    positions, the nodes, the day), and plans itself otherwise: the result is the same
    either way. The request is `reserve`'s: its digest, its replays."""

    reserve: Reserve
    plan: object  # a promising.OrderPlan (commands do not import the planner)
    planned_at: int
    day: int


class VettedReserve(NamedTuple):
    """A Reserve a gateway of `atpd --gateways N` found plain (validation.is_plain_reserve:
    every field within its limits, no ship or need-by date, no substitutes), with its request
    digest: the writer neither checks it again nor digests it, work the gateways share out
    (both ends run one atpd's code). `reserve` is a Reserve or a PlannedReserve."""

    reserve: Reserve | PlannedReserve
    digest: str

    def __reduce__(self) -> tuple[Any, ...]:
        return _pickled_tuple(self)


Command = (
    UpsertNode
    | AdjustStock
    | SetSafetyStock
    | UpsertSupply
    | ReceiveSupply
    | PlaceHold
    | ReleaseHold
    | Reserve
    | Commit
    | Release
    | Fulfill
    | Extend
    | Reallocate
    | ExpireDue
    | SetAllocationPolicy
    | RecordDelivery
    | SetChannelAllocation
    | PlannedReserve
    | VettedReserve
)


def digest(command: Command) -> str:
    """Identifies a request's content: same digest, same request."""
    text = _reserve_text(command) if isinstance(command, Reserve) else repr(command)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _reserve_text(command: Reserve) -> str:
    """Reserve's content as a repr of plain tuples (without field names), the text digests
    have always been taken of: (line_id, sku, quantity, node_id, ship_date) per line.

    Built piece by piece rather than by repr() of the nested tuple, which costs ~31,000
    instructions (callgrind) a reserve, most of it repr's recursion guard on each of the
    tuples; tests/property/test_digest_text.py holds it equal to that repr."""
    policy = command.policy
    lines = [_line_text(line) for line in command.lines]
    # repr() of the tuple of lines: a tuple of one has a trailing comma.
    lines_text = f"({lines[0]},)" if len(lines) == 1 else f"({', '.join(lines)})"
    return (
        f"('Reserve', {command.reservation_id!r}, {lines_text}, "
        f"{command.destination_region!r}, ({policy.ship_complete!r}, {policy.max_nodes!r}, "
        # _value_ is enum's documented sunder name for the value; .value is a property:
        # 290 ns against 20 ns a read on Python 3.11 (timeit), on every reserve.
        f"{policy.allow_partial!r}, {policy.objective._value_!r}), {command.ttl_seconds!r}, "
        f"{command.commit!r}, {command.priority!r}, {command.channel!r}, "
        f"{command.customer_id!r}{', True' if command.allow_substitution else ''})"
    )


def _line_text(line: LineRequest) -> str:
    """repr((line_id, sku, quantity, node_id, ship_date)) of one line (with unit_value,
    substitute_skus and need_by_date after them when any is set)."""
    date = line.ship_date
    date_text = "None" if date is None else repr(date)
    # The fields added later follow only when set, so a request that sets none keeps the
    # digest it always had (a stored reservation's digest decides what a retry is).
    if line.unit_value or line.substitute_skus or line.need_by_date is not None:
        date_text += (f", {line.unit_value!r}, {line.substitute_skus!r}, "
                      f"{line.need_by_date!r}")
    return (f"({line.line_id!r}, {line.sku!r}, {line.quantity!r}, {line.node_id!r}, "
            f"{date_text})")

