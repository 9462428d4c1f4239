"""Fencing and terms in the writer and the replication log, in memory (no network, no etcd):

- Writer.lead(term) takes only a newer term, and its next batch stores the term history;
- a leader past its lease deadline admits nothing and confirms nothing (a write applied before
  the deadline whose batch becomes durable after it is refused LEADERSHIP_LOST), and
  step_down refuses every caller still waiting;
- a follower refuses a batch of an older term (STALE_TERM) and stores the history a batch
  carries;
- ReplicationLog: synchronous standbys, follower resets, snapshots, (commit, batch, term);
- ReplicationServicer._refusal_of: NOT_LEADER and HISTORY_DIVERGED.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from atp.engine.replication import (
    TERMS_KEY,
    ReplicationLog,
    decode_terms,
    stored_commit,
    stored_terms,
)
from atp.engine.writer import LEADERSHIP_LOST, Writer
from atp.ledger import Ledger, commands
from atp.ledger.errors import (
    HISTORY_DIVERGED,
    NOT_LEADER,
    SNAPSHOT_REQUIRED,
    STALE_TERM,
    FailedPrecondition,
    LedgerError,
    Unavailable,
)
from atp.server.replication import ReplicationServicer
from atp.store import MemoryStore, StoreFullError, WriteBatch
from atp.store.base import META
from atp.v1 import replication_pb2

NOW = 1_795_000_000.0

Batch = tuple[int, WriteBatch, int]


class GatedStore(MemoryStore):
    """A memory store whose commits wait for a gate (a batch can be held mid-commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a commit reached the gate

    def commit(self, batch: WriteBatch) -> None:
        self.entered.set()
        self.gate.wait(10)
        super().commit(batch)


def receipt(request_id: str, quantity: int = 1) -> commands.AdjustStock:
    return commands.AdjustStock(request_id, (commands.Movement("A", "DC1", "RECEIPT", quantity),))


async def until(check: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def started_writer(
    store: MemoryStore | None = None, clock: Callable[[], float] = lambda: NOW,
) -> Writer:
    writer = Writer(Ledger(), store if store is not None else MemoryStore(), clock=clock)
    writer.start()
    await writer.execute(commands.UpsertNode("DC1"))
    return writer


async def held_mid_commit(store: GatedStore) -> None:
    """Waits (off the loop) until a commit is blocked at the store's closed gate."""
    await asyncio.get_running_loop().run_in_executor(None, store.entered.wait, 5)
    assert store.entered.is_set()


# -- lead: terms --------------------------------------------------------------------------------


def test_lead_takes_only_a_newer_term_and_its_next_batch_stores_the_history() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        writer = await started_writer(store)  # commit 1: the node, before any term
        assert (writer.term, writer.terms, stored_terms(store)) == (0, [], [])
        with pytest.raises(ValueError):
            writer.lead(0)
        writer.lead(4)
        assert writer.term == 4 and writer.terms == [(4, 2)]
        # No command follows: the history alone makes batch 2.
        await until(lambda: writer.commit_index == 2)
        assert stored_terms(store) == [(4, 2)]
        assert stored_commit(store) == 2
        for stale in (4, 3):
            with pytest.raises(ValueError):
                writer.lead(stale)
        assert writer.terms == [(4, 2)]
        await writer.execute(receipt("r1"))  # commit 3, term 4
        writer.lead(9)
        assert writer.term == 9 and writer.terms == [(4, 2), (9, 4)]
        await until(lambda: writer.commit_index == 4)
        assert stored_terms(store) == [(4, 2), (9, 4)]
        await writer.close()
        # A restart reads the history back.
        again = Writer(Ledger(), store, clock=lambda: NOW)
        assert (again.term, again.terms) == (9, [(4, 2), (9, 4)])
        await again.close()

    asyncio.run(scenario())


def test_the_term_history_rides_with_the_commands_of_the_open_batch() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        writer = await started_writer(store)
        batches: list[Batch] = []
        writer.on_durable_batch = lambda commit, batch, term: batches.append((commit, batch, term))
        writer.lead(2)
        _, durable = writer.apply_one(receipt("r1"))  # before the commit loop runs again
        await writer.until_durable(durable)
        assert [(commit, term) for commit, _, term in batches] == [(2, 2)]
        records = batches[0][1].records
        assert decode_terms(records[(META, TERMS_KEY)]) == [(2, 2)]
        assert ("positions", b"A\x1fDC1") in records  # the receipt, in the same batch
        await writer.execute(receipt("r2"))
        assert (META, TERMS_KEY) not in batches[-1][1].records  # stored once
        assert stored_terms(store) == [(2, 2)]
        await writer.close()

    asyncio.run(scenario())


# -- the lease deadline -----------------------------------------------------------------------


def test_past_its_lease_deadline_a_writer_admits_nothing() -> None:
    async def scenario() -> None:
        writer = await started_writer()
        assert writer.leads and writer.lease_deadline == math.inf
        writer.lease_deadline = time.monotonic() - 0.001
        assert not writer.leads
        with pytest.raises(Unavailable):
            await writer.execute(receipt("r1"))
        with pytest.raises(Unavailable):
            writer.apply([receipt("r2")])
        assert not writer.ledger.has_changes
        writer.lease_deadline = time.monotonic() + 60  # renewed
        assert writer.leads
        await writer.execute(receipt("r3"))
        await writer.close()

    asyncio.run(scenario())


def test_a_write_whose_batch_becomes_durable_after_the_deadline_is_not_confirmed() -> None:
    async def scenario() -> None:
        store = GatedStore()
        writer = await started_writer(store)
        shown: list[object] = []
        writer.on_durable_events = shown.extend
        writer.lease_deadline = time.monotonic() + 60
        store.entered.clear()
        store.gate.clear()
        write = asyncio.create_task(writer.execute(receipt("r1", 5)))
        await held_mid_commit(store)  # applied (admitted before the deadline), committing
        writer.lease_deadline = time.monotonic() - 0.001  # the lease may end meanwhile
        store.gate.set()
        with pytest.raises(Unavailable) as refused:
            await write
        assert refused.value.message == LEADERSHIP_LOST
        assert shown == []  # its events are not announced either
        # It is durable here all the same (its fate is the next leader's).
        assert writer.commit_index == 2 and stored_commit(store) == 2
        await writer.close()

    asyncio.run(scenario())


def test_with_sync_replicas_the_deadline_and_step_down_refuse_waiters() -> None:
    async def scenario() -> None:
        writer = await started_writer()
        writer.sync_replicas = 1
        writer.lease_deadline = time.monotonic() + 60
        confirmed = asyncio.create_task(writer.execute(receipt("r1")))
        await until(lambda: writer.commit_index == 2)
        await asyncio.sleep(0.01)
        assert not confirmed.done()  # durable here, waiting for a replica
        writer.replicas_hold(2)
        await confirmed

        late = asyncio.create_task(writer.execute(receipt("r2")))
        await until(lambda: writer.commit_index == 3)
        writer.lease_deadline = time.monotonic() - 0.001
        writer.replicas_hold(3)  # the replica holds it, but after the lease may have ended
        with pytest.raises(Unavailable) as refused:
            await late
        assert refused.value.message == LEADERSHIP_LOST

        writer.lease_deadline = time.monotonic() + 60
        waiting = [asyncio.create_task(writer.execute(receipt(f"r{i}"))) for i in (3, 4)]
        await until(lambda: writer.commit_index == 4)
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in waiting)
        writer.step_down(None)
        for task in waiting:
            with pytest.raises(Unavailable) as refused:
                await task
            assert refused.value.message == LEADERSHIP_LOST
        writer.replicas_hold(4)  # a late acknowledgement answers nobody now
        await writer.close()

    asyncio.run(scenario())


# -- step_down -----------------------------------------------------------------------------------


def test_step_down_without_a_leader_fences_and_with_one_names_it() -> None:
    async def scenario() -> None:
        writer = await started_writer()
        writer.step_down(None)
        assert writer.fenced and writer.leader_address is None and not writer.leads
        with pytest.raises(Unavailable):
            await writer.execute(receipt("r1"))

        writer.step_down("h:1")
        assert not writer.fenced and writer.leader_address == "h:1" and not writer.leads
        with pytest.raises(FailedPrecondition) as refused:
            await writer.execute(receipt("r1"))
        assert refused.value.reason == NOT_LEADER
        assert refused.value.metadata == {"leader": "h:1"}

        writer.lead(1)
        assert writer.leads and not writer.fenced and writer.leader_address is None
        await writer.execute(receipt("r1"))
        await writer.close()

    asyncio.run(scenario())


def test_step_down_refuses_callers_whose_batch_is_still_committing() -> None:
    async def scenario() -> None:
        store = GatedStore()
        writer = await started_writer(store)
        store.entered.clear()
        store.gate.clear()
        inflight = asyncio.create_task(writer.execute(receipt("r1")))
        await held_mid_commit(store)
        opened = asyncio.create_task(writer.execute(receipt("r2")))  # the open batch
        await asyncio.sleep(0.01)
        writer.step_down("h:1")
        store.gate.set()
        for task in (inflight, opened):
            with pytest.raises(Unavailable) as refused:
                await task
            assert refused.value.message == LEADERSHIP_LOST
        # Both are still committed here (see step_down's docstring).
        await until(lambda: writer.commit_index == 3)
        await writer.close()

    asyncio.run(scenario())


def test_the_expiry_loop_expires_nothing_while_not_leading() -> None:
    async def scenario() -> None:
        now = [NOW]
        writer = await started_writer(clock=lambda: now[0])
        await writer.execute(receipt("r1", 5))
        await writer.execute(commands.PlaceHold("h1", "A", "DC1", 2, expire_time=NOW + 10))
        assert writer.ledger.next_expiry() == NOW + 10
        writer.step_down(None)
        now[0] = NOW + 20
        await asyncio.sleep(0.3)  # the loop checks every 5 ms when something is due
        assert writer.ledger.next_expiry() == NOW + 10
        assert not writer.ledger.has_changes
        writer.step_down("h:1")
        await asyncio.sleep(0.1)
        assert writer.ledger.next_expiry() == NOW + 10
        writer.lead(1)
        await until(lambda: writer.ledger.next_expiry() is None)
        await writer.close()

    asyncio.run(scenario())


# -- commit_replicated ----------------------------------------------------------------------


def at_commit(writer: Writer, commit: int) -> Callable[[], bool]:
    return lambda: writer.commit_index == commit


async def leader_batches(*steps: int | commands.Command) -> list[Batch]:
    """The durable batches of a leader that runs `steps` in order (an int: lead that term,
    then wait for its history batch), each command waited for in its own batch."""
    writer = Writer(Ledger(), MemoryStore(), clock=lambda: NOW)
    batches: list[Batch] = []
    writer.on_durable_batch = lambda commit, batch, term: batches.append((commit, batch, term))
    writer.start()
    for step in steps:
        if isinstance(step, int):
            wanted = writer.commit_index + 1
            writer.lead(step)
            await until(at_commit(writer, wanted))
        else:
            await writer.execute(step)
    await writer.close()
    return batches


def test_a_follower_stores_the_history_a_batch_carries_and_refuses_an_older_term() -> None:
    async def scenario() -> None:
        batches = await leader_batches(
            3, commands.UpsertNode("DC1"), receipt("r1"), 5, receipt("r2"))
        assert [(commit, term) for commit, _, term in batches] == [
            (1, 3), (2, 3), (3, 3), (4, 5), (5, 5)]
        store = MemoryStore()
        follower = Writer(Ledger(), store, clock=lambda: NOW)
        follower.step_down("leader:1")
        seen: list[tuple[int, int]] = []
        follower.on_durable_batch = lambda commit, batch, term: seen.append((commit, term))

        await follower.commit_replicated(*batches[0])
        assert (follower.term, follower.terms, follower.commit_index) == (3, [(3, 1)], 1)
        for numbered in batches[1:3]:
            await follower.commit_replicated(*numbered)
        assert stored_commit(store) == 3

        before = store.load()
        commit, batch, _ = batches[3]
        follower.term = 5  # as if it had already heard of term 5 (from batch 4)
        with pytest.raises(FailedPrecondition) as refused:
            await follower.commit_replicated(commit, batch, 3)
        assert refused.value.reason == STALE_TERM
        assert refused.value.metadata == {"term": "3", "holds_term": "5"}
        assert store.load() == before and follower.commit_index == 3
        assert follower.terms == [(3, 1)]

        await follower.commit_replicated(*batches[3])
        assert follower.terms == [(3, 1), (5, 4)] and follower.term == 5
        assert stored_terms(store) == [(3, 1), (5, 4)]
        with pytest.raises(FailedPrecondition) as refused:
            await follower.commit_replicated(5, batches[4][1], 3)  # a deposed term-3 leader
        assert refused.value.reason == STALE_TERM
        assert follower.commit_index == 4
        await follower.commit_replicated(*batches[4])
        assert seen == [(1, 3), (2, 3), (3, 3), (4, 5), (5, 5)]
        assert follower.commit_index == 5 and stored_commit(store) == 5
        await follower.close()

    asyncio.run(scenario())


def test_on_durable_batch_receives_the_batch_object_and_its_term() -> None:
    async def scenario() -> None:
        batches = await leader_batches(2, commands.UpsertNode("DC1"))
        follower = Writer(Ledger(), MemoryStore(), clock=lambda: NOW)
        got: list[Batch] = []
        follower.on_durable_batch = lambda commit, batch, term: got.append((commit, batch, term))
        for batch in batches:
            await follower.commit_replicated(*batch)
        assert got == batches and got[1][1] is batches[1][1]
        assert follower.follow_cpu_s > 0  # what keeping the copy cost this thread
        await follower.close()

    asyncio.run(scenario())


class _FullOnce(MemoryStore):
    """A gateway's copy whose first commit finds it full (nothing written)."""

    def __init__(self) -> None:
        super().__init__(keeps_archive=False)
        self.commits_inline = True
        self.refusals = 1

    def commit(self, batch: WriteBatch) -> None:
        if self.refusals:
            self.refusals -= 1
            raise StoreFullError("full, once")
        super().commit(batch)


@pytest.mark.parametrize("store_of", [lambda: MemoryStore.live_copy(1_000), _FullOnce])
def test_a_copy_that_commits_inline_stores_and_applies_each_batch(
    store_of: Callable[[], MemoryStore],
) -> None:
    """A gateway's copy stores and applies a batch in one step; a full store takes the
    waiting way (the task that retries) and the batch still lands whole."""

    async def scenario() -> None:
        batches = await leader_batches(2, commands.UpsertNode("DC1"), receipt("r1", 5))
        store = store_of()
        follower = Writer(Ledger(), store, clock=lambda: NOW)
        follower.step_down("leader:1")
        for batch in batches:
            await follower.commit_replicated(*batch)
        assert follower.commit_index == stored_commit(store) == len(batches)
        assert follower.ledger.positions[("A", "DC1")].on_hand == 5
        assert follower.ledger.sequence == store.last_sequence()
        assert follower.follow_cpu_s > 0
        await follower.close()

    asyncio.run(scenario())


def test_a_replicated_commit_cancelled_mid_store_still_lands_in_memory() -> None:
    """Follower.stop() cancels its task, possibly while a batch is being stored on the
    commit thread: the batch must still reach memory, or the store is a batch ahead of the
    ledger (a redelivery then reuses journal sequences: StoreError; leading: fatal)."""

    async def scenario() -> None:
        batches = await leader_batches(
            3, commands.UpsertNode("DC1"), receipt("r1"), receipt("r2"), receipt("r3"))
        store = GatedStore()
        follower = Writer(Ledger(), store, clock=lambda: NOW)
        follower.step_down("leader:1")
        for batch in batches[:3]:
            await follower.commit_replicated(*batch)
        store.entered.clear()
        store.gate.clear()
        task = asyncio.create_task(follower.commit_replicated(*batches[3]))
        await held_mid_commit(store)
        task.cancel()  # what Follower.stop() does to its task
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        store.gate.set()
        await follower.settle_replication()
        assert follower.commit_index == stored_commit(store) == 4
        assert follower.ledger.sequence == store.last_sequence()
        await follower.commit_replicated(*batches[4])  # the stream resumes after it
        assert follower.commit_index == stored_commit(store) == 5
        await follower.close()

    asyncio.run(scenario())


# -- ReplicationLog -------------------------------------------------------------------------


def test_replicated_commit_is_the_least_a_standby_holds() -> None:
    log = ReplicationLog(0)
    log.sync_replicas = 1
    fired: list[int] = []
    log.on_replicated = fired.append
    log.acknowledge("a", 3)
    log.acknowledge("b", 7)
    assert log.replicated_commit(1) == 7 and log.replicated_commit(2) == 3  # any followers
    assert log.replicated_commit(3) == 0
    log.choose_standbys(("a", "b"))
    assert fired[-1] == 3  # choosing fires at once
    assert log.replicated_commit(1) == 3
    log.acknowledge("c", 50)  # not a standby: counts for nothing
    assert log.replicated_commit(1) == 3 and fired[-1] == 3
    log.acknowledge("a", 9)
    assert fired[-1] == 7 and log.replicated_commit(1) == 7
    log.acknowledge("a", 8)  # never back
    assert log.acknowledged["a"] == 9
    assert log.replicated_commit(3) == 0  # fewer standbys than replicas
    log.choose_standbys(())
    assert fired[-1] == 0 and log.replicated_commit(1) == 0
    log.choose_standbys(("c",))
    assert fired[-1] == 50


def test_choose_standbys_fires_nothing_without_sync_replicas() -> None:
    log = ReplicationLog(0)
    fired: list[int] = []
    log.on_replicated = fired.append
    log.acknowledge("a", 3)
    log.choose_standbys(("a",))
    assert fired == [] and log.replicated_commit(1) == 3


def test_reset_followers_forgets_progress_and_connections() -> None:
    log = ReplicationLog(0)
    log.acknowledge("a", 3)
    log.connected.add("a")
    log.reset_followers()
    assert log.acknowledged == {} and log.connected == set()
    assert log.replicated_commit(1) == 0


def batch_of(number: int) -> WriteBatch:
    batch = WriteBatch()
    batch.put(META, b"k", number.to_bytes(8, "big"))
    return batch


async def next_of(stream: AsyncIterator[Batch]) -> Batch:
    return await anext(stream)


def test_after_yields_commit_batch_and_term_and_a_gap_clears_the_log() -> None:
    async def scenario() -> None:
        log = ReplicationLog(0)
        batches = {n: batch_of(n) for n in range(1, 8)}
        log.append(1, batches[1], 2)
        log.append(2, batches[2], 2)
        log.append(3, batches[3], 5)
        stream = log.after(1)
        assert await anext(stream) == (2, batches[2], 2)
        assert await anext(stream) == (3, batches[3], 5)
        waiting = asyncio.create_task(next_of(stream))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        log.append(4, batches[4], 5)
        assert await asyncio.wait_for(waiting, 1) == (4, batches[4], 5)

        log.append(7, batches[7], 6)  # after a snapshot: not consecutive
        assert log.oldest_commit == 7 and log.last_commit == 7
        with pytest.raises(FailedPrecondition) as refused:
            await anext(log.after(3))
        assert refused.value.reason == SNAPSHOT_REQUIRED
        assert await anext(log.after(6)) == (7, batches[7], 6)

    asyncio.run(scenario())


# -- ReplicationServicer._refusal_of -----------------------------------------------------------


def hello(commit: int, last_term: int, leader_term: int = 0) -> replication_pb2.FollowerProgress:
    return replication_pb2.FollowerProgress(
        follower_id="f1", durable_commit=commit, last_term=last_term, leader_term=leader_term)


def reason_of(error: LedgerError | None) -> str | None:
    return None if error is None else error.reason


def test_refusal_of_a_follower_hello() -> None:
    async def scenario() -> None:
        writer = await started_writer()  # commit 1, before any term
        writer.lead(2)
        await until(lambda: writer.commit_index == 2)  # (2, 2)
        await writer.execute(receipt("r1"))  # 3
        writer.lead(5)
        await until(lambda: writer.commit_index == 4)  # (5, 4)
        await writer.execute(receipt("r2"))  # 5
        assert writer.terms == [(2, 2), (5, 4)] and writer.commit_index == 5
        log = ReplicationLog(writer.commit_index)
        servicer = ReplicationServicer(log, writer)
        refusal = servicer._refusal_of

        assert refusal(hello(0, 0)) is None
        assert refusal(hello(1, 0)) is None  # before any term
        assert refusal(hello(3, 2, leader_term=5)) is None
        assert refusal(hello(5, 5, leader_term=5)) is None
        assert refusal(hello(3, 2)) is None  # leader_term 0: any leader
        assert reason_of(refusal(hello(3, 2, leader_term=4))) == NOT_LEADER
        assert reason_of(refusal(hello(3, 2, leader_term=6))) == NOT_LEADER
        assert reason_of(refusal(hello(6, 5, leader_term=5))) == HISTORY_DIVERGED  # beyond
        assert reason_of(refusal(hello(4, 2, leader_term=5))) == HISTORY_DIVERGED  # other term
        assert reason_of(refusal(hello(3, 4, leader_term=5))) == HISTORY_DIVERGED
        diverged = refusal(hello(4, 2))
        assert isinstance(diverged, FailedPrecondition)
        assert diverged.metadata == {"commit": "4", "term": "2"}

        writer.step_down(None)
        fenced = refusal(hello(3, 2, leader_term=5))
        assert isinstance(fenced, FailedPrecondition) and fenced.reason == NOT_LEADER
        assert fenced.metadata == {"leader": ""}
        writer.step_down("h:1")
        following = refusal(hello(3, 2))
        assert isinstance(following, FailedPrecondition) and following.reason == NOT_LEADER
        assert following.metadata == {"leader": "h:1"}

        writer.lead(6)
        writer.lease_deadline = time.monotonic() - 0.001  # leads no more: lease over
        assert reason_of(refusal(hello(3, 2, leader_term=6))) == NOT_LEADER
        writer.lease_deadline = math.inf
        assert refusal(hello(3, 2, leader_term=6)) is None
        await writer.close()

    asyncio.run(scenario())
