"""The durable store: one LMDB environment, one named database per record kind plus the journal."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lmdb

from atp.store.base import (
    DATABASES,
    JOURNAL_DATABASE,
    JOURNAL_TRIMMED_THROUGH,
    META,
    RESTORING_KEY,
    SEQUENCE_MAX,
    SNAPSHOT_CHUNK_BYTES_MAX,
    TRIMMED_THROUGH_KEY,
    SnapshotRecord,
    Store,
    StoreError,
    StoreFullError,
    StoreUsage,
    WriteBatch,
    decode_sequence,
    encode_sequence,
    indexed_key,
    next_chunk,
    validate_batch,
    validate_limit,
    validate_restored,
)

# Internal bookkeeping, never returned by load(): the highest sequence ever trimmed, so that
# emptying the journal cannot make last_sequence() go back and sequences be reused.
_STATE_DATABASE = "store_state"
_TRIMMED_THROUGH_KEY = b"journal_trimmed_through"
_DATABASES_MAX = 32
# Databases that data directories written by earlier versions lack (created on their first
# open for writing).
_ADDED_LATER = frozenset({
    "closed", "closed_by_time", "requests_by_time", "ended_holds", "ended_holds_by_time",
    "channel_allocations",
})

__all__ = ["LmdbStore", "claim_writer", "decode_sequence", "encode_sequence"]


class _OperationGate:
    """Counts calls in flight so that close() waits for them instead of unmapping under them.

    enter()/leave() are plain calls, not a context manager: a point read (the archive's
    check of every new id) pays for the gate on every Reserve, and two generator-based
    context managers cost several times the LMDB read itself."""

    def __init__(self) -> None:
        # enter() and leave() take the lock itself (a C call): the Condition's own
        # __enter__ is a Python call around it.
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._in_flight = 0
        self._closed = False
        self._exclusive = False

    def enter(self) -> None:
        """Holds the store open until leave(); StoreError once it is closed."""
        with self._lock:
            if self._exclusive:
                self._condition.wait_for(lambda: not self._exclusive)
            if self._closed:
                raise StoreError("the store is closed")
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            # Only exclusive() and close() wait for the calls in flight to end.
            if self._in_flight == 0 and (self._exclusive or self._closed):
                self._condition.notify_all()

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        """enter() ... leave() around a block."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold new calls back and wait for running ones, for an operation that needs no
        transaction open in the process (resizing the map)."""
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._condition.wait_for(lambda: self._in_flight == 0)
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()

    def close(self) -> bool:
        """Refuse new calls and wait for running ones; False if it was already closed."""
        with self._condition:
            if self._closed:
                return False
            self._closed = True
            self._condition.wait_for(lambda: self._in_flight == 0)
            return True


class _Snapshot:
    """The read transaction of one snapshot_chunks(), idle between chunks."""

    def __init__(self, transaction: lmdb.Transaction[bytes]) -> None:
        self.transaction = transaction
        # Why it ended before its consumer was done (the map grew, the store closed).
        self.ended: str | None = None


class LmdbStore(Store):
    """Records and journal in one LMDB environment; each commit is one write transaction.

    `sync=False` is the fast mode: commits survive a process crash but the last ones may be
    lost on power loss. Commits may run on one thread while others read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = 8 << 30,
        sync: bool = True,
        readonly: bool = False,
    ) -> None:
        self._path = os.fspath(path)
        self._sync = sync
        self._readonly = readonly
        self._gate = _OperationGate()
        self._environment = _open_environment(self._path, map_size, sync, readonly)
        self._owner: int | None = None
        # The read transactions of snapshots being streamed, which growing the map or closing
        # ends (LMDB lets no transaction outlive either).
        self._snapshots: set[_Snapshot] = set()
        self._snapshots_lock = threading.Lock()
        # point_reads(): the read transaction get() shares, and the thread it belongs to.
        self._point_reader: lmdb.Transaction[bytes] | None = None
        self._point_reader_thread = 0
        try:
            # LMDB lets several processes write one environment; two ledgers over one store
            # would each miss the other's changes, so one writer owns a data directory.
            if not readonly:
                self._owner = claim_writer(self._path)
            self._handles = _open_databases(self._environment, self._path, readonly)
            if not readonly:
                self._environment.reader_check()  # slots left by readers that died meanwhile
        except BaseException:
            self._release_writer()
            self._environment.close()
            raise

    @property
    def path(self) -> str:
        """The environment's directory."""
        return self._path

    def load(self) -> dict[str, dict[bytes, bytes]]:
        with self._reading() as transaction:
            return {
                name: dict(transaction.cursor(db=handle).iternext()) if handle else {}
                for name in DATABASES
                for handle in (self._handles.get(name),)
            }

    def iter_records(self, database: str) -> Iterator[tuple[bytes, bytes]]:
        """Streams one database from one read transaction (a restart decodes as it reads)."""
        handle = self._handle(database)
        if handle is None:
            return
        with self._reading() as transaction:
            yield from transaction.cursor(db=handle).iternext()

    def _handle(self, database: str) -> lmdb._Database | None:
        """A database's handle; None for one an older data directory opened read-only lacks."""
        if database not in DATABASES:
            raise StoreError(f"unknown database {database!r}")
        return self._handles.get(database)

    def get(self, database: str, key: bytes) -> bytes | None:
        handle = self._handle(database)
        if handle is None:
            return None
        reader = self._point_reader
        if reader is not None and self._point_reader_thread == threading.get_ident():
            try:
                return reader.get(key, db=handle)
            except lmdb.Error as error:
                raise StoreError(f"reading {self._path} failed: {error}") from error
        # _reading() spelled out: this point read runs on every new reservation id.
        self._gate.enter()
        try:
            transaction = self._begin_read()
            try:
                value: bytes | None = transaction.get(key, db=handle)
            finally:
                transaction.abort()
        except lmdb.Error as error:
            raise StoreError(f"reading {self._path} failed: {error}") from error
        finally:
            self._gate.leave()
        return value

    @contextlib.contextmanager
    def point_reads(self) -> Iterator[None]:
        """One read transaction for the get() calls of this thread inside (Store.point_reads):
        the writer's archive lookups, one per new id, were each a transaction with the gate's
        lock around it (bench/README.md, "Writer step"). Nested, the outer one serves."""
        if self._point_reader is not None:
            yield
            return
        try:
            self._gate.enter()
        except StoreError:  # closed: each get() inside says so where it is asked
            yield
            return
        try:
            try:
                reader = self._begin_read()
            except lmdb.Error:  # likewise: the reads inside fail on their own
                yield
                return
            self._point_reader, self._point_reader_thread = reader, threading.get_ident()
            try:
                yield
            finally:
                self._point_reader, self._point_reader_thread = None, 0
                reader.abort()
        finally:
            self._gate.leave()

    def scan(self, database: str, after_key: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        validate_limit(limit)
        handle = self._handle(database)
        if handle is None or limit == 0:
            return []
        with self._reading() as transaction:
            cursor = transaction.cursor(db=handle)
            if not cursor.set_range(after_key):
                return []
            if cursor.key() == after_key and not cursor.next():
                return []
            return list(itertools.islice(cursor.iternext(), limit))

    def purge(
        self, index: str, target: str, below_key: bytes, limit: int,
        still_due: Callable[[bytes, bytes], bool],
    ) -> int:
        index_handle, target_handle = self._handles[index], self._handles[target]
        with self._writing() as transaction:
            cursor = transaction.cursor(db=index_handle)
            removed = 0
            cursor.first()
            while removed < limit and (key := cursor.key()) and key < below_key:
                item_key = indexed_key(key)
                value = transaction.get(item_key, db=target_handle)
                if value is not None and still_due(key, value):
                    transaction.delete(item_key, db=target_handle)
                cursor.delete()  # moves the cursor to the next entry
                removed += 1
            return removed

    def last_sequence(self) -> int:
        with self._reading() as transaction:
            return self._last_sequence_in(transaction)

    def oldest_sequence(self) -> int:
        with self._reading() as transaction:
            return self._oldest_sequence_in(transaction)

    def commit(self, batch: WriteBatch) -> None:
        if batch.is_empty():
            with self._gate.open():
                return
        with self._writing() as transaction:
            # Inside the write transaction: no other writer can move the last sequence meanwhile.
            validate_batch(batch, self._last_sequence_in(transaction))
            puts: dict[str, list[tuple[bytes, bytes]]] = {}
            for (database, key), value in batch.records.items():
                if value is None:
                    transaction.delete(key, db=self._handles[database])
                else:
                    puts.setdefault(database, []).append((key, value))
            # One putmulti per database: the loop over records runs in C (a batch holds a
            # few records per reservation; each Python-level put cost more than its write).
            for database, items in puts.items():
                transaction.cursor(db=self._handles[database]).putmulti(items)
            if batch.journal:
                # append=True skips the B-tree search; validation guarantees keys only grow.
                transaction.cursor(db=self._handles[JOURNAL_DATABASE]).putmulti(
                    [(encode_sequence(sequence), event) for sequence, event in batch.journal],
                    append=True)

    def read_journal(self, after_sequence: int, limit: int) -> list[tuple[int, bytes]]:
        validate_limit(limit)
        if limit == 0 or after_sequence >= SEQUENCE_MAX:
            return []
        start_key = encode_sequence(max(after_sequence + 1, 0))
        with self._reading() as transaction:
            cursor = transaction.cursor(db=self._handles[JOURNAL_DATABASE])
            if not cursor.set_range(start_key):
                return []
            entries = itertools.islice(cursor.iternext(), limit)
            return [(decode_sequence(key), event) for key, event in entries]

    def trim_journal(self, keep_after: int) -> int:
        if keep_after <= 0:
            with self._gate.open():
                return 0
        limit_key = encode_sequence(min(keep_after, SEQUENCE_MAX))
        with self._writing() as transaction:
            cursor = transaction.cursor(db=self._handles[JOURNAL_DATABASE])
            deleted = 0
            highest_deleted_key = b""
            cursor.first()
            # An unpositioned cursor's key() is b"", which LMDB never uses as a key.
            while (key := cursor.key()) and key <= limit_key:
                highest_deleted_key = key
                cursor.delete()  # moves the cursor to the next entry
                deleted += 1
            if deleted:
                self._record_trimmed_through(transaction, decode_sequence(highest_deleted_key))
            return deleted

    def snapshot_chunks(
        self, records_max: int, bytes_max: int = SNAPSHOT_CHUNK_BYTES_MAX
    ) -> Iterator[list[SnapshotRecord]]:
        """One read transaction for the whole snapshot, begun at the first chunk. The gate is
        held while a chunk is read, not while the consumer has it (a follower's stream may take
        minutes): growing the map or closing the store does not wait for it, but ends the
        snapshot instead, and the next chunk raises StoreError."""
        snapshot = self._open_snapshot()
        try:
            records = self._snapshot_records(snapshot.transaction)
            with self._snapshot_step(snapshot):
                meta = [(META, key, value) for key, value
                        in snapshot.transaction.cursor(db=self._handles[META]).iternext()]
            yield meta
            while True:
                with self._snapshot_step(snapshot):
                    chunk = next_chunk(records, records_max, bytes_max)
                if not chunk:
                    return
                yield chunk
        finally:
            self._close_snapshot(snapshot)

    def _snapshot_records(self, transaction: lmdb.Transaction[bytes]) -> Iterator[SnapshotRecord]:
        """Everything but META, in the order a restore puts it."""
        for name in (*DATABASES, JOURNAL_DATABASE):
            handle = self._handles.get(name)
            if name != META and handle is not None:
                for key, value in transaction.cursor(db=handle).iternext():
                    yield name, key, value
        trimmed_through = self._trimmed_through_in(transaction)
        if trimmed_through:
            yield JOURNAL_TRIMMED_THROUGH, TRIMMED_THROUGH_KEY, encode_sequence(trimmed_through)

    def _open_snapshot(self) -> _Snapshot:
        with self._gate.open():
            try:
                snapshot = _Snapshot(self._begin_read())
            except lmdb.Error as error:
                raise StoreError(f"reading {self._path} failed: {error}") from error
            with self._snapshots_lock:  # within the gate: no map change can slip in before
                self._snapshots.add(snapshot)
        return snapshot

    @contextlib.contextmanager
    def _snapshot_step(self, snapshot: _Snapshot) -> Iterator[None]:
        """Reading one chunk: the store stays open and its map unchanged meanwhile."""
        with self._gate.open():
            if snapshot.ended is not None:
                raise StoreError(f"the snapshot of {self._path} was ended ({snapshot.ended}); "
                                 "take another")
            try:
                yield
            except lmdb.Error as error:
                raise StoreError(f"reading {self._path} failed: {error}") from error

    def _close_snapshot(self, snapshot: _Snapshot) -> None:
        with self._snapshots_lock:
            self._snapshots.discard(snapshot)
            if snapshot.ended is None:
                snapshot.ended = "done"
                snapshot.transaction.abort()

    def _end_snapshots(self, reason: str) -> None:
        """Ends every snapshot between chunks (the caller keeps any from reading one)."""
        with self._snapshots_lock:
            for snapshot in self._snapshots:
                if snapshot.ended is None:
                    snapshot.ended = reason
                    snapshot.transaction.abort()
            self._snapshots.clear()

    def begin_restore(self) -> None:
        with self._writing() as transaction:
            for name in (*DATABASES, JOURNAL_DATABASE, _STATE_DATABASE):
                transaction.drop(self._handles[name], delete=False)
            transaction.put(RESTORING_KEY, b"1", db=self._handles[META])

    def restore(self, records: Iterable[SnapshotRecord]) -> None:
        records = list(records)
        for record in records:
            validate_restored(record)
        with self._writing() as transaction:
            if transaction.get(RESTORING_KEY, db=self._handles[META]) is None:
                raise StoreError("restore() outside a restore: call begin_restore() first")
            for database, key, value in records:
                if database == JOURNAL_TRIMMED_THROUGH:
                    transaction.put(_TRIMMED_THROUGH_KEY, value, db=self._handles[_STATE_DATABASE])
                else:
                    transaction.put(key, value, db=self._handles[database])

    def finish_restore(self) -> None:
        with self._writing() as transaction:
            transaction.delete(RESTORING_KEY, db=self._handles[META])

    def environment_info(self) -> dict[str, Any]:
        """Map size, bytes used, entries per database and journal range, for `atpctl db stat`."""
        with self._reading() as transaction:
            info = self._environment.info()
            page_size_bytes = self._environment.stat()["psize"]
            names = (*DATABASES, JOURNAL_DATABASE)
            return {
                "path": self._path,
                "map_size_bytes": info["map_size"],
                "used_bytes": page_size_bytes * (info["last_pgno"] + 1),
                "page_size_bytes": page_size_bytes,
                "last_transaction_id": info["last_txnid"],
                "readers": info["num_readers"],
                "entries": {
                    name: transaction.stat(self._handles[name])["entries"]
                    if name in self._handles else 0
                    for name in names
                },
                "journal_oldest_sequence": self._oldest_sequence_in(transaction),
                "journal_last_sequence": self._last_sequence_in(transaction),
            }

    def copy_to(self, destination_dir: str | os.PathLike[str], *, compact: bool = True) -> None:
        """Write a consistent copy of the environment into the existing, empty `destination_dir`."""
        with self._gate.open():
            try:
                self._environment.copy(os.fspath(destination_dir), compact=compact)
            except lmdb.Error as error:
                raise StoreError(
                    f"copying {self._path} to {destination_dir} failed: {error}"
                ) from error

    def usage(self) -> StoreUsage:
        """Pages of every B-tree (records, journal, bookkeeping) and the two meta pages; the
        map; the data file's allocated bytes and the filesystem's free bytes."""
        with self._reading() as transaction:
            stat = self._environment.stat()
            pages = sum(_pages(transaction.stat(handle)) for handle in self._handles.values())
            used = (pages + _pages(stat) + 2) * stat["psize"]
            map_size = self._environment.info()["map_size"]
        data_file = os.path.join(self._path, "data.mdb")
        filesystem = os.statvfs(self._path)
        return StoreUsage(
            used=used, map_size=map_size,
            file_allocated=os.stat(data_file).st_blocks * 512,
            filesystem_free=filesystem.f_bavail * filesystem.f_frsize,
        )

    def grow_map(self, map_size: int) -> None:
        """Raises the map size; LMDB needs no transaction open in the process meanwhile."""
        with self._gate.exclusive():
            self._end_snapshots("the LMDB map grew")
            try:
                self._environment.set_mapsize(map_size)
            except lmdb.Error as error:
                raise StoreError(f"growing the map of {self._path} failed: {error}") from error

    def clear_stale_readers(self) -> int:
        """LMDB keeps a reader slot per open read transaction in lock.mdb; a reader killed with
        -9 (an `atpctl db verify`, say) leaves its slot taken until someone checks for it, and
        once all slots are taken every read fails with MDB_READERS_FULL."""
        with self._gate.open():
            try:
                cleared: int = self._environment.reader_check()
            except lmdb.Error as error:
                raise StoreError(
                    f"checking reader slots of {self._path} failed: {error}"
                ) from error
            return cleared

    def close(self) -> None:
        if not self._gate.close():
            return
        self._end_snapshots("the store closed")
        try:
            # With sync=False commits sit in the page cache; a clean close flushes them to disk.
            if not self._sync and not self._readonly:
                self._environment.sync(True)
        except lmdb.Error as error:
            raise StoreError(f"flushing {self._path} failed: {error}") from error
        finally:
            self._environment.close()
            self._release_writer()

    def _release_writer(self) -> None:
        if self._owner is not None:
            os.close(self._owner)  # closing the descriptor drops its lock
            self._owner = None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A read transaction of the calling thread; lmdb errors become StoreError."""
        with self._gate.open():
            try:
                with self._begin_read() as transaction:
                    yield transaction
            except lmdb.Error as error:
                raise StoreError(f"reading {self._path} failed: {error}") from error

    def _begin_read(self) -> lmdb.Transaction[bytes]:
        """A read transaction; when every reader slot is taken, frees the slots of dead
        processes and tries once more."""
        try:
            return self._environment.begin()
        except lmdb.ReadersFullError:
            self._environment.reader_check()
            return self._environment.begin()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A write transaction committed on success and aborted on any exception."""
        with self._gate.open():
            if self._readonly:
                raise StoreError(f"{self._path} is open read-only")
            try:
                with self._environment.begin(write=True) as transaction:
                    yield transaction
            except lmdb.MapFullError as error:
                raise StoreFullError(
                    f"the LMDB map of {self._path} is full "
                    f"({self._environment.info()['map_size']} bytes)", map_full=True,
                ) from error
            except lmdb.Error as error:
                if any(text in str(error) for text in _NO_SPACE):
                    raise StoreFullError(
                        f"the filesystem of {self._path} is full: {error}"
                    ) from error
                raise StoreError(f"writing {self._path} failed: {error}") from error

    def _last_sequence_in(self, transaction: lmdb.Transaction[bytes]) -> int:
        cursor = transaction.cursor(db=self._handles[JOURNAL_DATABASE])
        last_written = decode_sequence(cursor.key()) if cursor.last() else 0
        return max(last_written, self._trimmed_through_in(transaction))

    def _oldest_sequence_in(self, transaction: lmdb.Transaction[bytes]) -> int:
        cursor = transaction.cursor(db=self._handles[JOURNAL_DATABASE])
        return decode_sequence(cursor.key()) if cursor.first() else 0

    def _trimmed_through_in(self, transaction: lmdb.Transaction[bytes]) -> int:
        value = transaction.get(_TRIMMED_THROUGH_KEY, db=self._handles[_STATE_DATABASE])
        return decode_sequence(value) if value is not None else 0

    def _record_trimmed_through(self, transaction: lmdb.Transaction[bytes], sequence: int) -> None:
        highest = max(sequence, self._trimmed_through_in(transaction))
        transaction.put(
            _TRIMMED_THROUGH_KEY, encode_sequence(highest), db=self._handles[_STATE_DATABASE]
        )


# How LMDB reports a full filesystem (it passes the system's error text through).
_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def _pages(stat: Any) -> int:
    return int(stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"])


WRITER_LOCK_FILE = "writer.lock"


def claim_writer(path: str) -> int:
    """An exclusive lock on the data directory's writer lock file, held while the store is
    open (the kernel drops it when the process dies, kill -9 included); the descriptor."""
    lock_path = os.path.join(path, WRITER_LOCK_FILE)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise StoreError(
            f"{path} is in use by another writer (pid {holder}); one atpd per data directory"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return descriptor


def _open_environment(path: str, map_size: int, sync: bool, readonly: bool) -> lmdb.Environment:
    """Open (creating unless read-only) the environment at `path`, or raise StoreError."""
    if readonly:
        if not os.path.isdir(path):
            raise StoreError(f"{path}: no such data directory")
        if not os.path.isfile(os.path.join(path, "data.mdb")):
            raise StoreError(f"{path}: not an LMDB data directory (no data.mdb)")
    else:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise StoreError(f"{path}: cannot create data directory: {error.strerror}") from error
    from atp.store.integrity import check_data_file  # a damaged file would crash LMDB (SIGBUS)

    check_data_file(path)
    try:
        return lmdb.open(
            path,
            # Read-only: 0 adopts the map size recorded in the file, whatever the writer set.
            map_size=0 if readonly else map_size,
            subdir=True,
            readonly=readonly,
            max_dbs=_DATABASES_MAX,
            sync=sync,
            metasync=sync,
            lock=True,
            readahead=False,
        )
    except lmdb.Error as error:
        raise StoreError(f"{path}: cannot open LMDB environment: {error}") from error


def _open_databases(
    environment: lmdb.Environment, path: str, readonly: bool
) -> dict[str, lmdb._Database]:
    """A handle for every named database, created if missing unless read-only."""
    handles = {}
    for name in (*DATABASES, JOURNAL_DATABASE, _STATE_DATABASE):
        try:
            handles[name] = environment.open_db(name.encode(), create=not readonly)
        except lmdb.NotFoundError as error:
            if name in _ADDED_LATER:
                continue  # an older data directory, opened read-only: nothing stored there yet
            raise StoreError(f"{path}: not an atp data directory (no {name!r} database)") from error
        except lmdb.Error as error:
            raise StoreError(f"{path}: cannot open database {name!r}: {error}") from error
    return handles
