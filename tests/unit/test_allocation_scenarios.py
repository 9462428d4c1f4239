"""Allocation policies, worked (docs/allocation.md, "Worked scenarios"): one SKU at one
node, 1,500 units ordered by five reservations while 1,500 were on hand, then a shrinkage
leaves 1,000. Which reservations are filled and which wait (at risk) depends on the policy;
every expected outcome here was worked out by hand (greedy fill in policy order: a line that
does not fit waits, and a later, smaller one may still fit) and is the table in the doc.

    id  units  priority  channel      value  due      created
    A     400         5  web            120  day +3   1st
    C     500         1  marketplace    250  day +1   2nd
    B     300        10  store          300  day +5   3rd
    D     200        10  web            200  day +2   4th
    E     100         1  store           50  day +4   5th
"""

from __future__ import annotations

import datetime

import pytest

from atp.ledger import Ledger, LedgerConfig, commands, day_of
from atp.ledger.allocation_policy import DEFAULT_POLICY, AllocationPolicy, Criterion
from atp.ledger.model import Event, Policy
from atp.ledger.reallocation import Scope

NOW = datetime.datetime(2026, 12, 4, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
PRIORITY, CHANNEL_RANK, VALUE, DUE_DATE, FIFO = (
    Criterion.PRIORITY, Criterion.CHANNEL_RANK, Criterion.VALUE, Criterion.DUE_DATE,
    Criterion.FIFO)

# (id, units, priority, channel, unit value, due in days), in creation order.
ORDERS = (
    ("A", 400, 5, "web", 120, 3),
    ("C", 500, 1, "marketplace", 250, 1),
    ("B", 300, 10, "store", 300, 5),
    ("D", 200, 10, "web", 200, 2),
    ("E", 100, 1, "store", 50, 4),
)

# policy name -> (criteria, channel ranks, the serving order, who waits,
#                 {waiting reservation: the criterion that put it behind the line ahead}).
SCENARIOS = {
    "priority": ((PRIORITY, FIFO), (), "BDACE", {"C"}, {"C": "PRIORITY"}),
    "channel rank": ((CHANNEL_RANK, FIFO), ("marketplace", "store"), "CBEAD", {"A", "D"},
                     {"A": "CHANNEL_RANK", "D": "CHANNEL_RANK"}),
    "value": ((VALUE, FIFO), (), "BCDAE", {"A", "E"}, {"A": "VALUE", "E": "VALUE"}),
    "due date": ((DUE_DATE, FIFO), (), "CDAEB", {"A", "B"},
                 {"A": "DUE_DATE", "B": "DUE_DATE"}),
    "fifo": ((FIFO,), (), "ACBDE", {"B", "D"}, {"B": "FIFO", "D": "FIFO"}),
}


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


def stocked_and_ordered(config: LedgerConfig | None = None) -> Ledger:
    """1,500 units at DC1, all of them reserved by ORDERS; nothing is short yet."""
    ledger = Ledger(config or LedgerConfig(default_ttl_seconds=3600))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("receipt", (
        commands.Movement("W", "DC1", "RECEIPT", 1500),)), NOW)
    for reservation_id, units, priority, channel, value, due_in in ORDERS:
        line = commands.LineRequest("l1", "W", units, "DC1", date_after(due_in),
                                    unit_value=value)
        ledger.execute(commands.Reserve(reservation_id, (line,), priority=priority,
                                        channel=channel, commit=True), NOW)
    ledger.take_changes()
    return ledger


def shrink_to_1000(ledger: Ledger) -> list[Event]:
    ledger.execute(commands.AdjustStock("shrink", (
        commands.Movement("W", "DC1", "SHRINKAGE", 500),)), NOW)
    return ledger.take_changes().events


def set_policy(ledger: Ledger, criteria: tuple[Criterion, ...], ranks: tuple[str, ...] = (),
               node_id: str = "") -> list[Event]:
    ledger.execute(commands.SetAllocationPolicy(
        "W", node_id, tuple(c.value for c in criteria), ranks), NOW)
    return ledger.take_changes().events


def waiting(ledger: Ledger) -> set[str]:
    return {key[0] for key in ledger.positions[("W", "DC1")].at_risk}


