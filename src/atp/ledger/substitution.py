"""Substitute SKUs (docs/contract.md, "Substitutes"): an order line may list other SKUs, in
preference order, to take when its own SKU cannot meet the request.

A line's own SKU **cannot meet** the request when the best plan cannot promise it in full
(the order would be refused, or the line would backorder units under allow_partial), or when
its promise day (the latest delivery day of its allocations) is after the line's
need_by_date. Its substitutes are then tried in order, each as a whole line of the same
quantity, same destination, policy and priority, against the ledger with the rest of the
order's demand in place (the other lines' own allocations, or the substitutes already chosen
for earlier lines); the first that can be promised in full, and by need_by_date when given,
is the line's substitute. need_by_date without substitutes changes nothing.

Promise offers it (LinePromise.substitute) and still answers for the line's own SKU; Reserve
with allow_substitution holds it instead of the line's own SKU (handlers/placing.py).
Like the planner, this module only simulates: every unit it puts on a timeline it takes off
before returning, in the same synchronous step.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import NamedTuple

from atp.ledger.event_data import iso
from atp.ledger.model import Day
from atp.ledger.promising import (
    Allocation,
    LinePlan,
    OrderLine,
    OrderPlan,
    Planner,
    SubstituteCheck,
    SubstituteOffer,
    SubstituteOutcome,
)


class LineChoice(NamedTuple):
    """What substitution decided for one line: the substitute taken (None: its own SKU) and,
    with explain, each substitute's outcome."""

    offer: SubstituteOffer | None
    checks: list[SubstituteCheck]


def promise(planner: Planner, lines: list[OrderLine], explain: bool = False) -> OrderPlan:
    """Promise's plan: the line's own SKU answers as without substitutes; a line whose own
    SKU cannot meet the request carries the substitute offered (LinePlan.substitute)."""
    if not any(line.substitute_skus for line in lines):
        return planner.plan(lines, explain)
    best = planner.best_effort(lines)
    choices = choose(planner, best, explain)
    plan = planner.finish(best, explain)
    for line_plan, choice in zip(plan.lines, choices, strict=True):
        line_plan.substitute = choice.offer
        line_plan.substitutes = choice.checks
    return plan


def reserve(planner: Planner, lines: list[OrderLine]) -> OrderPlan:
    """Reserve's plan with substitution allowed: each line whose own SKU cannot meet the
    request and that has a feasible substitute holds the substitute instead (its LinePlan's
    line names the substitute SKU); the others as without substitution."""
    best = planner.best_effort(lines)
    choices = choose(planner, best, explain=False)
    substituted = [
        line_plan if choice.offer is None else LinePlan(
            OrderLine(line_plan.line.line_id, choice.offer.sku, line_plan.line.quantity),
            list(choice.offer.allocations),
        )
        for line_plan, choice in zip(best.lines, choices, strict=True)
    ]
    return planner.finish(OrderPlan(substituted))


def choose(planner: Planner, best: OrderPlan, explain: bool) -> list[LineChoice]:
    """For each line of a best-effort plan (Planner.best_effort), its substitute if it needs
    and finds one, in line order, each later line seeing the earlier lines' choices."""
    # The demand each line puts on the ledger while another line's substitutes are tried.
    demand: list[tuple[str, list[Allocation]]] = [
        (line_plan.line.sku, line_plan.allocations) for line_plan in best.lines
    ]
    choices: list[LineChoice] = []
    for index, line_plan in enumerate(best.lines):
        line = line_plan.line
        if not line.substitute_skus:
            choices.append(LineChoice(None, []))
            continue
        need_by = need_by_day(line.need_by_date)
        reason = shortcoming(line_plan, need_by)
        if not reason:
            checks = [
                SubstituteCheck(sku, SubstituteOutcome.NOT_CONSIDERED,
                                f"not needed: {line.sku} meets the request")
                for sku in line.substitute_skus
            ] if explain else []
            choices.append(LineChoice(None, checks))
            continue
        others = [entry for other, entry in enumerate(demand) if other != index]
        _put(planner, others, -1)
        try:
            choice = _first_feasible(planner, line, need_by, reason, explain)
        finally:
            _put(planner, others, 1)
        if choice.offer is not None:
            demand[index] = (choice.offer.sku, choice.offer.allocations)
        choices.append(choice)
    return choices


