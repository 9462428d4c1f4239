"""Allocation policies are applied consistently (docs/allocation.md), with hypothesis: over
random demand and random policies, the at-risk set, the order backorders are filled in when
supply arrives, and the order Reallocate's plans come in all follow the same policy.

The reference here is deliberately simple and written apart from the ledger: the policy's
order as a plain sort of dictionaries, and a greedy fill in that order (a whole line fits or
waits for at-risk marks; a backordered line takes what is left). One SKU at one node, stock
on hand only, so that a line fits exactly when the units left cover it.
"""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atp.ledger import Ledger, LedgerConfig, commands, day_of
from atp.ledger.model import Policy
from atp.ledger.reallocation import Scope

NOW = datetime.datetime(2026, 12, 4, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
CRITERIA = ("PRIORITY", "CHANNEL_RANK", "VALUE", "DUE_DATE", "FIFO")
CHANNELS = ("", "web", "store", "app")

orders = st.lists(
    st.fixed_dictionaries({
        "units": st.integers(1, 9),
        "priority": st.integers(0, 2),
        "channel": st.sampled_from(CHANNELS),
        "value": st.integers(0, 3),
        "due": st.integers(0, 3),
    }),
    min_size=1, max_size=7,
)


@st.composite
def policies(draw: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    criteria = tuple(draw(st.permutations(CRITERIA))[:draw(st.integers(1, len(CRITERIA)))])
    ranks: tuple[str, ...] = ()
    if "CHANNEL_RANK" in criteria:
        named = [channel for channel in CHANNELS if channel]
        ranks = tuple(draw(st.permutations(named))[:draw(st.integers(1, len(named)))])
    return criteria, ranks


def reference_order(
    demand: list[dict[str, Any]], criteria: tuple[str, ...], ranks: tuple[str, ...]
) -> list[str]:
    """The reservation ids in the policy's order, by the contract's words."""
    def key(order: dict[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for criterion in criteria:
            if criterion == "PRIORITY":
                parts.append(-order["priority"])  # highest first
            elif criterion == "CHANNEL_RANK":  # listed order; unlisted or none after them
                channel = order["channel"]
                parts.append(ranks.index(channel) if channel in ranks else len(ranks))
            elif criterion == "VALUE":
                parts.append(-order["value"])  # highest first
            elif criterion == "DUE_DATE":
                parts.append(order["due"])  # earliest first
            else:
                parts.append(order["created"])  # oldest first
        return (*parts, order["id"])  # then ids
    return [order["id"] for order in sorted(demand, key=key)]


def numbered(demand: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids that do not follow creation order (so that the tie-break is not FIFO's twin)."""
    return [dict(order, id=f"r{(index * 5 + 3) % 11:02d}", created=index)
            for index, order in enumerate(demand)]


def new_ledger() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    return ledger


def set_policy(ledger: Ledger, criteria: tuple[str, ...], ranks: tuple[str, ...]) -> None:
    ledger.execute(commands.SetAllocationPolicy("W", "", criteria, ranks), NOW)


def reserve(ledger: Ledger, order: dict[str, Any], partial: bool = False) -> None:
    ship = datetime.date.fromordinal(TODAY + order["due"])
    line = commands.LineRequest("l1", "W", order["units"], "DC1",
                                None if partial else (ship.year, ship.month, ship.day),
                                unit_value=order["value"])
    ledger.execute(commands.Reserve(
        order["id"], (line,), priority=order["priority"], channel=order["channel"],
        commit=True, policy=Policy(allow_partial=partial)), NOW)


def move(ledger: Ledger, kind: str, units: int) -> None:
    ledger.execute(commands.AdjustStock(f"{kind}-{units}-{ledger.sequence}", (
        commands.Movement("W", "DC1", kind, units),)), NOW)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(demand=orders, policy=policies(), short_by=st.integers(1, 40),
       policy_first=st.booleans())
def test_at_risk_set_and_reallocation_order_follow_the_policy(
    demand: list[dict[str, Any]], policy: tuple[tuple[str, ...], tuple[str, ...]],
    short_by: int, policy_first: bool,
) -> None:
    demand = numbered(demand)
    criteria, ranks = policy
    ledger = new_ledger()
    total = sum(order["units"] for order in demand)
    move(ledger, "RECEIPT", total)
    if policy_first:
        set_policy(ledger, criteria, ranks)
    for order in demand:
        reserve(ledger, order)
    move(ledger, "SHRINKAGE", min(short_by, total))
    if not policy_first:  # a policy set afterwards re-examines the marks at once
        set_policy(ledger, criteria, ranks)
    # (a) the at-risk set is what a greedy fill in policy order leaves unfilled
    left, unfilled = total - min(short_by, total), []
    by_id = {order["id"]: order for order in demand}
    for reservation_id in reference_order(demand, criteria, ranks):
        if by_id[reservation_id]["units"] <= left:
            left -= by_id[reservation_id]["units"]
        else:
            unfilled.append(reservation_id)
    assert {key[0] for key in ledger.positions[("W", "DC1")].at_risk} == set(unfilled)
    # (c) Reallocate's plans come in policy order
    plans = ledger.plan_reallocation(Scope(sku="W"), NOW).plans
    assert [plan.reservation_id for plan in plans] == unfilled
    assert ledger.check_invariants() == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(demand=orders, policy=policies(), arriving=st.integers(1, 60))
def test_backorders_are_filled_in_policy_order(
    demand: list[dict[str, Any]], policy: tuple[tuple[str, ...], tuple[str, ...]],
    arriving: int,
) -> None:
    demand = numbered(demand)
    criteria, ranks = policy
    ledger = new_ledger()
    move(ledger, "CYCLE_COUNT", 0)
    set_policy(ledger, criteria, ranks)
    for order in demand:
        reserve(ledger, order, partial=True)
    # Wholly backordered demand has no promise date: give it the one drawn, as if promised.
    for order in demand:
        ledger.reservations[order["id"]].first_promise_day = TODAY + order["due"]
    ledger.take_changes()
    move(ledger, "RECEIPT", arriving)
    # (b) supply goes to backorders in policy order, each taking what is left
    expected, left = [], arriving
    by_id = {order["id"]: order for order in demand}
    for reservation_id in reference_order(demand, criteria, ranks):
        filled = min(left, by_id[reservation_id]["units"])
        if filled:
            expected.append((reservation_id, filled))
        left -= filled
    fills = [(str(e.data["reservation_id"]), e.data["filled"])
             for e in ledger.take_changes().events if e.type == "BACKORDER_FILLED"]
    assert fills == expected
    assert ledger.check_invariants() == []
