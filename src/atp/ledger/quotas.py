"""Channel allocations (quotas): units of a SKU's ATP fenced for one sales channel
(docs/channel-allocations.md).

An allocation is an absolute quantity or a share of its scope's supply, for one channel, of
one SKU at one node (node-scoped) or across all the SKU's nodes (SKU-wide), optionally until
an end date. Now, it stands at

    allocated = quantity, or floor(share x base); 0 once today > end_date
    base      = sum over the scope's positions of max(0, on hand + open inbound - held
                - safety stock)
    consumed  = min(allocated, open units of the channel's reservations in scope)
    available = allocated - consumed

Demand from channel X (or from no channel) may not take the other channels' available units.
For one command that is a Fence: each other channel's node-scoped available is phantom demand
on its position's timeline (dated today, for every later day too), and the
other channels' SKU-wide available is a cap on how many units of the SKU the command may take
in total (the network's promisable units, after the node fences, less that available). The
caller undoes the fence before the command ends, so it never shows in the state, never puts
existing demand at risk and is never stored. X's own allocation needs nothing: its demand
counts as consumed first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from atp.ledger.errors import InsufficientAvailability, Shortfall
from atp.ledger.model import ChannelAllocation, Day, Position, ReservationLine
from atp.ledger.promising import Allocation, LinePlan, OrderPlan

if TYPE_CHECKING:
    from atp.ledger.commands import Reserve
    from atp.ledger.view import LedgerView

# (node_id, channel) of an allocation within its SKU; node_id "" for a SKU-wide one.
AllocationKey = tuple[str, str]
NO_UNITS: dict[str, int] = {}  # open units by channel where none are counted (never changed)
__all__ = [
    "AllocationKey", "ChannelAllocation", "Fence", "Standing", "fence_for", "fence_for_reserve",
    "standings",
]


@dataclass(frozen=True, slots=True)
class Standing:
    """An allocation now: units it fences, and how many of them its channel's demand holds."""

    allocation: ChannelAllocation
    allocated: int
    consumed: int

    @property
    def available(self) -> int:
        return self.allocated - self.consumed


def scope_positions(view: LedgerView, sku: str, node_id: str) -> list[Position]:
    """The positions an allocation covers: one for a node-scoped one, else all the SKU's."""
    by_node = view.positions_by_sku.get(sku, {})
    if node_id:
        position = by_node.get(node_id)
        return [] if position is None else [position]
    return list(by_node.values())


def supply_base(positions: Iterable[Position]) -> int:
    """Supply a share is taken of: on hand plus open inbound, less holds and safety stock,
    each position counted at 0 at least."""
    return sum(_base(position) for position in positions)


def open_units_by_channel(view: LedgerView, positions: Iterable[Position]) -> dict[str, int]:
    """Open units (HELD and COMMITTED lines) at the positions, by reservation channel: the
    counts the state keeps for SKUs with an allocation (LedgerState.channel_units)."""
    units: dict[str, int] = {}
    counted = view.channel_units
    for position in positions:
        for channel, count in counted.get((position.sku, position.node_id), {}).items():
            units[channel] = units.get(channel, 0) + count
    return units


def count_open_units(view: LedgerView, position: Position) -> dict[str, int]:
    """open_units_by_channel of one position recounted from its lines (to check the counts)."""
    units: dict[str, int] = {}
    for (reservation_id, _), line in position.lines.items():
        reservation = view.reservations.get(reservation_id)
        if reservation is not None and line.open_quantity:
            units[reservation.channel] = units.get(reservation.channel, 0) + line.open_quantity
    return units


def count_problems(view: LedgerView) -> list[str]:
    """Where what the state keeps for channel allocations (open units by channel, per
    position and per SKU; supply bases) disagrees with a recount (invariant checks)."""
    problems = []
    for sku in view.channel_allocations:
        for node_id, position in view.positions_by_sku.get(sku, {}).items():
            kept = view.channel_units.get((sku, node_id), {})
            counted = count_open_units(view, position)
            if kept != counted:
                problems.append(f"{sku} at {node_id}: open units by channel {kept}, "
                                f"the lines say {counted}")
    tracked = {key for key in view.channel_units if key[0] not in view.channel_allocations}
    problems += [f"{sku} at {node_id}: open units counted by channel without an allocation"
                 for sku, node_id in sorted(tracked)]
    summed: dict[str, dict[str, int]] = {}
    for (sku, _), by_channel in view.channel_units.items():
        for channel, units in by_channel.items():
            summed.setdefault(sku, {})[channel] = summed.get(sku, {}).get(channel, 0) + units
    problems += [f"{sku}: open units by channel across its positions "
                 f"{view.sku_channel_units.get(sku, {})}, its positions say {summed.get(sku, {})}"
                 for sku in sorted(summed.keys() | view.sku_channel_units.keys())
                 if view.sku_channel_units.get(sku, {}) != summed.get(sku, {})]
    for sku, base in sorted(view.supply_bases.items()):
        recounted = supply_base(view.positions_by_sku.get(sku, {}).values())
        if sku not in view.channel_allocations or base != recounted:
            problems.append(f"{sku}: supply base kept as {base}, its positions say "
                            f"{recounted}" + ("" if sku in view.channel_allocations
                                             else " (and it has no allocation)"))
    return problems


