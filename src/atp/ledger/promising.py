"""Promising and sourcing: where and when order lines can be fulfilled (docs/contract.md,
"Quantities", promising).

The planner builds a few candidate plans (each single node; a greedy split across nodes;
a split limited to the nodes covering most of the order), scores them by the policy's
objective and keeps the best. Candidate plans are simulated by adding their demand to the
real position timelines and undoing it before returning, all in one synchronous step, so a
promise is read-only and deterministic: the same ledger and request give the same answer.
"""

from __future__ import annotations

import datetime
import enum
import itertools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from atp.ledger import timeline
from atp.ledger.errors import InvalidArgument
from atp.ledger.model import Day, Node, Objective, Policy, Position, ReservationLine
from atp.ledger.view import LedgerView

# A module name: reading a member off its Enum class costs ~160 ns on Python 3.11 (see
# model.HELD), and the planner asks which objective it serves ~36 times per Promise.
CHEAPEST = Objective.CHEAPEST
NEVER = 10**9  # a day later than any real day: sorts unpromisable plans last
# Most steps of the exact cheapest-cover search per line (a SKU stocked at a few dozen nodes
# finishes far below it); past it the best cover found so far is used.
_COVER_SEARCH_STEPS = 20_000


class CandidateOutcome(enum.StrEnum):
    """Why a node was chosen for a line or lost it (Promise with explain): a fixed token,
    the value of CandidateExplanation.outcome; the sentence goes in its detail. The list is
    documented in protos/atp/v1/availability.proto (a test keeps the two in step)."""

    CHOSEN = "CHOSEN"  # the node holds (part of) the line
    INACTIVE = "INACTIVE"  # the node is inactive
    NO_LANE = "NO_LANE"  # the node has no lane to the destination region
    NO_STOCK_OR_SUPPLY = "NO_STOCK_OR_SUPPLY"  # the SKU was never at the node
    INSUFFICIENT_ATP = "INSUFFICIENT_ATP"  # the node cannot hold the whole line on any day
    LATER = "LATER"  # it could, but would deliver later than the chosen node
    COSTLIER = "COSTLIER"  # it could, as early, but its lane costs more
    NOT_CHOSEN = "NOT_CHOSEN"  # it could; the tie-breaks or the policy preferred another


class Candidate(NamedTuple):
    """One node considered for a line: its outcome, and the sentence saying why."""

    node_id: str
    outcome: CandidateOutcome
    detail: str


class OrderLine(NamedTuple):
    """A NamedTuple, as Allocation: five per Promise, built in half a frozen dataclass's time."""

    line_id: str
    sku: str
    quantity: int
    # Substitute SKUs in preference order, offered when `sku` cannot meet the request (see
    # ledger/substitution.py), and the latest acceptable delivery date (year, month, day).
    substitute_skus: tuple[str, ...] = ()
    need_by_date: tuple[int, int, int] | None = None


class SubstituteOutcome(enum.StrEnum):
    """What became of one substitute SKU of a line (Promise with explain): a fixed token, the
    value of SubstituteExplanation.outcome, documented in protos/atp/v1/availability.proto."""

    OFFERED = "OFFERED"  # the substitute on the line
    INCOMPLETE = "INCOMPLETE"  # it cannot be promised in full
    LATE = "LATE"  # it can, but not by need_by_date
    UNKNOWN_SKU = "UNKNOWN_SKU"  # never stocked anywhere
    NOT_CONSIDERED = "NOT_CONSIDERED"  # an earlier one was offered, or none was needed


class SubstituteCheck(NamedTuple):
    """One substitute considered for a line: its outcome, and the sentence saying why."""

    sku: str
    outcome: SubstituteOutcome
    detail: str


class SubstituteOffer(NamedTuple):
    """The substitute SKU a line takes: its allocations, promise day, and why the line's own
    SKU was not enough."""

    sku: str
    allocations: list[Allocation]
    promise_day: Day
    reason: str


class Allocation(NamedTuple):
    """A NamedTuple, not a frozen dataclass: a promise builds dozens and they are cheaper."""

    node_id: str
    quantity: int
    ship_day: Day
    delivery_day: Day
    from_inbound: bool
    cost: int


