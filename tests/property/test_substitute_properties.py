"""Properties of substitute SKUs (docs/contract.md, "Substitutes") over random small ledgers.

Each example builds 2-3 nodes with random lanes and stock of SKUs S0..S3, then an order of
1-3 lines, each with random substitutes and need-by date, under a random policy, and checks:
Promise is read-only and its offers are feasible substitutes; Reserve with
allow_substitution holds exactly the substitutes Promise offered (or is refused having
changed nothing); and Reserve without it answers as if no line listed substitutes.
"""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atp.ledger import Ledger, LedgerConfig, commands, day_of, errors
from atp.ledger.model import Lane, Policy, Reservation
from atp.ledger.promising import OrderLine

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
REGION = "EU"
SKUS = ("S0", "S1", "S2", "S3")


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


nodes = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(1, 5)),
                 min_size=2, max_size=3)  # (handling days, transit days, cost) per node
stock = st.lists(st.tuples(st.sampled_from(SKUS[:3]), st.integers(0, 2), st.integers(1, 8)),
                 max_size=7)  # S3 is never stocked: an unknown substitute


@st.composite
def orders(draw: Any) -> list[tuple[str, int, tuple[str, ...], int | None]]:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        sku = draw(st.sampled_from(SKUS[:3]))
        others = [s for s in SKUS if s != sku]
        substitutes = tuple(draw(st.permutations(others))[:draw(st.integers(0, 3))])
        need_by = draw(st.none() | st.integers(0, 5))
        lines.append((sku, draw(st.integers(1, 6)), substitutes, need_by))
    return lines


policies = st.builds(Policy, ship_complete=st.booleans(), max_nodes=st.sampled_from([0, 1]),
                     allow_partial=st.booleans())


def build(node_specs: list[tuple[int, int, int]],
          stocked: list[tuple[str, int, int]]) -> Ledger:
    ledger = Ledger(LedgerConfig())
    for index, (handling, transit, cost) in enumerate(node_specs):
        ledger.execute(commands.UpsertNode(f"N{index}", handling_days=handling,
                                           lanes=(Lane(REGION, transit, cost),)), NOW)
    movements = tuple(
        commands.Movement(sku, f"N{node % len(node_specs)}", "RECEIPT", quantity)
        for sku, node, quantity in stocked
    )
    # S0..S2 exist even when none was drawn (a position counted at 0); S3 never does.
    at_n0 = {m.sku for m in movements if m.node_id == "N0"}
    movements = tuple(commands.Movement(sku, "N0", "CYCLE_COUNT", 0)
                      for sku in SKUS[:3] if sku not in at_n0) + movements
    ledger.execute(commands.AdjustStock("seed", movements), NOW)
    ledger.take_changes()
    return ledger


def state_of(ledger: Ledger) -> Any:
    return ({key: (p.on_hand, p.reserved, p.allocated, dict(p.deltas), sorted(p.lines))
             for key, p in ledger.positions.items()},
            sorted(ledger.known_reservations()), ledger.sequence)


def lines_of(reservation: Reservation) -> list[tuple[Any, ...]]:
    return [(line.line_id, line.sku, line.node_id, line.quantity, line.backordered_quantity,
             line.ship_day, line.delivery_day) for line in reservation.lines]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node_specs=nodes, stocked=stock, order=orders(), policy=policies)
def test_substitutes(node_specs: list[tuple[int, int, int]], stocked: list[tuple[str, int, int]],
                     order: list[tuple[str, int, tuple[str, ...], int | None]],
                     policy: Policy) -> None:
    ledger = build(node_specs, stocked)
    order_lines = [
        OrderLine(f"l{i}", sku, quantity, substitutes,
                  None if need_by is None else date_after(need_by))
        for i, (sku, quantity, substitutes, need_by) in enumerate(order)
    ]
    before = state_of(ledger)
    plan = ledger.promise(order_lines, REGION, policy, 0, NOW, explain=True)
    assert state_of(ledger) == before and not ledger.has_changes
    plain = ledger.promise([OrderLine(line.line_id, line.sku, line.quantity)
                            for line in order_lines], REGION, policy, 0, NOW)
    offered: dict[str, str] = {}
    for line, line_plan, plain_plan in zip(order_lines, plan.lines, plain.lines, strict=True):
        # The line's own answer is the answer without substitutes.
        assert line_plan.allocations == plain_plan.allocations
        assert line_plan.backordered_quantity == plain_plan.backordered_quantity
        assert [check.sku for check in line_plan.substitutes] == list(line.substitute_skus)
        offer = line_plan.substitute
        if offer is None:
            continue
        offered[line.line_id] = offer.sku
        assert offer.sku in line.substitute_skus
        assert sum(a.quantity for a in offer.allocations) == line.quantity
        assert offer.promise_day == max(a.delivery_day for a in offer.allocations)
        if line.need_by_date is not None:
            assert offer.promise_day <= datetime.date(*line.need_by_date).toordinal()
    requests = tuple(
        commands.LineRequest(line.line_id, line.sku, line.quantity,
                             substitute_skus=line.substitute_skus, need_by_date=line.need_by_date)
        for line in order_lines
    )

    def reserve(ledger: Ledger, lines: tuple[commands.LineRequest, ...], allow: bool) -> Any:
        try:
            return ledger.execute(commands.Reserve("r1", lines, destination_region=REGION,
                                                   policy=policy, allow_substitution=allow), NOW)
        except errors.InsufficientAvailability:
            return None

    # Without allow_substitution: as if no line listed substitutes.
    without = reserve(build(node_specs, stocked), requests, allow=False)
    bare = reserve(build(node_specs, stocked), tuple(
        commands.LineRequest(line.line_id, line.sku, line.quantity) for line in order_lines),
        allow=False)
    assert (without is None) == (bare is None)
    if without is not None:
        assert lines_of(without) == lines_of(bare)
    # With it: exactly the offers, or refused having changed nothing.
    reservation = reserve(ledger, requests, allow=True)
    assert ledger.check_invariants() == []
    if reservation is None:
        assert state_of(ledger) == before
        return
    held = {line.request_line_of: line for line in reservation.lines if line.substitute_for}
    assert {line_id: line.sku for line_id, line in held.items()} == offered
    for line in reservation.lines:
        if line.substitute_for:
            assert line.backordered_quantity == 0
