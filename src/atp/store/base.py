"""The storage interface: named databases of opaque bytes and a journal, committed atomically."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

# The stored record kinds, each a database (a map of opaque keys to opaque values); named
# here only, atp.persistence maps the ledger's records to and from them.
META = "meta"
NODES = "nodes"
POSITIONS = "positions"
SUPPLY = "supply"
RESERVATIONS = "reservations"  # open ones
HOLDS = "holds"  # active ones
REQUESTS = "requests"  # idempotency records
# Closed reservations (read on demand, purged after closed retention) and the purge
# indexes by time of closed reservations and idempotency records.
CLOSED = "closed"
CLOSED_BY_TIME = "closed_by_time"
REQUESTS_BY_TIME = "requests_by_time"
# Ended holds (released, expired), kept like closed reservations, and their purge index.
ENDED_HOLDS = "ended_holds"
ENDED_HOLDS_BY_TIME = "ended_holds_by_time"
# Allocation policies set per SKU (and per SKU at a node), by position key.
ALLOCATION_POLICIES = "allocation_policies"
# Channel allocations (quotas), keyed "<sku>\x1f<node_id>\x1f<channel>".
CHANNEL_ALLOCATIONS = "channel_allocations"
DATABASES: tuple[str, ...] = (
    META, NODES, POSITIONS, SUPPLY, RESERVATIONS, HOLDS, REQUESTS,
    CLOSED, CLOSED_BY_TIME, REQUESTS_BY_TIME, ENDED_HOLDS, ENDED_HOLDS_BY_TIME,
    ALLOCATION_POLICIES, CHANNEL_ALLOCATIONS,
)
# What a gateway's copy does not keep (Store.keeps_archive): records of what has ended.
ARCHIVE_DATABASES = frozenset({
    REQUESTS, CLOSED, CLOSED_BY_TIME, REQUESTS_BY_TIME, ENDED_HOLDS, ENDED_HOLDS_BY_TIME})
# What a ledger is built from (codec.LIVE_DATABASES, the live state, and the allocation
# settings), and what a gateway's copy lets go of once built (MemoryStore.live_copy,
# Store.loaded).
LEDGER_DATABASES = frozenset(DATABASES) - ARCHIVE_DATABASES - {META}
# The journal is kept apart from DATABASES: it is keyed by sequence and read in order.
JOURNAL_DATABASE = "journal"
# A snapshot carries, besides DATABASES and the journal, the highest journal sequence ever
# trimmed (one record of this name, when anything was trimmed): a store restored from it then
# has its source's last_sequence() even once retention has emptied the journal.
JOURNAL_TRIMMED_THROUGH = "journal_trimmed_through"
TRIMMED_THROUGH_KEY = b"sequence"
# The meta record a restore in progress leaves until it is finished: a store holding it is
# incomplete and must never be served (atpd empties it again at start).
RESTORING_KEY = b"restoring"
# A snapshot chunk's records: (database, key, value), the journal's under JOURNAL_DATABASE
# by their stored key (encode_sequence).
SnapshotRecord = tuple[str, bytes, bytes]
# A snapshot chunk holds at most about this many bytes of keys and values (and at least one
# record, whatever its size).
SNAPSHOT_CHUNK_BYTES_MAX = 1 << 20

# LMDB's compile-time key limit (mdb_env_get_maxkeysize); the memory store enforces it too so
# that a batch which would fail on disk also fails in tests.
KEY_BYTES_MAX = 511
# Journal sequences are stored as 8-byte big-endian unsigned integers.
SEQUENCE_MAX = 2**64 - 1
SEQUENCE_BYTES = 8


def encode_sequence(sequence: int) -> bytes:
    """The journal key of `sequence`: 8 bytes, big-endian, so that LMDB's byte order of keys
    is the numeric order of sequences."""
    return sequence.to_bytes(SEQUENCE_BYTES, "big")


def decode_sequence(key: bytes) -> int:
    """The sequence of a journal key; StoreError for bytes that are not one."""
    if len(key) != SEQUENCE_BYTES:
        raise StoreError(f"journal key of {len(key)} bytes: journal keys are {SEQUENCE_BYTES}")
    return int.from_bytes(key, "big")


class StoreError(Exception):
    """Storage failed; the batch was not written."""


class StoreFullError(StoreError):
    """The LMDB map or the filesystem is full; nothing was written."""

    def __init__(self, message: str, *, map_full: bool = False) -> None:
        super().__init__(message)
        # The map was full (a bigger map may take the batch), not the filesystem.
        self.map_full = map_full


@dataclass(frozen=True)
class StoreUsage:
    """How much of its space the store uses, in bytes."""

    # Pages holding records and the journal (free pages, reused by later writes, excluded).
    used: int
    # The map: the most the data file may grow to now (the store can grow it up to a cap).
    map_size: int
    # Bytes the data file takes on disk, and what the filesystem has left for it.
    file_allocated: int = 0
    filesystem_free: int = 2**62


@dataclass
class WriteBatch:
    """Records to put or delete and journal entries to append, all in one atomic commit."""

    # (database, key) -> value; None deletes the key (deleting a missing key is fine).
    records: dict[tuple[str, bytes], bytes | None] = field(default_factory=dict)
    # (sequence, encoded event), strictly increasing, each greater than store.last_sequence().
    journal: list[tuple[int, bytes]] = field(default_factory=list)

    def put(self, database: str, key: bytes, value: bytes | None) -> None:
        """Set `key` in `database` to `value`, or delete it when `value` is None."""
        self.records[(database, key)] = value

    def append(self, sequence: int, event: bytes) -> None:
        """Append one journal entry."""
        self.journal.append((sequence, event))

    def __len__(self) -> int:
        return len(self.records) + len(self.journal)

    def is_empty(self) -> bool:
        """True when committing the batch would write nothing."""
        return not self.records and not self.journal


class Store(abc.ABC):
    """Records and journal persisted together; every commit is all or nothing."""

    # Whether the writer may run this store's calls on the event loop itself rather than on
    # its commit thread: set on a gateway's in-memory copy, whose calls take microseconds,
    # so that a thread round trip per batch would cost more than the call.
    commits_inline = False
    # Whether the store keeps the archive (ARCHIVE_DATABASES: closed reservations, ended
    # holds, idempotency records and their purge indexes). A gateway's copy does not: the
    # writer answers for them (atp/server/gateway.py).
    keeps_archive = True
    # The newest journal sequence this store let go of to stay within its own bound (a
    # gateway's copy keeps a tail of the journal), not by retention: events up to it are
    # the writer's to replay. 0: none.
    journal_dropped_through = 0

    @abc.abstractmethod
    def load(self) -> dict[str, dict[bytes, bytes]]:
        """Every record of every database in DATABASES (not the journal), each database present."""

    def loaded(self) -> None:
        """A ledger was built from the live records just now. A store whose records no one
        reads afterwards (a gateway's copy: its ledger is kept by the commit feed's batches)
        may let them go; a store of record keeps them."""

    def iter_records(self, database: str) -> Iterator[tuple[bytes, bytes]]:
        """The (key, value) records of one database in key order, without holding them all."""
        yield from sorted(self.load()[database].items())

    @abc.abstractmethod
    def get(self, database: str, key: bytes) -> bytes | None:
        """One record's value, None if absent (a point read, cheap enough for the event loop)."""

    def point_reads(self) -> contextlib.AbstractContextManager[None]:
        """Around a run of point reads on one thread (the writer applying a frame of
        commands, each new id looked up in the archive): get() inside may read one snapshot,
        taken at entry, instead of one per call. Nothing is committed meanwhile that the
        caller needs to see (the writer forgets what it keeps in memory only after it is
        durable, on the same thread)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def scan(self, database: str, after_key: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to `limit` records of one database with keys after `after_key`, in key order."""

    @abc.abstractmethod
    def purge(
        self, index: str, target: str, below_key: bytes, limit: int,
        still_due: Callable[[bytes, bytes], bool],
    ) -> int:
        """In one transaction, removes up to `limit` entries of the `index` database with keys
        below `below_key`, and for each the `target` record its value names, if
        still_due(index key, target value) says the record is the one that entry indexed (an
        id reused since has a newer record, kept). Returns how many index entries went."""

    @abc.abstractmethod
    def last_sequence(self) -> int:
        """Highest journal sequence ever written (trimming does not lower it), 0 if none."""

    @abc.abstractmethod
    def oldest_sequence(self) -> int:
        """Lowest journal sequence still retained, 0 if the journal is empty."""

    @abc.abstractmethod
    def commit(self, batch: WriteBatch) -> None:
        """Write the whole batch in one transaction, or raise StoreError having written nothing."""

    @abc.abstractmethod
    def read_journal(self, after_sequence: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` journal entries with sequence > `after_sequence`, ascending."""

    @abc.abstractmethod
    def trim_journal(self, keep_after: int) -> int:
        """Delete journal entries with sequence <= `keep_after`; return how many were deleted."""

    @abc.abstractmethod
    def snapshot_chunks(
        self, records_max: int, bytes_max: int = SNAPSHOT_CHUNK_BYTES_MAX
    ) -> Iterator[list[SnapshotRecord]]:
        """Every record of every database in DATABASES, the journal and its trim mark
        (JOURNAL_TRIMMED_THROUGH), all as of one moment (commits made meanwhile are not
        seen), in chunks of at most `records_max` records or about `bytes_max` bytes.

        The first chunk is the whole META database, whatever its size (a few records: the
        snapshot's commit and term history are known from it); further chunks are never
        empty. Pull it from one thread at a time; close it (or exhaust it) to let go of the
        moment it holds. A store that is closed, or must change its map, meanwhile ends the
        snapshot: the next chunk raises StoreError."""

    @abc.abstractmethod
    def begin_restore(self) -> None:
        """In one transaction, empties every database, the journal and its trim mark, and
        puts the RESTORING_KEY marker in META."""

    @abc.abstractmethod
    def restore(self, records: Iterable[SnapshotRecord]) -> None:
        """Puts snapshot records as they are, in one transaction (StoreError, having written
        nothing, for a record of no known database or outside a restore)."""

    @abc.abstractmethod
    def finish_restore(self) -> None:
        """Removes the RESTORING_KEY marker: the restored store is complete."""

    def restore_incomplete(self) -> bool:
        """Whether a restore was begun and not finished (the store must not be served)."""
        return self.get(META, RESTORING_KEY) is not None

    def usage(self) -> StoreUsage:
        """The space in use; a store without limits reports none used."""
        return StoreUsage(used=0, map_size=2**62)

    def grow_map(self, map_size: int) -> None:
        """Raises the map to `map_size` bytes (no-op for stores without a map)."""

    def clear_stale_readers(self) -> int:
        """Frees reader slots held by processes that died; how many were freed."""
        return 0

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; calling it again does nothing, any other call raises StoreError."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def validate_batch(batch: WriteBatch, last_sequence: int) -> None:
    """Raise StoreError unless every record and journal entry of `batch` can be written."""
    for (database, key), value in batch.records.items():
        if database not in DATABASES:
            raise StoreError(f"unknown database {database!r}")
        validate_key(key, database)
        if value is not None and not isinstance(value, bytes):
            raise StoreError(
                f"value for a key in {database!r} is {type(value).__name__}, not bytes"
            )
    previous_sequence = last_sequence
    for sequence, event in batch.journal:
        # bool is an int subclass; a True sequence is certainly a bug in the caller.
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            raise StoreError(f"journal sequence {sequence!r} is not an integer")
        if sequence <= previous_sequence:
            raise StoreError(
                f"journal sequence {sequence} does not follow {previous_sequence}: "
                "sequences must increase and exceed the last one written"
            )
        if sequence > SEQUENCE_MAX:
            raise StoreError(f"journal sequence {sequence} exceeds {SEQUENCE_MAX}")
        if not isinstance(event, bytes):
            raise StoreError(f"journal event {sequence} is {type(event).__name__}, not bytes")
        previous_sequence = sequence


def validate_key(key: bytes, database: str) -> None:
    """Raise StoreError unless `key` is bytes of 1 to KEY_BYTES_MAX bytes (LMDB's rule)."""
    if not isinstance(key, bytes):
        raise StoreError(f"key in {database!r} is {type(key).__name__}, not bytes")
    if not 1 <= len(key) <= KEY_BYTES_MAX:
        raise StoreError(
            f"key of {len(key)} bytes in {database!r}: keys must be 1 to {KEY_BYTES_MAX} bytes"
        )


def indexed_key(index_key: bytes) -> bytes:
    """The key of the record a purge index entry indexes: a purge index key is
    "<time>\x1f<record key>", so the entry names its record whatever its value holds."""
    return index_key.split(b"\x1f", 1)[1]


def validate_limit(limit: int) -> None:
    """Raise ValueError for a negative page size: a bug in the caller, not a storage fault."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def next_chunk(
    records: Iterator[SnapshotRecord], records_max: int, bytes_max: int
) -> list[SnapshotRecord]:
    """The next records of a snapshot, up to `records_max` of them or until they hold
    `bytes_max` bytes of keys and values; [] when none are left."""
    if records_max < 1:
        raise ValueError(f"records_max must be >= 1, got {records_max}")
    chunk: list[SnapshotRecord] = []
    size = 0
    for record in records:
        chunk.append(record)
        size += len(record[1]) + len(record[2])
        if len(chunk) >= records_max or size >= bytes_max:
            break
    return chunk


def validate_restored(record: SnapshotRecord) -> None:
    """Raise StoreError unless a snapshot record can be restored as it is."""
    database, key, value = record
    if not isinstance(value, bytes):
        raise StoreError(f"value for a key in {database!r} is {type(value).__name__}, not bytes")
    if database == JOURNAL_DATABASE:
        decode_sequence(key)
    elif database == JOURNAL_TRIMMED_THROUGH:
        decode_sequence(value)
    elif database in DATABASES:
        validate_key(key, database)
    else:
        raise StoreError(f"unknown database {database!r} in a snapshot")