def standings(view: LedgerView, sku: str, node_id: str, today: Day) -> list[Standing]:
    """Every allocation of sku in one scope (node_id "" for the SKU-wide ones) as it stands
    today, by channel."""
    allocations = view.channel_allocations.get(sku)
    if not allocations:
        return []
    chosen = sorted(
        (allocation for (node, _), allocation in allocations.items() if node == node_id),
        key=lambda allocation: allocation.channel,
    )
    if not chosen:
        return []
    positions = scope_positions(view, sku, node_id)
    by_channel = open_units_by_channel(view, positions)
    base = supply_base(positions) if any(a.share for a in chosen) else 0
    return [_standing(allocation, base, by_channel, today) for allocation in chosen]


def standing_of(view: LedgerView, allocation: ChannelAllocation, today: Day) -> Standing:
    positions = scope_positions(view, allocation.sku, allocation.node_id)
    base = supply_base(positions) if allocation.share else 0
    return _standing(allocation, base, open_units_by_channel(view, positions), today)


def _standing(
    allocation: ChannelAllocation, base: int, by_channel: dict[str, int], today: Day
) -> Standing:
    if allocation.removed or not allocation.in_force(today):
        return Standing(allocation, 0, 0)
    # int(share * base) rounds toward zero: base >= 0, so it is the floor.
    allocated = allocation.quantity or int(allocation.share * base)
    return Standing(allocation, allocated, min(allocated, by_channel.get(allocation.channel, 0)))


def others_available(standing_list: Iterable[Standing], channel: str) -> int:
    """Units the other channels' allocations fence from `channel` ("" fences them all)."""
    return sum(s.available for s in standing_list if s.allocation.channel != channel)


@dataclass(slots=True)
class Fence:
    """The other channels' available allocations, fenced from one command's demand until
    undo(): phantom demand on the positions of node-scoped ones, a cap per SKU for SKU-wide
    ones."""

    channel: str
    # (position, day, units of phantom demand) put on timelines; undo takes them off.
    phantoms: list[tuple[Position, Day, int]] = field(default_factory=list)
    # sku -> the most units the command may take of it in total.
    caps: dict[str, int] = field(default_factory=dict)
    # sku -> units fenced for other channels (node-scoped and SKU-wide), for messages.
    fenced: dict[str, int] = field(default_factory=dict)

    def undo(self) -> None:
        while self.phantoms:
            position, day, units = self.phantoms.pop()
            position.add_delta(day, units)

    def add_phantom(self, position: Position, day: Day, units: int) -> None:
        position.add_delta(day, -units)
        self.phantoms.append((position, day, units))

    # ----- Reserve ------------------------------------------------------------------------

    def enforce_on_lines(
        self, lines: list[tuple[Position, ReservationLine]], allow_partial: bool
    ) -> None:
        """Keeps the units placed of each capped SKU within its cap. `lines` are (position,
        ReservationLine) with their demand already on the timelines: with allow_partial the
        excess is taken off the last lines and backordered; without, InsufficientAvailability
        (the caller undoes the placements)."""
        for sku, cap in self.caps.items():
            placed = [(p, line) for p, line in lines if line.sku == sku]
            total = sum(line.quantity for _, line in placed)
            excess = total - cap
            if excess <= 0:
                continue
            if not allow_partial:
                raise InsufficientAvailability([self.network_shortfall(sku, total, cap)])
            for position, line in reversed(placed):
                cut = min(excess, line.quantity)
                if cut:
                    position.add_delta(line.ship_day, cut)
                    line.quantity -= cut
                    line.backordered_quantity += cut
                    excess -= cut
                if not excess:
                    break

    def network_shortfall(self, sku: str, requested: int, cap: int) -> Shortfall:
        return Shortfall(
            subject=sku,
            description=f"{sku} across the network: requested {requested}, available "
            f"{max(0, cap)} to channel {self.channel or '(none)'}; "
            f"{self.fenced.get(sku, 0)} units are fenced for other channels' allocations",
            requested=requested,
            available=max(0, cap),
        )

    def explained(
        self, error: InsufficientAvailability, sku_of: dict[str, str]
    ) -> InsufficientAvailability:
        """The refusal, each shortfall of a fenced SKU saying how many units are fenced for
        other channels (`sku_of`: shortfall subject -> its SKU)."""
        shortfalls = []
        for item in error.shortfalls:
            sku = sku_of.get(item.subject, "")
            units = self.fenced.get(sku, 0)
            if units and "fenced for other channels" not in item.description:
                item = Shortfall(
                    item.subject,
                    f"{item.description}; {units} units of {sku} are fenced for other "
                    f"channels' allocations",
                    item.requested, item.available,
                )
            shortfalls.append(item)
        return InsufficientAvailability(shortfalls)

    # ----- Promise, reallocation, backorder fills ------------------------------------------

    def trim_plan(self, plan: OrderPlan, allow_partial: bool) -> OrderPlan:
        """The plan with each capped SKU's allocations within its cap (the last ones cut);
        without allow_partial a plan over a cap promises nothing, as the planner does."""
        for sku, cap in self.caps.items():
            chosen = [lp for lp in plan.lines if lp.line.sku == sku]
            total = sum(a.quantity for lp in chosen for a in lp.allocations)
            if total <= cap:
                continue
            if not allow_partial:
                return OrderPlan([LinePlan(lp.line, candidates=lp.candidates)
                                  for lp in plan.lines])
            budget = max(0, cap)
            for line_plan in chosen:
                line_plan.allocations = trim_allocations(line_plan.allocations, budget)
                budget -= sum(a.quantity for a in line_plan.allocations)
        return plan

    def cap_allocations(self, sku: str, allocations: list[Allocation]) -> list[Allocation]:
        cap = self.caps.get(sku)
        return allocations if cap is None else trim_allocations(allocations, cap)