@dataclass
class LinePlan:
    line: OrderLine
    allocations: list[Allocation] = field(default_factory=list)
    backorder_day: Day | None = None
    candidates: list[Candidate] = field(default_factory=list)
    # Set when the line's own SKU cannot meet the request and a substitute can (Promise):
    # the fields above still answer for the line's own SKU.
    substitute: SubstituteOffer | None = None
    # With explain, for a line listing substitutes: each one's outcome.
    substitutes: list[SubstituteCheck] = field(default_factory=list)

    @property
    def backordered_quantity(self) -> int:
        allocated = 0
        for allocation in self.allocations:  # a loop: read many times per plan, most have one
            allocated += allocation.quantity
        return self.line.quantity - allocated


@dataclass
class OrderPlan:
    lines: list[LinePlan]

    @property
    def complete(self) -> bool:
        for line in self.lines:
            if line.backordered_quantity:
                return False
        return True

    @property
    def promise_day(self) -> Day | None:
        days = [a.delivery_day for line in self.lines for a in line.allocations]
        return max(days) if days else None

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(sorted({a.node_id for line in self.lines for a in line.allocations}))

    @property
    def cost(self) -> int:
        """Lane cost per shipment: one shipment per node used."""
        costs = {a.node_id: a.cost for line in self.lines for a in line.allocations}
        return sum(costs.values())

    def score(self, objective: Objective) -> tuple[object, ...]:
        backordered = sum(line.backordered_quantity for line in self.lines)
        promise_day = self.promise_day
        day = promise_day if promise_day is not None else NEVER
        nodes = self.node_ids
        if objective is CHEAPEST:
            return (backordered, self.cost, len(nodes), day, nodes)
        return (backordered, day, len(nodes), self.cost, nodes)


