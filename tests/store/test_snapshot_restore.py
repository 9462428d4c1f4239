"""The snapshot and restore contract of every Store (MemoryStore and LmdbStore): a snapshot is
one consistent moment in chunks, a restore reproduces its source exactly, and a restore in
progress is marked until it is finished; then LMDB-only behaviour (the marker survives a
crash; growing the map or closing ends a snapshot instead of waiting for it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atp.store import DATABASES, LmdbStore, MemoryStore, Store, StoreError, WriteBatch
from atp.store.base import (
    JOURNAL_DATABASE,
    JOURNAL_TRIMMED_THROUGH,
    META,
    RESTORING_KEY,
    SnapshotRecord,
    encode_sequence,
)

TEST_MAP_SIZE = 16 << 20


def open_store(kind: str, path: Path) -> Store:
    return MemoryStore() if kind == "memory" else LmdbStore(path, map_size=TEST_MAP_SIZE)


@pytest.fixture(params=["memory", "lmdb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(kind, tmp_path / "source")
    yield opened
    opened.close()


@pytest.fixture
def target(kind: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(kind, tmp_path / "target")
    yield opened
    opened.close()


def fill(store: Store, records_per_database: int = 5, events: int = 20) -> None:
    """Records in every database and a journal, its first events trimmed."""
    batch = WriteBatch()
    for name in DATABASES:
        for number in range(records_per_database):
            batch.put(name, b"%s-%03d" % (name.encode(), number), b"value %d" % number)
    for sequence in range(1, events + 1):
        batch.append(sequence, b"event %d" % sequence)
    store.commit(batch)
    store.trim_journal(3)


def everything(store: Store) -> tuple[object, ...]:
    """All a store holds that a restore must reproduce."""
    return (store.load(), store.read_journal(0, 1_000_000), store.last_sequence(),
            store.oldest_sequence())


def restore_into(target: Store, chunks: Iterator[list[SnapshotRecord]]) -> None:
    target.begin_restore()
    for chunk in chunks:
        target.restore(chunk)
    target.finish_restore()


class TestSnapshot:
    def test_an_empty_store_gives_one_empty_first_chunk(self, store: Store) -> None:
        assert list(store.snapshot_chunks(10)) == [[]]

    def test_the_first_chunk_is_the_whole_meta_then_bounded_chunks(self, store: Store) -> None:
        fill(store, records_per_database=7)

        chunks = list(store.snapshot_chunks(4))

        assert [database for database, _, _ in chunks[0]] == [META] * 7  # more than 4
        assert all(0 < len(chunk) <= 4 for chunk in chunks[1:])
        rest = [record for chunk in chunks[1:] for record in chunk]
        assert {database for database, _, _ in rest} == (
            set(DATABASES) - {META} | {JOURNAL_DATABASE, JOURNAL_TRIMMED_THROUGH})
        journal = [(key, value) for database, key, value in rest if database == JOURNAL_DATABASE]
        assert journal == [(encode_sequence(s), b"event %d" % s) for s in range(4, 21)]

    def test_chunks_are_bounded_in_bytes_too(self, store: Store) -> None:
        batch = WriteBatch()
        for number in range(10):
            batch.put("nodes", b"n%d" % number, b"x" * 1000)
        store.commit(batch)

        chunks = list(store.snapshot_chunks(1000, bytes_max=2500))

        assert [len(chunk) for chunk in chunks[1:]] == [3, 3, 3, 1]

    def test_a_commit_during_the_snapshot_is_not_seen(self, store: Store, target: Store) -> None:
        fill(store)
        before = everything(store)
        chunks = store.snapshot_chunks(3)
        first = next(chunks)
        # Commits go on while the snapshot is streamed: changes, deletions, events, a trim.
        for number in range(20):
            batch = WriteBatch()
            batch.put("nodes", b"nodes-000", b"changed %d" % number)
            batch.put("positions", b"positions-001", None)
            batch.put("meta", b"commit", b"%d" % number)
            batch.append(100 + number, b"later")
            store.commit(batch)
        store.trim_journal(10)

        restore_into(target, iter([first, *chunks]))

        assert everything(target) == before
        assert everything(store) != before

    def test_a_restore_reproduces_every_database_and_the_journal(
        self, store: Store, target: Store
    ) -> None:
        fill(store, records_per_database=30, events=200)
        target.commit(WriteBatch(records={("nodes", b"stale"): b"gone after the restore"},
                                 journal=[(500, b"stale event")]))

        restore_into(target, store.snapshot_chunks(7))

        assert everything(target) == everything(store)
        assert target.last_sequence() == 200 and target.oldest_sequence() == 4
        assert not target.restore_incomplete()
        # The restored journal goes on where its source's did.
        with pytest.raises(StoreError):
            target.commit(WriteBatch(journal=[(200, b"reused")]))
        target.commit(WriteBatch(journal=[(201, b"next")]))

    def test_a_journal_trimmed_empty_keeps_its_last_sequence(
        self, store: Store, target: Store
    ) -> None:
        store.commit(WriteBatch(journal=[(1, b"a"), (2, b"b")]))
        store.trim_journal(2)

        restore_into(target, store.snapshot_chunks(10))

        assert target.last_sequence() == 2 and target.read_journal(0, 10) == []


class TestRestoreMarker:
    def test_begin_empties_everything_and_marks_until_finished(self, store: Store) -> None:
        fill(store)
        assert not store.restore_incomplete()

        store.begin_restore()

        assert store.restore_incomplete()
        loaded = store.load()
        assert loaded[META] == {RESTORING_KEY: b"1"}
        assert all(loaded[name] == {} for name in DATABASES if name != META)
        assert store.read_journal(0, 100) == [] and store.last_sequence() == 0
        store.restore([("nodes", b"n1", b"v")])
        assert store.restore_incomplete()
        store.finish_restore()
        assert not store.restore_incomplete()
        assert store.load()[META] == {}
        assert store.load()["nodes"] == {b"n1": b"v"}

    def test_a_restore_outside_begin_and_finish_is_refused(self, store: Store) -> None:
        with pytest.raises(StoreError):
            store.restore([("nodes", b"n1", b"v")])
        assert store.load()["nodes"] == {}

    @pytest.mark.parametrize("record", [
        ("no-such-database", b"k", b"v"),
        (JOURNAL_DATABASE, b"short", b"v"),
        ("nodes", b"", b"v"),
        ("nodes", b"k", "text"),
    ], ids=["unknown-database", "bad-journal-key", "empty-key", "value-not-bytes"])
    def test_a_bad_record_restores_nothing(self, store: Store, record: SnapshotRecord) -> None:
        store.begin_restore()

        with pytest.raises(StoreError):
            store.restore([("nodes", b"good", b"v"), record])

        assert store.load()["nodes"] == {}


class TestLmdbSnapshot:
    def test_an_interrupted_restore_is_still_marked_after_reopening(self, tmp_path: Path) -> None:
        with LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE) as store:
            store.begin_restore()
            store.restore([("nodes", b"n1", b"v")])
        with LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE) as store:
            assert store.restore_incomplete()

    def test_growing_the_map_ends_a_snapshot_instead_of_waiting_for_it(
        self, tmp_path: Path
    ) -> None:
        with LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE) as store:
            fill(store)
            chunks = store.snapshot_chunks(2)
            next(chunks)
            next(chunks)
            grown = threading.Thread(target=store.grow_map, args=(2 * TEST_MAP_SIZE,))
            grown.start()
            grown.join(5)
            assert not grown.is_alive()  # the idle snapshot did not hold it up
            with pytest.raises(StoreError, match="map grew"):
                next(chunks)
            store.commit(WriteBatch(records={("nodes", b"after"): b"v"}))
            again = [record for chunk in store.snapshot_chunks(1000) for record in chunk]
            assert ("nodes", b"after", b"v") in again  # a new snapshot sees the new moment

    def test_closing_ends_a_snapshot_in_progress(self, tmp_path: Path) -> None:
        store = LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE)
        fill(store)
        chunks = store.snapshot_chunks(2)
        next(chunks)

        store.close()

        with pytest.raises(StoreError):
            next(chunks)

    def test_a_snapshot_may_be_pulled_from_another_thread(self, tmp_path: Path) -> None:
        with LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE) as store:
            fill(store)
            pulled: list[list[SnapshotRecord]] = []
            worker = threading.Thread(target=lambda: pulled.extend(store.snapshot_chunks(4)))
            worker.start()
            worker.join(10)
            with MemoryStore() as copy:
                restore_into(copy, iter(pulled))
                assert everything(copy) == everything(store)
