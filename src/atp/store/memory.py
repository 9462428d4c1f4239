"""A store in plain dicts: the LMDB contract, but nothing outlives the process. Tests use it,
and so does a gateway for its copy of the ledger, made lean (`MemoryStore.live_copy`): live
state and a bounded tail of the journal only, so that a gateway's memory stays bounded
whatever the retention windows (the writer's LMDB holds the rest, on disk)."""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from atp.store.base import (
    ARCHIVE_DATABASES,
    DATABASES,
    JOURNAL_DATABASE,
    JOURNAL_TRIMMED_THROUGH,
    LEDGER_DATABASES,
    META,
    RESTORING_KEY,
    SNAPSHOT_CHUNK_BYTES_MAX,
    TRIMMED_THROUGH_KEY,
    SnapshotRecord,
    Store,
    StoreError,
    WriteBatch,
    decode_sequence,
    encode_sequence,
    indexed_key,
    next_chunk,
    validate_batch,
    validate_limit,
    validate_restored,
)


class MemoryStore(Store):
    """Records in dicts and the journal in a list, guarded by one lock."""

    def __init__(self, keeps_archive: bool = True, journal_events_max: int = 0,
                 keeps_live_state: bool = True) -> None:
        # The writer thread commits while the event loop reads the journal, as with LmdbStore.
        self._lock = threading.Lock()
        self.keeps_archive = keeps_archive
        self._not_kept = frozenset() if keeps_archive else ARCHIVE_DATABASES
        # False: live records are kept only until a ledger is built from them (loaded()):
        # a gateway's copy holds its live state as ledger objects, fed batch by batch, and
        # the records would be a second copy of it that nothing reads (~500 bytes an open
        # reservation). A restore keeps them again until the ledger is rebuilt.
        self.keeps_live_state = keeps_live_state
        self._dropped = self._not_kept  # what commits do not store, now
        # The most journal entries kept (0: no bound of its own); past it by an eighth, the
        # oldest go, down to the bound (journal_dropped_through says which).
        self.journal_events_max = journal_events_max
        self._closed = False
        self._records: dict[str, dict[bytes, bytes]] = {name: {} for name in DATABASES}
        self._journal_sequences: list[int] = []
        self._journal_events: list[bytes] = []
        # Trimming may empty the journal; the sequences it held must still never be reused.
        self._trimmed_through = 0

    @classmethod
    def live_copy(cls, journal_events_max: int) -> MemoryStore:
        """A gateway's copy: no archive (closed reservations, ended holds, idempotency
        records), no live records once its ledger is built (loaded(): the ledger's objects
        are the copy), and the newest `journal_events_max` journal entries, committed inline
        (each batch would cost more as a thread round trip than as the dict updates it is)."""
        store = cls(keeps_archive=False, journal_events_max=journal_events_max,
                    keeps_live_state=False)
        store.commits_inline = True
        return store

    def loaded(self) -> None:
        if self.keeps_live_state:
            return
        with self._lock:
            for database in LEDGER_DATABASES:
                self._records[database] = {}
            self._dropped = self._not_kept | LEDGER_DATABASES

    def load(self) -> dict[str, dict[bytes, bytes]]:
        with self._lock:
            self._check_open()
            return {name: dict(records) for name, records in self._records.items()}

    def get(self, database: str, key: bytes) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._records[database].get(key)

    def scan(self, database: str, after_key: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        validate_limit(limit)
        with self._lock:
            self._check_open()
            records = self._records[database]
            # The smallest `limit` keys without sorting them all: retention looks up the
            # oldest entry of a purge index after each of its slices.
            keys = heapq.nsmallest(limit, (key for key in records if key > after_key))
            return [(key, records[key]) for key in keys]

    def purge(
        self, index: str, target: str, below_key: bytes, limit: int,
        still_due: Callable[[bytes, bytes], bool],
    ) -> int:
        with self._lock:
            self._check_open()
            entries = self._records[index]
            due = heapq.nsmallest(limit, (key for key in entries if key < below_key))
            for key in due:
                del entries[key]
                item_key = indexed_key(key)
                value = self._records[target].get(item_key)
                if value is not None and still_due(key, value):
                    del self._records[target][item_key]
            return len(due)

    def environment_info(self) -> dict[str, Any]:
        """Entries per database and the journal's range (metrics read them, as LmdbStore's)."""
        with self._lock:
            self._check_open()
            entries = {name: len(records) for name, records in self._records.items()}
            entries[JOURNAL_DATABASE] = len(self._journal_sequences)
            return {
                "entries": entries,
                "journal_oldest_sequence": (self._journal_sequences[0]
                                            if self._journal_sequences else 0),
                "journal_last_sequence": self._last_sequence(),
            }

    def last_sequence(self) -> int:
        with self._lock:
            self._check_open()
            return self._last_sequence()

    def oldest_sequence(self) -> int:
        with self._lock:
            self._check_open()
            return self._journal_sequences[0] if self._journal_sequences else 0

    def commit(self, batch: WriteBatch) -> None:
        with self._lock:
            self._check_open()
            # Validation covers everything that could fail, so applying below cannot stop halfway.
            validate_batch(batch, self._last_sequence())
            dropped = self._dropped
            for (database, key), value in batch.records.items():
                if database in dropped:
                    continue
                if value is None:
                    self._records[database].pop(key, None)
                else:
                    self._records[database][key] = value
            for sequence, event in batch.journal:
                self._journal_sequences.append(sequence)
                self._journal_events.append(event)
            self._keep_journal_bound()

    def _keep_journal_bound(self) -> None:
        """Drops the oldest entries beyond journal_events_max, once past it by an eighth (a
        list's head deleted at most once per max/8 appends)."""
        bound = self.journal_events_max
        if not bound or len(self._journal_sequences) <= bound + bound // 8:
            return
        dropped = len(self._journal_sequences) - bound
        self.journal_dropped_through = self._journal_sequences[dropped - 1]
        self._trimmed_through = max(self._trimmed_through, self.journal_dropped_through)
        del self._journal_sequences[:dropped]
        del self._journal_events[:dropped]

    def read_journal(self, after_sequence: int, limit: int) -> list[tuple[int, bytes]]:
        validate_limit(limit)
        with self._lock:
            self._check_open()
            start = bisect.bisect_right(self._journal_sequences, after_sequence)
            end = start + limit
            return list(zip(self._journal_sequences[start:end], self._journal_events[start:end]))

    def trim_journal(self, keep_after: int) -> int:
        with self._lock:
            self._check_open()
            deleted = bisect.bisect_right(self._journal_sequences, keep_after)
            if deleted:
                self._trimmed_through = max(
                    self._trimmed_through, self._journal_sequences[deleted - 1]
                )
                del self._journal_sequences[:deleted]
                del self._journal_events[:deleted]
            return deleted

    def snapshot_chunks(
        self, records_max: int, bytes_max: int = SNAPSHOT_CHUNK_BYTES_MAX
    ) -> Iterator[list[SnapshotRecord]]:
        """A copy of everything taken under the lock at the first chunk: the one moment."""
        with self._lock:
            self._check_open()
            meta = [(META, key, value) for key, value in sorted(self._records[META].items())]
            rest = self._copy_for_snapshot()
        yield meta
        while chunk := next_chunk(rest, records_max, bytes_max):
            yield chunk

    def _copy_for_snapshot(self) -> Iterator[SnapshotRecord]:
        records = [
            (name, key, value)
            for name in DATABASES if name != META
            for key, value in sorted(self._records[name].items())
        ]
        records += [
            (JOURNAL_DATABASE, encode_sequence(sequence), event)
            for sequence, event in zip(self._journal_sequences, self._journal_events)
        ]
        if self._trimmed_through:
            records.append((JOURNAL_TRIMMED_THROUGH, TRIMMED_THROUGH_KEY,
                            encode_sequence(self._trimmed_through)))
        return iter(records)

    def begin_restore(self) -> None:
        with self._lock:
            self._check_open()
            self._records = {name: {} for name in DATABASES}
            self._journal_sequences, self._journal_events = [], []
            self._trimmed_through = self.journal_dropped_through = 0
            self._records[META][RESTORING_KEY] = b"1"
            self._dropped = self._not_kept  # the ledger is rebuilt from what comes

    def restore(self, records: Iterable[SnapshotRecord]) -> None:
        records = list(records)
        for record in records:
            validate_restored(record)
        with self._lock:
            self._check_open()
            if RESTORING_KEY not in self._records[META]:
                raise StoreError("restore() outside a restore: call begin_restore() first")
            for database, key, value in records:
                if database in self._not_kept:
                    continue
                if database == JOURNAL_DATABASE:
                    self._restore_journal_entry(decode_sequence(key), value)
                elif database == JOURNAL_TRIMMED_THROUGH:
                    self._trimmed_through = decode_sequence(value)
                else:
                    self._records[database][key] = value
            self._keep_journal_bound()  # chunk by chunk: a long journal is never all here

    def _restore_journal_entry(self, sequence: int, event: bytes) -> None:
        at = bisect.bisect_left(self._journal_sequences, sequence)
        if at < len(self._journal_sequences) and self._journal_sequences[at] == sequence:
            self._journal_events[at] = event
        else:
            self._journal_sequences.insert(at, sequence)
            self._journal_events.insert(at, event)

    def finish_restore(self) -> None:
        with self._lock:
            self._check_open()
            self._records[META].pop(RESTORING_KEY, None)
            self._keep_journal_bound()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _last_sequence(self) -> int:
        if self._journal_sequences:
            return max(self._journal_sequences[-1], self._trimmed_through)
        return self._trimmed_through

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")