def at_risk_decided_by(events: list[Event]) -> dict[str, str]:
    return {str(e.data["reservation_id"]): str(e.data["decided_by"])
            for e in events if e.type == "LINE_AT_RISK"}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_who_is_filled_and_who_waits_under_each_policy(name: str) -> None:
    criteria, ranks, order, waits, decided_by = SCENARIOS[name]
    ledger = stocked_and_ordered()
    set_policy(ledger, criteria, ranks)
    events = shrink_to_1000(ledger)
    assert waiting(ledger) == waits
    filled = set(order) - waits
    assert sum(units for rid, units, *_ in ORDERS if rid in filled) <= 1000
    assert at_risk_decided_by(events) == decided_by
    assert {e.data["reason"] for e in events if e.type == "LINE_AT_RISK"} == {"SHORTAGE"}
    assert ledger.check_invariants() == []


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_changing_the_policy_afterwards_moves_the_at_risk_marks_in_the_same_command(
    name: str
) -> None:
    criteria, ranks, _, waits, _ = SCENARIOS[name]
    ledger = stocked_and_ordered()
    shrink_to_1000(ledger)  # under the server default first: C waits
    assert waiting(ledger) == {"C"}
    events = set_policy(ledger, criteria, ranks)
    assert waiting(ledger) == waits
    went = {str(e.data["reservation_id"]) for e in events if e.type == "LINE_AT_RISK"}
    came_back = {str(e.data["reservation_id"]) for e in events if e.type == "LINE_RECOVERED"}
    assert went == waits - {"C"} and came_back == {"C"} - waits
    assert events[0].type == "ALLOCATION_POLICY_SET"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_explain_order_is_the_serving_order(name: str) -> None:
    criteria, ranks, order, _, _ = SCENARIOS[name]
    ledger = stocked_and_ordered()
    set_policy(ledger, criteria, ranks)
    policy = ledger.policy_for("W", "DC1")
    assert policy == AllocationPolicy(criteria, ranks)
    position = ledger.positions[("W", "DC1")]
    ranked = sorted(position.lines, key=lambda k: policy.key(ledger.reservations[k[0]],
                                                            position.lines[k]))
    assert "".join(key[0] for key in ranked) == order


def test_the_server_default_is_priority_then_fifo() -> None:
    assert DEFAULT_POLICY == AllocationPolicy((PRIORITY, FIFO))
    ledger = stocked_and_ordered()
    shrink_to_1000(ledger)
    assert waiting(ledger) == SCENARIOS["priority"][3]


def test_a_configured_server_default_applies_where_no_policy_is_set() -> None:
    ledger = stocked_and_ordered(LedgerConfig(
        default_ttl_seconds=3600, allocation_policy=AllocationPolicy((VALUE, FIFO))))
    shrink_to_1000(ledger)
    assert waiting(ledger) == SCENARIOS["value"][3]


def test_a_node_policy_overrides_the_sku_policy() -> None:
    ledger = stocked_and_ordered()
    set_policy(ledger, (VALUE, FIFO))
    set_policy(ledger, (DUE_DATE, FIFO), node_id="DC1")
    shrink_to_1000(ledger)
    assert waiting(ledger) == SCENARIOS["due date"][3]
    # Removing the node's policy: the SKU's applies again, at once.
    set_policy(ledger, ())
    assert ledger.allocation_policies == {("W", "DC1"): AllocationPolicy((DUE_DATE, FIFO))}
    events = set_policy(ledger, (), node_id="DC1")
    assert waiting(ledger) == SCENARIOS["priority"][3]  # no SKU policy left: the default
    assert events[0].data == {"sku": "W", "node_id": "DC1", "criteria": [],
                              "channel_ranks": []}


def test_equal_demand_is_told_apart_by_ids() -> None:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("in", (commands.Movement("W", "DC1", "RECEIPT", 4),)),
                   NOW)
    for reservation_id in ("r2", "r1"):
        ledger.execute(commands.Reserve(reservation_id, (
            commands.LineRequest("l1", "W", 2, "DC1", unit_value=10),)), NOW)
    set_policy(ledger, (VALUE,))
    ledger.take_changes()
    events = shrink_to_1000_of(ledger, 2)
    assert at_risk_decided_by(events) == {"r2": "TIE_BREAK"}


def shrink_to_1000_of(ledger: Ledger, units: int) -> list[Event]:
    ledger.execute(commands.AdjustStock("shrink-some", (
        commands.Movement("W", "DC1", "SHRINKAGE", units),)), NOW)
    return ledger.take_changes().events


