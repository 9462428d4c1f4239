"""The event stream: journal replay from LMDB, then live events as their batches commit.

The writer publishes each batch's events only once the batch is durable, so a watcher never
sees an event that a crash could take back. Each watcher has a bounded queue: a watcher that
falls behind is ended with RESOURCE_EXHAUSTED (it resumes from its last sequence) rather
than slowing the writer or growing memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from atp import limits
from atp.ledger.archive import NotHeldHere
from atp.ledger.errors import (
    SEQUENCE_NOT_RETAINED,
    WATCHER_LAGGING,
    LedgerError,
    Unavailable,
)
from atp.ledger.model import Event
from atp.persistence import codec
from atp.store import Store, StoreError

REPLAY_PAGE_EVENTS = 1000


class OutOfRange(LedgerError):
    reason = SEQUENCE_NOT_RETAINED

    def __init__(self, after_sequence: int, oldest: int) -> None:
        super().__init__(
            f"events after {after_sequence} are no longer retained; the oldest is {oldest}"
        )
        self.metadata = {"oldest_sequence": str(oldest)}


class WatcherLagging(LedgerError):
    reason = WATCHER_LAGGING

    def __init__(self, last_sequence: int) -> None:
        super().__init__(
            f"the watcher fell too far behind; resume with after_sequence={last_sequence}"
        )
        self.metadata = {"resume_after_sequence": str(last_sequence)}


@dataclass(frozen=True)
class EventFilter:
    types: frozenset[str] = frozenset()
    sku: str = ""
    node_id: str = ""
    reservation_id: str = ""
    principal: str = ""

    def matches(self, event: Event) -> bool:
        if self.types and event.type not in self.types:
            return False
        if self.principal and event.principal != self.principal:
            return False
        data = event.data
        if self.reservation_id and data.get("reservation_id") != self.reservation_id:
            return False
        if not self.sku and not self.node_id:
            return True
        return any(self._wanted(sku, node_id) for sku, node_id in _positions_of(data))

    def _wanted(self, sku: object, node_id: object) -> bool:
        return (not self.sku or sku == self.sku) and (not self.node_id or node_id == self.node_id)


def _positions_of(data: dict[str, object]) -> list[tuple[object, object]]:
    """The (sku, node) pairs an event concerns: its own, a transfer's target, its lines'."""
    pairs = [(data.get("sku"), data.get("node_id"))]
    if data.get("to_node_id"):
        pairs.append((data.get("sku"), data.get("to_node_id")))
    lines = data.get("lines")
    if isinstance(lines, list):
        pairs += [
            (line.get("sku"), line.get("node_id")) for line in lines if isinstance(line, dict)
        ]
    return pairs


class _Watcher:
    def __init__(self, capacity: int) -> None:
        # None is the end-of-stream mark put by EventHub.close() and restore_begun().
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(capacity + 1)
        self.overflowed = False
        # Why the stream ends at that mark, when it is not a clean end (shutdown).
        self.ended: LedgerError | None = None


class EventHub:
    def __init__(
        self, store: Store, queue_capacity: int = limits.watch_queue_events_max
    ) -> None:
        self.store = store
        self.queue_capacity = queue_capacity
        self.committed_sequence = store.last_sequence()
        self._watchers: set[_Watcher] = set()
        # Set while a snapshot restore replaces the journal; the generation counts them, so
        # that a replay begun before one stops instead of reading on in another journal.
        self.restoring = False
        self._generation = 0

    def publish(self, events: Sequence[Event]) -> None:
        """Called by the writer after a batch is durable; never blocks."""
        if not self._watchers:  # nobody to hand them to: only the head moves
            if events:  # (a follower's events decode as they are read: read just the last)
                self.committed_sequence = events[-1].sequence
            return
        for event in events:
            self.committed_sequence = event.sequence
            for watcher in self._watchers:
                if watcher.overflowed:
                    continue
                if watcher.queue.qsize() >= self.queue_capacity:
                    watcher.overflowed = True
                else:
                    watcher.queue.put_nowait(event)

    def close(self) -> None:
        """Ends every live stream UNAVAILABLE (at shutdown), so that draining calls does not
        wait on them and a client tells a restart from an end (it watches again after its
        last sequence). A stop_at_head stream that reached the head still ends OK."""
        self._end_streams(shutting_down())

    def restore_begun(self) -> None:
        """The journal is being replaced by a snapshot's: every stream ends UNAVAILABLE (its
        client resumes after its last sequence), and new ones are refused until it is in."""
        self.restoring = True
        self._generation += 1
        self._end_streams(_restoring())

    def restore_finished(self) -> None:
        """The snapshot is in: streams replay and follow its journal."""
        self.committed_sequence = self.store.last_sequence()
        self.restoring = False

    def _end_streams(self, error: LedgerError | None) -> None:
        for watcher in self._watchers:
            watcher.overflowed = False
            watcher.ended = error
            while watcher.queue.full():
                watcher.queue.get_nowait()
            watcher.queue.put_nowait(None)

    async def watch(
        self, after_sequence: int, event_filter: EventFilter, stop_at_head: bool
    ) -> AsyncIterator[Event]:
        """Replays the retained journal after `after_sequence`, then follows live events:
        every event in order, or an error saying where to resume; never a silent gap."""
        if self.restoring:
            raise _restoring()
        generation = self._generation
        head = self.committed_sequence  # first: events committed after it may follow
        if after_sequence < self.store.journal_dropped_through:
            # A gateway's copy let these go (it keeps a tail): the writer replays them.
            raise NotHeldHere(f"events after {after_sequence} are the writer's to replay")
        oldest = await self._oldest_retained()
        if after_sequence and after_sequence < head and (not oldest or after_sequence + 1 < oldest):
            # Events after it were written and are gone (a journal trimmed empty, say).
            raise OutOfRange(after_sequence, oldest or head + 1)
        watcher = _Watcher(self.queue_capacity)
        self._watchers.add(watcher)
        try:
            head = self.committed_sequence
            last = after_sequence
            async for event in self._replay(after_sequence, head, generation):
                last = event.sequence
                if event_filter.matches(event):
                    yield event
            if stop_at_head:
                return
            while True:
                if watcher.overflowed and watcher.queue.empty():
                    raise WatcherLagging(last)
                live = await watcher.queue.get()
                if live is None:
                    if watcher.ended is not None:
                        raise watcher.ended
                    return
                if live.sequence <= last:
                    continue
                last = live.sequence
                if event_filter.matches(live):
                    yield live
        finally:
            self._watchers.discard(watcher)

    async def _replay(
        self, after_sequence: int, head: int, generation: int
    ) -> AsyncIterator[Event]:
        """The journal from `after_sequence` (0: the oldest retained) up to `head`, checked
        to be contiguous: the trim may pass a slow replay, and a page that no longer starts
        right after the last event sent is a gap, refused with where to resume."""
        position = after_sequence
        while position < head:
            page = await self._read_journal(position)
            if generation != self._generation:  # a snapshot replaced the journal meanwhile
                raise _restoring()
            if not page or (position and page[0][0] != position + 1):
                if position < self.store.journal_dropped_through:
                    # A gateway's bound passed this replay: nothing is lost, the writer has
                    # them (a new Watch after `position` is sent there).
                    raise WatcherLagging(position)
                if not page and not position:
                    return
                # Events up to head were written: the trim took them.
                raise OutOfRange(position, page[0][0] if page else head + 1)
            for sequence, data in page:
                if sequence > head:
                    return
                position = sequence
                yield codec.decode_event(data)

    async def _read_journal(self, after: int) -> list[tuple[int, bytes]]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                None, self.store.read_journal, after, REPLAY_PAGE_EVENTS
            )
        except StoreError as error:
            raise Unavailable(f"reading the journal failed: {error}") from error

    async def _oldest_retained(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.store.oldest_sequence)
        except StoreError as error:
            raise Unavailable(f"reading the journal failed: {error}") from error


def shutting_down() -> Unavailable:
    return Unavailable("the server is shutting down; watch again, after the last sequence you "
                       "received, once it (or another member) is back")


def _restoring() -> Unavailable:
    return Unavailable("this member is installing a snapshot of its leader's data; watch "
                       "again, after the last sequence you received, in a moment")
