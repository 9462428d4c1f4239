"""Allocation policies: the order in which demand competing for scarce stock is served
(docs/allocation.md).

A policy is an ordered list of criteria; demand is served by the first criterion, ties by the
next, and the reservation and line ids always break what is left, so that every order is
deterministic. The same order decides, everywhere stock is divided: which lines of a
position go at risk when it falls short (risk.lines_at_risk), which backorders are filled
first when supply arrives, and the order in which Reallocate re-sources reservations
(reallocation.Reallocator).

The server default (PRIORITY, FIFO) is the order the ledger always had: priority descending,
then creation, then ids.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from atp.ledger.model import Day, Reservation, ReservationLine

T = TypeVar("T")
# A line's place in a policy's order: one int per criterion, then the ids (tie-break).
SortKey = tuple[int | str, ...]
TIE_BREAK = "TIE_BREAK"
# The most channels a policy ranks.
CHANNEL_RANKS_MAX = 100
# DUE_DATE for demand with no promise date: after every dated one.
_NO_DUE_DAY = 1 << 40


class Criterion(enum.Enum):
    """The criteria, named as in the contract (AllocationPolicy.Criterion)."""

    PRIORITY = "PRIORITY"  # the reservation's priority, highest first
    CHANNEL_RANK = "CHANNEL_RANK"  # the reservation's channel, in channel_ranks order
    VALUE = "VALUE"  # the line's unit_value, highest first
    DUE_DATE = "DUE_DATE"  # the reservation's first promise day, earliest first (none: last)
    FIFO = "FIFO"  # creation order, oldest first


class Source(enum.Enum):
    """Where the policy in force for a position comes from."""

    SERVER_DEFAULT = "SERVER_DEFAULT"
    SKU_POLICY = "SKU_POLICY"
    NODE_POLICY = "NODE_POLICY"


@dataclass(frozen=True, slots=True)
class AllocationPolicy:
    criteria: tuple[Criterion, ...]
    # For CHANNEL_RANK: the channels in the order they are served.
    channel_ranks: tuple[str, ...] = ()

    @property
    def criterion_names(self) -> list[str]:
        return [criterion.value for criterion in self.criteria]

    def key(self, reservation: Reservation, line: ReservationLine) -> SortKey:
        """The line's place in this policy's order (smaller is served first)."""
        return tuple(
            [self._value(criterion, reservation, line) for criterion in self.criteria]
            + [reservation.reservation_id, line.line_id]
        )

    def _value(self, criterion: Criterion, reservation: Reservation, line: ReservationLine) -> int:
        if criterion is Criterion.PRIORITY:
            return -reservation.priority
        if criterion is Criterion.CHANNEL_RANK:
            return self.channel_rank(reservation.channel)
        if criterion is Criterion.VALUE:
            return -line.unit_value
        if criterion is Criterion.DUE_DATE:
            day = reservation.first_promise_day
            return _NO_DUE_DAY if day is None else day
        return reservation.create_sequence

    def channel_rank(self, channel: str) -> int:
        """A channel's place in channel_ranks; unlisted (or no channel): after every listed."""
        try:
            return self.channel_ranks.index(channel) if channel else len(self.channel_ranks)
        except ValueError:
            return len(self.channel_ranks)

    def deciding(self, before: SortKey, after: SortKey) -> str:
        """The criterion that separates two keys of this policy (the first that differs)."""
        for index, criterion in enumerate(self.criteria):
            if before[index] != after[index]:
                return criterion.value
        return TIE_BREAK


# The server default: the order the ledger always served demand in.
DEFAULT_POLICY = AllocationPolicy((Criterion.PRIORITY, Criterion.FIFO))


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    """The policy that applies to a SKU at a node (node "" for the SKU as a whole), and where
    it comes from: SetAllocationPolicy's result, and GetAllocationPolicy's answer."""

    sku: str
    node_id: str
    policy: AllocationPolicy
    source: Source


def parse_criteria(text: str) -> tuple[Criterion, ...]:
    """Comma-separated criterion names, any case (`value,priority,fifo`); ValueError naming
    the problem otherwise."""
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("give at least one criterion: " + ", ".join(c.value for c in Criterion))
    criteria = []
    for name in names:
        try:
            criteria.append(Criterion(name))
        except ValueError:
            raise ValueError(f"{name.lower()!r} is not a criterion; one of "
                             + ", ".join(c.value.lower() for c in Criterion)) from None
    if len(set(criteria)) != len(criteria):
        raise ValueError("each criterion may be named once")
    return tuple(criteria)


