"""Retention: what the windows let go leaves the store, a slice at a time.

Closed reservations are purged `closed_retention_s` after they closed, idempotency records
`idempotency_window_s` after their request, and journal events beyond `journal_retention_s`
of age or `journal_retention_events` of count. Each slice is one store transaction of at
most `slice_records` deletions, run on the commit thread between group commits, so a purge
delays a commit by one short pass (a slice of each kind) at most, and a crash in one leaves a
consistent store (every deletion of a record and of its index entry is in the same
transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from atp.persistence import codec
from atp.store import Store, StoreError

log = logging.getLogger("atp.housekeeping")

DAY_S = 86400.0


@dataclass(frozen=True)
class Retention:
    # Seconds a closed reservation stays readable (and guards its id) after it closed.
    closed_s: float = 7 * DAY_S
    # Seconds an idempotency record is honoured.
    idempotency_s: float = DAY_S
    # Seconds of journal kept for Watch replay (0: no age limit).
    journal_s: float = 7 * DAY_S
    # Newest journal events kept whatever their age (0: no count limit).
    journal_events: int = 0


@dataclass(frozen=True)
class PurgeKind:
    """Records purged by time: their database, its index by time, and the check that an
    index entry still names the record it was made for (an id may have been reused)."""

    name: str
    target: str
    index: str
    still_due: Callable[[bytes, bytes], bool]


PURGE_CLOSED = PurgeKind("closed", "closed", "closed_by_time", codec.indexes_closed_record)
PURGE_ENDED_HOLDS = PurgeKind("holds", "ended_holds", "ended_holds_by_time",
                              codec.indexes_ended_hold_record)
PURGE_REQUESTS = PurgeKind("requests", "requests", "requests_by_time",
                           codec.indexes_request_record)

# Deletions per store transaction: about 10 ms of the commit thread at most (measured).
SLICE_RECORDS = 200


class Housekeeper:
    """Purges in slices; `run_on_commit_thread` serialises each slice with group commits."""

    def __init__(
        self,
        store: Store,
        retention: Retention,
        clock: Callable[[], float],
        last_sequence: Callable[[], int],
        run_on_commit_thread: Callable[..., Awaitable[Any]],
        slice_records: int = SLICE_RECORDS,
        journal_head: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.clock = clock
        self.last_sequence = last_sequence
        # The newest journal sequence as the engine knows it in memory (its ledger's, at or
        # past the store's): what may_have_work compares after every commit, on the event
        # loop, without a store read each time. The store's own when not given.
        self.journal_head = journal_head or last_sequence
        self.run_on_commit_thread = run_on_commit_thread
        self.slice_records = slice_records
        self.purged = {"closed": 0, "requests": 0, "holds": 0, "journal": 0}
        self.failures = 0
        self.longest_slice_s = 0.0
        self._busy = asyncio.Lock()
        # The clock instant from which each kind's slice may find work, learnt by its last
        # slice (0: at once). The pass after a group commit is skipped while none is due: a
        # trip to the commit thread for nothing cost ~200 µs of CPU per group commit, a third
        # of a small group's cost. A purge is next due when its oldest entry's window ends;
        # entries yet to come are stamped by the engine's clock, which never runs backwards,
        # so none is due before the window from that slice's instant. Whatever adds entries
        # otherwise (a restore, a leader's batches) calls forget_due. Were an entry stamped
        # earlier all the same, it would wait for the maintenance loop's pass, which is not
        # gated: a second at most.
        self._due_at = dict.fromkeys(self.purged, 0.0)
        # The oldest journal sequence kept after the last trim (0: not known): a count limit
        # is due once the journal holds more events than it keeps.
        self._journal_kept_from = 0

    async def tidy_after_commit(self) -> bool:
        """tidy() after a group commit (retention keeps pace with writes: a window or count
        is honoured right after the commit that passes it), unless a pass is running (the
        maintenance loop's): then False at once, never waiting on it."""
        if self._busy.locked() or not self.may_have_work():
            return False
        return await self.tidy()

    def may_have_work(self) -> bool:
        """Whether a slice of some kind may find work now (False only when each kind's last
        slice showed that none of its entries is due yet)."""
        now = self.clock()
        if any(now >= due for due in self._due_at.values()):
            return True
        limit = self.retention.journal_events
        return bool(limit) and self.journal_head() - limit >= self._journal_kept_from

    def forget_due(self) -> None:
        """Entries came by another way than this engine's commits (a restore, a leader's
        batches): every kind is due until its next slice."""
        self._due_at = dict.fromkeys(self._due_at, 0.0)
        self._journal_kept_from = 0

    async def tidy(self) -> bool:
        """One slice of each kind that has work; True if any slice was full (more is due).
        A pass already running (the one after a group commit) is waited out first, so that
        this pass is the caller's own. A failure loses nothing (the data stays until a later
        slice removes it): it is logged, counted and tried again next time."""
        async with self._busy:
            # One trip to the commit thread for the four kinds: a trip (a thread hand-off
            # each way) cost more CPU than the slices themselves when there is little to
            # purge: 4 trips were ~30% of a unary reserve.
            try:
                full: list[bool] = await self.run_on_commit_thread(self._pass)
            except Exception:  # the trip itself failed (each slice catches its own)
                self.failures += 1
                log.exception("retention purge failed (will retry)")
                return False
            return any(full)

    @contextlib.asynccontextmanager
    async def held_back(self) -> AsyncIterator[None]:
        """No slice runs meanwhile (a snapshot restore replaces the store under it): waits
        for one running to end, and tidy() does nothing until the block is left. Every
        kind is due after it: the store holds other entries now."""
        async with self._busy:
            try:
                yield
            finally:
                self.forget_due()

    def _pass(self) -> list[bool]:
        """A slice of each kind, on the commit thread: whether each was full."""
        steps = (("closed", self._purge_closed), ("requests", self._purge_requests),
                 ("holds", self._purge_ended_holds), ("journal", self._trim_journal))
        return [self._slice(kind, step) for kind, step in steps]

    def _slice(self, kind: str, step: Callable[[float], int]) -> bool:
        """One slice, at the clock of its start; True if it was full. A failing one does
        not hold the others back, and is due again at once."""
        try:
            removed = self._timed(step, self.clock())
        except StoreError as error:
            self.failures += 1
            self._due_at[kind] = 0.0
            log.error("retention purge failed (will retry): %s", error)
            return False
        except Exception:  # a bug in a purge: its transaction aborted, nothing changed
            self.failures += 1
            self._due_at[kind] = 0.0
            log.exception("retention purge failed (will retry)")
            return False
        return removed >= self.slice_records

    def _timed(self, step: Callable[[float], int], now: float) -> int:
        """Runs a slice on the commit thread, timing it there (not its wait in the queue):
        how long it holds the next group commit back."""
        started = time.perf_counter()
        try:
            return step(now)
        finally:
            self.longest_slice_s = max(self.longest_slice_s, time.perf_counter() - started)

    def _purge_closed(self, now: float) -> int:
        return self._purge(PURGE_CLOSED, self.retention.closed_s, now)

    def _purge_ended_holds(self, now: float) -> int:
        return self._purge(PURGE_ENDED_HOLDS, self.retention.closed_s, now)

    def _purge_requests(self, now: float) -> int:
        return self._purge(PURGE_REQUESTS, self.retention.idempotency_s, now)

    def _purge(self, kind: PurgeKind, window_s: float, now: float) -> int:
        """Removes up to a slice of the records of one kind whose window has passed."""
        if not math.isfinite(window_s):
            self._due_at[kind.name] = math.inf
            return 0
        bound = codec.time_key_bound(now - window_s).encode()
        removed = self.store.purge(kind.index, kind.target, bound, self.slice_records,
                                   kind.still_due)
        self.purged[kind.name] += removed
        if removed >= self.slice_records:  # more may be due at once
            self._due_at[kind.name] = now
        else:
            first = self.store.scan(kind.index, b"", 1)
            oldest = min(now, codec.time_of_key(first[0][0])) if first else now
            self._due_at[kind.name] = oldest + window_s
        return removed

    def _trim_journal(self, now: float) -> int:
        """Trims the oldest events that either limit lets go, up to a slice of them, and
        notes when a trim is due next."""
        oldest = self.store.oldest_sequence()
        removed = self._trim_journal_slice(now, oldest)
        if removed:
            oldest = self.store.oldest_sequence()
        self._journal_kept_from = oldest or self.last_sequence() + 1
        if removed >= self.slice_records:
            self._due_at["journal"] = now
        elif self.retention.journal_s:
            oldest_time = self._event_time(oldest) if oldest else now
            self._due_at["journal"] = min(now, oldest_time) + self.retention.journal_s
        else:  # a count limit alone: may_have_work compares the counts
            self._due_at["journal"] = math.inf
        return removed

    def _trim_journal_slice(self, now: float, oldest: int) -> int:
        if not oldest:
            return 0
        last = self.last_sequence()
        through = min(oldest + self.slice_records - 1, last)
        if self.retention.journal_events:
            by_count = last - self.retention.journal_events
        else:
            by_count = 0
        by_age = self._last_older_than(now - self.retention.journal_s, oldest, through) \
            if self.retention.journal_s else 0
        through = min(through, max(by_count, by_age))
        if through < oldest:
            return 0
        removed = self.store.trim_journal(through)
        self.purged["journal"] += removed
        return removed

    def _last_older_than(self, cutoff: float, low: int, high: int) -> int:
        """The highest sequence in low..high whose event is older than `cutoff` (events are
        in time order: the engine's clock never runs backwards), low - 1 if none."""
        if self._event_time(low) >= cutoff:
            return low - 1
        while low < high:  # invariant: the event at `low` is older than cutoff
            middle = (low + high + 1) // 2
            if self._event_time(middle) < cutoff:
                low = middle
            else:
                high = middle - 1
        return low

    def _event_time(self, sequence: int) -> float:
        entries = self.store.read_journal(sequence - 1, 1)
        if not entries:
            return float("inf")
        return codec.decode_event(entries[0][1]).time
