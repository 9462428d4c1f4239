"""Steps of the wall clock: the engine's time never runs backwards, and a forward step's
expiry backlog is worked off in slices, never in one stall.

Found by a review: expiry and dates followed time.time(). A +1 h step expired a 900 s-TTL
reservation 1.5 s after it was made; a -2 day step gave a new reservation a ship date two
days in the past; with 200k HELD reservations one +1,000 s step made a single ExpireDue stall
every call for 8.3 s. Now SteadyClock never runs backwards and counts steps, ExpireDue takes
a limit and the writer expires a backlog in slices between other commands, and a command
naming an overdue HELD reservation expires it first.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest

from atp.bootstrap import AtpServer, ServerConfig, last_event_time, steady_clock
from atp.engine.clock import SteadyClock
from atp.engine.writer import EXPIRE_BEFORE_COMMAND, EXPIRE_SLICE, Writer
from atp.ledger import Ledger, LedgerConfig, Refused, day_of, errors
from atp.ledger import commands
from atp.ledger.model import Event, ReservationState
from atp.persistence import codec
from atp.server.metrics import Metrics
from atp.store import MemoryStore, WriteBatch
from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
DAY_S = 86400.0
TTL_S = 900


class FakeTime:
    """A wall clock that can be stepped and a monotonic clock that cannot."""

    def __init__(self) -> None:
        self.wall = NOW
        self.monotonic = 1000.0

    def wall_now(self) -> float:
        return self.wall

    def monotonic_now(self) -> float:
        return self.monotonic

    def elapse(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds

    def step_wall(self, seconds: float) -> None:
        self.wall += seconds


def steps_logged(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.name == "atp.clock" and words in record.getMessage()]


# ----- SteadyClock ---------------------------------------------------------------------------


def test_a_step_back_keeps_time_going_at_the_monotonic_rate_until_the_wall_catches_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    clock = SteadyClock(fake.wall_now, fake.monotonic_now)
    fake.elapse(10)
    assert clock() == NOW + 10
    fake.step_wall(-3600)
    for second in range(1, 6):
        fake.elapse(1)
        assert clock() == NOW + 10 + second  # the wall says NOW - 3590 + second
    assert clock.backward_steps == 1
    assert len(steps_logged(caplog, "stepped back")) == 1, "one step, one error"
    assert steps_logged(caplog, "stepped back")[0].levelno == logging.ERROR

    fake.step_wall(3600)  # the wall is put right: it meets the engine's clock again
    assert clock() == fake.wall == NOW + 15
    assert steps_logged(caplog, "caught up")
    fake.elapse(2)
    fake.step_wall(0.5)  # a small drift is followed, not held off
    assert clock() == fake.wall
    assert (clock.backward_steps, clock.forward_steps) == (1, 0)


def test_after_a_step_back_a_faster_wall_is_rejoined_once_it_catches_up() -> None:
    fake = FakeTime()
    clock = SteadyClock(fake.wall_now, fake.monotonic_now)
    clock()
    fake.step_wall(-10)
    readings = []
    for _ in range(40):  # the wall slews at 1.5x: it makes up 10 s in 20 s
        fake.monotonic += 1
        fake.wall += 1.5
        readings.append(clock())
    assert readings == sorted(readings)
    assert readings[:20] == [NOW + second for second in range(1, 21)]
    assert readings[-1] == fake.wall, "the engine follows the wall again"


@pytest.mark.parametrize("with_monotonic", [True, False])
def test_the_engines_clock_never_runs_backwards(with_monotonic: bool) -> None:
    fake = FakeTime()
    clock = SteadyClock(fake.wall_now, fake.monotonic_now if with_monotonic else None)
    chance = random.Random(20261122)
    previous = clock()
    for _ in range(2000):
        fake.elapse(chance.uniform(0, 2))
        if chance.random() < 0.05:
            fake.step_wall(chance.choice([-1, 1]) * chance.uniform(0, 3 * DAY_S))
        now = clock()
        assert now >= previous
        previous = now


def test_a_forward_step_beyond_the_bound_is_followed_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    clock = SteadyClock(fake.wall_now, fake.monotonic_now, forward_step_max_s=60)
    fake.elapse(1)
    fake.step_wall(30)  # within the bound: followed quietly
    assert clock() == fake.wall
    assert clock.forward_steps == 0
    fake.elapse(1)
    fake.step_wall(1000)
    assert clock() == fake.wall, "the calendar follows the wall clock"
    assert clock.forward_steps == 1
    logged = steps_logged(caplog, "stepped forward")
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR


def test_without_a_monotonic_clock_a_step_back_holds_time_still() -> None:
    fake = FakeTime()
    clock = SteadyClock(fake.wall_now, None)
    assert clock() == NOW
    fake.step_wall(-2 * DAY_S)
    for _ in range(3):
        fake.elapse(3600)
        assert clock() == NOW
    fake.step_wall(2 * DAY_S)
    assert clock() == fake.wall


def test_the_real_clock_starts_no_earlier_than_the_newest_journal_event() -> None:
    """A clock stepped back while atpd was down cannot date demand before the books."""
    newest = time.time() + DAY_S
    store = MemoryStore()
    batch = WriteBatch()
    for sequence, at in enumerate((newest - 5.0, newest), start=1):
        batch.append(sequence, codec.encode_event(Event(sequence, at, "NODE_UPSERTED", {})))
    store.commit(batch)
    assert last_event_time(store) == newest

    clock = steady_clock(ServerConfig(data_dir=None), last_event_time(store))
    first = clock()
    assert first >= newest
    assert clock() >= first
    assert clock.backward_steps == 1


def test_clock_steps_are_exported_by_direction() -> None:
    fake = FakeTime()
    clock = SteadyClock(fake.wall_now, fake.monotonic_now, forward_step_max_s=60)
    metrics = Metrics(Writer(Ledger(), MemoryStore(), clock=clock))
    fake.step_wall(-100)
    clock()
    fake.step_wall(1000)
    clock()
    exported = generate_latest(metrics.registry).decode()
    assert 'atp_clock_steps_total{direction="backward"} 1.0' in exported
    assert 'atp_clock_steps_total{direction="forward"} 1.0' in exported


# ----- a forward step over a large HELD backlog ----------------------------------------------

HELD = 20_000


def ledger_holding(count: int) -> Ledger:
    """`count` HELD reservations of one unit at one node, all made at NOW (due NOW + TTL_S)."""
    ledger = Ledger(LedgerConfig(default_ttl_seconds=TTL_S))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10 * count),)), NOW)
    for index in range(count):
        ledger.execute(commands.Reserve(f"held-{index}", (commands.LineRequest("l1", "A", 1, "DC1"),)), NOW)
    ledger.take_changes()  # the store below starts empty: nothing of this needs writing
    return ledger


def record_steps(ledger: Ledger) -> list[tuple[str, int]]:
    """(command, reservations it expired) of every ledger step from now on."""
    steps: list[tuple[str, int]] = []
    apply = ledger.apply  # every ledger step goes through it

    def recorded(command: commands.Command, now: float, principal: str = "") -> Any:
        before = ledger.expired_total
        try:
            return apply(command, now, principal)
        finally:
            steps.append((type(command).__name__, ledger.expired_total - before))

    ledger.apply = recorded  # type: ignore[method-assign]
    return steps


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


def test_a_forward_step_expires_a_large_backlog_in_slices_with_other_commands_in_between() -> None:
    ledger = ledger_holding(HELD)
    fake = FakeTime()
    steps = record_steps(ledger)
    receipt = commands.AdjustStock("between-slices", (commands.Movement("A", "DC1", "RECEIPT", 1),))

    async def scenario() -> tuple[int, float]:
        writer = Writer(ledger, MemoryStore(), clock=fake.wall_now)
        writer.start()
        fake.step_wall(1000)  # every reservation is now overdue
        await until(lambda: ledger.expired_total > 0, timeout_s=5)  # the expiry loop began
        started = time.monotonic()
        await asyncio.wait_for(writer.execute(receipt), 5)
        latency_s, expired_when_answered = time.monotonic() - started, ledger.expired_total
        await until(lambda: ledger.expired_total == HELD, timeout_s=30)
        await asyncio.wait_for(writer.close(), 5)
        return expired_when_answered, latency_s

    expired_when_answered, latency_s = asyncio.run(scenario())
    assert max(expired for _, expired in steps) <= EXPIRE_SLICE.limit, "one slice per step"
    assert expired_when_answered < HELD, "the receipt was answered before the backlog was done"
    receipt_step = [name for name, _ in steps].index("AdjustStock")
    assert sum(expired for _, expired in steps[:receipt_step]) > 0
    assert sum(expired for _, expired in steps[receipt_step:]) > 0, "slices ran after it too"
    assert latency_s < 1.0
    assert ledger.state_counts[ReservationState.HELD] == 0
    assert ledger.positions[("A", "DC1")].reserved == 0


def test_a_command_naming_an_overdue_reservation_expires_it_even_behind_a_backlog() -> None:
    """Before each command the writer expires only a few; the one the command names is
    expired first wherever it stands in the backlog."""
    behind = EXPIRE_BEFORE_COMMAND.limit * 4
    ledger = ledger_holding(behind)
    ledger.execute(commands.Reserve("last", (commands.LineRequest("l1", "A", 1, "DC1"),)), NOW + 10)
    ledger.take_changes()
    fake = FakeTime()

    async def scenario() -> Any:
        writer = Writer(ledger, MemoryStore(), clock=fake.wall_now)
        writer.start()
        fake.step_wall(2 * TTL_S)
        outcome, durable = writer.apply_one(commands.Commit("last", "commit-last"))  # no await before
        await writer.until_durable(durable)
        await asyncio.wait_for(writer.close(), 5)
        return outcome

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, Refused), outcome  # refusals are values
    assert isinstance(outcome.error, errors.FailedPrecondition), outcome
    assert outcome.reason == errors.RESERVATION_EXPIRED


# ----- commands on an overdue HELD reservation, before any expiry runs -----------------------


def held_for_a_minute() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=TTL_S))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),)), NOW)
    ledger.execute(commands.Reserve("o1", (commands.LineRequest("l1", "A", 4, "DC1"),), ttl_seconds=60), NOW)
    return ledger


@pytest.mark.parametrize("command", [
    commands.Commit("o1", "commit-1"),
    commands.Release("o1", "release-1"),
    commands.Fulfill("o1", "fulfill-1"),
])
def test_a_command_on_an_overdue_held_reservation_is_refused_as_expired(
    command: commands.Command,
) -> None:
    ledger = held_for_a_minute()
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.execute(command, NOW + 61)  # no ExpireDue has run
    assert refused.value.reason == errors.RESERVATION_EXPIRED
    assert ledger.reservation("o1").state is ReservationState.EXPIRED
    position = ledger.positions[("A", "DC1")]
    assert (position.reserved, position.allocated, position.on_hand) == (0, 0, 10)


def test_a_reserve_replay_of_an_overdue_reservation_shows_it_expired() -> None:
    ledger = held_for_a_minute()
    replayed = ledger.execute(
        commands.Reserve("o1", (commands.LineRequest("l1", "A", 4, "DC1"),), ttl_seconds=60), NOW + 61
    )
    assert replayed.state is ReservationState.EXPIRED
    assert ledger.positions[("A", "DC1")].reserved == 0


def test_a_command_within_the_ttl_still_commits() -> None:
    ledger = held_for_a_minute()
    committed = ledger.execute(commands.Commit("o1", "commit-1"), NOW + 59)
    assert committed.state is ReservationState.COMMITTED


# ----- a step back of two days through an in-process atpd ------------------------------------


@pytest.mark.parametrize("with_monotonic", [False, True])
def test_after_a_step_back_of_two_days_new_reservations_are_not_dated_in_the_past(
    with_monotonic: bool,
) -> None:
    fake = FakeTime()
    options: dict[str, Any] = {"monotonic": fake.monotonic_now} if with_monotonic else {}
    config = ServerConfig(listen="127.0.0.1:0", data_dir=None, clock=fake.wall_now, **options)

    async def scenario() -> tuple[common_pb2.Reservation, common_pb2.Reservation]:
        server = AtpServer(config)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await stock(channel, "A", "DC1", 10)
                before = await reserve(channel, "before-the-step", "A", "DC1")
                fake.step_wall(-2 * DAY_S)
                fake.elapse(60)
                after = await reserve(channel, "after-the-step", "A", "DC1")
        finally:
            await server.stop()
            gc.unfreeze()
        return before, after

    before, after = asyncio.run(scenario())
    assert ship_day(before) == day_of(NOW)
    assert ship_day(after) >= ship_day(before), "a ship date before one already promised"
    assert after.create_time.ToSeconds() >= before.create_time.ToSeconds()
    assert after.expire_time.ToSeconds() >= before.expire_time.ToSeconds()


async def stock(channel: grpc.aio.Channel, sku: str, node_id: str, quantity: int) -> None:
    inventory = inventory_pb2_grpc.InventoryStub(channel)
    node = common_pb2.Node(node_id=node_id)
    await inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=node), timeout=5)
    movement = inventory_pb2.StockMovement(
        sku=sku, node_id=node_id, type=inventory_pb2.StockMovement.RECEIPT, quantity=quantity
    )
    request = inventory_pb2.AdjustStockRequest(request_id="stock", movements=[movement])
    await inventory.AdjustStock(request, timeout=5)


async def reserve(
    channel: grpc.aio.Channel, reservation_id: str, sku: str, node_id: str
) -> common_pb2.Reservation:
    line = common_pb2.ReservationLine(line_id="l1", sku=sku, node_id=node_id, quantity=1)
    request = reservations_pb2.ReserveRequest(reservation_id=reservation_id, lines=[line])
    reply: common_pb2.Reservation = await reservations_pb2_grpc.ReservationsStub(channel).Reserve(
        request, timeout=5
    )
    return reply


def ship_day(reservation: common_pb2.Reservation) -> int:
    date = reservation.lines[0].ship_date
    return datetime.date(date.year, date.month, date.day).toordinal()