def policy_problem(policy: AllocationPolicy) -> str:
    """Why a policy cannot stand ("" when it can): the rules SetAllocationPolicy and
    --allocation-policy share beyond the criteria themselves."""
    if Criterion.CHANNEL_RANK in policy.criteria and not policy.channel_ranks:
        return "CHANNEL_RANK needs channel_ranks: the channels in the order they are served"
    if policy.channel_ranks and Criterion.CHANNEL_RANK not in policy.criteria:
        return "channel_ranks are used only by CHANNEL_RANK, which the criteria do not name"
    if len(set(policy.channel_ranks)) != len(policy.channel_ranks):
        return "each channel may be ranked once"
    return ""


def detail(
    criterion: str, before: tuple[Reservation, ReservationLine],
    after: tuple[Reservation, ReservationLine],
) -> str:
    """One sentence for people on why `after` is served after `before`."""
    (r1, l1), (r2, l2) = before, after
    if criterion == Criterion.PRIORITY.value:
        return f"priority {r2.priority} after {r1.priority}"
    if criterion == Criterion.CHANNEL_RANK.value:
        return f"channel {r2.channel or '(none)'} ranks after {r1.channel or '(none)'}"
    if criterion == Criterion.VALUE.value:
        return f"value {l2.unit_value} after {l1.unit_value}"
    if criterion == Criterion.DUE_DATE.value:
        return f"due {_iso(r2.first_promise_day)} after {_iso(r1.first_promise_day)}"
    if criterion == Criterion.FIFO.value:
        return "created later"
    return "tie-break on ids"


def _iso(day: Day | None) -> str:
    return "none" if day is None else datetime.date.fromordinal(day).isoformat()


def merge_orders(
    items: Sequence[T],
    policy_of: Callable[[T], AllocationPolicy],
    key_of: Callable[[AllocationPolicy, T], SortKey],
    identity: Callable[[T], Hashable],
    default: AllocationPolicy,
) -> list[tuple[T, str]]:
    """Items (each competing under the policy `policy_of` gives it) in serving order, each
    once (the first of items sharing an identity), with the criterion that placed it after
    the one before ("" for the first).

    Items under one policy: exactly that policy's order. Items under several (node policies
    that differ): each policy's items keep their own order, and at each step the next item
    of every policy competes under `default`, since no one policy may judge the others'
    demand. An item whose identity came out already is skipped.
    """
    groups: dict[AllocationPolicy, list[tuple[SortKey, T]]] = {}
    for item in items:
        policy = policy_of(item)
        groups.setdefault(policy, []).append((key_of(policy, item), item))
    for keyed in groups.values():
        keyed.sort(key=lambda pair: pair[0])
    if len(groups) <= 1:
        return _single(groups, identity)
    return _merged(groups, key_of, identity, default)


def _single(
    groups: dict[AllocationPolicy, list[tuple[SortKey, T]]], identity: Callable[[T], Hashable],
) -> list[tuple[T, str]]:
    result: list[tuple[T, str]] = []
    seen: set[Hashable] = set()
    previous: SortKey | None = None
    for policy, keyed in groups.items():
        for key, item in keyed:
            if identity(item) in seen:
                continue
            seen.add(identity(item))
            result.append((item, "" if previous is None else policy.deciding(previous, key)))
            previous = key
    return result


def _merged(
    groups: dict[AllocationPolicy, list[tuple[SortKey, T]]],
    key_of: Callable[[AllocationPolicy, T], SortKey],
    identity: Callable[[T], Hashable],
    default: AllocationPolicy,
) -> list[tuple[T, str]]:
    queues = [(policy, list(reversed(keyed))) for policy, keyed in groups.items()]
    result: list[tuple[T, str]] = []
    seen: set[Hashable] = set()
    previous: tuple[AllocationPolicy, SortKey, SortKey] | None = None  # policy, its key, default
    remaining = sum(len(queue) for _, queue in queues)
    for _ in range(remaining):  # each step takes one item off a queue
        for _policy, queue in queues:
            while queue and identity(queue[-1][1]) in seen:
                queue.pop()
        heads = [(key_of(default, queue[-1][1]), index)
                 for index, (_policy, queue) in enumerate(queues) if queue]
        if not heads:
            break
        default_key, index = min(heads)
        policy, queue = queues[index]
        key, item = queue.pop()
        seen.add(identity(item))
        if previous is None:
            decided = ""
        elif previous[0] == policy:
            decided = policy.deciding(previous[1], key)
        else:
            decided = default.deciding(previous[2], default_key)
        result.append((item, decided))
        previous = (policy, key, default_key)
    return result
