"""Properties of promising (docs/contract.md) over random small networks and orders.

Each example builds a ledger of 2-5 nodes (random handling days, lanes, costs, activity),
stock, inbound supply, safety stock, holds and existing reservations, then asks for a promise
of a 1-4 line order under a random policy, and checks what must hold of any answer, then
reserves the same order with no nodes named and checks it holds exactly the promise.
"""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedDict

from atp.ledger import Ledger, LedgerConfig, day_of, errors, timeline
from atp.ledger import commands
from atp.ledger.model import Lane, Objective, Policy, Position
from atp.ledger.promising import CandidateOutcome, OrderLine, OrderPlan

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
REGION = "EU"
SKUS = ("S0", "S1", "S2")
SAFETY_PRIORITY = 100


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


# ----- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    handling: int
    transit: int
    cost: int
    active: bool
    lane: bool  # has a lane to REGION (else only a lane elsewhere)


@dataclass(frozen=True)
class Scenario:
    nodes: tuple[NodeSpec, ...]
    stock: tuple[tuple[str, str, int], ...]
    supply: tuple[tuple[str, str, int, int], ...]
    safety: tuple[tuple[str, str, int], ...]
    holds: tuple[tuple[str, str, int], ...]
    named: tuple[tuple[str, str, int, int | None, bool], ...]  # sku, node, qty, ship day, commit
    sourced: tuple[tuple[str, int, Policy], ...]  # earlier sourced orders: sku, qty, policy
    lines: tuple[tuple[str, str, int], ...]
    policy: Policy
    priority: int


