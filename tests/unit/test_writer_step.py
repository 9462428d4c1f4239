"""The lean writer step: what crosses to the gateways pickles to equal values by its own
cheap routes (a Reservation as its values, a Policy through a cache of shared instances),
the state enum hashes by identity, and retention after a commit is one commit-thread trip."""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import itertools
import pickle
from collections.abc import Callable
from typing import Any

from atp.engine.housekeeping import Housekeeper, Retention
from atp.ledger import Ledger, Refused, commands
from atp.ledger.model import (
    Delivery,
    Lane,
    Objective,
    Policy,
    Reservation,
    ReservationLine,
    ReservationState,
)
from atp.ledger.prechecks import precheck
from atp.store import MemoryStore

NOW = 1_790_000_000.0


def every_field_set() -> Reservation:
    """A reservation with no field, of its own or its lines', at its default."""
    line = ReservationLine(
        "l1/2", "SKU-B", "DC2", 5, 740_000, 740_003, 1, 2, 3, True, True, "SHORTAGE", "l1",
        1_250, "SKU-A",
    )
    other = ReservationLine("l2", "SKU-C", "DC1", 1, 740_001)
    reservation = Reservation(
        "order-1", ReservationState.FULFILLED, [line, other], NOW, NOW + 900, 7, "web",
        "customer-9", "EU", Policy(True, 2, True, Objective.CHEAPEST), "digest", 41, NOW + 5,
        3, 740_002, Delivery(740_004, 4, 1, False, NOW + 6),
    )
    defaults = [ReservationLine("x", "y", "z", 0, 0), Reservation(
        "x", ReservationState.HELD, [], 0.0, None)]
    for record, default in zip((line, reservation), defaults):
        for field in dataclasses.fields(record):
            assert getattr(record, field.name) != getattr(default, field.name), field.name
    return reservation


def test_a_reservation_with_every_field_set_pickles_back_equal() -> None:
    reservation = every_field_set()
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(reservation, protocol))
        assert back == reservation
        assert type(back.state) is ReservationState and back.state is reservation.state
        assert all(type(line) is ReservationLine for line in back.lines)
    assert copy.deepcopy(reservation) == reservation
    assert copy.copy(reservation) == reservation


def test_reserve_outcomes_and_their_commands_pickle_back_equal_in_batches() -> None:
    ledger = Ledger()
    for node in ("DC1", "DC2"):
        ledger.execute(commands.UpsertNode(node, lanes=(Lane("EU", 2, 5),)), NOW)
    ledger.execute(commands.AdjustStock("seed", tuple(
        commands.Movement(f"S{sku}", node, "RECEIPT", 3)
        for sku in range(5) for node in ("DC1", "DC2"))), NOW)
    batch = [
        commands.Reserve(
            f"r{index}",
            tuple(commands.LineRequest(f"l{line}", f"S{(index + line) % 5}", 1 + line % 2,
                                       "DC1" if index % 3 == 0 else "", unit_value=index % 2)
                  for line in range(1 + index % 3)),
            destination_region="EU", commit=index % 2 == 1, priority=index,
            policy=Policy(allow_partial=index % 4 == 0, max_nodes=index % 3),
        )
        for index in range(24)
    ]
    outcomes = ledger.apply_batch(batch, NOW)
    assert any(isinstance(outcome, Refused) for outcome in outcomes), "refusals cross too"
    assert sum(isinstance(outcome, Reservation) for outcome in outcomes) > 10
    sent = [precheck(command) for command in batch]  # as a gateway sends them: vetted
    assert all(isinstance(command, commands.VettedReserve) for command in sent)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        for values in (batch, sent):
            back_values = pickle.loads(pickle.dumps(values, protocol))
            assert back_values == values
            assert [type(value) for value in back_values] == [type(value) for value in values]
            assert all(type(line) is commands.LineRequest
                       for value in back_values
                       for line in getattr(value, "reserve", value).lines)
    back = pickle.loads(pickle.dumps(outcomes, pickle.HIGHEST_PROTOCOL))
    for original, copied in zip(outcomes, back, strict=True):
        if isinstance(original, Refused):
            assert isinstance(copied, Refused) and copied.reason == original.reason
        else:
            assert copied == original


def test_unpickled_policies_are_equal_and_shared_per_combination() -> None:
    combinations = itertools.product((False, True), (0, 1, 5), (False, True), Objective)
    for ship_complete, max_nodes, allow_partial, objective in combinations:
        policy = Policy(ship_complete, max_nodes, allow_partial, objective)
        first, second = pickle.loads(pickle.dumps([policy, Policy(*dataclasses.astuple(
            policy))]))
        assert first == policy and first.objective is objective
        assert first is second, "equal policies come back as one shared (frozen) instance"
        assert type(first.ship_complete) is bool and type(first.max_nodes) is int


def test_reservation_states_hash_by_identity_and_count_as_keys() -> None:
    counts: collections.Counter[ReservationState] = collections.Counter()
    for state in [*ReservationState, ReservationState.HELD, ReservationState("HELD")]:
        counts[state] += 1
    assert counts[ReservationState.HELD] == 3
    assert sum(counts.values()) == len(ReservationState) + 2
    assert {state: state.value for state in ReservationState}[ReservationState("EXPIRED")] == (
        "EXPIRED")


def test_a_retention_pass_is_one_commit_thread_trip_and_the_commit_loops_skips_a_running_one(
) -> None:
    trips: list[str] = []
    release = asyncio.Event()

    async def on_commit_thread(function: Callable[..., Any], *args: object) -> Any:
        trips.append(getattr(function, "__name__", "?"))
        await release.wait()
        return function(*args)

    clock = [NOW]

    async def scenario() -> None:
        keeper = Housekeeper(MemoryStore(), Retention(), lambda: clock[0], lambda: 0,
                             on_commit_thread)
        running = asyncio.create_task(keeper.tidy())
        await asyncio.sleep(0)
        assert await keeper.tidy_after_commit() is False, "a pass is running: skipped at once"
        waiting = asyncio.create_task(keeper.tidy())
        await asyncio.sleep(0)
        assert not waiting.done(), "tidy waits out the running pass"
        release.set()
        assert await running is False and await waiting is False  # nothing to purge
        assert trips == ["_pass", "_pass"], "one trip per pass, for all four kinds"
        assert keeper.failures == 0
        # Nothing was due, nor can be before the shortest window (a day, idempotency's)
        # has passed: the commit loop makes no trip for nothing.
        assert await keeper.tidy_after_commit() is False
        assert trips == ["_pass", "_pass"]
        clock[0] = NOW + Retention().idempotency_s
        assert await keeper.tidy_after_commit() is False  # a pass: due, nothing found
        assert trips == ["_pass", "_pass", "_pass"]

    asyncio.run(scenario())
