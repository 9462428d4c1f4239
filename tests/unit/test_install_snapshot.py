"""Writer.install_snapshot: a follower's store and memory replaced by a snapshot of its
leader's store (in memory stores): it then holds the leader's records, journal, commit and
live state, and goes on with the leader's next batch; a snapshot that stops short leaves the
store marked and the member refusing reads and batches until a complete one is installed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from atp.bootstrap import load_ledger
from atp.engine.events import EventFilter, EventHub
from atp.engine.replication import number_batch, stored_commit
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig, Refused, commands
from atp.ledger.errors import FailedPrecondition, Unavailable
from atp.ledger.model import Lane
from atp.ledger.state import NoExpiryQueue
from atp.persistence import encode_batch
from atp.store import MemoryStore, WriteBatch
from atp.store.base import LEDGER_DATABASES, SnapshotRecord
from tests.unit.test_replica import NODES, RandomClient, live_state

NOW = 1_790_000_000.0
CONFIG = LedgerConfig(closed_retention_s=3600)


class Leader:
    """A leader's ledger and store, committing numbered batches of random commands."""

    def __init__(self, seed: int) -> None:
        self.ledger = Ledger(CONFIG)
        self.store = MemoryStore()
        self.client = RandomClient(seed, self.ledger)
        self.commit = 0
        for node in NODES:
            self.ledger.execute(commands.UpsertNode(node, lanes=(Lane("EU", 1, 3),)), NOW)

    def next_batch(self) -> WriteBatch:
        for _ in range(self.client.rng.randint(1, 8)):
            outcome = self.ledger.apply(self.client.command((2026, 9, 10)), NOW)
            assert outcome is not None
        changes = self.ledger.take_changes()
        batch = encode_batch(changes)
        self.commit += 1
        number_batch(batch, self.commit)
        self.store.commit(batch)
        self.ledger.forget_durable(changes)
        return batch

    def run(self, batches: int) -> None:
        for _ in range(batches):
            self.next_batch()


async def chunks_of(records: Iterator[list[SnapshotRecord]], fail_after: int = -1,
                    ) -> AsyncIterator[list[SnapshotRecord]]:
    for number, chunk in enumerate(records):
        if number == fail_after:
            raise Unavailable("the stream broke")
        yield chunk
        await asyncio.sleep(0)


def follower_of(store: MemoryStore) -> Writer:
    writer = Writer(load_ledger(store, CONFIG, NOW), store, clock=lambda: NOW,
                    rebuild_ledger=lambda: load_ledger(store, CONFIG, NOW))
    writer.leader_address = "leader:1"
    return writer


def everything(store: MemoryStore) -> tuple[object, ...]:
    return store.load(), store.read_journal(0, 10**6), store.last_sequence()


def test_a_follower_holds_its_leaders_store_and_state_after_a_snapshot() -> None:
    async def scenario() -> None:
        leader = Leader(seed=1)
        leader.run(40)
        stale = Leader(seed=2)  # another history, to be replaced whole
        stale.run(5)
        follower = follower_of(stale.store)
        calls: list[object] = []
        follower.on_restore_begun = lambda: calls.append("begun")
        follower.on_snapshot_installed = calls.append
        follower.start()

        installed = await follower.install_snapshot(chunks_of(leader.store.snapshot_chunks(7)))

        assert installed.commit == leader.commit == follower.commit_index
        assert installed.records == len(leader.store.read_journal(0, 10**6)) + sum(
            len(records) for records in leader.store.load().values())
        assert calls == ["begun", leader.commit]
        assert everything(stale.store) == everything(leader.store)
        assert live_state(follower.ledger) == live_state(leader.ledger)
        assert follower.ledger.check_invariants() == []
        assert not follower.restoring and follower.snapshots_installed == 1
        await follower.until_applied_durable()  # reads are answered again
        # The leader's next batches follow on.
        for _ in range(5):
            await follower.commit_replicated(leader.commit + 1, leader.next_batch())
        assert live_state(follower.ledger) == live_state(leader.ledger)
        assert stored_commit(stale.store) == leader.commit
        await follower.close()

    asyncio.run(scenario())


