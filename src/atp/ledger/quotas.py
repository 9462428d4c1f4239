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

from atp.ledger import timeline
from atp.ledger.errors import InsufficientAvailability, Shortfall
from atp.ledger.model import ChannelAllocation, Day, Position, ReservationLine
from atp.ledger.promising import Allocation, LinePlan, OrderPlan

if TYPE_CHECKING:
    from atp.ledger.view import LedgerView

# (node_id, channel) of an allocation within its SKU; node_id "" for a SKU-wide one.
AllocationKey = tuple[str, str]
__all__ = ["AllocationKey", "ChannelAllocation", "Fence", "Standing", "fence_for", "standings"]


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
    return sum(
        max(0, p.on_hand + p.inbound - p.held - p.safety_stock) for p in positions
    )


def open_units_by_channel(view: LedgerView, positions: Iterable[Position]) -> dict[str, int]:
    """Open units (HELD and COMMITTED lines) at the positions, by reservation channel."""
    units: dict[str, int] = {}
    reservations = view.reservations
    for position in positions:
        for (reservation_id, _), line in position.lines.items():
            reservation = reservations.get(reservation_id)
            if reservation is not None:
                channel = reservation.channel
                units[channel] = units.get(channel, 0) + line.open_quantity
    return units


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


@dataclass
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

    def explained(self, error: InsufficientAvailability, sku_of: dict[str, str]) -> (
            InsufficientAvailability):
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
    view: LedgerView, skus: Iterable[str], channel: str, today: Day, include_safety: bool
) -> Fence | None:
    """Fences the other channels' available allocations of the SKUs from `channel`'s demand
    (on the timelines until Fence.undo); None when none of the SKUs has an allocation in
    force for another channel (the common case: a dict lookup per SKU)."""
    by_sku = view.channel_allocations
    if not by_sku:
        return None
    fence: Fence | None = None
    for sku in sorted(set(skus)):
        allocations = by_sku.get(sku)
        if not allocations:
            continue
        others = [a for a in allocations.values()
                  if a.channel != channel and a.in_force(today)]
        if not others:
            continue
        if fence is None:
            fence = Fence(channel)
        _fence_sku(view, fence, sku, others, today, include_safety)
    return fence


def _fence_sku(
    view: LedgerView, fence: Fence, sku: str, others: list[ChannelAllocation], today: Day,
    include_safety: bool,
) -> None:
    by_node = view.positions_by_sku.get(sku, {})
    fenced = 0
    sku_wide = [a for a in others if not a.node_id]
    node_scoped = [a for a in others if a.node_id]
    for node_id in sorted({a.node_id for a in node_scoped}):
        position = by_node.get(node_id)
        if position is None:
            continue  # nothing there to take
        here = [s for s in standings(view, sku, node_id, today) if s.allocation in node_scoped]
        for standing in here:
            if standing.available > 0:
                # Dated today and never given back: a unit the owner may still take before
                # the end date cannot be promised to anyone else for a later date either
                # (stock carries forward). After the end date the allocation is 0.
                fence.add_phantom(position, today, standing.available)
                fenced += standing.available
    if sku_wide:
        wide = others_available(
            (s for s in standings(view, sku, "", today) if s.allocation in sku_wide),
            fence.channel)
        if wide > 0:
            nodes = view.nodes
            network = sum(
                max(0, timeline.max_promisable(position, today, include_safety))
                for node_id, position in by_node.items()
                if (node := nodes.get(node_id)) is not None and node.active
            )
            fence.caps[sku] = max(0, network - wide)
            fenced += wide
    if fenced:
        fence.fenced[sku] = fenced
