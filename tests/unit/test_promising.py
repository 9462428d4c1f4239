"""Promising and sourcing (docs/contract.md) on the Ledger directly, with an injected clock.

A table of worked scenarios, each with hand-computed allocations and dates (days are given
as offsets from TODAY), then explanations, and Reserve holding exactly what Promise quoted.
Every promise is also checked to be read-only.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from atp.ledger import Ledger, LedgerConfig, day_of, errors
from atp.ledger import commands
from atp.ledger.model import Lane, Objective, Policy
from atp.ledger.promising import CandidateOutcome, OrderLine, OrderPlan

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()  # a fixed UTC noon
TODAY = day_of(NOW)
REGION = "EU"

CHEAPEST = Objective.CHEAPEST


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


def iso(days: int) -> str:
    return datetime.date.fromordinal(TODAY + days).isoformat()


# ----- scenario description ------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A node; transit None means it has lanes, but none to REGION."""

    node_id: str
    transit: int | None = 1
    cost: int = 5
    handling: int = 0
    active: bool = True


@dataclass(frozen=True)
class Case:
    name: str
    sites: tuple[Site, ...]
    lines: tuple[tuple[str, str, int], ...]  # (line_id, sku, quantity)
    stock: tuple[tuple[str, str, int], ...] = ()  # (sku, node_id, on_hand)
    supply: tuple[tuple[str, str, int, int], ...] = ()  # (sku, node_id, quantity, day)
    safety: tuple[tuple[str, str, int], ...] = ()  # (sku, node_id, safety_stock)
    holds: tuple[tuple[str, str, int], ...] = ()  # (sku, node_id, quantity)
    committed: tuple[tuple[str, str, int, int], ...] = ()  # (sku, node_id, quantity, ship day)
    policy: Policy = field(default_factory=Policy)
    priority: int = 0
    # Expected: (line_id, node_id, quantity, ship day, delivery day, from_inbound), in plan order.
    allocations: tuple[tuple[str, str, int, int, int, bool], ...] = ()
    # Expected backorders: (line_id, quantity, backorder day or None); other lines have none.
    backorders: tuple[tuple[str, int, int | None], ...] = ()
    promise_day: int | None = None
    complete: bool = True
    cost: int | None = None

    def __str__(self) -> str:
        return self.name


def build(case: Case) -> Ledger:
    ledger = Ledger(LedgerConfig(safety_stock_priority_min=100))
    for site in case.sites:
        lanes = (
            (Lane(REGION, site.transit, site.cost),) if site.transit is not None
            else (Lane("APAC", 1, 1),)
        )
        ledger.execute(
            commands.UpsertNode(site.node_id, handling_days=site.handling, active=site.active, lanes=lanes),
            NOW,
        )
    if case.stock:
        ledger.execute(
            commands.AdjustStock("seed", tuple(
                commands.Movement(sku, node, "RECEIPT" if quantity else "CYCLE_COUNT", quantity)
                for sku, node, quantity in case.stock
            )),
            NOW,
        )
    for index, (sku, node, quantity, day) in enumerate(case.supply):
        ledger.execute(commands.UpsertSupply(f"po-{index}", sku, node, quantity, date_after(day)), NOW)
    for sku, node, quantity in case.safety:
        ledger.execute(commands.SetSafetyStock(sku, node, quantity), NOW)
    for index, (sku, node, quantity) in enumerate(case.holds):
        ledger.execute(commands.PlaceHold(f"hold-{index}", sku, node, quantity, force=True), NOW)
    for index, (sku, node, quantity, day) in enumerate(case.committed):
        ledger.execute(
            commands.Reserve(f"pre-{index}", (commands.LineRequest("l", sku, quantity, node, date_after(day)),),
                      commit=True),
            NOW,
        )
    ledger.take_changes()
    return ledger


def order(case: Case) -> list[OrderLine]:
    return [OrderLine(line_id, sku, quantity) for line_id, sku, quantity in case.lines]


def promise(ledger: Ledger, case: Case, explain: bool = False) -> OrderPlan:
    return ledger.promise(order(case), REGION, case.policy, case.priority, NOW, explain=explain)


def allocations_of(plan: OrderPlan) -> tuple[tuple[str, str, int, int, int, bool], ...]:
    return tuple(
        (lp.line.line_id, a.node_id, a.quantity, a.ship_day - TODAY, a.delivery_day - TODAY,
         a.from_inbound)
        for lp in plan.lines
        for a in lp.allocations
    )


def backorders_of(plan: OrderPlan) -> tuple[tuple[str, int, int | None], ...]:
    return tuple(
        (lp.line.line_id, lp.backordered_quantity,
         None if lp.backorder_day is None else lp.backorder_day - TODAY)
        for lp in plan.lines
        if lp.backordered_quantity
    )


