"""Retention with an injected clock: closed reservations, idempotency records and the journal
leave memory and the store when their windows let them go, and not a moment before.

Two levels: the ledger alone (commands and `now`; no store, so nothing is ever durable and
the ledger keeps everything in memory, answering by the windows alone), and the Writer over
a store (MemoryStore and LmdbStore) with a clock the tests move, its ledger's archive backed
by the store as app.py sets it up, and the Housekeeper purging in slices.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from atp.engine.events import EventFilter, EventHub, OutOfRange
from atp.engine.housekeeping import SLICE_RECORDS, Retention
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig, Refused, day_of, errors
from atp.ledger import commands
from atp.ledger.model import Reservation, ReservationState
from atp.persistence import codec, encode_batch, ledger_from_records
from atp.persistence.archive import StoreArchive
from atp.persistence.verify import verify
from atp.store import LmdbStore, MemoryStore, Store, WriteBatch

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
CLOSED_S = 100.0  # closed retention of these tests
WINDOW_S = 50.0  # idempotency window of these tests
STEP_TIMEOUT_S = 5.0  # every await on the writer is bounded: a regression fails, never hangs


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


def line(line_id: str = "l1", quantity: int = 2, sku: str = "A") -> commands.LineRequest:
    return commands.LineRequest(line_id, sku, quantity, "DC1")


def reserve(reservation_id: str, quantity: int = 2, **options: Any) -> commands.Reserve:
    return commands.Reserve(reservation_id, (line(quantity=quantity),), **options)


def receipt(request_id: str, quantity: int = 5) -> commands.AdjustStock:
    return commands.AdjustStock(request_id, (commands.Movement("A", "DC1", "RECEIPT", quantity),))


# ============================================================================================
# The ledger alone
# ============================================================================================


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=600, closed_retention_s=CLOSED_S,
                                 idempotency_window_s=WINDOW_S))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(receipt("seed", 100), NOW)
    ledger.forget_durable(ledger.take_changes())  # memory holds what the tests do, only
    return ledger


def closed_at(ledger: Ledger, reservation_id: str, state: ReservationState, now: float) -> None:
    """Opens a reservation at `now` and closes it there in `state`."""
    if state is ReservationState.EXPIRED:
        ledger.execute(reserve(reservation_id, ttl_seconds=1), now - 1)
        assert ledger.execute(commands.ExpireDue(), now) >= 1
    elif state is ReservationState.FULFILLED:
        ledger.execute(reserve(reservation_id, commit=True), now)
        ledger.execute(commands.Fulfill(reservation_id, f"ship-{reservation_id}"), now)
    else:
        ledger.execute(reserve(reservation_id), now)
        ledger.execute(commands.Release(reservation_id, f"cancel-{reservation_id}"), now)
    closed = ledger.reservation(reservation_id)
    assert closed.state is state and closed.close_time == now


@pytest.mark.parametrize("state", [ReservationState.RELEASED, ReservationState.FULFILLED,
                                   ReservationState.EXPIRED])
def test_a_closed_reservation_guards_its_id_through_retention_and_not_a_moment_longer(
    ledger: Ledger, state: ReservationState
) -> None:
    closed_at(ledger, "o1", state, NOW)
    first = ledger.reservation("o1")
    ledger.take_changes()
    options = {"ttl_seconds": 1} if state is ReservationState.EXPIRED else (
        {"commit": True} if state is ReservationState.FULFILLED else {})
    same = reserve("o1", **options)

    # The last instant of retention: the same request is answered with the closed
    # reservation (no change, no event), another request under the id is refused.
    edge = NOW + CLOSED_S
    sequence = ledger.sequence
    assert ledger.execute(same, edge) is first
    assert first.state is state
    assert not ledger.has_changes and ledger.sequence == sequence
    with pytest.raises(errors.AlreadyExists):
        ledger.execute(reserve("o1", quantity=3), edge)
    assert ledger.positions[("A", "DC1")].reserved == 0

    # Just after: the ledger no longer counts it, even though nothing purged it yet (this
    # ledger has no store): the id takes a new reservation, and the same request is new too.
    renewed = ledger.execute(reserve("o1", quantity=3), edge + 0.001)
    assert renewed is not first and renewed.state is ReservationState.HELD
    assert renewed.close_time is None and renewed.create_time == edge + 0.001
    assert ledger.reservation("o1") is renewed
    assert ledger.positions[("A", "DC1")].reserved == 3
    assert set(ledger.reservations) == {"o1"}
    assert ledger.check_invariants() == []


def test_closing_moves_a_reservation_out_of_live_state_with_its_purge_index_entry(
    ledger: Ledger,
) -> None:
    ledger.execute(reserve("o1"), NOW)
    ledger.take_changes()
    ledger.execute(commands.Release("o1", "cancel-1"), NOW + 7)
    changes = ledger.take_changes()
    closed = ledger.closed["o1"]
    assert "o1" not in ledger.reservations
    records = encode_batch(changes).records
    assert records[("reservations", b"o1")] is None, "the open record is deleted"
    assert changes.closed["o1"] is closed
    assert codec.decode_record("closed", records[("closed", b"o1")]) == closed
    assert records[("closed_by_time", codec.time_key(NOW + 7, "o1").encode())] == b"o1"
    assert changes.requests["cancel-1"].time == NOW + 7
    assert records[("requests_by_time", codec.time_key(NOW + 7, "cancel-1").encode())] == (
        b"cancel-1")
    # Durable: memory lets both go (an archive answers for them from then on).
    ledger.forget_durable(changes)
    assert ledger.closed == {} and ledger.requests == {}
    assert ledger.reservations == {}


def test_forget_durable_keeps_what_changed_again_after_the_batch_was_taken(ledger: Ledger) -> None:
    """A record written again after its batch was taken belongs to the next batch: memory
    keeps it until that one is durable too."""
    ledger.execute(receipt("adj-1"), NOW)
    older = ledger.take_changes()
    ledger.execute(receipt("adj-1"), NOW + WINDOW_S + 1)  # after the window: applies anew
    ledger.forget_durable(older)
    assert ledger.requests["adj-1"].time == NOW + WINDOW_S + 1
    ledger.forget_durable(ledger.take_changes())
    assert ledger.requests == {}


@dataclass(frozen=True)
class Idempotent:
    """A request kind with an idempotency key: its request, another request under the same
    key, and the effect one application has (which a replay must not repeat)."""

    name: str
    setup: Callable[[Ledger], None]
    request: Any
    other: Any
    effect: Callable[[Ledger], int]


def _supply(ledger: Ledger) -> None:
    ledger.execute(commands.UpsertSupply("po1", "A", "DC1", 40, date_after(5)), NOW)


def _committed(ledger: Ledger) -> None:
    ledger.execute(reserve("o1", quantity=6, commit=True), NOW)


IDEMPOTENT = [
    Idempotent("AdjustStock", lambda ledger: None, receipt("key", 5), receipt("key", 6),
               lambda ledger: ledger.positions[("A", "DC1")].on_hand),
    Idempotent("ReceiveSupply", _supply, commands.ReceiveSupply("key", "po1", 5),
               commands.ReceiveSupply("key", "po1", 6),
               lambda ledger: ledger.positions[("A", "DC1")].on_hand),
    Idempotent("Fulfill", _committed, commands.Fulfill("o1", "key", (commands.LineQuantity("l1", 1),)),
               commands.Fulfill("o1", "key", (commands.LineQuantity("l1", 2),)),
               lambda ledger: ledger.reservation("o1").lines[0].fulfilled_quantity),
    Idempotent("Release", _committed, commands.Release("o1", "key", (commands.LineQuantity("l1", 1),)),
               commands.Release("o1", "key", (commands.LineQuantity("l1", 2),)),
               lambda ledger: ledger.reservation("o1").lines[0].released_quantity),
]


@pytest.mark.parametrize("kind", IDEMPOTENT, ids=[kind.name for kind in IDEMPOTENT])
def test_a_request_id_is_honoured_through_the_window_then_a_retry_is_a_new_request(
    ledger: Ledger, kind: Idempotent
) -> None:
    kind.setup(ledger)
    start = kind.effect(ledger)
    ledger.execute(kind.request, NOW)
    once = kind.effect(ledger)
    assert once > start
    ledger.take_changes()
    sequence = ledger.sequence

    for at in (NOW + 1, NOW + WINDOW_S):  # inside the window, up to its last instant
        ledger.execute(kind.request, at)
        assert kind.effect(ledger) == once, f"a replay at +{at - NOW:.0f}s applied again"
        assert not ledger.has_changes and ledger.sequence == sequence
        with pytest.raises(errors.AlreadyExists) as refused:
            ledger.execute(kind.other, at)
        assert refused.value.resource_type == "request"
        assert kind.effect(ledger) == once and not ledger.has_changes

    # After the window the record no longer counts: the same request applies anew, and its
    # new record starts a new window.
    ledger.execute(kind.request, NOW + WINDOW_S + 0.001)
    twice = kind.effect(ledger)
    assert twice - once == once - start
    assert ledger.requests["key"].time == NOW + WINDOW_S + 0.001
    ledger.take_changes()
    ledger.execute(kind.request, NOW + WINDOW_S + 1)
    assert kind.effect(ledger) == twice and not ledger.has_changes
    assert ledger.check_invariants() == []


def test_commit_request_id_conflicts_within_the_window_and_is_free_after(ledger: Ledger) -> None:
    ledger.execute(reserve("o1"), NOW)
    ledger.execute(reserve("o2"), NOW)
    ledger.execute(commands.Commit("o1", "commit-key"), NOW)
    ledger.take_changes()
    assert ledger.execute(commands.Commit("o1", "commit-key"), NOW + WINDOW_S).state is (
        ReservationState.COMMITTED)
    assert not ledger.has_changes
    with pytest.raises(errors.AlreadyExists):
        ledger.execute(commands.Commit("o2", "commit-key"), NOW + WINDOW_S)
    assert ledger.reservation("o2").state is ReservationState.HELD
    # After the window the key is free: the other reservation commits under it.
    assert ledger.execute(commands.Commit("o2", "commit-key"), NOW + WINDOW_S + 1).state is (
        ReservationState.COMMITTED)
    position = ledger.positions[("A", "DC1")]
    assert (position.reserved, position.allocated) == (0, 4)


def test_a_replayed_release_of_a_closed_reservation_returns_it_unchanged(ledger: Ledger) -> None:
    ledger.execute(reserve("o1"), NOW)
    first = ledger.execute(commands.Release("o1", "cancel-1"), NOW)
    ledger.take_changes()
    assert ledger.execute(commands.Release("o1", "cancel-1"), NOW + WINDOW_S) is first
    assert not ledger.has_changes
    with pytest.raises(errors.AlreadyExists):
        ledger.execute(commands.Release("o1", "cancel-1", (commands.LineQuantity("l1", 1),)), NOW + 2)
    # After the window the retry is new: the reservation is closed, so it is refused.
    with pytest.raises(errors.FailedPrecondition):
        ledger.execute(commands.Release("o1", "cancel-1"), NOW + WINDOW_S + 1)


# ============================================================================================
# The Writer over a store, with a clock the tests move
# ============================================================================================


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Slices:
    """Removed counts of every purge / journal trim call the housekeeper made."""

    purges: dict[str, list[int]]
    trims: list[int]


@dataclass
class Harness:
    writer: Writer
    ledger: Ledger
    store: Store
    clock: FakeClock
    slices: Slices

    async def run(self, command: commands.Command) -> Any:
        """The command's result once durable; its refusal raised, as the error it carries."""
        outcome = await asyncio.wait_for(self.writer.execute(command), STEP_TIMEOUT_S)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    async def idle(self) -> None:
        """Waits out a housekeeping pass already running (after each commit one runs, with
        the clock of its start), so that the next pass is the test's own."""
        keeper = self.writer.housekeeper
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while keeper._busy.locked():
                await asyncio.sleep(0.001)

    async def tidy(self) -> None:
        """Housekeeping at the clock's present until nothing more is due (bounded)."""
        await self.idle()
        for _ in range(10_000):
            if not await asyncio.wait_for(self.writer.housekeeper.tidy(), STEP_TIMEOUT_S):
                return
        raise AssertionError("the purge never finished")

    async def advance_to(self, instant: float) -> None:
        await self.idle()
        self.clock.now = instant

    def keys(self, database: str) -> set[str]:
        return {key.decode() for key in self.store.load()[database]}

    def stored(self, database: str, key: str) -> Any:
        data = self.store.get(database, key.encode())
        return None if data is None else codec.decode_record(database, data)

    def journal(self) -> list[int]:
        return [sequence for sequence, _ in self.store.read_journal(0, 100_000)]