def test_a_snapshot_that_stops_short_is_never_served_and_the_next_one_mends_it() -> None:
    async def scenario() -> None:
        leader = Leader(seed=3)
        leader.run(30)
        store = MemoryStore()
        follower = follower_of(store)
        follower.start()

        with pytest.raises(Unavailable, match="broke"):
            await follower.install_snapshot(
                chunks_of(leader.store.snapshot_chunks(5), fail_after=3))

        assert follower.restoring and store.restore_incomplete()
        with pytest.raises(Unavailable, match="installing a snapshot"):
            await follower.until_applied_durable()
        with pytest.raises(FailedPrecondition) as refused:
            await follower.commit_replicated(1, WriteBatch())
        assert refused.value.reason == "SNAPSHOT_REQUIRED"
        installed = await follower.install_snapshot(chunks_of(leader.store.snapshot_chunks(5)))
        assert installed.commit == leader.commit and not store.restore_incomplete()
        assert everything(store) == everything(leader.store)
        assert live_state(follower.ledger) == live_state(leader.ledger)
        await follower.close()

    asyncio.run(scenario())


def test_a_leader_does_not_install_snapshots() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        writer = follower_of(store)
        writer.leader_address = None
        writer.start()
        with pytest.raises(FailedPrecondition):
            await writer.install_snapshot(chunks_of(MemoryStore().snapshot_chunks(5)))
        assert not store.restore_incomplete()
        outcome = await writer.execute(commands.UpsertNode("N1"))
        assert not isinstance(outcome, Refused)
        await writer.close()

    asyncio.run(scenario())


def test_watchers_are_told_to_resume_when_a_snapshot_replaces_the_journal() -> None:
    async def scenario() -> None:
        leader = Leader(seed=4)
        leader.run(10)
        store = MemoryStore()
        hub = EventHub(store)
        follower = follower_of(store)
        follower.on_restore_begun = hub.restore_begun
        follower.on_snapshot_installed = lambda commit: hub.restore_finished()
        follower.start()
        async def first_live_event() -> object:
            return await anext(aiter(hub.watch(0, EventFilter(), stop_at_head=False)))

        live = asyncio.create_task(first_live_event())
        await asyncio.sleep(0.01)  # the watcher follows live events now

        installing = asyncio.create_task(
            follower.install_snapshot(chunks_of(leader.store.snapshot_chunks(5))))
        with pytest.raises(Unavailable, match="watch again"):
            await live  # ended cleanly, told to resume, instead of a silent gap
        await installing

        replayed = [event async for event in hub.watch(0, EventFilter(), stop_at_head=True)]
        journal = leader.store.read_journal(0, 10**6)
        assert [event.sequence for event in replayed] == [sequence for sequence, _ in journal]
        assert hub.committed_sequence == leader.store.last_sequence()
        await follower.close()

    asyncio.run(scenario())


def test_a_gateways_copy_holds_its_leaders_live_state_as_objects_only() -> None:
    # As bootstrap makes a gateway's: a live copy store (its records let go once the ledger
    # is built) and no expiry queue (the writer expires; its expiries arrive as records).
    async def scenario() -> None:
        leader = Leader(seed=3)
        leader.run(30)
        store = MemoryStore.live_copy(journal_events_max=10**6)
        copy = Writer(load_ledger(store, CONFIG, NOW, expires=False), store,
                      clock=lambda: NOW,
                      rebuild_ledger=lambda: load_ledger(store, CONFIG, NOW, expires=False))
        copy.leader_address = "writer"
        copy.start()
        await copy.install_snapshot(chunks_of(leader.store.snapshot_chunks(7)))
        for _ in range(10):
            await copy.commit_replicated(leader.commit + 1, leader.next_batch())
        assert leader.ledger.expiries, "the scenario expires nothing: it shows nothing"
        assert isinstance(copy.ledger.expiries, NoExpiryQueue)
        assert copy.ledger.next_expiry() is None
        expected = {**live_state(leader.ledger), "expiries": []}
        assert live_state(copy.ledger) == expected
        assert copy.ledger.check_invariants() == []
        kept = store.load()
        assert not any(kept[database] for database in LEDGER_DATABASES)
        assert stored_commit(store) == leader.commit
        await copy.close()

    asyncio.run(scenario())