def state_of(ledger: Ledger) -> dict[str, Any]:
    """Everything a promise could disturb, as plain values."""
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


def assert_unchanged(ledger: Ledger, before: dict[str, Any]) -> None:
    assert state_of(ledger) == before
    assert not ledger.has_changes
    assert not ledger.take_changes()
    assert ledger.check_invariants() == []


# ----- the table -----------------------------------------------------------------------------

# Sites of several scenarios.
SHIP_COMPLETE_DATA = {
    "sites": (Site("A", transit=1), Site("B", transit=2)),
    "stock": (("X", "A", 10), ("Y", "B", 5)),
    "supply": (("Y", "A", 5, 4),),
    "lines": (("l1", "X", 4), ("l2", "Y", 3)),
}
LANE_CHOICE_DATA = {
    "sites": (Site("A", transit=1, cost=10), Site("B", transit=3, cost=2)),
    "stock": (("X", "A", 5), ("X", "B", 5)),
    "lines": (("l1", "X", 3),),
}
SAFETY_DATA = {
    "sites": (Site("A", transit=1),),
    "stock": (("X", "A", 10),),
    "safety": (("X", "A", 4),),
    "lines": (("l1", "X", 8),),
}
BACKORDER_DATE_DATA = {
    "sites": (Site("A", transit=1), Site("B", transit=2, handling=1)),
    "stock": (("X", "A", 10), ("Y", "A", 2)),
    "supply": (("Y", "B", 5, 7),),
    "lines": (("l1", "X", 10), ("l2", "Y", 5)),
}
THREE_SMALL_DATA = {
    "sites": (Site("A", transit=1), Site("B", transit=2), Site("C", transit=1)),
    "stock": (("X", "A", 4), ("X", "B", 4), ("X", "C", 4)),
}