def recording(method: Callable[..., int], into: list[int]) -> Callable[..., int]:
    def call(*args: Any) -> int:
        removed = method(*args)
        into.append(removed)
        return removed

    return call


@pytest.fixture(params=["memory", "lmdb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []

    def make() -> Store:
        if request.param == "memory":
            store: Store = MemoryStore()
        else:
            store = LmdbStore(tmp_path / f"data{len(opened)}", map_size=64 << 20, sync=False)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


async def started(
    store: Store, retention: Retention, *, slice_records: int = SLICE_RECORDS,
    ledger: Ledger | None = None, now: float = NOW, seed: bool = True,
) -> Harness:
    clock = FakeClock(now)
    if ledger is None:
        ledger = Ledger(LedgerConfig(default_ttl_seconds=600,
                                     closed_retention_s=retention.closed_s,
                                     idempotency_window_s=retention.idempotency_s))
    ledger.archive = StoreArchive(store)  # as app.py does
    slices = Slices({"closed_by_time": [], "requests_by_time": [], "ended_holds_by_time": []}, [])
    purge, trim = store.purge, store.trim_journal

    def purge_recorded(index: str, *args: Any) -> int:
        removed = purge(index, *args)
        slices.purges[index].append(removed)
        return removed

    store.purge = purge_recorded  # type: ignore[method-assign]
    store.trim_journal = recording(trim, slices.trims)  # type: ignore[method-assign]
    writer = Writer(ledger, store, clock=clock, retention=retention)
    writer.housekeeper.slice_records = slice_records
    writer.housekeeping_interval_s = 3600.0  # idle passes only when a test asks for one
    writer.start()
    harness = Harness(writer, ledger, store, clock, slices)
    if seed:
        await harness.run(commands.UpsertNode("DC1"))
        await harness.run(receipt("seed", 1000))
    return harness


def windows(**overrides: float) -> Retention:
    values: dict[str, Any] = {"closed_s": CLOSED_S, "idempotency_s": WINDOW_S,
                              "journal_s": 0.0, "journal_events": 0}
    values.update(overrides)
    return Retention(**values)


def scenario(body: Callable[[], Any]) -> None:
    asyncio.run(body())


def test_a_closed_reservation_is_read_from_the_store_through_retention_then_purged(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        h = await started(make_store(), windows())
        await h.run(reserve("o1", commit=True))
        released = await h.run(commands.Release("o1", "cancel-o1"))
        assert released.state is ReservationState.RELEASED
        # Durable: gone from memory, in the closed records with its purge index entry.
        assert "o1" not in h.ledger.reservations and h.ledger.closed == {}
        assert h.keys("reservations") == set()
        assert h.keys("closed") == {"o1"}
        assert h.keys("closed_by_time") == {codec.time_key(NOW, "o1")}
        from_store = h.ledger.reservation("o1")  # what GetReservation answers
        assert from_store is not released and from_store.state is ReservationState.RELEASED
        assert from_store.close_time == NOW
        assert [(ln.quantity, ln.released_quantity) for ln in from_store.lines] == [(2, 2)]

        # Within retention: still there after a purge pass; the id is guarded.
        await h.advance_to(NOW + CLOSED_S - 0.01)
        await h.tidy()
        assert h.keys("closed") == {"o1"}
        sequence, records = h.ledger.sequence, h.store.load()
        replay = await h.run(reserve("o1", commit=True))
        assert replay.state is ReservationState.RELEASED and replay.close_time == NOW
        assert h.ledger.sequence == sequence and h.store.load() == records
        with pytest.raises(errors.AlreadyExists):
            await h.run(reserve("o1", quantity=3))
        assert h.ledger.positions[("A", "DC1")].reserved == 0

        # After retention the purge removes the record and its index entry.
        await h.advance_to(NOW + CLOSED_S + 0.01)
        await h.tidy()
        assert h.keys("closed") == set() and h.keys("closed_by_time") == set()
        assert h.writer.housekeeper.purged["closed"] == 1
        with pytest.raises(errors.NotFound):
            h.ledger.reservation("o1")
        renewed = await h.run(reserve("o1", quantity=3))
        assert renewed.state is ReservationState.HELD
        assert h.keys("reservations") == {"o1"} and h.keys("closed") == set()
        assert h.ledger.positions[("A", "DC1")].reserved == 3
        await h.writer.close()

    scenario(body)


def test_an_id_reused_after_retention_keeps_its_new_closed_record_when_the_old_entry_purges(
    make_store: Callable[[], Store],
) -> None:
    """The ledger lets a closed reservation go at the end of retention even if the purge has
    not reached it: a reused id may close again before the old index entry is purged, and
    that entry must then take neither the new record nor the new entry with it."""

    async def body() -> None:
        h = await started(make_store(), windows())
        await h.run(reserve("o1"))
        await h.run(commands.Release("o1", "cancel-old"))
        old_key = codec.time_key(NOW, "o1")
        later = NOW + CLOSED_S + 5
        await h.advance_to(later)
        # No purge pass has run since the clock moved: the old record is still stored.
        assert h.keys("closed") == {"o1"}
        # Reserved and released again in one batch: its commit (and the purge pass after
        # it) meets the old index entry with the new closed record in place.
        outcomes = await asyncio.wait_for(h.writer.execute_batch([
            reserve("o1", quantity=4), commands.Release("o1", "cancel-new"),
        ]), STEP_TIMEOUT_S)
        assert [o.state for o in outcomes] == [ReservationState.RELEASED] * 2
        await h.tidy()
        assert h.slices.purges["closed_by_time"] and sum(h.slices.purges["closed_by_time"]) == 1
        new_key = codec.time_key(later, "o1")
        assert h.keys("closed_by_time") == {new_key}, "only the old entry went"
        assert old_key not in h.keys("closed_by_time")
        kept = h.stored("closed", "o1")
        assert kept is not None, "the old index entry deleted the reused id's new record"
        assert (kept.close_time, kept.lines[0].quantity) == (later, 4)
        assert h.ledger.reservation("o1").close_time == later
        # The id is guarded by its new closing now, and let go at the new one's end.
        with pytest.raises(errors.AlreadyExists):
            await h.run(reserve("o1", quantity=1))
        await h.advance_to(later + CLOSED_S + 1)
        await h.tidy()
        assert h.keys("closed") == set() and h.keys("closed_by_time") == set()
        await h.writer.close()

    scenario(body)


def test_a_request_replay_inside_the_window_answers_first_and_changes_nothing_then_expires(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        h = await started(make_store(), windows())
        first = await h.run(receipt("adj-1", 5))
        assert [p.on_hand for p in first] == [1005]
        assert h.ledger.requests == {}, "durable: the record left memory"
        assert h.stored("requests", "adj-1").time == NOW

        await h.advance_to(NOW + WINDOW_S)
        await h.tidy()
        sequence, records = h.ledger.sequence, h.store.load()
        again = await h.run(receipt("adj-1", 5))
        assert [p.on_hand for p in again] == [1005]
        assert h.ledger.sequence == sequence and h.store.load() == records, "a replay wrote"
        with pytest.raises(errors.AlreadyExists):
            await h.run(receipt("adj-1", 6))
        assert h.ledger.positions[("A", "DC1")].on_hand == 1005

        # After the window the ledger treats the record as absent although no purge has
        # reached it yet: the retry applies anew.
        await h.advance_to(NOW + WINDOW_S + 1)
        assert h.stored("requests", "adj-1").time == NOW, "not purged yet"
        retried = await h.run(receipt("adj-1", 5))
        assert [p.on_hand for p in retried] == [1010]
        await h.tidy()
        # The old index entry went; the retry's own record and entry stay.
        assert h.stored("requests", "adj-1").time == NOW + WINDOW_S + 1
        assert h.keys("requests_by_time") >= {codec.time_key(NOW + WINDOW_S + 1, "adj-1")}
        assert codec.time_key(NOW, "adj-1") not in h.keys("requests_by_time")
        await h.run(receipt("adj-1", 5))  # inside the new window: a replay
        assert h.ledger.positions[("A", "DC1")].on_hand == 1010

        await h.advance_to(NOW + 2 * WINDOW_S + 2)
        await h.tidy()
        assert h.keys("requests") == set() and h.keys("requests_by_time") == set()
        assert h.writer.housekeeper.purged["requests"] >= 2
        await h.run(receipt("adj-1", 5))
        assert h.ledger.positions[("A", "DC1")].on_hand == 1015
        await h.writer.close()

    scenario(body)


def test_fulfill_replays_from_the_store_within_the_window(make_store: Callable[[], Store]) -> None:
    async def body() -> None:
        h = await started(make_store(), windows())
        await h.run(reserve("o1", quantity=5, commit=True))
        ship = commands.Fulfill("o1", "ship-1", (commands.LineQuantity("l1", 1),))
        assert (await h.run(ship)).lines[0].fulfilled_quantity == 1
        await h.advance_to(NOW + WINDOW_S - 1)
        assert (await h.run(ship)).lines[0].fulfilled_quantity == 1
        with pytest.raises(errors.AlreadyExists):
            await h.run(commands.Fulfill("o1", "ship-1", (commands.LineQuantity("l1", 2),)))
        assert h.ledger.positions[("A", "DC1")].on_hand == 999
        await h.advance_to(NOW + WINDOW_S + 1)
        await h.tidy()
        assert h.stored("requests", "ship-1") is None
        assert (await h.run(ship)).lines[0].fulfilled_quantity == 2
        assert h.ledger.positions[("A", "DC1")].on_hand == 998
        await h.writer.close()

    scenario(body)


def test_purges_run_in_slices_no_larger_than_the_slice(make_store: Callable[[], Store]) -> None:
    async def body() -> None:
        h = await started(make_store(), windows(journal_s=CLOSED_S), slice_records=7)
        count = 40
        for index in range(count):
            await h.run(reserve(f"o{index:02}", quantity=1))
            await h.run(commands.Release(f"o{index:02}", f"cancel-{index}"))
        assert len(h.keys("closed")) == count and len(h.keys("requests")) == count + 1
        events = len(h.journal())
        assert events > count
        await h.advance_to(NOW + CLOSED_S + 1)
        await h.tidy()
        for name, removed in [*h.slices.purges.items(), ("journal", h.slices.trims)]:
            assert removed and max(removed) <= 7, (name, removed)
        assert h.slices.purges["closed_by_time"].count(7) >= count // 7
        assert sum(h.slices.purges["closed_by_time"]) == count
        assert sum(h.slices.purges["requests_by_time"]) == count + 1
        assert sum(h.slices.trims) == events
        for database in ("closed", "closed_by_time", "requests", "requests_by_time"):
            assert h.keys(database) == set(), database
        assert h.journal() == [] and h.store.last_sequence() == h.ledger.sequence
        assert h.writer.housekeeper.purged == {"closed": count, "requests": count + 1,
                                               "holds": 0, "journal": events}
        assert h.writer.housekeeper.longest_slice_s > 0
        await h.writer.close()

    scenario(body)


async def watched(hub: EventHub, after: int) -> list[int]:
    async with asyncio.timeout(STEP_TIMEOUT_S):
        return [e.sequence async for e in hub.watch(after, EventFilter(), stop_at_head=True)]


async def first_of(stream: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(stream), STEP_TIMEOUT_S)


def test_the_journal_is_trimmed_by_age_in_slices_and_watch_below_it_is_out_of_range(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        store = make_store()
        h = await started(store, windows(closed_s=math.inf, idempotency_s=math.inf,
                                         journal_s=100.0), slice_records=4)
        hub = EventHub(store)
        h.writer.on_durable_events = hub.publish
        for index in range(20):
            await h.run(receipt(f"old-{index}", 1))
        old_last = h.ledger.sequence
        await h.advance_to(NOW + 60)
        for index in range(5):
            await h.run(receipt(f"new-{index}", 1))
        last = h.ledger.sequence
        await h.tidy()
        assert h.journal()[0] == 1, "nothing is 100 s old yet"

        await h.advance_to(NOW + 100.5)  # the first batch is older than 100 s, the second not
        await h.tidy()
        assert h.journal() == list(range(old_last + 1, last + 1))
        assert h.slices.trims and max(h.slices.trims) <= 4 and h.slices.trims.count(4) >= 4
        assert store.last_sequence() == last

        with pytest.raises(OutOfRange) as refused:
            await first_of(hub.watch(1, EventFilter(), stop_at_head=True))
        assert refused.value.metadata == {"oldest_sequence": str(old_last + 1)}
        with pytest.raises(OutOfRange):
            await first_of(hub.watch(old_last - 1, EventFilter(), stop_at_head=True))
        assert await watched(hub, old_last) == list(range(old_last + 1, last + 1))
        assert await watched(hub, 0) == list(range(old_last + 1, last + 1))
        await h.writer.close()

    scenario(body)


def test_the_journal_is_trimmed_by_count_to_the_newest_events(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        store = make_store()
        h = await started(store, windows(closed_s=math.inf, idempotency_s=math.inf,
                                         journal_s=0.0, journal_events=10), slice_records=3)
        hub = EventHub(store)
        h.writer.on_durable_events = hub.publish
        for index in range(30):
            await h.run(receipt(f"r-{index}", 1))
        await h.advance_to(NOW + 30 * 86400)  # no age limit: however old, the newest 10 stay
        await h.tidy()
        last = h.ledger.sequence
        assert h.journal() == list(range(last - 9, last + 1))
        assert h.slices.trims and max(h.slices.trims) <= 3
        with pytest.raises(OutOfRange) as refused:
            await first_of(hub.watch(last - 11, EventFilter(), stop_at_head=True))
        assert refused.value.metadata["oldest_sequence"] == str(last - 9)
        assert await watched(hub, last - 10) == list(range(last - 9, last + 1))
        await h.writer.close()

    scenario(body)


def test_watch_below_a_journal_trimmed_empty_is_out_of_range() -> None:
    async def body() -> None:
        store = MemoryStore()
        h = await started(store, windows(closed_s=math.inf, idempotency_s=math.inf,
                                         journal_s=10.0))
        hub = EventHub(store)
        h.writer.on_durable_events = hub.publish
        for index in range(5):
            await h.run(receipt(f"r-{index}", 1))
        last = h.ledger.sequence
        await h.advance_to(NOW + 11)
        await h.tidy()
        assert h.journal() == [] and store.last_sequence() == last
        stream = hub.watch(2, EventFilter(), stop_at_head=False)
        follower = asyncio.create_task(first_of(stream))
        await asyncio.sleep(0.05)
        await h.run(receipt("late", 1))
        try:
            with pytest.raises(OutOfRange):
                first = await follower
                raise AssertionError(f"events 3..{last} skipped silently; got {first.sequence}")
        finally:
            await h.writer.close()

    scenario(body)


class GatedMemoryStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def commit(self, batch: WriteBatch) -> None:
        self.gate.wait(STEP_TIMEOUT_S)
        super().commit(batch)


def test_closed_reservations_and_request_records_stay_in_memory_only_until_durable() -> None:
    async def body() -> None:
        store = GatedMemoryStore()
        h = await started(store, windows())
        await h.run(reserve("o1"))
        store.gate.clear()
        releasing = asyncio.create_task(h.writer.execute(commands.Release("o1", "cancel-1")))
        await asyncio.sleep(0.05)
        assert not releasing.done()
        # Not durable yet: memory answers for it (the store does not have it).
        assert set(h.ledger.closed) == {"o1"} and set(h.ledger.requests) == {"cancel-1"}
        assert store.get("closed", b"o1") is None
        assert h.ledger.reservation("o1").state is ReservationState.RELEASED
        with pytest.raises(errors.AlreadyExists):
            h.ledger.execute(reserve("o1", quantity=3), NOW)
        store.gate.set()
        await asyncio.wait_for(releasing, STEP_TIMEOUT_S)
        assert h.ledger.closed == {} and h.ledger.requests == {}
        assert h.ledger.reservation("o1").state is ReservationState.RELEASED
        await h.writer.close()

    scenario(body)


def test_after_many_lifecycles_memory_holds_only_open_reservations() -> None:
    async def body() -> None:
        store = MemoryStore()
        h = await started(store, windows(closed_s=10 * 86400, idempotency_s=10 * 86400))
        fates = ("held", "committed", "fulfilled", "released", "expired")
        open_ids, closed_ids, request_ids = set(), set(), {"seed"}
        for index in range(250):
            rid, fate = f"r{index:03}", fates[index % len(fates)]
            await h.run(reserve(rid, quantity=1, ttl_seconds=30 if fate == "expired" else 3600))
            if fate in ("committed", "fulfilled"):
                await h.run(commands.Commit(rid, f"{rid}-commit"))
                request_ids.add(f"{rid}-commit")
            if fate == "fulfilled":
                await h.run(commands.Fulfill(rid, f"{rid}-ship"))
                request_ids.add(f"{rid}-ship")
            if fate == "released":
                await h.run(commands.Release(rid, f"{rid}-cancel"))
                request_ids.add(f"{rid}-cancel")
            (open_ids if fate in ("held", "committed") else closed_ids).add(rid)
            if index % 10 == 0:
                await h.run(receipt(f"adj-{index}", 1))
                request_ids.add(f"adj-{index}")
        await h.advance_to(NOW + 31)
        await asyncio.wait_for(h.writer.expire_backlog(), STEP_TIMEOUT_S)
        await asyncio.wait_for(h.writer.until_applied_durable(), STEP_TIMEOUT_S)

        assert set(h.ledger.reservations) == open_ids
        assert h.ledger.closed == {} and h.ledger.requests == {}
        assert len(h.ledger.held_ids) + len(h.ledger.committed_ids) == len(open_ids)
        assert len(h.ledger.expiries) == len([r for r in open_ids if int(r[1:]) % 5 == 0])
        assert h.keys("reservations") == open_ids
        assert h.keys("closed") == closed_ids
        assert h.keys("requests") == request_ids
        states = {rid: h.ledger.reservation(rid).state for rid in closed_ids}
        assert {state.value for state in states.values()} == {"FULFILLED", "RELEASED", "EXPIRED"}
        assert h.ledger.check_invariants() == []
        await h.writer.close()

    scenario(body)


# ----- migration of a data directory written before closed reservations left live state ----


def old_format(reservation: Reservation) -> bytes:
    """A reservation as versions before retention stored it: in `reservations`, whatever its
    state, without a close time."""
    raw = orjson.loads(codec.encode_record("reservations", reservation))
    del raw["closed"]
    return orjson.dumps(raw)


def test_an_old_data_dir_with_closed_reservations_among_the_open_ones_is_migrated(
    tmp_path: Path,
) -> None:
    source = Ledger(LedgerConfig(closed_retention_s=CLOSED_S, idempotency_window_s=WINDOW_S))
    source.execute(commands.UpsertNode("DC1"), NOW - 50)
    source.execute(receipt("seed", 100), NOW - 50)
    source.execute(reserve("open-held", quantity=3), NOW - 40)
    source.execute(reserve("open-committed", quantity=4, commit=True), NOW - 40)
    closed_at(source, "gone-released", ReservationState.RELEASED, NOW - 30)
    closed_at(source, "gone-fulfilled", ReservationState.FULFILLED, NOW - 30)
    closed_at(source, "gone-expired", ReservationState.EXPIRED, NOW - 30)
    changes = source.take_changes()
    # The same records as the old version wrote them: closed reservations in `reservations`
    # (old encoding), idempotency records without a purge index, no closed records.
    batch = WriteBatch()
    for reservation_id, value in {**changes.reservations, **changes.closed}.items():
        batch.put("reservations", reservation_id.encode(), old_format(value))
    for (database, key), data in encode_batch(changes).records.items():
        if database in ("nodes", "positions", "requests"):
            batch.put(database, key, data)
    for event in changes.events:
        batch.append(event.sequence, codec.encode_event(event))
    data_dir = tmp_path / "old"
    with LmdbStore(data_dir, sync=False, map_size=64 << 20) as store:
        store.commit(batch)
    assert verify(data_dir) == [], "the old format is sound as it is"
    closed_ids = {"gone-released", "gone-fulfilled", "gone-expired"}
    open_ids = {"open-held", "open-committed"}
    migrated_at = NOW + 10

    async def body() -> None:
        with LmdbStore(data_dir, sync=False, map_size=64 << 20) as store:
            ledger = ledger_from_records(store.iter_records, store.last_sequence(),
                                         source.config, migrated_at)
            assert set(ledger.reservations) == open_ids
            assert set(ledger.closed) == closed_ids
            assert {r.close_time for r in ledger.closed.values()} == {migrated_at}
            assert ledger.check_invariants() == []
            position = ledger.positions[("A", "DC1")]
            assert (position.reserved, position.allocated, position.on_hand) == (3, 4, 98)
            h = await started(store, windows(), ledger=ledger, now=migrated_at, seed=False)
            await asyncio.wait_for(h.writer.until_applied_durable(), STEP_TIMEOUT_S)
            assert h.keys("reservations") == open_ids
            assert h.keys("closed") == closed_ids
            assert h.keys("closed_by_time") == {codec.time_key(migrated_at, rid)
                                                for rid in closed_ids}
            assert ledger.closed == {}
            assert ledger.reservation("gone-fulfilled").state is ReservationState.FULFILLED
            assert ledger.reservation("gone-expired").lines[0].released_quantity == 2
            with pytest.raises(errors.AlreadyExists):
                await h.run(reserve("gone-released", quantity=9))
            await h.writer.close()
        assert verify(data_dir) == []

        # A restart after the migration loads live state only and has nothing to move.
        with LmdbStore(data_dir, sync=False, map_size=64 << 20) as store:
            again = ledger_from_records(store.iter_records, store.last_sequence(),
                                        source.config, migrated_at + 1)
            assert set(again.reservations) == open_ids and again.closed == {}
            assert not again.has_changes
            # Retention counts from the migration: purged CLOSED_S after it, not before.
            h = await started(store, windows(), ledger=again, now=migrated_at + CLOSED_S - 1,
                              seed=False)
            await h.tidy()
            assert h.keys("closed") == closed_ids
            await h.advance_to(migrated_at + CLOSED_S + 1)
            await h.tidy()
            assert h.keys("closed") == set() and h.keys("closed_by_time") == set()
            with pytest.raises(errors.NotFound):
                again.reservation("gone-released")
            assert h.keys("reservations") == open_ids
            await h.writer.close()

    scenario(body)


def test_an_ended_hold_leaves_memory_guards_its_id_through_retention_then_is_purged(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        h = await started(make_store(), windows())
        placed = commands.PlaceHold("qa-1", "A", "DC1", 3, reason="quality")
        await h.run(placed)
        await h.run(commands.ReleaseHold("qa-1"))
        assert "qa-1" not in h.ledger.holds and h.ledger.ended_holds == {}
        assert h.keys("holds") == set() and h.keys("ended_holds") == {"qa-1"}
        replayed = await h.run(placed)  # same id, same request: the ended hold, no change
        assert replayed.active is False and h.ledger.positions[("A", "DC1")].held == 0
        with pytest.raises(errors.AlreadyExists):
            await h.run(commands.PlaceHold("qa-1", "A", "DC1", 4))
        await h.advance_to(NOW + CLOSED_S + 1)
        await h.tidy()
        assert h.keys("ended_holds") == set() and h.keys("ended_holds_by_time") == set()
        with pytest.raises(errors.NotFound):
            await h.run(commands.ReleaseHold("qa-1"))
        again = await h.run(commands.PlaceHold("qa-1", "A", "DC1", 4))  # the id is free again
        assert again.active and h.ledger.positions[("A", "DC1")].held == 4
        await h.writer.close()

    scenario(body)


# ============================================================================================
# The pass after each group commit: skipped while nothing can be due
# ============================================================================================


def passes(h: Harness) -> int:
    """Slices of closed reservations so far: one per housekeeping pass."""
    return len(h.slices.purges["closed_by_time"])


def test_the_pass_after_a_commit_is_skipped_until_a_window_ends_then_purges_at_once(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        h = await started(make_store(), windows(journal_s=1000.0))
        await h.run(reserve("o1"))
        await h.run(commands.Release("o1", "cancel-o1"))
        await h.idle()
        before = passes(h)
        await h.advance_to(NOW + 10)  # every window is longer: nothing can be due
        for index in range(5):
            await h.run(receipt(f"quiet-{index}", 1))
        await h.idle()
        assert passes(h) == before, "a trip to the commit thread for nothing"
        assert "o1" in h.keys("closed")

        # The idempotency window (50 s) ends first: the commit after it runs a pass.
        await h.advance_to(NOW + WINDOW_S + 1)
        await h.run(receipt("after-window", 1))
        await h.idle()
        assert passes(h) == before + 1
        assert "cancel-o1" not in h.keys("requests"), "purged by the pass after the commit"
        assert "o1" in h.keys("closed")  # its own window (100 s) has not ended

        await h.advance_to(NOW + CLOSED_S + 1)
        await h.run(receipt("after-closed-window", 1))
        await h.idle()
        assert "o1" not in h.keys("closed"), "purged by the pass after the commit"
        await h.writer.close()

    scenario(body)


def test_a_count_limit_trims_after_each_commit_that_passes_it_and_only_then(
    make_store: Callable[[], Store],
) -> None:
    async def body() -> None:
        h = await started(make_store(), windows(closed_s=math.inf, idempotency_s=math.inf,
                                                journal_events=6))
        for index in range(20):
            trims = len(h.slices.trims)
            journal_before = len(h.journal())
            await h.run(receipt(f"r-{index}", 1))
            await h.idle()
            kept = h.journal()
            assert kept[-1] == h.ledger.sequence
            assert len(kept) == min(6, journal_before + 1), "trimmed to the limit at once"
            if journal_before + 1 <= 6:
                assert len(h.slices.trims) == trims, "no trim while the count is within it"
        await h.writer.close()

    scenario(body)


def test_a_store_filled_by_other_means_makes_every_kind_due_again() -> None:
    async def body() -> None:
        h = await started(MemoryStore(), windows(journal_s=1000.0))
        keeper = h.writer.housekeeper
        await h.idle()
        assert not keeper.may_have_work()
        async with keeper.held_back():  # a restore: the store's entries are others'
            pass
        assert keeper.may_have_work()
        await h.tidy()
        assert not keeper.may_have_work()
        h.writer.lead(h.writer.term + 1)  # a promoted follower: the leader stamped them
        assert keeper.may_have_work()
        await h.writer.close()

    scenario(body)
