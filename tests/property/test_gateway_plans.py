"""A sourced Reserve planned on a gateway's copy of the ledger, at some commit, then applied
by the writer after other commands moved it on, gives exactly what the writer planning it
itself gives: the same outcome, positions, reservations and events. The writer takes the
gateway's plan only while nothing the plan read has changed (ledger/gateway_plans.py), and
plans itself otherwise; both happen in these runs. Every Reserve goes as a gateway sends it
(prechecks.precheck, then the plan): plain ones vetted, with their digest, which the writer
takes instead of checking and digesting again, replays included.

The model of commits is exact: every command is its own batch, committed at once, so a
command applied at commit k marks what it touched with k + 1 (the writer marks with a commit
no earlier than that, which only makes it take fewer plans)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atp.ledger import Ledger, LedgerConfig, commands, day_of, gateway_plans
from atp.ledger.prechecks import precheck
from atp.ledger.model import Lane, Objective, Policy
from atp.ledger.outcomes import Refused

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
SKUS = ("A", "B", "C")
NODES = ("N1", "N2", "N3")

steps = st.lists(st.one_of(
    st.tuples(st.just("stock"), st.sampled_from(SKUS), st.sampled_from(NODES),
              st.integers(1, 8)),
    st.tuples(st.just("fixed"), st.sampled_from(SKUS), st.sampled_from(NODES),
              st.integers(1, 6)),
    st.tuples(st.just("node"), st.sampled_from(NODES), st.booleans(), st.integers(1, 5)),
    st.tuples(st.just("sourced"), st.lists(st.sampled_from(SKUS), min_size=1, max_size=3,
                                           unique=True),
              st.integers(1, 9), st.sampled_from(list(Objective)), st.booleans()),
    st.tuples(st.just("refresh")),
    st.tuples(st.just("again")),  # the last Reserve sent once more: a replay
), min_size=1, max_size=25)


def new_ledger(stock: list[int]) -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    for index, node in enumerate(NODES):
        ledger.execute(commands.UpsertNode(node, lanes=(Lane("EU", 1 + index, 3 - index),)),
                       NOW)
    movements = tuple(commands.Movement(sku, node, "RECEIPT", units)
                      for (sku, node), units in zip(
                          [(s, n) for s in SKUS for n in NODES], stock) if units)
    if movements:
        ledger.execute(commands.AdjustStock("seed", movements), NOW)
    ledger.take_changes()
    return ledger


def command_of(step: tuple[Any, ...], number: int) -> commands.Command:
    kind = step[0]
    if kind == "stock":
        _, sku, node, units = step
        return commands.AdjustStock(f"q{number}", (commands.Movement(sku, node, "RECEIPT",
                                                                     units),))
    if kind == "fixed":
        _, sku, node, units = step
        return commands.Reserve(f"f{number}", (commands.LineRequest("l1", sku, units, node),))
    if kind == "node":
        _, node, active, transit = step
        return commands.UpsertNode(node, active=active, lanes=(Lane("EU", transit, 1),))
    _, skus, units, objective, partial = step
    return commands.Reserve(f"s{number}", tuple(
        commands.LineRequest(f"l{i}", sku, units) for i, sku in enumerate(skus)),
        destination_region="EU", policy=Policy(objective=objective, allow_partial=partial))


def state_of(ledger: Ledger) -> tuple[Any, ...]:
    return (
        sorted((key, repr(position)) for key, position in ledger.positions.items()),
        sorted((rid, repr(r)) for rid, r in ledger.reservations.items()),
        [repr(e) for e in ledger.take_changes().events],
    )


def outcome_of(outcome: Any) -> str:
    if isinstance(outcome, Refused):
        return f"refused {type(outcome.error).__name__}: {outcome.error}"
    return repr(outcome)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stock=st.lists(st.integers(0, 10), min_size=9, max_size=9), plan=steps)
def test_a_gateways_plan_gives_what_the_writer_planning_gives(
    stock: list[int], plan: list[tuple[Any, ...]],
) -> None:
    writer = new_ledger(stock)
    commit = 0
    writer.everything_changed, writer.change_mark = commit, commit + 1
    copy_at, gateway_copy = commit, copy.deepcopy(writer)
    last_reserve: commands.Command | None = None
    for number, step in enumerate(plan):
        if step[0] == "refresh":  # the gateway's copy catches up with the writer
            copy_at, gateway_copy = commit, copy.deepcopy(writer)
            continue
        command = last_reserve if step[0] == "again" else command_of(step, number)
        if command is None:
            continue
        if isinstance(command, commands.Reserve):
            last_reserve = command
            sent = gateway_plans.offer(gateway_copy, precheck(command), lambda: NOW, copy_at)
            assert isinstance(sent, commands.VettedReserve)  # these Reserves are all plain
            assert sent.digest == commands.digest(command)
            if isinstance(sent.reserve, commands.PlannedReserve):
                taken = gateway_plans.usable_plan(writer, sent.reserve, day_of(NOW)) is not None
                event(f"plan taken: {taken}")
            else:  # a node on every line, or planning failed on the copy: the writer plans
                assert sent.reserve is command
                event("not planned")
            # Both from copies of the writer: a deep copy rebuilds sets, whose iteration
            # order (which the ledger's choices among equals may follow) can differ from the
            # original's, so the two sides start from the same kind of object.
            writer, applying_itself = copy.deepcopy(writer), copy.deepcopy(writer)
            assert outcome_of(writer.apply(sent, NOW)) == outcome_of(
                applying_itself.apply(command, NOW))
            assert state_of(writer) == state_of(applying_itself)
            assert writer.vetted_digest == "" and writer.offered_plan is None
        else:
            writer.apply(command, NOW)
            writer.take_changes()
        commit += 1  # each command its own batch, committed at once
        writer.change_mark = commit + 1


def test_a_plan_is_taken_when_nothing_it_read_changed_and_not_otherwise() -> None:
    writer = new_ledger([5] * 9)
    writer.everything_changed, writer.change_mark = 0, 1
    gateway_copy = copy.deepcopy(writer)
    order = commands.Reserve("r1", (commands.LineRequest("l1", "A", 3),),
                             destination_region="EU")
    offered = gateway_plans.offer(gateway_copy, order, lambda: NOW, 0)
    assert isinstance(offered, commands.PlannedReserve)
    writer.apply(command_of(("stock", "B", "N1", 4), 1), NOW)  # another SKU: still valid
    writer.change_mark = 2
    assert gateway_plans.usable_plan(writer, offered, day_of(NOW)) is offered.plan
    writer.apply(command_of(("fixed", "A", "N2", 1), 2), NOW)  # A moved: not valid
    assert gateway_plans.usable_plan(writer, offered, day_of(NOW)) is None
    # A new day, a node changed, or a plan from before the ledger was loaded: not valid.
    fresh = gateway_plans.offer(copy.deepcopy(writer), order, lambda: NOW, 2)
    assert isinstance(fresh, commands.PlannedReserve)
    assert gateway_plans.usable_plan(writer, fresh, day_of(NOW)) is fresh.plan
    assert gateway_plans.usable_plan(writer, fresh, day_of(NOW) + 1) is None
    writer.change_mark = 3
    writer.apply(commands.UpsertNode("N3", lanes=(Lane("EU", 1, 1),)), NOW)
    assert gateway_plans.usable_plan(writer, fresh, day_of(NOW)) is None
    # Commands planning alone does not decide go as they are.
    # They are sent as the very command, without reading the clock (a Reserve naming its
    # nodes is most of a gateway's writes).
    def clock_not_read() -> float:
        raise AssertionError("the clock was read for a command that is not planned")

    fixed = commands.Reserve("r2", (commands.LineRequest("l1", "A", 1, "N1"),))
    assert gateway_plans.offer(writer, fixed, clock_not_read, 3) is fixed
    vetted = precheck(fixed)
    assert isinstance(vetted, commands.VettedReserve)
    assert gateway_plans.offer(writer, vetted, clock_not_read, 3) is vetted
    commit = commands.Commit("r1", "q")
    assert gateway_plans.offer(writer, commit, clock_not_read, 3) is commit