# Backorders are filled in part (a line takes what is left), so the same policy order gives:
# policy name -> [(reservation, units filled)] in fill order (the others get nothing).
BACKORDER_FILLS = {
    "priority": [("B", 300), ("D", 200), ("A", 400), ("C", 100)],
    "channel rank": [("C", 500), ("B", 300), ("E", 100), ("A", 100)],
    "value": [("B", 300), ("C", 500), ("D", 200)],
    "due date": [("C", 500), ("D", 200), ("A", 300)],
    "fifo": [("A", 400), ("C", 500), ("B", 100)],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_backorders_are_filled_in_policy_order_when_supply_arrives(name: str) -> None:
    """The same five orders placed with nothing on hand (all backordered), then 1,000
    units arrive: filled in the policy's order, the last one in part."""
    criteria, ranks, order, _, _ = SCENARIOS[name]
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("zero", (
        commands.Movement("W", "DC1", "CYCLE_COUNT", 0),)), NOW)
    set_policy(ledger, criteria, ranks)
    for reservation_id, units, priority, channel, value, _due in ORDERS:
        line = commands.LineRequest("l1", "W", units, "DC1", unit_value=value)
        ledger.execute(commands.Reserve(
            reservation_id, (line,), priority=priority, channel=channel, commit=True,
            policy=Policy(allow_partial=True)), NOW)
    # Wholly backordered demand has no promise date (it would sort last, by FIFO among
    # itself): give each the due date of the worked scenario, as if promised earlier.
    for reservation_id, *_rest, due_in in ORDERS:
        ledger.reservations[reservation_id].first_promise_day = TODAY + due_in
    ledger.take_changes()
    ledger.execute(commands.AdjustStock("arrival", (
        commands.Movement("W", "DC1", "RECEIPT", 1000),)), NOW)
    fills = [(str(e.data["reservation_id"]), e.data["filled"])
             for e in ledger.take_changes().events if e.type == "BACKORDER_FILLED"]
    assert fills == BACKORDER_FILLS[name]
    assert "".join(rid for rid, _ in fills) == order[:len(fills)]
    assert ledger.check_invariants() == []


def test_reallocate_walks_reservations_in_policy_order_and_says_why() -> None:
    ledger = stocked_and_ordered()
    set_policy(ledger, (DUE_DATE, FIFO))
    shrink_to_1000(ledger)
    plans = ledger.plan_reallocation(Scope(sku="W"), NOW).plans
    assert [(p.reservation_id, p.decided_by) for p in plans] == [("A", ""), ("B", "DUE_DATE")]


def test_reallocate_across_positions_with_different_policies_keeps_each_ones_order() -> None:
    """DC1 serves W by value (a node policy), DC2 by the default (priority, FIFO). A
    Reallocate over the SKU walks each position's at-risk demand in its own policy's order;
    between them, the next of each competes under the default."""
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    for node in ("DC1", "DC2"):
        ledger.execute(commands.UpsertNode(node), NOW)
        ledger.execute(commands.AdjustStock(f"in-{node}", (
            commands.Movement("W", node, "RECEIPT", 40),)), NOW)
    set_policy(ledger, (VALUE,), node_id="DC1")
    # (id, node, priority, value): 4 units each, 10 orders, 40 units at each node.
    orders = [(f"a{i}", "DC1", i % 3, 10 * i) for i in range(5)] + [
        (f"b{i}", "DC2", i % 3, 10 * i) for i in range(5)]
    for reservation_id, node, priority, value in orders:
        ledger.execute(commands.Reserve(reservation_id, (
            commands.LineRequest("l1", "W", 8, node, unit_value=value),), priority=priority),
            NOW)
    for node in ("DC1", "DC2"):  # 40 -> 16 units: two of five orders fit at each node
        ledger.execute(commands.AdjustStock(f"out-{node}", (
            commands.Movement("W", node, "SHRINKAGE", 24),)), NOW)
    assert waiting(ledger) == {"a0", "a1", "a2"}  # by value: a4, a3 fit
    assert {key[0] for key in ledger.positions[("W", "DC2")].at_risk} == {"b0", "b3", "b4"}
    plans = [plan.reservation_id for plan in ledger.plan_reallocation(Scope(sku="W"), NOW).plans]
    at_dc1 = [rid for rid in plans if rid.startswith("a")]
    at_dc2 = [rid for rid in plans if rid.startswith("b")]
    assert at_dc1 == ["a2", "a1", "a0"]  # value descending
    assert at_dc2 == ["b4", "b0", "b3"]  # priority descending (1, 0, 0), then FIFO
    assert sorted(plans) == sorted(at_dc1 + at_dc2)
