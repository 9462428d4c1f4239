"""Re-sourcing at-risk demand (Reallocate) and filling backorders from new supply (§4).

Both walk reservations in the order of their positions' allocation policies
(atp.ledger.allocation_policy; the server default is priority descending, then creation
time) and use the promising logic with each reservation's own destination and policy, so a
plan made here is what Promise would answer for the moved units at that point of the walk.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from atp.ledger import quotas, timeline
from atp.ledger.allocation_policy import AllocationPolicy, SortKey, merge_orders
from atp.ledger.model import Day, Position, Reservation, ReservationLine, promise_day_of
from atp.ledger.promising import Allocation, OrderLine, Planner, free_part_id, line_from
from atp.ledger.view import LedgerView

LineKey = tuple[str, str]


@dataclass(frozen=True)
class Scope:
    node_id: str = ""
    sku: str = ""
    reservation_ids: tuple[str, ...] = ()


@dataclass
class ReservationPlan:
    reservation_id: str
    old_lines: list[ReservationLine]
    new_lines: list[ReservationLine] = field(default_factory=list)
    old_promise_day: Day | None = None
    new_promise_day: Day | None = None
    unfilled_quantity: int = 0
    # (moved line id, its allocations, units left unfilled), applied in order.
    moves: list[tuple[str, list[Allocation], int]] = field(default_factory=list)
    # moved line id -> the lines that replace it.
    replacements: dict[str, list[ReservationLine]] = field(default_factory=dict)
    # The allocation-policy criterion that placed this plan after the one before it.
    decided_by: str = ""

    @property
    def slipped(self) -> bool:
        if self.unfilled_quantity:
            return True
        if self.old_promise_day is None or self.new_promise_day is None:
            return False
        return self.new_promise_day > self.old_promise_day


@dataclass
class ReallocationResult:
    plans: list[ReservationPlan]
    applied: bool
    plan_sequence: int


class Reallocator:
    def __init__(self, ledger: LedgerView, today: Day) -> None:
        self.ledger = ledger
        self.today = today
        self._undo: list[tuple[Position, Day, int]] = []

    # ----- Reallocate ---------------------------------------------------------------------

    def plan(self, scope: Scope) -> list[ReservationPlan]:
        """The plan for every at-risk line in scope, simulated in policy order, then undone.

        All moving lines leave their positions first, so each reservation in policy order
        competes only with those before it, not with the demand of those after it.
        """
        try:
            affected = self._affected(scope)
            for reservation, keys, _ in affected:
                for key in keys:
                    line = reservation.line(key[1])
                    assert line is not None
                    position = self.ledger.positions[(line.sku, line.node_id)]
                    self._shift(position, line.ship_day, -line.open_quantity)
            plans = []
            for reservation, keys, decided_by in affected:
                plan = self._plan_reservation(reservation, keys)
                plan.decided_by = decided_by
                plans.append(plan)
            return plans
        finally:
            self._rollback()

    def _affected(self, scope: Scope) -> list[tuple[Reservation, list[LineKey], str]]:
        """The reservations with at-risk lines in scope, in policy order: each at the place
        of its first at-risk line in the order of that line's position's policy (see
        allocation_policy.merge_orders for positions whose policies differ), with the
        criterion that placed it after the one before and its at-risk lines in scope."""
        ledger = self.ledger
        for reservation_id in scope.reservation_ids:
            ledger.reservation(reservation_id)
        if scope.node_id:
            ledger.node(scope.node_id)
        if scope.sku:
            ledger.known_sku(scope.sku)
        by_reservation: dict[str, list[LineKey]] = {}
        # (reservation, its at-risk lines at one position, that position's key).
        competing: list[tuple[Reservation, list[ReservationLine], tuple[str, str]]] = []
        for position in self._positions_in(scope):
            at_position: dict[str, list[ReservationLine]] = {}
            for key in sorted(position.at_risk):
                if not scope.reservation_ids or key[0] in scope.reservation_ids:
                    by_reservation.setdefault(key[0], []).append(key)
                    at_position.setdefault(key[0], []).append(position.lines[key])
            competing.extend((ledger.reservations[rid], lines, position.key)
                             for rid, lines in at_position.items())

        def key_of(policy: AllocationPolicy,
                   item: tuple[Reservation, list[ReservationLine], tuple[str, str]]) -> SortKey:
            return min(policy.key(item[0], line) for line in item[1])

        ordered = merge_orders(
            competing, lambda item: ledger.policy_for(*item[2]), key_of,
            lambda item: item[0].reservation_id, ledger.default_policy)
        return [(item[0], sorted(by_reservation[item[0].reservation_id]), decided_by)
                for item, decided_by in ordered]

    def _positions_in(self, scope: Scope) -> list[Position]:
        ledger = self.ledger
        if scope.node_id and scope.sku:
            position = ledger.positions.get((scope.sku, scope.node_id))
            return [position] if position is not None else []
        if scope.node_id:
            return list(ledger.positions_by_node.get(scope.node_id, {}).values())
        if scope.sku:
            return list(ledger.positions_by_sku.get(scope.sku, {}).values())
        if scope.reservation_ids:
            wanted = {
                (line.sku, line.node_id)
                for rid in scope.reservation_ids
                for line in ledger.reservation(rid).lines
                if line.at_risk
            }
            return [ledger.positions[key] for key in sorted(wanted)]
        return [p for p in ledger.positions.values() if p.at_risk]

    def _plan_reservation(self, reservation: Reservation, keys: list[LineKey]) -> ReservationPlan:
        plan = ReservationPlan(
            reservation.reservation_id,
            old_lines=[copy.copy(line) for line in reservation.lines],
            old_promise_day=reservation.promise_day,
        )
        moved = [reservation.line(key[1]) for key in keys]
        for line in moved:
            assert line is not None
            allocations = self._resource(reservation, line.sku, line.node_id, line.open_quantity)
            for allocation in allocations:
                self._shift(self.ledger.positions[(line.sku, allocation.node_id)],
                            allocation.ship_day, allocation.quantity)
            unfilled = line.open_quantity - sum(a.quantity for a in allocations)
            plan.moves.append((line.line_id, allocations, unfilled))
            plan.unfilled_quantity += unfilled
        plan.replacements = _replacements(reservation, plan.moves)
        plan.new_lines = [
            new
            for line in reservation.lines
            for new in plan.replacements.get(line.line_id, [copy.copy(line)])
        ]
        plan.new_promise_day = promise_day_of(plan.new_lines)
        return plan

    def _resource(
        self, reservation: Reservation, sku: str, node_id: str, quantity: int
    ) -> list[Allocation]:
        """Where the units can go now: any node by the reservation's policy, or later at its
        node; the other channels' allocations fenced from the reservation's channel."""
        anywhere = "" if reservation.destination_region else node_id
        fence = quotas.fence_for(self.ledger, [(sku, anywhere)], reservation.channel,
                                 self.today, self.ledger.include_safety_stock(reservation.priority))
        if fence is None:
            return self._unfenced_resource(reservation, sku, node_id, quantity)
        try:
            return fence.cap_allocations(
                sku, self._unfenced_resource(reservation, sku, node_id, quantity))
        finally:
            fence.undo()

    def _unfenced_resource(
        self, reservation: Reservation, sku: str, node_id: str, quantity: int
    ) -> list[Allocation]:
        if reservation.destination_region:
            policy = replace(reservation.policy, allow_partial=True)
            planner = Planner(self.ledger, self.today, reservation.destination_region, policy,
                              reservation.priority)
            line_plan = planner.plan([OrderLine("move", sku, quantity)]).lines[0]
            return line_plan.allocations
        return self._same_node(reservation, sku, node_id, quantity)

    def _same_node(
        self, reservation: Reservation, sku: str, node_id: str, quantity: int
    ) -> list[Allocation]:
        node = self.ledger.nodes[node_id]
        position = self.ledger.positions[(sku, node_id)]
        if not node.active:
            return []
        include_safety = self.ledger.include_safety_stock(reservation.priority)
        most = min(quantity, timeline.max_promisable(position, self.today, include_safety))
        if most <= 0:
            return []
        day = timeline.earliest_day(position, self.today, self.today + node.handling_days, most,
                                    include_safety)
        assert day is not None
        return [Allocation(node_id, most, day, day, day > self.today + node.handling_days, 0)]

    def _shift(self, position: Position, day: Day, demand: int) -> None:
        """Adds demand (negative: removes it) tentatively; undone by _rollback."""
        position.add_delta(day, -demand)
        self._undo.append((position, day, demand))

    def _rollback(self) -> None:
        while self._undo:
            position, day, demand = self._undo.pop()
            position.add_delta(day, demand)

    # ----- backorder fill -------------------------------------------------------------------

    def backorder_fills(
        self, sku: str
    ) -> list[tuple[Reservation, ReservationLine, list[Allocation]]]:
        """What open supply can give the backordered lines of a sku, in policy order (undone):
        each line under the policy of its position (the SKU's where it has no node)."""
        ledger = self.ledger
        keys = [key for key, _ in self.backorder_order(sku)]
        fills = []
        try:
            for reservation_id, line_id in keys:
                reservation = ledger.reservations[reservation_id]
                line = reservation.line(line_id)
                assert line is not None and line.backordered_quantity > 0
                allocations = self._fill_allocations(reservation, line)
                for allocation in allocations:
                    self._shift(ledger.positions[(sku, allocation.node_id)], allocation.ship_day,
                                allocation.quantity)
                if allocations:
                    fills.append((reservation, line, allocations))
        finally:
            self._rollback()
        return fills

    def backorder_order(self, sku: str) -> list[tuple[LineKey, str]]:
        """The backordered lines of a sku in the order they are filled, each with the
        criterion that placed it after the one before."""
        ledger = self.ledger

        def line_of(key: LineKey) -> ReservationLine:
            line = ledger.reservations[key[0]].line(key[1])
            assert line is not None
            return line

        return merge_orders(
            sorted(ledger.backorders.get(sku, ())),
            lambda key: ledger.policy_for(sku, line_of(key).node_id),
            lambda policy, key: policy.key(ledger.reservations[key[0]], line_of(key)),
            lambda key: key, ledger.default_policy)

    def _fill_allocations(
        self, reservation: Reservation, line: ReservationLine
    ) -> list[Allocation]:
        if reservation.destination_region or line.node_id:
            return self._resource(reservation, line.sku, line.node_id, line.backordered_quantity)
        return []


def _replacements(
    reservation: Reservation, moves: list[tuple[str, list[Allocation], int]]
) -> dict[str, list[ReservationLine]]:
    """For each moved line, the lines that carry its open units where its allocations say."""
    taken = {line.line_id for line in reservation.lines}
    result: dict[str, list[ReservationLine]] = {}
    for line_id, allocations, unfilled in moves:
        line = reservation.line(line_id)
        assert line is not None
        result[line_id] = replacement_lines(
            line, allocations, unfilled, taken, bool(reservation.destination_region)
        )
    return result


def replacement_lines(
    line: ReservationLine,
    allocations: list[Allocation],
    unfilled: int,
    taken: set[str],
    has_destination: bool,
) -> list[ReservationLine]:
    """The lines that carry a line's open units after it moves; its history stays on it."""
    result: list[ReservationLine] = []
    history = line.fulfilled_quantity + line.released_quantity
    if history:
        result.append(replace(line, quantity=history, at_risk=False, at_risk_reason="",
                              backordered_quantity=0))
    origin = line.request_line_of  # every line carrying its units holds part of it
    new_lines = [
        line_from(
            allocation,
            line.line_id if not result and index == 0 else free_part_id(line.line_id, taken),
            line.sku,
            has_destination,
            origin,
            line.unit_value,
            line.substitute_for,
        )
        for index, allocation in enumerate(allocations)
    ]
    backordered = unfilled + line.backordered_quantity
    if backordered and not new_lines:
        # Without a destination only the line's own node can fill it later, so it stays there.
        line_id = line.line_id if not result else free_part_id(line.line_id, taken)
        new_lines.append(ReservationLine(
            line_id=line_id, sku=line.sku,
            node_id="" if has_destination else line.node_id, quantity=0, ship_day=line.ship_day,
            request_line_id="" if origin == line_id else origin,
            unit_value=line.unit_value, substitute_for=line.substitute_for,
        ))
    if new_lines:
        new_lines[0].backordered_quantity = backordered
    return result + new_lines