class Planner:
    """Plans one order against the ledger as it is now."""

    def __init__(
        self, ledger: LedgerView, today: Day, region: str, policy: Policy, priority: int
    ) -> None:
        if not region:
            raise InvalidArgument.single("destination_region", "required to source lines")
        self.ledger = ledger
        self.today = today
        self.region = region
        self.policy = policy
        self.include_safety = ledger.include_safety_stock(priority)
        # Shared with the ledger's route cache: read, never changed.
        self.nodes, self.lanes = ledger.routes_to(region)
        self._applied: list[tuple[Position, Day, int]] = []
        self._stocking: dict[str, list[Node]] = {}

    # ----- entry ----------------------------------------------------------------------------

    def plan(self, lines: list[OrderLine], explain: bool = False) -> OrderPlan:
        """The best plan by the policy, with backorders where the policy allows them."""
        return self.finish(self.best_effort(lines), explain)

    def best_effort(self, lines: list[OrderLine]) -> OrderPlan:
        """The best plan by the policy's objective as if partial orders were allowed: which
        lines fall short shows here even when the policy would refuse the whole order."""
        for line in lines:
            self.ledger.known_sku(line.sku)
        objective = self.policy.objective
        return min(self._candidates(lines), key=lambda candidate: candidate.score(objective))

    def finish(self, best: OrderPlan, explain: bool = False) -> OrderPlan:
        """A best-effort plan made what the policy allows: nothing when it is incomplete and
        partial orders are not allowed, backorder days, one delivery day (ship_complete)."""
        if not best.complete and not self.policy.allow_partial:
            best = OrderPlan([LinePlan(line_plan.line) for line_plan in best.lines])
        if not best.complete:
            self._set_backorder_days(best)
        if self.policy.ship_complete:
            _consolidate(best)
        if explain:
            self._explain(best)
        return best

    def hold(self, plan: OrderPlan) -> None:
        """Applies a plan's demand for keeps (Reserve): nothing will undo it."""
        for line_plan in plan.lines:
            for allocation in line_plan.allocations:
                position = self.ledger.positions[(line_plan.line.sku, allocation.node_id)]
                position.add_delta(allocation.ship_day, -allocation.quantity)

    # ----- candidates -----------------------------------------------------------------------

    def _candidates(self, lines: list[OrderLine]) -> Iterable[OrderPlan]:
        yield OrderPlan([LinePlan(line) for line in lines])
        for node in self._single_node_candidates(lines):
            yield self._simulate(lines, [node], split=False)
        if self.policy.ship_complete or self.policy.max_nodes == 1 or len(self.nodes) < 2:
            return
        greedy = self._simulate(lines, self.nodes, split=True)
        if self._within_max_nodes(greedy):
            yield greedy
        if self.policy.max_nodes > 1:
            chosen = self._covering_nodes(lines, self.policy.max_nodes)
            yield self._simulate(lines, chosen, split=True)

    def _single_node_candidates(self, lines: list[OrderLine]) -> list[Node]:
        """Nodes that stock every SKU (with allow_partial: any SKU); the others cannot win."""
        stocking = [{node.node_id for node in self._stocking_nodes(line.sku)} for line in lines]
        wanted = set.union(*stocking) if self.policy.allow_partial else set.intersection(*stocking)
        return [node for node in self.nodes if node.node_id in wanted]

    def _within_max_nodes(self, plan: OrderPlan) -> bool:
        return self.policy.max_nodes == 0 or len(plan.node_ids) <= self.policy.max_nodes

    def _simulate(self, lines: list[OrderLine], nodes: list[Node], split: bool) -> OrderPlan:
        """Fills lines in order from `nodes`, preferring nodes already used; undone before
        return."""
        plans: list[LinePlan] = []
        used: set[str] = set()
        try:
            for line in lines:
                line_plan = LinePlan(line)
                self._fill_line(line_plan, nodes, used, split)
                used.update(a.node_id for a in line_plan.allocations)
                plans.append(line_plan)
        finally:
            self._undo()
        return OrderPlan(plans)

    def _fill_line(
        self, line_plan: LinePlan, nodes: list[Node], used: set[str], split: bool
    ) -> None:
        """Fills one line: from one node, or (when allowed) split where that scores better."""
        line = line_plan.line
        if len(nodes) > 1:
            stocking = self._stocking_nodes(line.sku)
            nodes = stocking if nodes is self.nodes else [n for n in stocking if n in nodes]
        whole = self._best_whole(line, nodes, used)
        options: list[list[Allocation]] = []
        if whole is not None:
            options.append([whole])
            if split and self._unbeatable(whole, nodes, used):
                split = False
        if split:
            options.append(
                self._split_option(line, nodes, used, (self._units_at_earliest, self._most))
            )
            options.append(self._split_option(line, nodes, used, (self._most,)))
            if self.policy.objective is CHEAPEST:
                options.append(self._cheapest_cover_option(line, nodes, used))
            else:
                options.append(self._deadline_option(line, nodes, used))
        elif not whole and self.policy.allow_partial:
            options.append(self._split_option(line, nodes, used, (self._most,), single=True))
        if not options:
            return
        best = options[0] if len(options) == 1 else min(
            options, key=lambda option: self._line_score(option, line.quantity, used)
        )
        for allocation in best:
            self._take(line_plan, allocation)

    def _best_whole(self, line: OrderLine, nodes: list[Node], used: set[str]) -> Allocation | None:
        """The most preferred node that can ship the whole line, trying nodes best-first.

        A node's preference can be no better than its bound (the fastest delivery its handling
        and lane allow), so once the best fit found beats the next node's bound, the rest
        cannot win: most lines need one or two fits instead of one per stocking node.
        """
        bounds = [(self._preference_bound(node, used), index) for index, node in enumerate(nodes)]
        bounds.sort()
        best: Allocation | None = None
        best_key: tuple[object, ...] | None = None
        for bound, index in bounds:
            if best_key is not None and bound >= best_key:
                break
            allocation = self._fit(nodes[index], line.sku, line.quantity)
            if allocation is not None:
                key = self._preference(allocation, used)
                if best_key is None or key < best_key:
                    best, best_key = allocation, key
        return best

    def _preference_bound(self, node: Node, used: set[str]) -> tuple[object, ...]:
        """_preference of the node's best possible allocation: shipped on its earliest day."""
        node_id = node.node_id
        lane = self.lanes[node_id]
        return self._preference_key(
            node_id, self.today + node.handling_days + lane.transit_days, lane.cost, used
        )

    def _split_option(
        self,
        line: OrderLine,
        nodes: list[Node],
        used: set[str],
        phases: tuple[Callable[[Node, str], int], ...],
        single: bool = False,
    ) -> list[Allocation]:
        """Fills a line from offers in preference order, phase by phase (e.g. units each node
        can ship at its earliest day, then later-dated units); `single` takes one offer only."""
        chosen: list[Allocation] = []
        remaining = line.quantity
        try:
            for phase_units in phases:
                offers = [
                    offer for offer in (
                        self._fit(node, line.sku, min(remaining, phase_units(node, line.sku)))
                        for node in nodes
                    ) if offer is not None
                ]
                for offer in sorted(offers, key=lambda a: self._preference(a, used)):
                    if remaining == 0 or (chosen and single):
                        break
                    node = self.ledger.nodes[offer.node_id]
                    taken = self._fit(node, line.sku, min(remaining, phase_units(node, line.sku)))
                    if taken is not None:
                        self._shift_demand(line.sku, taken, taken.quantity)
                        chosen.append(taken)
                        remaining -= taken.quantity
        finally:
            for allocation in chosen:
                self._shift_demand(line.sku, allocation, -allocation.quantity)
        return _merge_same_node(chosen)

    def _deadline_option(
        self, line: OrderLine, nodes: list[Node], used: set[str]
    ) -> list[Allocation]:
        """The split with the earliest delivery: the first day D by which the nodes together
        can deliver the line (each node ATP(D - its transit), from its earliest ship day on),
        filled from the nodes in preference order. The greedy splits can miss D when a node's
        nearer-dated units take the place of another's faster lane."""
        offers = []
        for node in nodes:
            position = self.ledger.positions.get((line.sku, node.node_id))
            if position is not None:
                steps = timeline.atp_steps(position, self.today, self.include_safety)
                earliest = self.today + node.handling_days
                offers.append((node, steps, self.lanes[node.node_id].transit_days, earliest))
        deliveries = sorted({
            max(day, earliest) + transit
            for _, steps, transit, earliest in offers for day, _ in steps
        })
        by_deadline: dict[str, int] = {}
        for deadline in deliveries:
            by_deadline = {
                node.node_id: max(0, timeline.atp_in(steps, deadline - transit))
                for node, steps, transit, earliest in offers if deadline - transit >= earliest
            }
            if sum(by_deadline.values()) >= line.quantity:
                break
        else:
            return []
        chosen = self._fewest_shipments(by_deadline, line.quantity, used)
        return self._fill_from(line, [n for n in nodes if n.node_id in chosen], used,
                               lambda node: by_deadline[node.node_id])

    def _fewest_shipments(self, units: dict[str, int], quantity: int, used: set[str]) -> set[str]:
        """Nodes that together have `quantity` units: every node already shipping (no new
        shipment), then the fewest new ones, the cheapest such set (then node ids) among those.
        Filling from every node that has units would split a line more than its date needs."""
        chosen = {node_id for node_id, most in units.items() if most and node_id in used}
        need = quantity - sum(units[node_id] for node_id in chosen)
        fresh = sorted(node_id for node_id, most in units.items() if most and node_id not in used)
        if need <= 0 or not fresh:
            return chosen
        largest_first = sorted(fresh, key=lambda node_id: -units[node_id])
        count = next((size for size in range(1, len(fresh) + 1)
                      if sum(units[node_id] for node_id in largest_first[:size]) >= need),
                     len(fresh))

        def cost(group: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
            return sum(self.lanes[node_id].cost for node_id in group), group

        best = cost(tuple(sorted(largest_first[:count])))
        for group in itertools.islice(itertools.combinations(fresh, count), _COVER_SEARCH_STEPS):
            if sum(units[node_id] for node_id in group) >= need and cost(group) < best:
                best = cost(group)
        return chosen | set(best[1])

    def _cheapest_cover_option(
        self, line: OrderLine, nodes: list[Node], used: set[str]
    ) -> list[Allocation]:
        """The split with the lowest lane cost: the nodes of least total marginal cost whose
        promisable units cover the line (an exact search over the SKU's few stocking nodes,
        cheapest first, pruned by cost), filled in preference order."""
        offers = sorted(
            ((0 if node.node_id in used else self.lanes[node.node_id].cost,
              most, node.node_id, node)
             for node in nodes if (most := self._most(node, line.sku)) > 0),
            key=lambda offer: offer[:3],
        )
        capacity_after = [0] * (len(offers) + 1)
        for index in range(len(offers) - 1, -1, -1):
            capacity_after[index] = capacity_after[index + 1] + offers[index][1]
        best: tuple[int, int, list[Node]] | None = None
        budget = _COVER_SEARCH_STEPS

        def search(index: int, need: int, cost: int, chosen: list[Node]) -> None:
            nonlocal best, budget
            budget -= 1
            if need <= 0:
                if best is None or (cost, len(chosen)) < best[:2]:
                    best = (cost, len(chosen), list(chosen))
                return
            if index == len(offers) or capacity_after[index] < need or budget <= 0:
                return
            if best is not None and cost + offers[index][0] > best[0]:
                return  # offers are sorted by cost: every completion costs at least this much
            marginal, most, _, node = offers[index]
            chosen.append(node)
            search(index + 1, need - most, cost + marginal, chosen)
            chosen.pop()
            search(index + 1, need, cost, chosen)

        search(0, line.quantity, 0, [])
        if best is None:
            return []
        picked = best[2]
        return self._fill_from(line, [n for n in nodes if n in picked], used,
                               lambda node: self._most(node, line.sku))

    def _fill_from(
        self, line: OrderLine, nodes: list[Node], used: set[str], units: Callable[[Node], int]
    ) -> list[Allocation]:
        """Takes up to units(node) from each node in preference order until the line is filled;
        each part ships on the earliest day its node has that many units."""
        preferred = sorted(nodes, key=lambda node: self._preference_bound(node, used))
        chosen: list[Allocation] = []
        remaining = line.quantity
        for node in preferred:
            if remaining == 0:
                break
            allocation = self._fit(node, line.sku, min(remaining, units(node)))
            if allocation is not None:
                chosen.append(allocation)
                remaining -= allocation.quantity
        return chosen

    def _stocking_nodes(self, sku: str) -> list[Node]:
        """The candidate nodes holding a position of sku (the only ones that can supply it)."""
        nodes = self._stocking.get(sku)
        if nodes is None:
            by_node = self.ledger.positions_by_sku.get(sku, {})
            # Node id order, as self.nodes; iterating the SKU's few positions beats all nodes.
            nodes = self._stocking[sku] = [
                self.ledger.nodes[node_id] for node_id in sorted(by_node) if node_id in self.lanes
            ]
        return nodes

    def _unbeatable(self, allocation: Allocation, nodes: list[Node], used: set[str]) -> bool:
        """No split can score better than this whole-line allocation (so none is tried)."""
        if self.policy.objective is CHEAPEST:
            marginal = 0 if allocation.node_id in used else allocation.cost
            return marginal == 0 or marginal <= min(
                (self.lanes[node.node_id].cost for node in nodes), default=0
            )
        fastest = min(
            self.today + node.handling_days + self.lanes[node.node_id].transit_days
            for node in nodes
        )
        return allocation.delivery_day <= fastest

    def _line_score(
        self, option: list[Allocation], quantity: int, used: set[str]
    ) -> tuple[object, ...]:
        short = quantity - sum(a.quantity for a in option)
        new_nodes = {a.node_id: a.cost for a in option if a.node_id not in used}
        latest = max((a.delivery_day for a in option), default=NEVER)
        cost = sum(new_nodes.values())
        if self.policy.objective is CHEAPEST:
            return (short, cost, latest, len(new_nodes))
        return (short, latest, len(new_nodes), cost)

    def _units_at_earliest(self, node: Node, sku: str) -> int:
        """Units of sku the node can ship on its earliest ship day."""
        position = self.ledger.positions.get((sku, node.node_id))
        if position is None:
            return 0
        earliest = self.today + node.handling_days
        return max(0, timeline.atp_on(position, self.today, earliest, self.include_safety))

    def _shift_demand(self, sku: str, allocation: Allocation, quantity: int) -> None:
        position = self.ledger.positions[(sku, allocation.node_id)]
        position.add_delta(allocation.ship_day, -quantity)

    def _preference(self, allocation: Allocation, used: set[str]) -> tuple[object, ...]:
        return self._preference_key(
            allocation.node_id, allocation.delivery_day, allocation.cost, used
        )

    def _preference_key(
        self, node_id: str, delivery_day: Day, cost: int, used: set[str]
    ) -> tuple[object, ...]:
        """Which shipment a line prefers: by the objective, then fewer new shipments, node id."""
        new_shipment = node_id not in used
        if self.policy.objective is CHEAPEST:
            return (cost if new_shipment else 0, delivery_day, new_shipment, node_id)
        return (delivery_day, new_shipment, cost, node_id)

    def _covering_nodes(self, lines: list[OrderLine], most_nodes: int) -> list[Node]:
        """Up to most_nodes nodes, each chosen to cover the most still-uncovered units."""
        remaining = {line.line_id: line.quantity for line in lines}
        chosen: list[Node] = []
        for _ in range(most_nodes):
            def covered(node: Node) -> int:
                return sum(
                    min(remaining[line.line_id], self._most(node, line.sku)) for line in lines
                )

            options = [node for node in self.nodes if node not in chosen and covered(node) > 0]
            if not options:
                break
            best = min(options, key=lambda node: (-covered(node), node.node_id))
            for line in lines:
                remaining[line.line_id] -= min(remaining[line.line_id], self._most(best, line.sku))
            chosen.append(best)
        return sorted(chosen, key=lambda node: node.node_id)

    # ----- fitting against the (tentatively changed) timelines -------------------------------

    def _fit(self, node: Node, sku: str, quantity: int) -> Allocation | None:
        position = self.ledger.positions.get((sku, node.node_id))
        if position is None or quantity <= 0:
            return None
        day, stock_atp = timeline.earliest_and_stock_atp(
            position, self.today, self.today + node.handling_days, quantity, self.include_safety
        )
        if day is None:
            return None
        lane = self.lanes[node.node_id]
        from_inbound = stock_atp < quantity
        return Allocation(
            node.node_id, quantity, day, day + lane.transit_days, from_inbound, lane.cost
        )

    def most_at(self, node: Node, sku: str) -> int:
        """The most units of sku the node can promise on any day."""
        return self._most(node, sku)

    def _most(self, node: Node, sku: str) -> int:
        position = self.ledger.positions.get((sku, node.node_id))
        if position is None:
            return 0
        return timeline.max_promisable(position, self.today, self.include_safety)

    def _take(self, line_plan: LinePlan, allocation: Allocation) -> None:
        position = self.ledger.positions[(line_plan.line.sku, allocation.node_id)]
        position.add_delta(allocation.ship_day, -allocation.quantity)
        self._applied.append((position, allocation.ship_day, allocation.quantity))
        line_plan.allocations.append(allocation)

    def _undo(self) -> None:
        while self._applied:
            position, day, quantity = self._applied.pop()
            position.add_delta(day, quantity)

    # ----- backorders and explanations -------------------------------------------------------

    def _set_backorder_days(self, plan: OrderPlan) -> None:
        """For each backordered remainder: the earliest delivery open inbound supply allows, if
        any. Stock already on hand that the policy kept out of the plan (max_nodes, one node
        per line) gives no date: backorders are filled when supply arrives, not from it."""
        try:
            for line_plan in plan.lines:
                self._apply_allocations(line_plan)
            for line_plan in plan.lines:
                remaining = line_plan.backordered_quantity
                if remaining:
                    fits = [self._fit(node, line_plan.line.sku, remaining) for node in self.nodes]
                    days = [a.delivery_day for a in fits if a is not None and a.from_inbound]
                    line_plan.backorder_day = min(days) if days else None
        finally:
            self._undo()

    def _apply_allocations(self, line_plan: LinePlan) -> None:
        for allocation in line_plan.allocations:
            position = self.ledger.positions[(line_plan.line.sku, allocation.node_id)]
            position.add_delta(allocation.ship_day, -allocation.quantity)
            self._applied.append((position, allocation.ship_day, allocation.quantity))

    def _explain(self, plan: OrderPlan) -> None:
        for line_plan in plan.lines:
            chosen = {a.node_id: a for a in line_plan.allocations}
            winner = line_plan.allocations[0] if line_plan.allocations else None
            line_plan.candidates = [
                Candidate(node.node_id,
                          *self._outcome(node, line_plan.line, chosen.get(node.node_id), winner))
                for node in self.ledger.nodes.values()
            ]

    def _outcome(
        self, node: Node, line: OrderLine, mine: Allocation | None, winner: Allocation | None
    ) -> tuple[CandidateOutcome, str]:
        """The node's outcome for the line, and the sentence that explains it."""
        if mine is not None:
            return CandidateOutcome.CHOSEN, (
                f"chosen: {mine.quantity} units ship {_iso(mine.ship_day)}, "
                f"deliver {_iso(mine.delivery_day)}")
        if not node.active:
            return CandidateOutcome.INACTIVE, "inactive"
        lane = node.lane_to(self.region)
        if lane is None:
            return CandidateOutcome.NO_LANE, f"no lane to {self.region}"
        if (line.sku, node.node_id) not in self.ledger.positions:
            return CandidateOutcome.NO_STOCK_OR_SUPPLY, f"no stock or supply of {line.sku}"
        whole = self._fit(node, line.sku, line.quantity)
        if whole is None:
            most = self._most(node, line.sku)
            return (CandidateOutcome.INSUFFICIENT_ATP,
                    f"not enough ATP: {most} of {line.quantity} at most")
        if whole.ship_day > self.today + node.handling_days:
            reason = f"not enough ATP until {_iso(whole.ship_day)}"
        else:
            reason = f"could deliver {_iso(whole.delivery_day)}"
        if winner is None:  # the line went unallocated (the order's policy), yet it fits here
            return CandidateOutcome.NOT_CHOSEN, reason
        if whole.delivery_day > winner.delivery_day:
            return CandidateOutcome.LATER, f"later: {reason}"
        if whole.cost > winner.cost:
            return (CandidateOutcome.COSTLIER,
                    f"costlier: lane cost {whole.cost} vs {winner.cost}")
        return (CandidateOutcome.NOT_CHOSEN,
                f"not chosen: {reason}; fewer shipments or node order preferred another")


def line_from(
    allocation: Allocation, line_id: str, sku: str, has_destination: bool,
    request_line_id: str = "", unit_value: int = 0, substitute_for: str = "",
) -> ReservationLine:
    """A reservation line holding one allocation; `request_line_id`: the request's line it
    holds part of, when that is another line id (whose unit value, and the SKU it is a
    substitute for, the line carries)."""
    return ReservationLine(
        line_id=sys.intern(line_id),
        sku=sys.intern(sku),
        node_id=sys.intern(allocation.node_id),
        quantity=allocation.quantity,
        ship_day=allocation.ship_day,
        delivery_day=allocation.delivery_day if has_destination else None,
        from_inbound=allocation.from_inbound,
        request_line_id="" if request_line_id == line_id else request_line_id,
        unit_value=unit_value,
        substitute_for=substitute_for,
    )


def free_part_id(line_id: str, taken: set[str]) -> str:
    """The first of line_id/2, line_id/3, ... not yet taken (and takes it)."""
    part = 2
    while f"{line_id}/{part}" in taken:
        part += 1
    taken.add(f"{line_id}/{part}")
    return f"{line_id}/{part}"


def _merge_same_node(allocations: list[Allocation]) -> list[Allocation]:
    """One allocation per node: a node's stock and later units ship together on the later day."""
    by_node: dict[str, Allocation] = {}
    for allocation in allocations:
        earlier = by_node.get(allocation.node_id)
        if earlier is None:
            by_node[allocation.node_id] = allocation
        else:
            later = max(earlier, allocation, key=lambda a: a.ship_day)
            by_node[allocation.node_id] = Allocation(
                later.node_id, earlier.quantity + allocation.quantity, later.ship_day,
                later.delivery_day, earlier.from_inbound or allocation.from_inbound, later.cost,
            )
    return list(by_node.values())


def _consolidate(plan: OrderPlan) -> None:
    """ship_complete: every allocation delivers on the order's promise day."""
    day = plan.promise_day
    if day is None:
        return
    for line_plan in plan.lines:
        line_plan.allocations = [
            Allocation(a.node_id, a.quantity, a.ship_day + (day - a.delivery_day), day,
                       a.from_inbound, a.cost)
            for a in line_plan.allocations
        ]


def _iso(day: Day) -> str:
    return datetime.date.fromordinal(day).isoformat()
