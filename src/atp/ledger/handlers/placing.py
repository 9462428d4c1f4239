"""Where a Reserve's lines go: lines naming a node are fitted there; the others are sourced
by the promising planner against what is left, in the same step. Either every line fits
(its demand put on the position timelines) or nothing changed."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from atp.ledger import commands, quotas, substitution, timeline
from atp.ledger.errors import (
    NODE_INACTIVE,
    SHIP_DATE_INFEASIBLE,
    FailedPrecondition,
    InsufficientAvailability,
    InvalidArgument,
    LedgerError,
    Shortfall,
)
from atp.ledger.event_data import iso
from atp.ledger.model import Day, Node, Position, ReservationLine
from atp.ledger.promising import (
    LinePlan,
    OrderLine,
    OrderPlan,
    Planner,
    free_part_id,
    line_from,
)
from atp.ledger.refusals import shortfall
from atp.ledger.state import LedgerState


@dataclass(slots=True)
class Placement:
    """A reservation line and the position that holds it (a position without a node for a
    sourced line wholly backordered)."""

    position: Position
    line: ReservationLine


def place_lines(
    state: LedgerState, command: commands.Reserve, requested_days: list[Day | None], today: Day
) -> list[Placement]:
    """Fits every line (their demand added to the timelines) or raises having undone all.
    The other channels' allocations of the lines' SKUs are fenced meanwhile."""
    if not state.channel_allocations:  # no SKU has one: nothing to fence
        return _place_lines(state, command, requested_days, today)
    fence = quotas.fence_for_reserve(state, command, today,
                                     state.include_safety_stock(command.priority))
    if fence is None:
        return _place_lines(state, command, requested_days, today)
    try:
        placements = _place_lines(state, command, requested_days, today)
        try:
            fence.enforce_on_lines([(p.position, p.line) for p in placements if p.line.node_id],
                                   command.policy.allow_partial)
        except LedgerError:
            for placement in placements:
                placement.position.add_delta(placement.line.ship_day, placement.line.quantity)
            raise
        return placements
    except InsufficientAvailability as error:
        raise fence.explained(
            error, {f"line {line.line_id}": line.sku for line in command.lines}) from None
    finally:
        fence.undo()


def _place_lines(
    state: LedgerState, command: commands.Reserve, requested_days: list[Day | None], today: Day
) -> list[Placement]:
    include_safety = state.include_safety_stock(command.priority)
    placements: list[Placement] = []
    shortfalls: list[Shortfall] = []
    any_unsourced = False
    try:
        for index, (request, requested_day) in enumerate(zip(command.lines, requested_days)):
            if not request.node_id:
                any_unsourced = True
                continue
            placement = _fit_or_substitute(
                state, command, index, request, requested_day, today, include_safety, shortfalls
            )
            if placement is not None:
                placement.position.add_delta(placement.line.ship_day, -placement.line.quantity)
                placements.append(placement)
        if shortfalls:
            raise InsufficientAvailability(shortfalls)
        if any_unsourced:
            placements += _source_lines(state, command, requested_days, today)
    except LedgerError:
        for placement in placements:
            placement.position.add_delta(placement.line.ship_day, placement.line.quantity)
        raise
    return placements


def _fit_line(
    state: LedgerState,
    command: commands.Reserve,
    index: int,
    request: commands.LineRequest,
    requested_day: Day | None,
    today: Day,
    include_safety: bool,
    shortfalls: list[Shortfall],
) -> Placement | None:
    """Where and when the line fits at its node; None (and a shortfall) when it does not."""
    node = state.nodes.get(request.node_id)
    if node is None or not node.active:
        node = _active_node(state, request.node_id)  # raises the error that says which
    by_node = state.positions_by_sku.get(request.sku)
    if by_node is None:
        by_node = state.known_sku(request.sku)  # raises NotFound
    position = by_node.get(node.node_id)
    if position is None:
        position = Position(request.sku, node.node_id)
    earliest = today + node.handling_days
    if requested_day is not None and requested_day < earliest:
        raise FailedPrecondition(
            SHIP_DATE_INFEASIBLE,
            f"lines[{index}]: ship date {iso(requested_day)} is before the earliest "
            f"possible {iso(earliest)} at {node.node_id} ({node.handling_days} handling days)",
            {"line_id": request.line_id, "earliest_ship_date": iso(earliest)},
        )
    steps = timeline.atp_steps(position, today, include_safety)
    quantity, ship_day = _fit_quantity(
        request, requested_day, steps, earliest, command.policy.allow_partial
    )
    if quantity == 0 and not command.policy.allow_partial:
        shortfalls.append(_line_shortfall(index, request, requested_day, today, position, steps))
        return None
    # Positional, in field order: a dataclass called with keywords gets them as a dict
    # (slot_tp_init), matched to its parameters by name; on every line of every reserve.
    line = ReservationLine(
        # The position's own strings and interned line ids: a million lines share them.
        sys.intern(request.line_id),  # line_id
        position.sku,  # sku
        node.node_id,  # node_id
        quantity,  # quantity
        ship_day,  # ship_day
        _delivery_day(node, command.destination_region, ship_day),  # delivery_day
        0,  # fulfilled_quantity
        0,  # released_quantity
        request.quantity - quantity,  # backordered_quantity
        quantity > 0  # from_inbound
        and bool(position.supply_days)
        and steps[0][1] - timeline.supply_due(position, today) < quantity,
    )
    if request.unit_value:
        line.unit_value = request.unit_value
    return Placement(position, line)


def _fit_or_substitute(
    state: LedgerState,
    command: commands.Reserve,
    index: int,
    request: commands.LineRequest,
    requested_day: Day | None,
    today: Day,
    include_safety: bool,
    shortfalls: list[Shortfall],
) -> Placement | None:
    """_fit_line, or with allow_substitution, when the line's own SKU cannot be held in full
    (or not by need_by_date) at its node, the first substitute that can be there
    (ledger/substitution.py); no substitute can: the line's own fit (or shortfall)."""
    if not (command.allow_substitution and request.substitute_skus):
        return _fit_line(state, command, index, request, requested_day, today, include_safety,
                         shortfalls)
    own_shortfalls: list[Shortfall] = []
    placement = _fit_line(state, command, index, request, requested_day, today, include_safety,
                          own_shortfalls)
    need_by = substitution.need_by_day(request.need_by_date)
    if not _meets(placement, need_by):
        for sku in request.substitute_skus:
            if sku not in state.positions_by_sku:
                continue  # never stocked: skipped, not an error
            substitute = commands.LineRequest(request.line_id, sku, request.quantity,
                                              request.node_id, request.ship_date,
                                              request.unit_value)
            trial = _fit_line(state, command, index, substitute, requested_day, today,
                              include_safety, [])
            if trial is not None and _meets(trial, need_by):
                trial.line.substitute_for = request.sku
                return trial
    shortfalls += own_shortfalls
    return placement