policies = st.builds(
    Policy,
    ship_complete=st.sampled_from([False, False, True]),
    max_nodes=st.integers(0, 3),
    allow_partial=st.booleans(),
    objective=st.sampled_from(list(Objective)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(2, 5))
    nodes = tuple(
        NodeSpec(
            node_id=f"N{index}",
            handling=draw(st.integers(0, 3)),
            transit=draw(st.integers(0, 4)),
            cost=draw(st.integers(0, 9)),
            active=draw(st.booleans().map(lambda b: b or draw(st.booleans()))),  # mostly active
            lane=draw(st.integers(0, 4)) > 0,  # mostly laned
        )
        for index in range(count)
    )
    node_ids = st.sampled_from([node.node_id for node in nodes])
    skus = st.sampled_from(SKUS)
    # Most (sku, node) pairs have a position; None leaves the pair without one.
    stock = tuple(
        (sku, node.node_id, quantity)
        for sku in SKUS
        for node in nodes
        if (quantity := draw(st.none() | st.integers(0, 20) | st.integers(6, 20))) is not None
    )
    supply = tuple(draw(st.lists(
        st.tuples(skus, node_ids, st.integers(1, 10), st.integers(-1, 9)), max_size=4)))
    safety = tuple(draw(st.lists(st.tuples(skus, node_ids, st.integers(1, 4)), max_size=2)))
    holds = tuple(draw(st.lists(st.tuples(skus, node_ids, st.integers(1, 5)), max_size=2)))
    named = tuple(draw(st.lists(
        st.tuples(skus, node_ids, st.integers(1, 8), st.none() | st.integers(0, 9), st.booleans()),
        max_size=3,
    )))
    sourced = tuple(draw(st.lists(st.tuples(skus, st.integers(1, 8), policies), max_size=2)))
    line_count = draw(st.integers(1, 4))
    lines = tuple(
        (f"l{index}", draw(skus), draw(st.integers(1, 10))) for index in range(1, line_count + 1)
    )
    return Scenario(
        nodes=nodes, stock=stock, supply=supply, safety=safety, holds=holds, named=named,
        sourced=sourced, lines=lines, policy=draw(policies),
        priority=draw(st.sampled_from([0, 50, 99, SAFETY_PRIORITY, 200])),
    )


def build(scenario: Scenario) -> Ledger:
    ledger = Ledger(LedgerConfig(safety_stock_priority_min=SAFETY_PRIORITY))
    for node in scenario.nodes:
        lane = Lane(REGION, node.transit, node.cost) if node.lane else Lane("APAC", node.transit, 1)
        ledger.execute(
            commands.UpsertNode(node.node_id, handling_days=node.handling, active=node.active,
                         lanes=(lane,)),
            NOW,
        )
    # Every SKU is known (at N0 at least), so an order never fails with NOT_FOUND.
    movements = [commands.Movement(sku, "N0", "CYCLE_COUNT", 0) for sku in SKUS]
    movements += [commands.Movement(sku, node_id, "CYCLE_COUNT", qty) for sku, node_id, qty in scenario.stock]
    ledger.execute(commands.AdjustStock("seed", tuple(movements)), NOW)
    for index, (sku, node_id, quantity, day) in enumerate(scenario.supply):
        ledger.execute(commands.UpsertSupply(f"po-{index}", sku, node_id, quantity, date_after(day)), NOW)
    for sku, node_id, quantity in scenario.safety:
        ledger.execute(commands.SetSafetyStock(sku, node_id, quantity), NOW)
    for index, (sku, node_id, quantity) in enumerate(scenario.holds):
        ledger.execute(commands.PlaceHold(f"hold-{index}", sku, node_id, quantity, force=True), NOW)
    for index, (sku, node_id, quantity, ship_day, commit) in enumerate(scenario.named):
        ship_date = None if ship_day is None else date_after(ship_day)
        try:
            ledger.execute(
                commands.Reserve(f"pre-{index}", (commands.LineRequest("l", sku, quantity, node_id, ship_date),),
                          destination_region=REGION, commit=commit),
                NOW,
            )
        except errors.LedgerError:
            pass  # inactive node, not enough ATP, ship date too soon: no such reservation
    for index, (sku, quantity, policy) in enumerate(scenario.sourced):
        try:
            ledger.execute(
                commands.Reserve(f"src-{index}", (commands.LineRequest("l", sku, quantity),),
                          destination_region=REGION, policy=policy),
                NOW,
            )
        except errors.LedgerError:
            pass
    assert ledger.check_invariants() == []
    ledger.take_changes()
    return ledger


def order(scenario: Scenario) -> list[OrderLine]:
    return [OrderLine(line_id, sku, quantity) for line_id, sku, quantity in scenario.lines]


def promise(ledger: Ledger, scenario: Scenario, explain: bool = False) -> OrderPlan:
    return ledger.promise(order(scenario), REGION, scenario.policy, scenario.priority, NOW,
                          explain=explain)


# ----- helpers --------------------------------------------------------------------------------


def flat(plan: OrderPlan) -> tuple[Any, ...]:
    return (
        tuple(
            (lp.line, tuple(lp.allocations), lp.backordered_quantity, lp.backorder_day,
             tuple(lp.candidates))
            for lp in plan.lines
        ),
        plan.promise_day,
        plan.complete,
    )


def state_of(ledger: Ledger) -> dict[str, Any]:
    return {
        "positions": {
            key: (p.on_hand, p.safety_stock, p.allocated, p.reserved, p.held, p.inbound,
                  dict(p.deltas), sorted(p.lines))
            for key, p in ledger.positions.items()
        },
        "reservations": sorted(ledger.known_reservations()),
        "holds": sorted(ledger.known_holds()),
        "supplies": sorted(ledger.supplies),
        "sequence": ledger.sequence,
    }


def copy_position(position: Position) -> Position:
    return Position(
        position.sku, position.node_id, on_hand=position.on_hand,
        safety_stock=position.safety_stock, held=position.held, deltas=SortedDict(position.deltas),
    )


def lowest_net(position: Position, include_safety: bool) -> int:
    return min(net for _, net in timeline.net_steps(position, TODAY, include_safety))


def single_node_score(
    ledger: Ledger, scenario: Scenario, node_id: str
) -> tuple[object, ...] | None:
    """The score of filling the whole order from one node, worked out independently."""
    node = ledger.nodes[node_id]
    lane = node.lane_to(REGION)
    if not node.active or lane is None:
        return None
    include_safety = scenario.priority >= SAFETY_PRIORITY
    copies: dict[str, Position] = {}
    deliveries = []
    for _, sku, quantity in scenario.lines:
        if (sku, node_id) not in ledger.positions:
            return None
        position = copies.setdefault(sku, copy_position(ledger.positions[(sku, node_id)]))
        day = timeline.earliest_day(
            position, TODAY, TODAY + node.handling_days, quantity, include_safety
        )
        if day is None:
            return None
        position.add_delta(day, -quantity)
        deliveries.append(day + lane.transit_days)
    if scenario.policy.objective is Objective.CHEAPEST:
        return (0, lane.cost, 1, max(deliveries), (node_id,))
    return (0, max(deliveries), 1, lane.cost, (node_id,))


def single_node_units(ledger: Ledger, scenario: Scenario, node_id: str) -> int | None:
    """The most units of the order one node can promise (any days), worked out independently."""
    node = ledger.nodes[node_id]
    if not node.active or node.lane_to(REGION) is None:
        return None
    include_safety = scenario.priority >= SAFETY_PRIORITY
    demand: dict[str, int] = {}
    for _, sku, quantity in scenario.lines:
        demand[sku] = demand.get(sku, 0) + quantity
    units = 0
    for sku, quantity in demand.items():
        position = ledger.positions.get((sku, node_id))
        if position is not None:
            units += min(quantity, timeline.max_promisable(position, TODAY, include_safety))
    return units


def eligible_positions(ledger: Ledger, sku: str) -> list[tuple[Any, Position]]:
    """(node, position of sku) for every active node with a lane to REGION."""
    return [
        (node, ledger.positions[(sku, node.node_id)])
        for node in ledger.nodes.values()
        if node.active and node.lane_to(REGION) is not None and (sku, node.node_id) in ledger.positions
    ]


def earliest_possible_delivery(ledger: Ledger, sku: str, quantity: int, include_safety: bool) -> int | None:
    """The first day D by which the network can deliver `quantity`, any number of nodes: each
    node contributes ATP(D - transit) when that ship day is on or after today + handling."""
    for delivery in range(TODAY, TODAY + 40):
        total = 0
        for node, position in eligible_positions(ledger, sku):
            ship = delivery - node.lane_to(REGION).transit_days
            if ship >= TODAY + node.handling_days:
                total += max(0, timeline.atp_on(position, TODAY, ship, include_safety))
        if total >= quantity:
            return delivery
    return None


def cheapest_possible_cost(ledger: Ledger, sku: str, quantity: int, include_safety: bool) -> int | None:
    """The lowest total lane cost of a set of nodes that can together promise `quantity`."""
    options = eligible_positions(ledger, sku)
    best: int | None = None
    for size in range(1, len(options) + 1):
        for subset in itertools.combinations(options, size):
            units = sum(timeline.max_promisable(p, TODAY, include_safety) for _, p in subset)
            if units >= quantity:
                cost = sum(node.lane_to(REGION).cost for node, _ in subset)
                best = cost if best is None else min(best, cost)
    return best


def one_line_unlimited(scenario: Scenario, objective: Objective) -> Scenario:
    return Scenario(**{**scenario.__dict__, "lines": scenario.lines[:1],
                       "policy": Policy(objective=objective)})


def expected_rows(plan: OrderPlan) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for lp in plan.lines:
        line_id = lp.line.line_id
        if not lp.allocations:
            rows.append((line_id, "", 0, TODAY, lp.backordered_quantity))
        for part, a in enumerate(lp.allocations, start=1):
            rows.append((
                line_id if part == 1 else f"{line_id}/{part}", a.node_id, a.quantity, a.ship_day,
                lp.backordered_quantity if part == 1 else 0,
            ))
    return rows


SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----- properties -----------------------------------------------------------------------------


@SETTINGS
@given(scenarios())
def test_promise_is_consistent_feasible_and_read_only(scenario: Scenario) -> None:
    ledger = build(scenario)
    before = state_of(ledger)
    plan = promise(ledger, scenario, explain=True)

    # Read-only.
    assert state_of(ledger) == before
    assert not ledger.has_changes and not ledger.take_changes()
    assert ledger.check_invariants() == []

    policy = scenario.policy
    include_safety = scenario.priority >= SAFETY_PRIORITY
    assert [lp.line.line_id for lp in plan.lines] == [line_id for line_id, _, _ in scenario.lines]

    # Quantities add up; complete and promise day agree with the allocations.
    for lp in plan.lines:
        assert all(a.quantity > 0 for a in lp.allocations)
        assert sum(a.quantity for a in lp.allocations) + lp.backordered_quantity == lp.line.quantity
        assert lp.backordered_quantity >= 0
        assert len({a.node_id for a in lp.allocations}) == len(lp.allocations)
        if lp.backordered_quantity == 0:
            assert lp.backorder_day is None
        elif lp.backorder_day is not None:
            assert lp.backorder_day >= TODAY
    assert plan.complete == all(lp.backordered_quantity == 0 for lp in plan.lines)
    deliveries = [a.delivery_day for lp in plan.lines for a in lp.allocations]
    assert plan.promise_day == (max(deliveries) if deliveries else None)
    if not plan.complete and not policy.allow_partial:
        assert deliveries == []
        assert all(lp.backordered_quantity == lp.line.quantity for lp in plan.lines)

    # Policy limits.
    used = plan.node_ids
    if policy.max_nodes:
        assert len(used) <= policy.max_nodes
    if policy.ship_complete:
        assert len(used) <= 1
        assert set(deliveries) <= {plan.promise_day}

    # Only active nodes with a lane; dates from handling and transit; the lane's cost.
    for lp in plan.lines:
        for a in lp.allocations:
            node = ledger.nodes[a.node_id]
            lane = node.lane_to(REGION)
            assert node.active and lane is not None
            assert a.ship_day >= TODAY + node.handling_days
            assert a.delivery_day == a.ship_day + lane.transit_days
            assert a.cost == lane.cost

    # Never more than the ATP at the ship date, allocations placed one after another.
    # Units from a position without open supply are never "from inbound".
    copies: dict[tuple[str, str], Position] = {}
    for lp in plan.lines:
        for a in lp.allocations:
            key = (lp.line.sku, a.node_id)
            position = copies.setdefault(key, copy_position(ledger.positions[key]))
            assert timeline.atp_on(position, TODAY, a.ship_day, include_safety) >= a.quantity, (
                f"{a} exceeds ATP on its ship day"
            )
            if ledger.positions[key].inbound == 0:
                assert not a.from_inbound, f"{a} from inbound at a node with no open supply"
            position.add_delta(a.ship_day, -a.quantity)

    # Never worse than filling the whole order from any one node (always a candidate).
    for node_id in ledger.nodes:
        single = single_node_score(ledger, scenario, node_id)
        if single is not None:
            assert plan.score(policy.objective) <= single, (node_id, single)
            assert plan.complete

    # Explanations: one per node of the ledger, "chosen" exactly for the nodes used.
    for lp in plan.lines:
        assert [candidate.node_id for candidate in lp.candidates] == list(ledger.nodes)
        chosen = {node_id for node_id, outcome, _ in lp.candidates if outcome == "CHOSEN"}
        assert chosen == {a.node_id for a in lp.allocations}
        for node_id, outcome, detail in lp.candidates:
            assert outcome in set(CandidateOutcome)
            assert detail.startswith("chosen: ") == (outcome == "CHOSEN")
            node = ledger.nodes[node_id]
            if not node.active:
                assert (outcome, detail) == ("INACTIVE", "inactive")
            elif node.lane_to(REGION) is None:
                assert (outcome, detail) == ("NO_LANE", f"no lane to {REGION}")

    # Deterministic: the same question gets the same answer.
    assert flat(promise(ledger, scenario, explain=True)) == flat(plan)
    assert state_of(ledger) == before


ONE_NODE_STOCK_AND_SUPPLY = Scenario(
    nodes=(NodeSpec("N0", 0, 1, 5, True, True), NodeSpec("N1", 0, 1, 5, False, True)),
    stock=(("S0", "N0", 5),),
    supply=(("S0", "N0", 5, 4),),
    safety=(), holds=(), named=(), sourced=(),
    lines=(("l1", "S0", 12),),
    policy=Policy(allow_partial=True),
    priority=0,
)


@SETTINGS
@example(ONE_NODE_STOCK_AND_SUPPLY)
@given(scenarios())
def test_allow_partial_promises_at_least_what_any_single_node_can(scenario: Scenario) -> None:
    """Every single node is a candidate, and backordered units are the first thing minimised."""
    if not scenario.policy.allow_partial:
        scenario = Scenario(**{**scenario.__dict__, "policy": Policy(
            ship_complete=scenario.policy.ship_complete, max_nodes=scenario.policy.max_nodes,
            allow_partial=True, objective=scenario.policy.objective,
        )})
    ledger = build(scenario)
    plan = promise(ledger, scenario)
    total = sum(quantity for _, _, quantity in scenario.lines)
    promised = total - sum(lp.backordered_quantity for lp in plan.lines)
    for node_id in ledger.nodes:
        units = single_node_units(ledger, scenario, node_id)
        if units is not None:
            assert promised >= units, (node_id, units, promised)


@SETTINGS
@given(scenarios())
def test_earliest_one_line_promise_day_is_optimal(scenario: Scenario) -> None:
    """One line, any number of nodes: the promise day is the first day the network can make."""
    scenario = one_line_unlimited(scenario, Objective.EARLIEST)
    ledger = build(scenario)
    plan = promise(ledger, scenario)
    _, sku, quantity = scenario.lines[0]
    best = earliest_possible_delivery(ledger, sku, quantity, scenario.priority >= SAFETY_PRIORITY)
    assert (plan.promise_day if plan.complete else None) == best


CHEAPER_LATER_SUPPLY = Scenario(
    nodes=(NodeSpec("N0", 0, 1, 5, True, True), NodeSpec("N1", 0, 1, 1, True, True),
           NodeSpec("N2", 0, 1, 1, True, True)),
    stock=(("S0", "N0", 2), ("S0", "N1", 4)),
    supply=(("S0", "N2", 2, 3),),
    safety=(), holds=(), named=(), sourced=(),
    lines=(("l1", "S0", 6),),
    policy=Policy(objective=Objective.CHEAPEST),
    priority=0,
)


@SETTINGS
@example(CHEAPER_LATER_SUPPLY)
@given(scenarios())
def test_cheapest_one_line_cost_is_optimal(scenario: Scenario) -> None:
    """One line, any number of nodes: the total lane cost is the lowest any set of nodes has."""
    scenario = one_line_unlimited(scenario, Objective.CHEAPEST)
    ledger = build(scenario)
    plan = promise(ledger, scenario)
    _, sku, quantity = scenario.lines[0]
    best = cheapest_possible_cost(ledger, sku, quantity, scenario.priority >= SAFETY_PRIORITY)
    assert (plan.cost if plan.complete else None) == best


@SETTINGS
@given(scenarios())
def test_reserve_right_after_promise_holds_exactly_the_promise(scenario: Scenario) -> None:
    ledger = build(scenario)
    plan = promise(ledger, scenario)
    before = state_of(ledger)
    include_safety = scenario.priority >= SAFETY_PRIORITY
    lowest_before = {key: lowest_net(p, include_safety) for key, p in ledger.positions.items()}
    command = commands.Reserve(
        "order",
        tuple(commands.LineRequest(line_id, sku, quantity) for line_id, sku, quantity in scenario.lines),
        destination_region=REGION,
        policy=scenario.policy,
        priority=scenario.priority,
    )
    if not plan.complete and not scenario.policy.allow_partial:
        try:
            ledger.execute(command, NOW)
        except errors.InsufficientAvailability:
            pass
        else:
            raise AssertionError("Reserve succeeded where Promise could not fill the order")
        assert state_of(ledger) == before
        assert not ledger.has_changes
        return
    reservation = ledger.execute(command, NOW)
    rows = [
        (line.line_id, line.node_id, line.quantity, line.ship_day, line.backordered_quantity)
        for line in reservation.lines
    ]
    assert rows == expected_rows(plan)
    assert [line.delivery_day for line in reservation.lines if line.node_id] == [
        a.delivery_day for lp in plan.lines for a in lp.allocations
    ]
    assert reservation.promise_day == plan.promise_day
    assert ledger.check_invariants() == []
    # Holding the promise never made a position short that was not short already.
    for key, position in ledger.positions.items():
        if lowest_before.get(key, 0) >= 0:
            assert lowest_net(position, include_safety) >= 0, key