def trim_allocations(allocations: list[Allocation], budget: int) -> list[Allocation]:
    """The allocations, cut from the last so that they hold at most `budget` units."""
    kept: list[Allocation] = []
    for allocation in allocations:
        if budget <= 0:
            break
        quantity = min(budget, allocation.quantity)
        kept.append(allocation if quantity == allocation.quantity else Allocation(
            allocation.node_id, quantity, allocation.ship_day, allocation.delivery_day,
            allocation.from_inbound, allocation.cost))
        budget -= quantity
    return kept


def fence_for(
    view: LedgerView, demand: Iterable[tuple[str, str]], channel: str, today: Day,
    include_safety: bool,
) -> Fence | None:
    """Fences the other channels' available allocations from `channel`'s demand, (sku,
    node_id) pairs (node_id "" for demand that may go to any node): phantom demand at the
    positions the demand may use, until Fence.undo; a cap per SKU for SKU-wide ones. None
    when no SKU of the demand has an allocation of another channel in force (the common
    case: a dict lookup per pair)."""
    by_sku = view.channel_allocations
    if not by_sku:
        return None
    wanted: dict[str, set[str]] = {}
    for sku, node_id in demand:
        if sku in by_sku:
            wanted.setdefault(sku, set()).add(node_id)
    return _fence(view, wanted, {}, channel, today, include_safety)


def fence_for_reserve(
    view: LedgerView, command: Reserve, today: Day, include_safety: bool
) -> Fence | None:
    """fence_for of a Reserve's lines: their SKUs, and their substitutes when substitution is
    allowed, each at the line's node. A line takes at most its quantity, of its SKU or of a
    substitute: knowing the most units the Reserve may take of each SKU, a SKU-wide cap that
    many units cannot reach is left off (see _fence_sku)."""
    by_sku = view.channel_allocations
    if not by_sku:
        return None
    wanted: dict[str, set[str]] = {}
    most_units: dict[str, int] = {}
    for line in command.lines:
        skus = (line.sku, *line.substitute_skus) if command.allow_substitution else (line.sku,)
        for sku in skus:
            if sku in by_sku:
                wanted.setdefault(sku, set()).add(line.node_id)
                most_units[sku] = most_units.get(sku, 0) + line.quantity
    if not wanted:
        return None
    return _fence(view, wanted, most_units, command.channel, today, include_safety)


def _fence(
    view: LedgerView, wanted: dict[str, set[str]], most_units: dict[str, int], channel: str,
    today: Day, include_safety: bool,
) -> Fence | None:
    """The fence of demand for `wanted` (sku -> node_ids, each SKU with an allocation);
    most_units: sku -> the most units the command may take of it, where known."""
    fence: Fence | None = None
    by_sku = view.channel_allocations
    # In SKU order, so that fences and their messages do not depend on the lines' order.
    for sku in sorted(wanted) if len(wanted) > 1 else wanted:
        others = [a for a in by_sku[sku].values()
                  if a.channel != channel and (a.end_day is None or today <= a.end_day)]
        if others:
            fence = fence or Fence(channel)
            _fence_sku(view, fence, sku, others, wanted[sku], today, include_safety,
                       most_units.get(sku))
    return fence