def _meets(placement: Placement | None, need_by: Day | None) -> bool:
    """The placement holds its whole line, by need_by (its delivery day, else ship day)."""
    if placement is None or placement.line.backordered_quantity:
        return False
    line = placement.line
    day = line.delivery_day if line.delivery_day is not None else line.ship_day
    return need_by is None or day <= need_by


def _line_shortfall(
    index: int, request: commands.LineRequest, requested_day: Day | None, today: Day,
    position: Position, steps: list[tuple[Day, int]],
) -> Shortfall:
    available = max(0, timeline.atp_in(steps, requested_day or today))
    later = None if requested_day is None else timeline.earliest_in(
        steps, requested_day, request.quantity)
    return shortfall(f"lines[{index}]", position, request.quantity, available, "available",
                     line_id=request.line_id,
                     note=f"; enough from {iso(later)}" if later is not None else "")


def _active_node(state: LedgerState, node_id: str) -> Node:
    node = state.node(node_id)
    if not node.active:
        raise FailedPrecondition(
            NODE_INACTIVE, f"node {node_id!r} is inactive", {"node_id": node_id}
        )
    return node


def _source_lines(
    state: LedgerState, command: commands.Reserve, requested_days: list[Day | None], today: Day
) -> list[Placement]:
    """Sources the lines that name no node, holding the plan Promise would return."""
    indexed = [(i, line) for i, line in enumerate(command.lines) if not line.node_id]
    for index, line in indexed:
        if requested_days[index] is not None:
            raise InvalidArgument.single(
                f"lines[{index}].ship_date", "only for lines that name a node"
            )
    planner = Planner(state, today, command.destination_region, command.policy, command.priority)
    if command.allow_substitution and any(line.substitute_skus for _, line in indexed):
        plan = substitution.reserve(planner, [
            OrderLine(line.line_id, line.sku, line.quantity, line.substitute_skus,
                      line.need_by_date)
            for _, line in indexed
        ])
    elif isinstance(state.offered_plan, OrderPlan):  # a gateway's, still valid
        plan = state.offered_plan
    else:
        plan = planner.plan(
            [OrderLine(line.line_id, line.sku, line.quantity) for _, line in indexed]
        )
    if not plan.complete and not command.policy.allow_partial:
        raise InsufficientAvailability(
            [_network_shortfall(planner, line) for _, line in indexed]
        )
    planner.hold(plan)
    taken_ids = {line.line_id for line in command.lines}
    values = {line.line_id: line.unit_value for _, line in indexed}
    requested_skus = {line.line_id: line.sku for _, line in indexed}
    return [
        placement
        for line_plan in plan.lines
        for placement in _placements_of(state, line_plan, today, taken_ids,
                                        values[line_plan.line.line_id],
                                        requested_skus[line_plan.line.line_id])
    ]