CASES = [
    Case(
        "single node beats an equally fast split (fewer shipments)",
        sites=(Site("N1", transit=2), Site("N2", transit=2), Site("N3", transit=2)),
        stock=(("X", "N1", 10), ("Y", "N2", 10), ("X", "N3", 10), ("Y", "N3", 10)),
        lines=(("l1", "X", 4), ("l2", "Y", 3)),
        allocations=(("l1", "N3", 4, 0, 2, False), ("l2", "N3", 3, 0, 2, False)),
        promise_day=2, cost=5,
    ),
    Case(
        "split across two nodes when neither has the whole line",
        sites=(Site("A", transit=1), Site("B", transit=2)),
        stock=(("X", "A", 5), ("X", "B", 5)),
        lines=(("l1", "X", 8),),
        allocations=(("l1", "A", 5, 0, 1, False), ("l1", "B", 3, 0, 2, False)),
        promise_day=2, cost=10,
    ),
    Case(
        "ship_complete waits for inbound supply at the one node that has everything",
        **SHIP_COMPLETE_DATA,
        policy=Policy(ship_complete=True),
        allocations=(("l1", "A", 4, 4, 5, False), ("l2", "A", 3, 4, 5, True)),
        promise_day=5, cost=5,
    ),
    Case(
        "without ship_complete the same order splits and delivers sooner",
        **SHIP_COMPLETE_DATA,
        allocations=(("l1", "A", 4, 0, 1, False), ("l2", "B", 3, 0, 2, False)),
        promise_day=2, cost=10,
    ),
    Case(
        "earliest takes the fast expensive lane",
        **LANE_CHOICE_DATA,
        allocations=(("l1", "A", 3, 0, 1, False),),
        promise_day=1, cost=10,
    ),
    Case(
        "cheapest takes the slow cheap lane",
        **LANE_CHOICE_DATA,
        policy=Policy(objective=CHEAPEST),
        allocations=(("l1", "B", 3, 0, 3, False),),
        promise_day=3, cost=2,
    ),
    Case(
        "cheapest prefers one paid shipment over two cheaper ones",
        sites=(Site("A", cost=4), Site("B", cost=3), Site("C", cost=3)),
        stock=(("X", "A", 5), ("Y", "A", 5), ("X", "B", 5), ("Y", "C", 5)),
        lines=(("l1", "X", 2), ("l2", "Y", 2)),
        policy=Policy(objective=CHEAPEST),
        allocations=(("l1", "A", 2, 0, 1, False), ("l2", "A", 2, 0, 1, False)),
        promise_day=1, cost=4,
    ),
    Case(
        "inactive node is skipped",
        sites=(Site("A", transit=1, active=False), Site("B", transit=3)),
        stock=(("X", "A", 10), ("X", "B", 10)),
        lines=(("l1", "X", 4),),
        allocations=(("l1", "B", 4, 0, 3, False),),
        promise_day=3,
    ),
    Case(
        "node without a lane to the region is skipped",
        sites=(Site("A", transit=None), Site("B", transit=4)),
        stock=(("X", "A", 10), ("X", "B", 10)),
        lines=(("l1", "X", 4),),
        allocations=(("l1", "B", 4, 0, 4, False),),
        promise_day=4,
    ),
    Case(
        "no lane anywhere: nothing promised, no backorder date",
        sites=(Site("A", transit=None),),
        stock=(("X", "A", 10),),
        lines=(("l1", "X", 4),),
        policy=Policy(allow_partial=True),
        backorders=(("l1", 4, None),),
        complete=False,
    ),
    Case(
        "safety stock is protected from normal priority",
        **SAFETY_DATA,
        backorders=(("l1", 8, None),),
        complete=False,
    ),
    Case(
        "safety stock is protected from priority 99",
        **SAFETY_DATA,
        priority=99,
        backorders=(("l1", 8, None),),
        complete=False,
    ),
    Case(
        "safety stock is usable at priority 100",
        **SAFETY_DATA,
        priority=100,
        allocations=(("l1", "A", 8, 0, 1, False),),
        promise_day=1,
    ),
    Case(
        "partial promise stops at the safety stock",
        **SAFETY_DATA,
        policy=Policy(allow_partial=True),
        allocations=(("l1", "A", 6, 0, 1, False),),
        backorders=(("l1", 2, None),),
        promise_day=1, complete=False,
    ),
    Case(
        "partial with a backorder date from inbound supply at a node max_nodes=1 excludes",
        **BACKORDER_DATE_DATA,
        policy=Policy(max_nodes=1, allow_partial=True),
        allocations=(("l1", "A", 10, 0, 1, False), ("l2", "A", 2, 0, 1, False)),
        backorders=(("l2", 3, 9),),  # B: supply day 7 (>= today + 1 handling), + 2 transit
        promise_day=1, complete=False,
    ),
    Case(
        "stock on hand at a node max_nodes excludes gives no backorder date (only supply does)",
        sites=(Site("A", transit=1, cost=1), Site("B", transit=1, cost=2), Site("C", transit=1, cost=3)),
        stock=(("X", "A", 5), ("X", "B", 5), ("X", "C", 5)),
        lines=(("l1", "X", 12),),
        policy=Policy(max_nodes=2, allow_partial=True, objective=CHEAPEST),
        allocations=(("l1", "A", 5, 0, 1, False), ("l1", "B", 5, 0, 1, False)),
        backorders=(("l1", 2, None),),
        promise_day=1, complete=False,
    ),
    Case(
        "without max_nodes the same order waits for that supply instead",
        **BACKORDER_DATE_DATA,
        policy=Policy(allow_partial=True),
        allocations=(("l1", "A", 10, 0, 1, False), ("l2", "B", 5, 7, 9, True)),
        promise_day=9,
    ),
    Case(
        "backorder with no date when no supply is coming",
        sites=(Site("A", transit=1),),
        stock=(("X", "A", 4),),
        lines=(("l1", "X", 10),),
        policy=Policy(allow_partial=True),
        allocations=(("l1", "A", 4, 0, 1, False),),
        backorders=(("l1", 6, None),),
        promise_day=1, complete=False,
    ),
    Case(
        "not fully promisable without allow_partial: no allocations at all",
        sites=(Site("A", transit=1),),
        stock=(("X", "A", 4),),
        lines=(("l1", "X", 10),),
        backorders=(("l1", 10, None),),
        complete=False,
    ),
    Case(
        "handling days delay the ship day and transit days the delivery",
        sites=(Site("A", transit=3, handling=2), Site("B", transit=6, handling=0)),
        stock=(("X", "A", 5), ("X", "B", 5)),
        lines=(("l1", "X", 5),),
        allocations=(("l1", "A", 5, 2, 5, False),),
        promise_day=5,
    ),
    Case(
        "pre-order: ships the day inbound supply arrives",
        sites=(Site("A", transit=2, handling=1),),
        supply=(("X", "A", 10, 3),),
        lines=(("l1", "X", 6),),
        allocations=(("l1", "A", 6, 3, 5, True),),
        promise_day=5,
    ),
    Case(
        "stock plus supply: waits for the supply when stock alone is short",
        sites=(Site("A", transit=1),),
        stock=(("X", "A", 4),),
        supply=(("X", "A", 4, 6),),
        lines=(("l1", "X", 7),),
        allocations=(("l1", "A", 7, 6, 7, True),),
        promise_day=7,
    ),
    Case(
        "deterministic tie broken by node id",
        sites=(Site("B", transit=1), Site("A", transit=1)),
        stock=(("X", "B", 10), ("X", "A", 10)),
        lines=(("l1", "X", 4),),
        allocations=(("l1", "A", 4, 0, 1, False),),
        promise_day=1,
    ),
    Case(
        "look-ahead: a later commitment protects today's units",
        sites=(Site("A", transit=1), Site("B", transit=3)),
        stock=(("X", "A", 10), ("X", "B", 10)),
        committed=(("X", "A", 8, 5),),
        lines=(("l1", "X", 5),),
        allocations=(("l1", "B", 5, 0, 3, False),),
        promise_day=3,
    ),
    Case(
        "held units are not promised",
        sites=(Site("A", transit=1), Site("B", transit=3)),
        stock=(("X", "A", 10), ("X", "B", 10)),
        holds=(("X", "A", 7),),
        lines=(("l1", "X", 5),),
        allocations=(("l1", "B", 5, 0, 3, False),),
        promise_day=3,
    ),
    Case(
        "max_nodes=2 picks the earliest pair",
        **THREE_SMALL_DATA,
        lines=(("l1", "X", 8),),
        policy=Policy(max_nodes=2),
        allocations=(("l1", "A", 4, 0, 1, False), ("l1", "C", 4, 0, 1, False)),
        promise_day=1, cost=10,
    ),
    Case(
        "max_nodes=2 cannot cover a line three nodes could",
        **THREE_SMALL_DATA,
        lines=(("l1", "X", 10),),
        policy=Policy(max_nodes=2),
        backorders=(("l1", 10, None),),
        complete=False,
    ),
    Case(
        "max_nodes=0 splits over as many nodes as needed, fastest first",
        **THREE_SMALL_DATA,
        lines=(("l1", "X", 10),),
        allocations=(("l1", "A", 4, 0, 1, False), ("l1", "C", 4, 0, 1, False),
                     ("l1", "B", 2, 0, 2, False)),
        promise_day=2, cost=15,
    ),
    Case(
        "max_nodes=1 with allow_partial: best single node, rest backordered",
        **THREE_SMALL_DATA,
        lines=(("l1", "X", 10),),
        policy=Policy(max_nodes=1, allow_partial=True),
        allocations=(("l1", "A", 4, 0, 1, False),),
        backorders=(("l1", 6, None),),
        promise_day=1, complete=False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_worked_scenario(case: Case) -> None:
    ledger = build(case)
    before = state_of(ledger)
    plan = promise(ledger, case)
    assert_unchanged(ledger, before)
    assert allocations_of(plan) == case.allocations
    assert backorders_of(plan) == case.backorders
    expected_day = None if case.promise_day is None else TODAY + case.promise_day
    assert plan.promise_day == expected_day
    assert plan.complete is case.complete
    if case.cost is not None:
        assert plan.cost == case.cost
    if case.policy.ship_complete:
        assert {a.delivery_day for lp in plan.lines for a in lp.allocations} == {plan.promise_day}
    # Deterministic: the same ledger and request give the same plan.
    again = promise(ledger, case)
    assert (allocations_of(again), backorders_of(again)) == (allocations_of(plan), backorders_of(plan))


# ----- splitting a line vs filling it whole; where the units come from -----------------------


@pytest.mark.parametrize("max_nodes", [0, 2])
def test_earliest_splits_a_line_rather_than_wait_for_inbound(max_nodes: int) -> None:
    """Found against 4ba2eec (A was chosen whole for day 5); fixed in fe4c100."""
    case = Case(
        "split now vs wait",
        sites=(Site("A", transit=1), Site("B", transit=1)),
        stock=(("X", "A", 5), ("X", "B", 5)),
        supply=(("X", "A", 5, 4),),
        lines=(("l1", "X", 8),),
        policy=Policy(max_nodes=max_nodes),
    )
    plan = promise(build(case), case)
    # A alone needs its supply (ship day 4, delivery 5); A 5 + B 3 from stock deliver on day 1.
    assert plan.complete
    assert plan.promise_day == TODAY + 1
    assert plan.node_ids == ("A", "B")


@pytest.mark.parametrize("max_nodes", [0, 2])
def test_cheapest_splits_a_line_when_two_cheap_nodes_cost_less(max_nodes: int) -> None:
    """Found against 4ba2eec (one cost-10 shipment was chosen); fixed in fe4c100."""
    case = Case(
        "cheap split",
        sites=(Site("A", cost=10), Site("B", cost=3), Site("C", cost=3)),
        stock=(("X", "A", 10), ("X", "B", 5), ("X", "C", 5)),
        lines=(("l1", "X", 8),),
        policy=Policy(max_nodes=max_nodes, objective=CHEAPEST),
    )
    plan = promise(build(case), case)
    assert plan.complete
    assert plan.cost == 6
    assert plan.node_ids == ("B", "C")


def test_earliest_split_uses_a_fast_lane_for_supply_rather_than_a_slow_one_for_stock() -> None:
    """Found by the optimality property against 87f6bb0 (day 4 was promised, day 3 is possible)."""
    case = Case(
        "fast lane for tomorrow's unit",
        sites=(Site("A", transit=0), Site("B", transit=4), Site("C", transit=3)),
        stock=(("X", "B", 1), ("X", "C", 2)),
        supply=(("X", "A", 1, 1), ("X", "C", 1, 1)),
        lines=(("l1", "X", 3),),
    )
    plan = promise(build(case), case)
    # C alone needs its supply (ship 1, deliver 4); the greedy splits took B's stock (deliver 4).
    # A's unit arriving on day 1 over a same-day lane and C's 2 units now deliver by day 3.
    assert plan.complete
    assert plan.promise_day == TODAY + 3
    assert sorted(allocations_of(plan)) == [("l1", "A", 1, 1, 1, True), ("l1", "C", 2, 0, 3, False)]


@pytest.mark.parametrize("max_nodes", [0, 3])
def test_earliest_split_uses_no_more_shipments_than_its_date_needs(max_nodes: int) -> None:
    """Found by a contract review against 01834d6: with no node limit the line went to all
    three nodes (B 5, A 5, C 2), though A 5 + C 7 deliver on the same day in two shipments."""
    case = Case(
        "fewest shipments for the date",
        sites=(Site("A", transit=3, cost=1), Site("B", transit=1, cost=1), Site("C", transit=5, cost=1)),
        stock=(("X", "A", 5), ("X", "B", 5), ("X", "C", 10)),
        lines=(("l1", "X", 12),),
        policy=Policy(max_nodes=max_nodes),
    )
    plan = promise(build(case), case)
    assert plan.complete
    assert plan.promise_day == TODAY + 5
    assert plan.node_ids == ("A", "C")


def test_cheapest_split_picks_the_cover_of_least_cost_not_the_first_cheap_node() -> None:
    """Found by the optimality property against 87f6bb0 (cost 2 instead of 1)."""
    case = Case(
        "least-cost cover",
        sites=(Site("A", cost=1), Site("B", cost=0), Site("C", cost=1)),
        stock=(("X", "A", 1), ("X", "C", 2)),
        supply=(("X", "B", 5, 0),),
        lines=(("l1", "X", 7),),
        policy=Policy(objective=CHEAPEST),
    )
    plan = promise(build(case), case)
    # B's 5 units are free; A (1 unit) then C would cost 2, C alone covers the other 2 for 1.
    assert plan.complete
    assert plan.cost == 1
    assert plan.node_ids == ("B", "C")


def test_from_inbound_when_supply_lands_within_handling_days() -> None:
    """Found against 4ba2eec (from_inbound was False); fixed in fe4c100."""
    case = Case(
        "supply inside handling",
        sites=(Site("A", transit=1, handling=5),),
        supply=(("X", "A", 10, 3),),
        lines=(("l1", "X", 6),),
    )
    plan = promise(build(case), case)
    assert allocations_of(plan) == (("l1", "A", 6, 5, 6, True),)


@pytest.mark.parametrize("max_nodes", [0, 2])
def test_cheapest_split_waits_for_cheaper_supply(max_nodes: int) -> None:
    case = Case(
        "cheaper later",
        sites=(Site("A", cost=5), Site("B", cost=1), Site("C", cost=1)),
        stock=(("X", "A", 2), ("X", "B", 4)),
        supply=(("X", "C", 2, 3),),
        lines=(("l1", "X", 6),),
        policy=Policy(max_nodes=max_nodes, objective=CHEAPEST),
    )
    plan = promise(build(case), case)
    # B 4 now + C 2 on day 3 costs 1 + 1 = 2 (delivery day 4); A 2 + B 4 now costs 5 + 1 = 6.
    assert plan.complete
    assert plan.cost == 2
    assert sorted(allocations_of(plan)) == [("l1", "B", 4, 0, 1, False), ("l1", "C", 2, 3, 4, True)]


@pytest.mark.parametrize("supply_day", [0, -2], ids=["due-today", "overdue"])
def test_from_inbound_for_supply_due_today_or_overdue(supply_day: int) -> None:
    case = Case(
        "supply due, nothing on hand",
        sites=(Site("A", transit=1),),
        supply=(("X", "A", 10, supply_day),),
        lines=(("l1", "X", 5),),
    )
    plan = promise(build(case), case)
    # Ships today (supply dated today or before counts as today), but not from stock on hand.
    assert allocations_of(plan) == (("l1", "A", 5, 0, 1, True),)


@pytest.mark.parametrize(
    "policy",
    [Policy(allow_partial=True), Policy(allow_partial=True, max_nodes=1),
     Policy(allow_partial=True, ship_complete=True)],
    ids=["one-node-network", "max_nodes=1", "ship_complete"],
)
def test_partial_single_node_promises_what_its_supply_can_cover(policy: Policy) -> None:
    case = Case(
        "partial from stock and supply",
        sites=(Site("A", transit=1),),
        stock=(("X", "A", 5),),
        supply=(("X", "A", 5, 4),),
        lines=(("l1", "X", 12),),
        policy=policy,
    )
    plan = promise(build(case), case)
    # A can promise 10: 5 on hand and 5 arriving on day 4 (ship day 4, delivery day 5).
    assert plan.lines[0].backordered_quantity == 2
    assert plan.node_ids == ("A",)
    assert plan.promise_day == TODAY + 5
    assert not plan.complete


# ----- explanations ---------------------------------------------------------------------------

EXPLAIN_CASE = Case(
    "every outcome",
    sites=(
        Site("A", transit=1, cost=5),                 # chosen
        Site("B", transit=1, active=False),           # inactive
        Site("C", transit=None),                      # no lane to EU
        Site("D", transit=1),                         # knows only Y
        Site("E", transit=1),                         # too little
        Site("F", transit=3, cost=5),                 # slower lane
        Site("G", transit=1, cost=9),                 # dearer lane
        Site("H", transit=1, cost=5),                 # as good as A, loses on node id
        Site("I", transit=0, cost=5),                 # only from supply on day 3
    ),
    stock=(("X", "A", 10), ("X", "B", 10), ("X", "C", 10), ("Y", "D", 5), ("X", "E", 3),
           ("X", "F", 10), ("X", "G", 10), ("X", "H", 10)),
    supply=(("X", "I", 10, 3),),
    lines=(("l1", "X", 5),),
)


def test_explain_gives_every_node_an_outcome() -> None:
    ledger = build(EXPLAIN_CASE)
    before = state_of(ledger)
    plan = promise(ledger, EXPLAIN_CASE, explain=True)
    assert_unchanged(ledger, before)
    assert explained(plan) == {
        "A": ("CHOSEN", f"chosen: 5 units ship {iso(0)}, deliver {iso(1)}"),
        "B": ("INACTIVE", "inactive"),
        "C": ("NO_LANE", "no lane to EU"),
        "D": ("NO_STOCK_OR_SUPPLY", "no stock or supply of X"),
        "E": ("INSUFFICIENT_ATP", "not enough ATP: 3 of 5 at most"),
        "F": ("LATER", f"later: could deliver {iso(3)}"),
        "G": ("COSTLIER", "costlier: lane cost 9 vs 5"),
        "H": ("NOT_CHOSEN",
              f"not chosen: could deliver {iso(1)}; fewer shipments or node order preferred another"),
        "I": ("LATER", f"later: not enough ATP until {iso(3)}"),
    }
    # Every outcome there is, in one case.
    assert {outcome for outcome, _ in explained(plan).values()} == set(CandidateOutcome)
    # Candidates follow node id order, one per node of the ledger.
    assert [candidate.node_id for candidate in plan.lines[0].candidates] == list("ABCDEFGHI")
    # Explaining changes nothing about the plan itself.
    plain = promise(ledger, EXPLAIN_CASE)
    assert allocations_of(plain) == allocations_of(plan)
    assert plain.lines[0].candidates == []


def test_explain_of_a_split_line_marks_each_used_node_chosen() -> None:
    case = CASES[1]  # split across two nodes
    plan = promise(build(case), case, explain=True)
    assert explained(plan) == {
        "A": ("CHOSEN", f"chosen: 5 units ship {iso(0)}, deliver {iso(1)}"),
        "B": ("CHOSEN", f"chosen: 3 units ship {iso(0)}, deliver {iso(2)}"),
    }


def test_explain_of_an_unpromisable_line() -> None:
    case = Case(
        "nothing fits",
        sites=(Site("A", transit=1), Site("B", transit=1)),
        stock=(("X", "A", 2), ("X", "B", 0)),
        safety=(("X", "A", 1),),
        lines=(("l1", "X", 5),),
    )
    plan = promise(build(case), case, explain=True)
    assert not plan.complete and allocations_of(plan) == ()
    assert explained(plan) == {
        "A": ("INSUFFICIENT_ATP", "not enough ATP: 1 of 5 at most"),
        "B": ("INSUFFICIENT_ATP", "not enough ATP: 0 of 5 at most"),
    }


def test_explain_cheapest_names_the_lane_cost() -> None:
    case = next(case for case in CASES if case.name == "cheapest takes the slow cheap lane")
    plan = promise(build(case), case, explain=True)
    assert explained(plan) == {
        "A": ("COSTLIER", "costlier: lane cost 10 vs 2"),
        "B": ("CHOSEN", f"chosen: 3 units ship {iso(0)}, deliver {iso(3)}"),
    }


def explained(plan: Any) -> dict[str, tuple[str, str]]:
    """The first line's candidates: node -> (outcome token, sentence)."""
    return {c.node_id: (c.outcome, c.detail) for c in plan.lines[0].candidates}


def test_the_outcome_tokens_are_the_ones_the_proto_documents() -> None:
    """CandidateExplanation.outcome's comment lists every CandidateOutcome, and no other."""
    proto = (Path(__file__).resolve().parents[2] / "protos" / "atp" / "v1"
             / "availability.proto").read_text()
    block = proto[proto.index("message CandidateExplanation"):]
    block = block[:block.index("string outcome = 2;")]
    documented = set(re.findall(r"^  //   ([A-Z_]+):", block, re.MULTILINE))
    assert documented == {outcome.value for outcome in CandidateOutcome}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert all(f"`{outcome.value}`" in readme for outcome in CandidateOutcome)


# ----- Reserve of sourced lines holds exactly the promise --------------------------------------


def reserve_sourced(ledger: Ledger, case: Case, reservation_id: str = "order-1") -> Any:
    return ledger.execute(
        commands.Reserve(
            reservation_id,
            tuple(commands.LineRequest(line_id, sku, quantity) for line_id, sku, quantity in case.lines),
            destination_region=REGION,
            policy=case.policy,
            priority=case.priority,
        ),
        NOW,
    )


def expected_reservation_lines(plan: OrderPlan) -> list[tuple[Any, ...]]:
    """One reservation line per allocation; extra parts of a split line are l1/2, l1/3, ..."""
    rows: list[tuple[Any, ...]] = []
    for lp in plan.lines:
        line_id = lp.line.line_id
        if not lp.allocations:
            rows.append((line_id, "", 0, TODAY, None, False, lp.backordered_quantity))
        for part, a in enumerate(lp.allocations, start=1):
            rows.append((
                line_id if part == 1 else f"{line_id}/{part}", a.node_id, a.quantity, a.ship_day,
                a.delivery_day, a.from_inbound, lp.backordered_quantity if part == 1 else 0,
            ))
    return rows


def reservation_rows(reservation: Any) -> list[tuple[Any, ...]]:
    return [
        (line.line_id, line.node_id, line.quantity, line.ship_day, line.delivery_day,
         line.from_inbound, line.backordered_quantity)
        for line in reservation.lines
    ]


RESERVE_CASES = [
    case for case in CASES
    if case.name.startswith((
        "split across", "ship_complete waits", "without ship_complete", "cheapest takes",
        "partial with a backorder date", "safety stock is usable", "look-ahead",
        "max_nodes=0 splits", "no lane anywhere", "backorder with no date",
    ))
]


@pytest.mark.parametrize("case", RESERVE_CASES, ids=str)
def test_reserve_after_promise_holds_the_promise(case: Case) -> None:
    ledger = build(case)
    plan = promise(ledger, case)
    reservation = reserve_sourced(ledger, case)
    assert reservation_rows(reservation) == expected_reservation_lines(plan)
    assert reservation.promise_day == plan.promise_day
    assert ledger.check_invariants() == []
    # Each held line is indexed at its position, demanding its units on its ship day.
    for line in reservation.lines:
        if line.node_id:
            assert ledger.positions[(line.sku, line.node_id)].lines[("order-1", line.line_id)] is line
    # Holding it left exactly what a promise of the same order would leave.
    promised = build(case)
    for lp in plan.lines:
        for a in lp.allocations:
            promised.positions[(lp.line.sku, a.node_id)].add_delta(a.ship_day, -a.quantity)
    assert {key: dict(p.deltas) for key, p in ledger.positions.items() if p.node_id} == {
        key: dict(p.deltas) for key, p in promised.positions.items()
    }


def test_reserve_of_a_split_line_names_its_parts() -> None:
    case = next(case for case in CASES if case.name.startswith("max_nodes=0 splits"))
    ledger = build(case)
    reservation = reserve_sourced(ledger, case)
    assert [(line.line_id, line.node_id, line.quantity) for line in reservation.lines] == [
        ("l1", "A", 4), ("l1/2", "C", 4), ("l1/3", "B", 2),
    ]
    assert ledger.positions[("X", "A")].reserved == 4
    assert ledger.positions[("X", "B")].reserved == 2
    assert ledger.positions[("X", "C")].reserved == 4


@pytest.mark.parametrize(
    "case",
    [case for case in CASES if not case.complete and not case.policy.allow_partial],
    ids=str,
)
def test_reserve_of_an_unfillable_order_changes_nothing(case: Case) -> None:
    ledger = build(case)
    plan = promise(ledger, case)
    assert not plan.complete
    before = state_of(ledger)
    with pytest.raises(errors.InsufficientAvailability) as refused:
        reserve_sourced(ledger, case)
    assert [s.subject for s in refused.value.shortfalls] == [f"line {lid}" for lid, _, _ in case.lines]
    assert_unchanged(ledger, before)
    assert "order-1" not in ledger.known_reservations()


def test_reserve_sources_lines_after_placing_named_ones() -> None:
    """A named line takes its node's stock first; the sourced line goes elsewhere."""
    case = Case(
        "mixed",
        sites=(Site("A", transit=1), Site("B", transit=3)),
        stock=(("X", "A", 6), ("X", "B", 6)),
        lines=(("l2", "X", 4),),
    )
    ledger = build(case)
    reservation = ledger.execute(
        commands.Reserve("order-1", (commands.LineRequest("l1", "X", 4, "A"), commands.LineRequest("l2", "X", 4)),
                  destination_region=REGION),
        NOW,
    )
    assert [(line.line_id, line.node_id, line.quantity, line.ship_day - TODAY)
            for line in reservation.lines] == [("l1", "A", 4, 0), ("l2", "B", 4, 0)]
    assert ledger.check_invariants() == []


def test_reserve_of_sourced_lines_is_idempotent() -> None:
    case = next(case for case in CASES if case.name.startswith("split across"))
    ledger = build(case)
    first = reserve_sourced(ledger, case)
    ledger.take_changes()
    # The ledger moves on (more stock at B); replaying the same request re-sources nothing.
    ledger.execute(commands.AdjustStock("more", (commands.Movement("X", "B", "RECEIPT", 50),)), NOW)
    ledger.take_changes()
    before = state_of(ledger)
    again = reserve_sourced(ledger, case)
    assert again is first
    assert_unchanged(ledger, before)


def test_reserve_refuses_a_ship_date_or_missing_region_on_sourced_lines() -> None:
    case = next(case for case in CASES if case.name.startswith("split across"))
    ledger = build(case)
    before = state_of(ledger)
    named = commands.LineRequest("l0", "X", 1, "A")
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.execute(commands.Reserve("o1", (named, commands.LineRequest("l1", "X", 2, "", date_after(1))),
                                 destination_region=REGION), NOW)
    assert [v.field for v in refused.value.violations] == ["lines[1].ship_date"]
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.execute(commands.Reserve("o2", (named, commands.LineRequest("l1", "X", 2))), NOW)
    assert [v.field for v in refused.value.violations] == ["destination_region"]
    assert_unchanged(ledger, before)


def test_reserve_with_a_named_line_and_an_unfillable_sourced_line_is_all_or_nothing() -> None:
    case = next(case for case in CASES if case.name.startswith("split across"))
    ledger = build(case)
    before = state_of(ledger)
    with pytest.raises(errors.InsufficientAvailability) as refused:
        ledger.execute(commands.Reserve("o1", (commands.LineRequest("l0", "X", 3, "A"), commands.LineRequest("l1", "X", 8)),
                                 destination_region=REGION), NOW)
    # After the named line, A has 2 and B 5 left: 7 of the 8 asked.
    assert [(s.subject, s.requested, s.available) for s in refused.value.shortfalls] == [
        ("line l1", 8, 7)
    ]
    assert_unchanged(ledger, before)


# ----- validation -----------------------------------------------------------------------------


def test_promise_refuses_malformed_requests_and_unknown_skus() -> None:
    ledger = build(CASES[1])
    before = state_of(ledger)
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.promise([OrderLine("l1", "X", 1)], "", Policy(), 0, NOW)
    assert [v.field for v in refused.value.violations] == ["destination_region"]
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.promise([OrderLine("l1", "X", 0), OrderLine("l1", "X", 1)], REGION, Policy(), 0, NOW)
    assert {v.field for v in refused.value.violations} == {"lines[0].quantity", "lines[1].line_id"}
    with pytest.raises(errors.InvalidArgument):
        ledger.promise([], REGION, Policy(), 0, NOW)
    with pytest.raises(errors.InvalidArgument):
        ledger.promise([OrderLine("l1", "X", 1)], REGION, Policy(max_nodes=-1), 0, NOW)
    with pytest.raises(errors.NotFound) as missing:
        ledger.promise([OrderLine("l1", "NOPE", 1)], REGION, Policy(), 0, NOW)
    assert (missing.value.resource_type, missing.value.resource_name) == ("sku", "NOPE")
    assert_unchanged(ledger, before)