def need_by_day(date: tuple[int, int, int] | None) -> Day | None:
    """A line's need_by_date (year, month, day) as a day (validated before planning)."""
    return None if date is None else datetime.date(*date).toordinal()


def shortcoming(line_plan: LinePlan, need_by: Day | None) -> str:
    """Why the line's own SKU cannot meet the request, one sentence; "" when it can.
    Its own allocations decide, also under ship_complete: a later line that holds the whole
    order back is not this line's fault, and no substitute for this line would help."""
    line = line_plan.line
    backordered = line_plan.backordered_quantity
    if backordered:
        promised = line.quantity - backordered
        if promised == 0:
            return f"none of the {line.quantity} units of {line.sku} can be promised"
        return f"only {promised} of {line.quantity} units of {line.sku} can be promised"
    day = _latest_delivery(line_plan.allocations)
    if need_by is not None and day is not None and day > need_by:
        return f"{line.sku} delivers {iso(day)}, after need_by {iso(need_by)}"
    return ""


def _first_feasible(
    planner: Planner, line: OrderLine, need_by: Day | None, reason: str, explain: bool
) -> LineChoice:
    """Tries the line's substitutes in order (the rest of the order's demand in place)."""
    checks: list[SubstituteCheck] = []
    offer: SubstituteOffer | None = None
    for sku in line.substitute_skus:
        if offer is not None:
            if not explain:
                break
            checks.append(SubstituteCheck(sku, SubstituteOutcome.NOT_CONSIDERED,
                                          f"not considered: {offer.sku} was offered first"))
            continue
        outcome, detail, allocations, day = _try(planner, line, sku, need_by)
        checks.append(SubstituteCheck(sku, outcome, detail))
        if outcome is SubstituteOutcome.OFFERED and day is not None:
            offer = SubstituteOffer(sku, allocations, day, reason)
    return LineChoice(offer, checks if explain else [])


def _try(
    planner: Planner, line: OrderLine, sku: str, need_by: Day | None
) -> tuple[SubstituteOutcome, str, list[Allocation], Day | None]:
    """One substitute as a whole line of the same quantity: its outcome, the sentence, and
    (when it can be promised) its allocations and promise day."""
    if sku not in planner.ledger.positions_by_sku:
        return SubstituteOutcome.UNKNOWN_SKU, f"{sku} was never stocked", [], None
    trial = OrderLine(line.line_id, sku, line.quantity)
    line_plan = planner.best_effort([trial]).lines[0]
    backordered = line_plan.backordered_quantity
    if backordered:
        promised = line.quantity - backordered
        detail = f"only {promised} of {line.quantity} units of {sku} can be promised"
        return SubstituteOutcome.INCOMPLETE, detail, [], None
    day = _latest_delivery(line_plan.allocations)
    if need_by is not None and day is not None and day > need_by:
        return (SubstituteOutcome.LATE,
                f"{sku} delivers {iso(day)}, after need_by {iso(need_by)}", [], None)
    when = f", delivering {iso(day)}" if day is not None else ""
    return (SubstituteOutcome.OFFERED, f"offered: {line.quantity} units of {sku}{when}",
            line_plan.allocations, day)


def _put(planner: Planner, demand: Sequence[tuple[str, list[Allocation]]], sign: int) -> None:
    """Adds (sign -1) or takes back (sign 1) the demand of allocations on their timelines."""
    positions = planner.ledger.positions
    for sku, allocations in demand:
        for allocation in allocations:
            positions[(sku, allocation.node_id)].add_delta(
                allocation.ship_day, sign * allocation.quantity)


def _latest_delivery(allocations: Sequence[Allocation]) -> Day | None:
    return max((a.delivery_day for a in allocations), default=None)