def _network_shortfall(planner: Planner, line: commands.LineRequest) -> Shortfall:
    most = sum(planner.most_at(node, line.sku) for node in planner.nodes)
    serving = len(planner.nodes)
    # No node serving the region is a different fix (a lane, a node activated) from too little
    # stock, so the message says which it is.
    where = (
        f"no active node has a lane to region {planner.region}"
        if serving == 0
        else f"available {most} across the {serving} active "
        f"{'node' if serving == 1 else 'nodes'} serving {planner.region}"
    )
    return Shortfall(
        subject=f"line {line.line_id}",
        description=f"line {line.line_id} ({line.sku}, sourced to {planner.region}): "
        f"requested {line.quantity}, {where}",
        requested=line.quantity,
        available=most,
    )


def _placements_of(
    state: LedgerState, line_plan: LinePlan, today: Day, taken_ids: set[str], unit_value: int,
    requested_sku: str = "",
) -> list[Placement]:
    """One reservation line per allocation; a split line's extra parts get ids like l1/2.
    requested_sku: the request's SKU (the plan's differs when it holds a substitute)."""
    line = line_plan.line
    substitute_for = requested_sku if requested_sku and requested_sku != line.sku else ""
    placements: list[Placement] = []
    for part, allocation in enumerate(line_plan.allocations, start=1):
        line_id = line.line_id if part == 1 else free_part_id(line.line_id, taken_ids)
        position = state.positions[(line.sku, allocation.node_id)]
        placements.append(Placement(
            position, line_from(allocation, line_id, line.sku, True, line.line_id,
                                unit_value, substitute_for)))
    backordered = line_plan.backordered_quantity
    if placements:
        placements[0].line.backordered_quantity = backordered
    else:
        unplaced = ReservationLine(
            line_id=line.line_id, sku=line.sku, node_id="", quantity=0, ship_day=today,
            backordered_quantity=backordered, unit_value=unit_value,
        )
        placements.append(Placement(Position(line.sku, ""), unplaced))
    return placements


def _fit_quantity(
    request: commands.LineRequest,
    requested_day: Day | None,
    steps: list[tuple[Day, int]],
    earliest: Day,
    allow_partial: bool,
) -> tuple[int, Day]:
    """(units that fit, ship day) from the position's ATP steps: all, a part, or none."""
    if requested_day is not None:
        atp = timeline.atp_in(steps, requested_day)
        if atp >= request.quantity:
            return request.quantity, requested_day
        return (max(0, atp) if allow_partial else 0), requested_day
    day = timeline.earliest_in(steps, earliest, request.quantity)
    if day is not None:
        return request.quantity, day
    if not allow_partial:
        return 0, earliest
    most = min(request.quantity, max(0, steps[-1][1]))
    day = timeline.earliest_in(steps, earliest, most) if most else None
    return most, day if day is not None else earliest


def _delivery_day(node: Node, region: str, ship_day: Day) -> Day | None:
    lane = node.lane_to(region) if region else None
    return ship_day + lane.transit_days if lane else None