def _fence_sku(
    view: LedgerView, fence: Fence, sku: str, others: list[ChannelAllocation],
    node_ids: set[str], today: Day, include_safety: bool, most: int | None,
) -> None:
    """Phantom demand at the positions of `node_ids` ("" among them: every position) for the
    other channels' node-scoped allocations there; the SKU's cap for their SKU-wide ones.

    The cap is the network's promisable units less every node's fence, less what the SKU-wide
    allocations still fence (`wide`); it takes a pass over all the SKU's positions, so it is
    computed only where it could bind. Not when `wide` is 0 (there is no cap), nor when a
    command taking at most `most` units of the SKU, at named nodes only, stays within a lower
    bound of it: the same sum over those nodes only (no term of the sum is negative). A cap
    left off would have cut nothing: the command's outcome is the same.

    This runs on every Reserve of a SKU with an allocation of another channel, so it is one
    loop over those allocations (_node_fences repeats its node part for the cap's pass), and
    `wide` is read from what the state keeps per SKU instead of a pass over its positions."""
    anywhere = "" in node_ids
    by_node = view.positions_by_sku.get(sku, {})
    counted = view.channel_units
    phantom: dict[str, int] = {}  # node_id -> units fenced there, at the demand's nodes
    wide = 0
    for allocation in others:
        node_id = allocation.node_id
        if not node_id:  # SKU-wide: its channel's open units across the SKU are consumed
            allocated = allocation.quantity or int(allocation.share * view.supply_base_of(sku))
            used = view.sku_channel_units.get(sku, NO_UNITS).get(allocation.channel, 0)
            if allocated > used:
                wide += allocated - used
        elif anywhere or node_id in node_ids:
            position = by_node.get(node_id)
            if position is None:
                continue  # nothing there to take
            allocated = allocation.quantity or int(allocation.share * _base(position))
            used = counted.get((sku, node_id), NO_UNITS).get(allocation.channel, 0)
            if allocated > used:
                phantom[node_id] = phantom.get(node_id, 0) + allocated - used
    fenced = 0
    if wide > 0:
        fenced += wide
        # Before the phantoms go on: the network's units less every node's fence.
        if most is None or anywhere or most > _promisable(
                view, [by_node[node] for node in node_ids if node in by_node], phantom,
                include_safety) - wide:
            every_node = phantom if anywhere else _node_fences(view, sku, others, by_node, None)
            network = _promisable(view, by_node.values(), every_node, include_safety)
            fence.caps[sku] = max(0, network - wide)
    for node_id, units_fenced in phantom.items():
        # Dated today and never given back: a unit the owner may still take before the end
        # date cannot be promised to anyone else for a later date either (stock carries
        # forward). After the end date the allocation is 0.
        fence.add_phantom(by_node[node_id], today, units_fenced)
        fenced += units_fenced
    if fenced:
        fence.fenced[sku] = fenced


def _node_fences(
    view: LedgerView, sku: str, others: list[ChannelAllocation], by_node: dict[str, Position],
    node_ids: set[str] | None,
) -> dict[str, int]:
    """node_id -> units the node-scoped allocations among `others` still fence there, at the
    SKU's positions (by_node) among node_ids (None: at all of them)."""
    counted = view.channel_units
    fences: dict[str, int] = {}
    for allocation in others:
        node_id = allocation.node_id
        if not node_id or (node_ids is not None and node_id not in node_ids):
            continue
        position = by_node.get(node_id)
        if position is None:
            continue  # nothing there to take
        allocated = allocation.quantity or int(allocation.share * _base(position))
        units = counted.get((sku, node_id))
        used = units.get(allocation.channel, 0) if units else 0
        if allocated > used:
            fences[node_id] = fences.get(node_id, 0) + allocated - used
    return fences


def _promisable(
    view: LedgerView, positions: Iterable[Position], fences: dict[str, int],
    include_safety: bool,
) -> int:
    """Units the positions at active nodes can still promise on some day, each less its
    node's fence and counted at 0 at least."""
    nodes = view.nodes
    total = 0
    for position in positions:
        node = nodes.get(position.node_id)
        if node is not None and node.active:
            # The last step of the timeline (timeline.max_promisable), without sorting it;
            # from the deltas, not the line sums: a planner may have demand shifted.
            net = (position.on_hand - position.held + sum(position.deltas.values())
                   - fences.get(position.node_id, 0))
            if not include_safety:
                net -= position.safety_stock
            if net > 0:
                total += net
    return total


def _base(position: Position) -> int:
    """A position's part of supply_base."""
    base = position.on_hand + position.inbound - position.held - position.safety_stock
    return max(0, base)
