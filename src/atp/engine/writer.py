"""The single writer: applies commands on the event loop and answers once they are durable.

Every command runs as one synchronous ledger step (no await inside), so atomicity needs no
locks. The changes of every step since the last commit form the open batch; one background
task commits batches in order, each as one store transaction in a worker thread, and only
then resolves the futures its callers wait on. While one batch commits, the next fills.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar, overload

from atp import limits
from atp.engine.housekeeping import Housekeeper, Retention
from atp.engine.replication import (
    TERMS_KEY,
    decode_terms,
    encode_terms,
    number_batch,
    stored_commit,
    stored_terms,
)
from atp.engine.storage import StorageGuard, StorageLimits
from atp.ledger import Ledger, Outcome, Refused, Result, commands, day_of
from atp.ledger.errors import (
    NOT_FOLLOWER,
    NOT_LEADER,
    REPLICATION_GAP,
    SNAPSHOT_REQUIRED,
    STALE_TERM,
    FailedPrecondition,
    InvariantViolation,
    LedgerError,
    ResourceExhausted,
    StorageFull,
    Unavailable,
)
from atp.ledger.model import Event
from atp.persistence import codec, encode_batch, replica
from atp.store import Store, StoreError, StoreFullError, WriteBatch
from atp.store.base import META, SnapshotRecord

log = logging.getLogger("atp.writer")
# Expiries per ledger step: before each command (a handful keeps reads exact in normal
# running), and per step of the expiry loop (a few tens of ms at most, then other calls run).
EXPIRE_BEFORE_COMMAND = commands.ExpireDue(limit=16)
EXPIRE_SLICE = commands.ExpireDue(limit=200)
# What storage-full still admits: the commands that end demand (they write a little, on the
# headroom kept for them) and expiry.
ENDING_DEMAND = (
    commands.Release, commands.Fulfill, commands.Commit, commands.ReleaseHold, commands.ExpireDue
)
# Seconds between attempts to commit a batch that found storage full.
STORAGE_RETRY_S = 0.5
# Seconds a stopping writer waits for its last batch (it may wait on full storage).
CLOSE_COMMIT_WAIT_S = 30.0
# Storage is measured after a commit at most this often (a batch that outruns the measure
# meets a full map, grows it and is committed again).
STORAGE_CHECK_INTERVAL_S = 0.1
T = TypeVar("T")
# What a caller is told when leadership ends before its write could be acknowledged: the
# write may or may not survive (it is durable here; whether the next leader has it depends on
# replication), so only a retry with the same ids settles it.
LEADERSHIP_LOST = ("this member lost its leadership before the write was confirmed; its "
                   "outcome is unknown: retry with the same ids (on the new leader)")


def unchanged(result: Result) -> Result:
    """Presents a command's result as the command returned it (execute's default)."""
    return result


class SnapshotInstalled(NamedTuple):
    """What install_snapshot put in place: the commit it holds, its records (journal
    entries included), and the seconds it took from emptying the store to the new ledger."""

    commit: int
    records: int
    seconds: float


class Writer:
    def __init__(
        self,
        ledger: Ledger,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        pending_max: int = limits.pending_mutations_max,
        on_fatal: Callable[[BaseException], None] | None = None,
        journal_retention_events: int = 0,
        retention: Retention | None = None,
        storage_limits: StorageLimits | None = None,
        rebuild_ledger: Callable[[], Ledger] | None = None,
    ) -> None:
        self.ledger = ledger
        # The ledger built from the store as it is (install_snapshot swaps it in).
        self.rebuild_ledger = rebuild_ledger
        self.store = store
        self.clock = clock
        self.pending_max = pending_max
        self.on_fatal = on_fatal
        self.on_commit: Callable[[int, float], None] | None = None
        # Called with False when storage fills (writes that add data refused), True when it
        # has room again.
        self.on_storage_state: Callable[[bool], None] | None = None
        # Called with each batch's events once the batch is durable (the event stream).
        self.on_durable_events: Callable[[Sequence[Event]], None] | None = None
        # Called with each batch's number, records and term once durable (replication; on a
        # follower too, so that it can serve its followers' catch-up once it leads).
        self.on_durable_batch: Callable[[int, WriteBatch, int], None] | None = None
        # The number of the last batch committed (stored with each batch), and an event set
        # (then replaced) each time it grows, for reads waiting on a min_sequence.
        self.commit_index = stored_commit(store)
        self._committed = asyncio.Event()
        plans_valid_from(ledger, self.commit_index)
        # Set on a follower: the leader's address; commands are refused (NOT_LEADER) and
        # batches come from the leader instead (commit_replicated).
        self.leader_address: str | None = None
        # The term history (term, first commit) as stored, and the term of this member's
        # batches from now on (the last one's; a leader's own once it began its term). A term
        # to add to the stored history with the next batch (a new leader's), if any.
        self.terms = stored_terms(store)
        self.term = self.terms[-1][0] if self.terms else 0
        self._terms_unstored = False
        self._replicating: asyncio.Future[None] | None = None
        # A cluster leader's fencing: the monotonic instant its lease may end (its last
        # renewal's send time plus the TTL, less a margin). From then on nothing is answered
        # and nothing is admitted; inf outside a cluster.
        self.lease_deadline = math.inf
        # A cluster member without a leader to name: writes are refused UNAVAILABLE.
        self.fenced = False
        # Set while the store holds a snapshot restore that is not finished (one interrupted
        # before this process started included): reads are refused, no batch is stored, and
        # only a complete snapshot clears it.
        self.restoring = store.restore_incomplete()
        self.snapshots_installed = 0
        # Called when a snapshot restore empties the store, and with the snapshot's commit
        # once its ledger is in place (the event stream and replication log follow them).
        self.on_restore_begun: Callable[[], None] | None = None
        self.on_snapshot_installed: Callable[[int], None] | None = None
        self.failure: BaseException | None = None
        self.storage = StorageGuard(store, storage_limits or StorageLimits())
        self._storage_checked = 0.0
        if retention is None:  # tests give a count alone: no age or window limits then
            retention = Retention(closed_s=math.inf, idempotency_s=math.inf, journal_s=0,
                                  journal_events=journal_retention_events)
        self.housekeeper = Housekeeper(store, retention, lambda: self.clock(),
                                       store.last_sequence, self._on_commit_thread,
                                       journal_head=lambda: self.ledger.sequence)
        self.closing = False
        # Seconds between checks for reader slots left by killed processes.
        self.maintenance_interval_s = 30.0
        # Seconds between retention purges when idle.
        self.housekeeping_interval_s = 1.0
        self.batches_committed = 0
        self.records_committed = 0
        # CPU seconds this thread spent keeping a follower's copy: storing (when the store
        # commits inline) and applying its leader's batches. What each gateway pays per write
        # whichever gateway took it: the figure bench.run's projections scale by the gateways.
        self.follow_cpu_s = 0.0
        self._waiting = 0
        # Durability futures of callers waiting for the open batch / the committing one.
        self._open_waiters: list[asyncio.Future[None]] = []
        self._inflight_waiters: list[asyncio.Future[None]] | None = None
        # Followers that must hold a batch before its callers are answered (synchronous
        # replication), and how long a caller waits for them before UNAVAILABLE.
        self.sync_replicas = 0
        self.sync_timeout_s = 10.0
        # Batches durable here, waiting for sync_replicas followers: (commit, their waiters,
        # their events), oldest first.
        self._awaiting_replicas: collections.deque[
            tuple[int, list[asyncio.Future[None]], list[Event]]] = collections.deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="atp-commit")
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="atp-commit"),
            asyncio.create_task(self._maintenance_loop(), name="atp-maintenance"),
            asyncio.create_task(self._expiry_loop(), name="atp-expiry"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A background task must never end on its own: if one dies, the server fails visibly
        (health NOT_SERVING, calls UNAVAILABLE, a clean exit) instead of hanging every call."""
        if task.cancelled() or self.failure is not None:
            return  # stopped by close(), or ended after failing the writer itself
        error = task.exception() or RuntimeError(f"{task.get_name()} ended unexpectedly")
        if not self.closing:
            log.critical("background task %s died", task.get_name(), exc_info=error)
            self._fail(error)

    @overload
    async def execute(
        self, command: commands.Command, *, principal: str = ""
    ) -> Result | Refused: ...

    @overload
    async def execute(
        self, command: commands.Command, present: Callable[[Result], T], *, principal: str = ""
    ) -> T | Refused: ...

    async def execute(
        self, command: commands.Command,
        present: Callable[[Result], T] | Callable[[Result], Result] = unchanged,
        *, principal: str = "",
    ) -> T | Result | Refused:
        """Applies one command and presents its result at once, so that the answer shows the
        state the command made and not a later one; returns that answer, or the refusal, once
        durable (a refusal may rest on changes not yet on disk, too). Its events record
        `principal` (who asked)."""
        outcome, durable = self.apply_one(command, principal)
        answer = outcome if isinstance(outcome, Refused) else present(outcome)
        await self.until_durable(durable)
        return answer

    async def execute_batch(
        self, batch: Sequence[commands.Command], principal: str = ""
    ) -> list[Outcome]:
        """Applies commands one by one in one step; an outcome for each, once durable."""
        outcomes, durable = self.apply(batch, principal)
        await self.until_durable(durable, len(batch))
        return outcomes

    async def execute_each(
        self, batch: Sequence[commands.Command], present: Callable[[Outcome], T],
        principal: str = "",
    ) -> list[T]:
        """Applies commands one by one in one step and presents each outcome (a refusal
        too) at once; the answers, once durable. Raises Unavailable/ResourceExhausted,
        having applied nothing, when the writer cannot take commands."""
        outcomes, durable = self.apply(batch, principal)
        answers = [present(outcome) for outcome in outcomes]
        await self.until_durable(durable, len(batch))
        return answers

    def submit(
        self, command: commands.Command, present: Callable[[Outcome], T], principal: str = ""
    ) -> Awaitable[T]:
        """Applies one command now and presents its outcome at once (a command the writer
        cannot take is presented as its refusal); the answer is awaited once durable. A
        stream's messages: applied in the order they arrive, answered as they commit."""
        try:
            outcome, durable = self.apply_one(command, principal)
        except LedgerError as error:
            return _answered(present(Refused(error)), None, self)
        return _answered(present(outcome), durable, self)

    def apply_one(
        self, command: commands.Command, principal: str = ""
    ) -> tuple[Outcome, asyncio.Future[None] | None]:
        """apply() for one command: its outcome and durability future (without a batch of
        one: this is every stream message's and unary call's path)."""
        self._admit((command,))
        now = self.clock()
        try:
            self._expire_due(now)
            outcome = self.ledger.apply(command, now, principal)
        except InvariantViolation as violation:
            raise self._invariant_failed(violation) from None
        return outcome, self._durability_future()

    def apply(
        self, batch: Sequence[commands.Command], principal: str = ""
    ) -> tuple[list[Outcome], asyncio.Future[None] | None]:
        """Applies commands now, without waiting; returns their outcomes and a future that
        resolves once everything applied so far is durable (None: nothing is pending).

        Outcomes must not be acknowledged before that future resolves: even a refusal may
        rest on changes not yet on disk. Raises Unavailable/ResourceExhausted, having applied
        nothing, when the writer cannot take commands.
        """
        self._admit(batch)
        now = self.clock()
        try:
            self._expire_due(now)
            with self.store.point_reads():  # the archive's lookups: one snapshot a batch
                outcomes = self.ledger.apply_batch(batch, now, principal)
        except InvariantViolation as violation:
            raise self._invariant_failed(violation) from None
        return outcomes, self._durability_future()

    def _invariant_failed(self, violation: InvariantViolation) -> Unavailable:
        """A bug left the ledger wrong: stop before any of it is written."""
        self._fail(violation)
        return Unavailable("internal invariant violated; the server is stopping")

    async def until_durable(self, durable: asyncio.Future[None] | None, mutations: int = 1) -> None:
        """Waits for `mutations` applied commands' durability future (counted against the
        limit of mutations waiting)."""
        if durable is None:
            return
        self._waiting += mutations
        try:
            if self.sync_replicas:
                await self._until_replicated(durable)
            else:
                await durable
        finally:
            self._waiting -= mutations

    async def _until_replicated(self, durable: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(durable, self.sync_timeout_s)
        except TimeoutError:
            raise Unavailable(
                f"not confirmed by {self.sync_replicas} synchronous replica(s) within "
                f"{self.sync_timeout_s:g} s (too few followers connected?); the change is "
                "on the leader and may still replicate: retry with the same ids"
            ) from None

    async def until_applied_durable(self) -> None:
        """Waits until everything applied so far is committed (reads, before they answer);
        raises Unavailable if storage failed, as memory then holds what the disk does not."""
        self.check_readable()
        await self.until_durable(self._durability_future(), 0)

    def check_readable(self) -> None:
        """Unavailable while memory cannot answer reads: the writer failed (memory holds what
        the disk does not), or a snapshot is being installed (memory and store disagree)."""
        if self.failure is not None:
            raise self._stopping()
        if self.restoring:
            raise Unavailable("this member is installing a snapshot of its leader's data; "
                              "retry shortly, or read from the leader")

    async def close(self) -> None:
        """Refuses new commands, commits what was applied, stops the background tasks."""
        self.closing = True
        committing = bool(self._tasks) and not self._tasks[0].done()
        if self.failure is None and committing:
            try:
                await asyncio.wait_for(self._durable(), CLOSE_COMMIT_WAIT_S)
            except LedgerError:
                pass  # the final commit failed: _fail() has reported it; still stop the rest
            except TimeoutError:  # storage stayed full: those calls were never acknowledged
                log.error("stopping with changes that could not be committed in %.0f s "
                          "(storage full); their calls were not acknowledged",
                          CLOSE_COMMIT_WAIT_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    @property
    def leads(self) -> bool:
        """Whether this member takes commands now (a follower's expiries come from its
        leader; a fenced one makes none)."""
        return (self.leader_address is None and not self.fenced
                and time.monotonic() < self.lease_deadline)

    @property
    def queue_depth(self) -> int:
        return self._waiting

    def _admit(self, batch: Sequence[commands.Command]) -> None:
        if self.failure is not None:
            raise self._stopping()
        if self.closing:
            raise Unavailable("the server is shutting down")
        if self.fenced or time.monotonic() >= self.lease_deadline:
            raise Unavailable("this member is not the leader now (an election is under way "
                              "or it lost its lease); retry shortly, or on another member")
        if self.leader_address is not None:
            raise FailedPrecondition(
                NOT_LEADER, f"this member follows {self.leader_address}; send writes there",
                {"leader": self.leader_address})
        if self._waiting + len(batch) > self.pending_max:
            raise ResourceExhausted(
                f"{self._waiting} mutations are waiting for durability; retry with backoff"
            )
        full = self.storage.full_reason
        if full is not None and not all(isinstance(cmd, ENDING_DEMAND) for cmd in batch):
            raise StorageFull(f"{full}; writes that add data are refused until retention "
                              "or the operator frees space (releases, fulfilments and reads "
                              "still work)")

    def _expire_due(self, now: float) -> None:
        """Expires what fell due before a command sees the ledger; a few only (a backlog is
        the expiry loop's, in slices): a call never pays for a clock step's pile-up."""
        due = self.ledger.next_expiry()
        if due is not None and due <= now:
            self.ledger.execute(EXPIRE_BEFORE_COMMAND, now)

    def _durability_future(self) -> asyncio.Future[None] | None:
        """A future of its own (a cancelled caller cancels only its own) that resolves once
        everything applied so far is committed; None when nothing is pending."""
        if self.ledger.has_changes:
            waiters = self._open_waiters
            self._wake.set()
        elif self._inflight_waiters is not None:
            waiters = self._inflight_waiters
        elif self._awaiting_replicas:
            waiters = self._awaiting_replicas[-1][1]
        else:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        return future

    async def _durable(self) -> None:
        """Waits until everything applied so far is committed."""
        await self.until_durable(self._durability_future())

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.ledger.has_changes and not self._terms_unstored:
                continue
            waiters, self._open_waiters = self._open_waiters, []
            self._inflight_waiters = waiters
            try:
                changes = self.ledger.take_changes()
                # What is applied from now on goes in the batch after this one.
                self.ledger.change_mark = self.commit_index + 2
                batch = encode_batch(changes)
                number_batch(batch, self.commit_index + 1)
                if self._terms_unstored:
                    batch.put(META, TERMS_KEY, encode_terms(self.terms))
                    self._terms_unstored = False
                started = time.perf_counter()
                await self._commit_until_room(batch)
                if time.monotonic() - self._storage_checked >= STORAGE_CHECK_INTERVAL_S:
                    await self.check_storage()
            except Exception as error:  # noqa: BLE001 - any other failure to commit is fatal
                self._fail(error)
                return
            self._advance(self.commit_index + 1)
            self.ledger.forget_durable(changes)
            if self.on_durable_batch is not None:  # followers may have it from now on
                self.on_durable_batch(self.commit_index, batch, self.term)
            self._inflight_waiters = None
            if self.sync_replicas and self.leads:  # answered once enough followers hold it
                self._awaiting_replicas.append((self.commit_index, waiters, changes.events))
            else:
                self._answer(waiters, changes.events)
            # The batch is durable; what follows only reports and tidies.
            self.batches_committed += 1
            self.records_committed += len(batch)
            if self.on_commit is not None:
                self.on_commit(len(batch), time.perf_counter() - started)
            # One slice of retention purges: a failure there loses nothing (the batch is
            # durable), so it is logged, counted and tried again rather than fatal.
            await self.housekeeper.tidy_after_commit()

    def _advance(self, commit: int) -> None:
        self.commit_index = commit
        # What is applied from now on goes in the next batch (the mark of the gateway plans
        # its changes would make stale: ledger/gateway_plans.py).
        self.ledger.change_mark = commit + 1
        self._committed.set()
        self._committed = asyncio.Event()

    async def until_commit(self, commit: int, timeout_s: float) -> None:
        """Waits until this member holds `commit` (a read's min_sequence); Unavailable if it
        does not within timeout_s (a follower behind, or a commit no member has made)."""
        deadline = time.monotonic() + timeout_s
        while self.commit_index < commit:
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._committed.wait(), max(0.0, remaining))
            except TimeoutError:
                raise Unavailable(
                    f"this member holds commit {self.commit_index}, not yet {commit}; retry, "
                    "or read from the leader"
                ) from None

    def _answer(self, waiters: list[asyncio.Future[None]], events: list[Event]) -> None:
        """A batch is as durable as promised: its callers are answered, its events shown.
        Not once the lease may have ended (fencing): a successor may be taking writes."""
        if time.monotonic() >= self.lease_deadline:
            _refuse(waiters, Unavailable(LEADERSHIP_LOST))
            return
        for future in waiters:
            if not future.done():
                future.set_result(None)
        if self.on_durable_events is not None and events:
            self.on_durable_events(events)

    def replicas_hold(self, commit: int) -> None:
        """sync_replicas followers hold every batch up to `commit`: answer their callers."""
        while self._awaiting_replicas and self._awaiting_replicas[0][0] <= commit:
            _, waiters, events = self._awaiting_replicas.popleft()
            self._answer(waiters, events)

    def lead(self, term: int) -> None:
        """This member leads from now on, in `term` (newer than any it holds): it takes
        commands, and its next batch adds the term to the stored history."""
        if term <= self.term:
            raise ValueError(f"term {term} is not newer than {self.term}")
        self.leader_address = None
        self.fenced = False
        self.term = term
        # The store holds the former leader's entries, stamped by its clock, not ours.
        self.housekeeper.forget_due()
        self.terms = [*self.terms, (term, self.commit_index + 1)]
        self._terms_unstored = True
        self._wake.set()

    def step_down(self, leader_address: str | None) -> None:
        """Leadership ended (or never was): refuse commands from now on (NOT_LEADER naming
        `leader_address`, or UNAVAILABLE without one) and refuse every caller still waiting,
        as their writes' fate is now the next leader's. What was applied but not committed is
        still committed here; if no successor holds it, this member's history diverges and
        it takes a snapshot when it follows."""
        self.leader_address = leader_address
        self.fenced = leader_address is None
        self._refuse_waiting(Unavailable(LEADERSHIP_LOST))

    async def settle_commits(self) -> None:
        """Waits until nothing applied here is left to commit: a member about to follow must
        not store a batch of its own and one of its new leader's under the same number."""
        while self.ledger.has_changes or self._inflight_waiters is not None:
            if self.failure is not None:
                raise self._stopping()
            future = self._durability_future()
            if future is None:
                return
            await asyncio.gather(future, return_exceptions=True)  # committed, or refused

    def _refuse_waiting(self, error: LedgerError) -> None:
        awaiting = [future for _, waiters, _ in self._awaiting_replicas for future in waiters]
        self._awaiting_replicas.clear()
        _refuse([*awaiting, *(self._inflight_waiters or ()), *self._open_waiters], error)

    async def commit_replicated(self, commit: int, batch: WriteBatch, term: int = 0) -> None:
        """A follower stores one of its leader's batches as it is (its commit number, and
        its term history when the batch begins a term, are among its records), then applies
        it to memory and announces its events. A batch of an older term than the last one
        stored here is refused: it comes from a deposed leader."""
        if self.restoring:
            raise FailedPrecondition(
                SNAPSHOT_REQUIRED, "this member holds an unfinished snapshot: it needs a new one")
        if term < self.term:
            raise FailedPrecondition(
                STALE_TERM, f"batch {commit} is of term {term}, older than this member's "
                f"{self.term}", {"term": str(term), "holds_term": str(self.term)})
        if commit != self.commit_index + 1:
            raise FailedPrecondition(
                REPLICATION_GAP, f"batch {commit} after {self.commit_index}: out of order",
                {"commit": str(commit), "holds": str(self.commit_index)})
        if self.store.commits_inline:
            # A gateway's copy, in memory: its store's calls run here, so nothing suspends
            # between storing the batch and applying it (a wait for room comes before it is
            # stored) and a cancellation cannot split them: no task and shield, no loop
            # round trip per batch.
            await self._store_replicated(commit, batch, term)
            return
        # Shielded: a follower stopped mid-batch (to lead, or to follow another member) must
        # not leave a batch on disk that memory lacks; settle_replication() awaits it.
        self._replicating = asyncio.ensure_future(self._store_replicated(commit, batch, term))
        await asyncio.shield(self._replicating)

    async def settle_replication(self) -> None:
        """Waits for the replicated batch being stored, if any (see commit_replicated)."""
        if self._replicating is not None:
            await asyncio.gather(self._replicating, return_exceptions=True)

    async def _store_replicated(self, commit: int, batch: WriteBatch, term: int) -> None:
        # The copy's CPU: the inline commit included (a wait for room, rare, would count
        # what ran meanwhile); a commit on the commit thread is not this thread's.
        began = time.thread_time()
        await self._commit_until_room(batch)
        if not self.store.commits_inline:
            began = time.thread_time()
        self._apply_replicated(commit, batch, term)
        self.follow_cpu_s += time.thread_time() - began

    def _apply_replicated(self, commit: int, batch: WriteBatch, term: int) -> None:
        """A stored batch of the leader into memory, and announced."""
        replica.apply_batch(self.ledger, batch)
        terms = batch.records.get((META, TERMS_KEY))
        if terms is not None:
            self.terms = decode_terms(terms)
        self.term = max(self.term, term)
        self._advance(commit)
        if self.on_durable_batch is not None:
            self.on_durable_batch(commit, batch, term)
        self.batches_committed += 1
        self.records_committed += len(batch)
        if self.on_durable_events is not None and batch.journal:
            self.on_durable_events(codec.JournalEvents(batch.journal))

    async def install_snapshot(
        self, chunks: AsyncIterable[Sequence[SnapshotRecord]]
    ) -> SnapshotInstalled:
        """A follower replaces its store and memory with a snapshot of its leader's store:
        the store is emptied and marked as being restored, each chunk is stored as it comes
        (on the commit thread: nothing else writes meanwhile), the mark is removed after the
        last, and the ledger is rebuilt from the store and swapped in.

        Reads are refused meanwhile. If the chunks stop short (any exception), the store
        keeps its mark and `restoring` stays set: only a complete snapshot will do."""
        if self.leader_address is None or self.rebuild_ledger is None:
            raise FailedPrecondition(
                NOT_FOLLOWER, "only a follower (with a ledger to rebuild) installs snapshots")
        started = time.monotonic()
        records = 0
        async with self.housekeeper.held_back():
            self._restore_begun()  # before the store empties: no reader may see it do so
            await self._on_commit_thread(self.store.begin_restore)
            async for chunk in chunks:
                await self._restore_chunk(chunk)
                records += len(chunk)
            await self._on_commit_thread(self.store.finish_restore)
            ledger = await self._rebuilt(self.rebuild_ledger)
        # Rebuilding may note records to rewrite (data of older versions); a follower writes
        # only its leader's batches, and the leader rewrote them itself.
        ledger.take_changes()
        self.ledger = ledger
        self.restoring = False
        self.terms = stored_terms(self.store)
        self.term = self.terms[-1][0] if self.terms else 0
        self._advance(stored_commit(self.store))
        plans_valid_from(ledger, self.commit_index)
        self.snapshots_installed += 1
        if self.on_snapshot_installed is not None:
            self.on_snapshot_installed(self.commit_index)
        return SnapshotInstalled(self.commit_index, records, time.monotonic() - started)

    async def _rebuilt(self, rebuild_ledger: Callable[[], Ledger]) -> Ledger:
        """The ledger of the restored store. Failing to build it (records the ledger cannot
        load) stops the server, as it would at start: a restart says what is wrong."""
        try:
            return await self._on_commit_thread(rebuild_ledger)
        except Exception as error:  # any failure leaves no memory to serve
            self._fail(error)
            raise

    def _restore_begun(self) -> None:
        self.restoring = True
        self.commit_index = 0  # what the emptied store holds
        if self.on_restore_begun is not None:
            self.on_restore_begun()

    async def _restore_chunk(self, chunk: Sequence[SnapshotRecord]) -> None:
        """Stores one chunk, growing the map if it is full (StoreFullError if it cannot)."""
        while True:
            try:
                await self._on_commit_thread(self.store.restore, chunk)
                return
            except StoreFullError as error:
                if not await self._on_commit_thread(self.storage.grow_for, error):
                    raise

    async def _commit_until_room(self, batch: WriteBatch) -> None:
        """Commits the batch; when storage is full it stays pending (its callers wait,
        nothing is lost or acknowledged early) and is tried again as purges or the operator
        free space, while new writes that add data are refused."""
        while True:
            try:
                await self._on_commit_thread(self.store.commit, batch)
            except StoreFullError as error:
                if await self._on_commit_thread(self.storage.grow_for, error):
                    continue  # a bigger map may take it: try again at once
                was_full = self.storage.full_reason is not None
                self.storage.note_failed_commit(error)
                if not was_full:
                    self._storage_changed(has_room=False)
                await asyncio.sleep(STORAGE_RETRY_S)
                continue
            if self.storage.commit_failed:
                self.storage.note_commit()
                await self.check_storage()  # the state may clear now that it committed
            return

    async def check_storage(self) -> None:
        """Measures the store (growing its map if due) and reports a change of state; a
        failure to measure changes nothing (it is logged, and the next check tries again)."""
        was_full = self.storage.full_reason is not None
        self._storage_checked = time.monotonic()
        try:
            await self._on_commit_thread(self.storage.check)
        except (StoreError, OSError) as error:
            log.error("measuring storage failed: %s", error)
            return
        if was_full != (self.storage.full_reason is not None):
            self._storage_changed(has_room=was_full)

    def _storage_changed(self, has_room: bool) -> None:
        if self.on_storage_state is not None:
            self.on_storage_state(has_room)

    async def _on_commit_thread(self, function: Callable[..., T], *args: object) -> T:
        """Runs a store call on the commit thread, between group commits (on the event loop
        for a store that commits inline: in memory)."""
        if self.store.commits_inline:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    @property
    def housekeeping_failures(self) -> int:
        return self.housekeeper.failures

    async def _maintenance_loop(self) -> None:
        """Purges what retention lets go while no commits come (a slice per tick, back to
        back while a backlog lasts), and clears LMDB reader slots left by killed readers (an
        `atpctl db` killed with -9): enough of them make every read fail MDB_READERS_FULL."""
        loop = asyncio.get_running_loop()
        last_reader_check = time.monotonic()
        while True:
            # Nothing to purge in a store that a snapshot restore is replacing.
            more = False if self.restoring else await self.housekeeper.tidy()
            if self.storage.full_reason is not None:
                await self.check_storage()  # purges may have made room
            idle = min(self.housekeeping_interval_s, self.maintenance_interval_s)
            await asyncio.sleep(0 if more else idle)
            if time.monotonic() - last_reader_check < self.maintenance_interval_s:
                continue
            last_reader_check = time.monotonic()
            try:
                cleared = await loop.run_in_executor(None, self.store.clear_stale_readers)
            except StoreError as error:
                log.error("clearing stale readers failed: %s", error)
                continue
            if cleared:
                log.warning("cleared %d stale LMDB reader slots", cleared)

    async def _expiry_loop(self) -> None:
        while True:
            due = self.ledger.next_expiry()
            delay = 1.0 if due is None else min(1.0, max(0.005, due - self.clock()))
            await asyncio.sleep(delay)
            due = self.ledger.next_expiry()
            new_day = day_of(self.clock()) != self.ledger.risk_day
            expiring = due is not None and due <= self.clock()
            if (expiring or new_day) and self.leads and not self.closing and self.failure is None:
                await self.expire_backlog()

    async def expire_backlog(self) -> None:
        """Expires everything due, one slice per step, letting other calls run in between."""
        while True:
            try:
                expired = await self.execute(EXPIRE_SLICE)
            except LedgerError as error:  # the writer is stopping
                log.warning("expiry sweep stopped: %s", error)
                return
            if not isinstance(expired, int):
                log.warning("expiry sweep refused: %s", expired)
                return
            due = self.ledger.next_expiry()
            if expired < EXPIRE_SLICE.limit or due is None or due > self.clock():
                return
            await asyncio.sleep(0)

    def _stopping(self) -> Unavailable:
        return Unavailable(f"the server failed and is stopping: {self.failure}")

    def _fail(self, error: BaseException) -> None:
        """Memory now holds changes the disk does not: stop taking commands and stop the server."""
        log.critical("fatal: %s; refusing further mutations", error)
        self.failure = error
        self._refuse_waiting(self._stopping())
        if self.on_fatal is not None:
            self.on_fatal(error)


def _refuse(waiters: Sequence[asyncio.Future[None]], error: LedgerError) -> None:
    for future in waiters:
        if not future.done():
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters may have gone


async def _answered(answer: T, durable: asyncio.Future[None] | None, writer: Writer) -> T:
    await writer.until_durable(durable)
    return answer


def plans_valid_from(ledger: Ledger, commit: int) -> None:
    """A ledger loaded (or installed) at `commit` takes gateway plans made at it or later
    only: what changed before is not marked (ledger/gateway_plans.py)."""
    ledger.everything_changed = commit
    ledger.change_mark = commit + 1
