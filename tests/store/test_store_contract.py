"""One contract for every Store, run against MemoryStore and LmdbStore; then LMDB-only behaviour."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from atp.store import (
    DATABASES,
    KEY_BYTES_MAX,
    LmdbStore,
    MemoryStore,
    Store,
    StoreError,
    StoreFullError,
    WriteBatch,
)

# A small map keeps LmdbStore fixtures cheap; tests that need room open their own store.
TEST_MAP_SIZE = 16 << 20


@pytest.fixture(params=["memory", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = (
        MemoryStore()
        if request.param == "memory"
        else LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE)
    )
    yield opened
    opened.close()


def batch_of(
    records: Mapping[tuple[str, bytes], bytes | None] | None = None,
    journal: list[tuple[int, bytes]] | None = None,
) -> WriteBatch:
    return WriteBatch(records=dict(records or {}), journal=list(journal or []))


def journal_batch(sequences: range | list[int]) -> WriteBatch:
    return batch_of(journal=[(sequence, b"event-%d" % sequence) for sequence in sequences])


def whole_journal(store: Store) -> list[tuple[int, bytes]]:
    return store.read_journal(0, 1_000_000)


def snapshot(store: Store) -> tuple[object, ...]:
    """Everything observable about a store, to show that a failed commit changed none of it."""
    return (store.load(), whole_journal(store), store.last_sequence(), store.oldest_sequence())


class TestStoreContract:
    def test_new_store_is_empty_with_every_database_present(self, store: Store) -> None:
        assert store.load() == {name: {} for name in DATABASES}
        assert store.last_sequence() == 0
        assert store.oldest_sequence() == 0
        assert whole_journal(store) == []

    def test_put_then_load_round_trips_every_database(self, store: Store) -> None:
        batch = WriteBatch()
        for name in DATABASES:
            batch.put(name, b"key-" + name.encode(), b"value-" + name.encode())
            batch.put(name, b"\x00\xff binary", b"")
        store.commit(batch)

        loaded = store.load()

        assert set(loaded) == set(DATABASES)
        for name in DATABASES:
            assert loaded[name] == {
                b"key-" + name.encode(): b"value-" + name.encode(),
                b"\x00\xff binary": b"",
            }

    def test_same_key_in_two_databases_is_two_records(self, store: Store) -> None:
        store.commit(batch_of({("nodes", b"k"): b"node", ("holds", b"k"): b"hold"}))

        loaded = store.load()

        assert loaded["nodes"] == {b"k": b"node"}
        assert loaded["holds"] == {b"k": b"hold"}

    def test_none_deletes_the_key(self, store: Store) -> None:
        store.commit(batch_of({("positions", b"a"): b"1", ("positions", b"b"): b"2"}))

        store.commit(batch_of({("positions", b"a"): None}))

        assert store.load()["positions"] == {b"b": b"2"}

    def test_deleting_a_missing_key_is_fine(self, store: Store) -> None:
        store.commit(batch_of({("supply", b"never-written"): None}))

        assert store.load()["supply"] == {}

    def test_overwrite_keeps_the_latest_value(self, store: Store) -> None:
        store.commit(batch_of({("reservations", b"r1"): b"held"}))
        store.commit(batch_of({("reservations", b"r1"): b"committed"}))

        assert store.load()["reservations"] == {b"r1": b"committed"}

    def test_later_put_in_the_same_batch_wins(self, store: Store) -> None:
        batch = WriteBatch()
        batch.put("requests", b"q", b"first")
        batch.put("requests", b"q", b"second")
        store.commit(batch)

        assert store.load()["requests"] == {b"q": b"second"}

    def test_load_returns_a_copy(self, store: Store) -> None:
        store.commit(batch_of({("meta", b"k"): b"v"}))

        store.load()["meta"][b"k"] = b"changed by caller"

        assert store.load()["meta"] == {b"k": b"v"}

    def test_key_of_the_maximum_size_is_accepted(self, store: Store) -> None:
        longest_key = b"k" * KEY_BYTES_MAX
        store.commit(batch_of({("nodes", longest_key): b"v"}))

        assert store.load()["nodes"] == {longest_key: b"v"}

    def test_empty_batch_writes_nothing(self, store: Store) -> None:
        store.commit(WriteBatch())

        assert store.load() == {name: {} for name in DATABASES}
        assert store.last_sequence() == 0

    def test_records_and_journal_commit_together(self, store: Store) -> None:
        store.commit(batch_of({("holds", b"h1"): b"hold"}, [(1, b"hold placed")]))

        assert store.load()["holds"] == {b"h1": b"hold"}
        assert whole_journal(store) == [(1, b"hold placed")]

    def test_journal_reads_back_in_order_after_a_sequence(self, store: Store) -> None:
        store.commit(journal_batch(range(1, 6)))
        store.commit(journal_batch(range(6, 11)))

        assert whole_journal(store) == [(s, b"event-%d" % s) for s in range(1, 11)]
        assert [s for s, _ in store.read_journal(7, 100)] == [8, 9, 10]
        assert store.read_journal(10, 100) == []

    def test_journal_pages_with_limit(self, store: Store) -> None:
        store.commit(journal_batch(range(1, 11)))
        pages: list[list[int]] = []
        after = 0

        while page := store.read_journal(after, 3):
            pages.append([sequence for sequence, _ in page])
            after = page[-1][0]

        assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]

    def test_journal_may_have_gaps(self, store: Store) -> None:
        store.commit(journal_batch([5, 10, 20]))

        assert [s for s, _ in store.read_journal(7, 10)] == [10, 20]
        assert [s for s, _ in store.read_journal(0, 1)] == [5]

    def test_zero_limit_reads_nothing_and_negative_limit_is_a_bug(self, store: Store) -> None:
        store.commit(journal_batch([1]))

        assert store.read_journal(0, 0) == []
        with pytest.raises(ValueError):
            store.read_journal(0, -1)

    def test_negative_after_sequence_reads_from_the_start(self, store: Store) -> None:
        store.commit(journal_batch([1, 2]))

        assert [s for s, _ in store.read_journal(-5, 10)] == [1, 2]

    def test_last_and_oldest_sequence_track_the_journal(self, store: Store) -> None:
        store.commit(journal_batch([3, 4]))
        store.commit(journal_batch([9]))

        assert store.oldest_sequence() == 3
        assert store.last_sequence() == 9

    def test_trim_deletes_through_keep_after_and_counts(self, store: Store) -> None:
        store.commit(journal_batch(range(1, 11)))

        assert store.trim_journal(4) == 4

        assert store.oldest_sequence() == 5
        assert store.last_sequence() == 10
        assert [s for s, _ in whole_journal(store)] == list(range(5, 11))
        assert store.read_journal(2, 2) == [(5, b"event-5"), (6, b"event-6")]

    def test_trim_below_the_oldest_deletes_nothing(self, store: Store) -> None:
        store.commit(journal_batch([5, 6]))

        assert store.trim_journal(4) == 0
        assert store.trim_journal(0) == 0
        assert [s for s, _ in whole_journal(store)] == [5, 6]

    def test_trim_leaves_records_alone(self, store: Store) -> None:
        store.commit(batch_of({("meta", b"k"): b"v"}, [(1, b"e")]))

        store.trim_journal(1)

        assert store.load()["meta"] == {b"k": b"v"}

    def test_trimming_the_whole_journal_never_lets_sequences_be_reused(self, store: Store) -> None:
        store.commit(journal_batch(range(1, 4)))

        assert store.trim_journal(100) == 3

        assert store.oldest_sequence() == 0
        assert store.last_sequence() == 3
        with pytest.raises(StoreError):
            store.commit(journal_batch([2]))
        store.commit(journal_batch([4]))
        assert whole_journal(store) == [(4, b"event-4")]
        assert store.oldest_sequence() == 4

    @pytest.mark.parametrize(
        "make_bad_batch",
        [
            pytest.param(
                lambda: batch_of(
                    {("nodes", b"ok"): b"v", ("nodes", b"k" * (KEY_BYTES_MAX + 1)): b"v"}
                ),
                id="oversized-key",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v", ("nodes", b"k" * 600): None}),
                id="oversized-key-delete",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v", ("nodes", b""): b"v"}), id="empty-key"
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v", ("no-such-database", b"k"): b"v"}),
                id="unknown-database",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v", ("journal", b"k"): b"v"}),
                id="journal-is-not-a-record-database",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v"}, [(11, b"e"), (13, b"e"), (12, b"e")]),
                id="journal-not-increasing",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v"}, [(11, b"e"), (11, b"e")]),
                id="journal-duplicate",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v"}, [(10, b"e")]),
                id="journal-not-after-last-sequence",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): b"v"}, [(11, b"e"), (2**64, b"e")]),
                id="journal-sequence-too-large",
            ),
            pytest.param(
                lambda: batch_of({("nodes", b"ok"): "text"}),  # type: ignore[dict-item]
                id="value-not-bytes",
            ),
        ],
    )
    def test_a_failing_batch_writes_nothing(
        self, store: Store, make_bad_batch: Callable[[], WriteBatch]
    ) -> None:
        store.commit(
            batch_of({("nodes", b"before"): b"v", ("positions", b"p"): b"1"}, [(10, b"e")])
        )
        before = snapshot(store)

        with pytest.raises(StoreError):
            store.commit(make_bad_batch())

        assert snapshot(store) == before
        store.commit(batch_of({("nodes", b"after"): b"v"}, [(11, b"e")]))
        assert store.load()["nodes"] == {b"before": b"v", b"after": b"v"}

    def test_close_is_idempotent_and_later_calls_raise_store_error(self, store: Store) -> None:
        store.close()
        store.close()

        with pytest.raises(StoreError):
            store.load()
        with pytest.raises(StoreError):
            store.commit(batch_of({("meta", b"k"): b"v"}))
        with pytest.raises(StoreError):
            store.read_journal(0, 10)

    def test_point_reads_read_what_was_committed_before_them(self, store: Store) -> None:
        store.commit(batch_of({("closed", b"r1"): b"one"}))
        with store.point_reads():
            assert store.get("closed", b"r1") == b"one"
            assert store.get("closed", b"r2") is None
            with store.point_reads():  # nested: the outer one serves
                assert store.get("closed", b"r1") == b"one"
            # Another thread reads on its own, and sees every commit.
            store.commit(batch_of({("closed", b"r2"): b"two"}))
            seen: list[bytes | None] = []
            other = threading.Thread(target=lambda: seen.append(store.get("closed", b"r2")))
            other.start()
            other.join()
            assert seen == [b"two"]
        assert store.get("closed", b"r2") == b"two"  # after them, each read is current

    def test_point_reads_of_a_closed_store_fail_as_reads_do(self, store: Store) -> None:
        store.close()
        with store.point_reads(), pytest.raises(StoreError):
            store.get("closed", b"r1")

    def test_reading_the_journal_while_another_thread_commits(self, store: Store) -> None:
        batches = 200
        problems: list[str] = []
        finished = threading.Event()

        def read_until_finished() -> None:
            while not finished.is_set():
                sequences = [s for s, _ in whole_journal(store)]
                # Each commit is atomic, so a reader sees a prefix 1..n, never a torn batch.
                if sequences != list(range(1, len(sequences) + 1)) or len(sequences) % 3:
                    problems.append(f"torn journal read: {sequences[-5:]}")
                    return

        reader = threading.Thread(target=read_until_finished)
        reader.start()
        try:
            for number in range(batches):
                first = number * 3 + 1
                store.commit(
                    batch_of(
                        {("positions", b"p"): b"%d" % number},
                        [
                            (first, b"a"),
                            (first + 1, b"b"),
                            (first + 2, b"c"),
                        ],
                    )
                )
        finally:
            finished.set()
            reader.join()

        assert problems == []
        assert store.last_sequence() == batches * 3


class TestWriteBatch:
    def test_length_counts_records_and_journal_entries(self) -> None:
        batch = WriteBatch()
        assert batch.is_empty()
        assert len(batch) == 0

        batch.put("nodes", b"a", b"1")
        batch.put("nodes", b"a", None)
        batch.append(1, b"e")

        assert len(batch) == 2
        assert not batch.is_empty()


class TestLmdbStore:
    def test_reopening_keeps_records_and_journal(self, tmp_path: Path) -> None:
        path = tmp_path / "data"
        with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
            store.commit(
                batch_of({("nodes", b"n1"): b"node", ("meta", b"m"): b"1"}, [(1, b"a"), (2, b"b")])
            )
            store.commit(batch_of({("meta", b"m"): None}, [(3, b"c")]))
            store.trim_journal(1)
            before = snapshot(store)

        with LmdbStore(path, map_size=TEST_MAP_SIZE) as reopened:
            assert snapshot(reopened) == before
            assert reopened.load()["nodes"] == {b"n1": b"node"}
            assert reopened.oldest_sequence() == 2

    def test_trimmed_sequences_stay_used_after_reopening(self, tmp_path: Path) -> None:
        path = tmp_path / "data"
        with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
            store.commit(journal_batch([1, 2]))
            store.trim_journal(2)

        with LmdbStore(path, map_size=TEST_MAP_SIZE) as reopened:
            assert reopened.last_sequence() == 2
            assert reopened.oldest_sequence() == 0

    def test_unsynced_store_persists_on_clean_close(self, tmp_path: Path) -> None:
        path = tmp_path / "data"
        with LmdbStore(path, map_size=TEST_MAP_SIZE, sync=False) as store:
            store.commit(batch_of({("supply", b"s1"): b"po"}, [(1, b"received")]))

        with LmdbStore(path, map_size=TEST_MAP_SIZE) as reopened:
            assert reopened.load()["supply"] == {b"s1": b"po"}
            assert whole_journal(reopened) == [(1, b"received")]

    def test_creates_missing_parent_directories(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "data"

        with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
            store.commit(batch_of({("meta", b"k"): b"v"}))

        assert (path / "data.mdb").is_file()

    def test_full_map_writes_nothing_and_the_store_stays_usable(self, tmp_path: Path) -> None:
        with LmdbStore(tmp_path / "data", map_size=64 << 10) as store:
            store.commit(batch_of({("meta", b"small"): b"v"}, [(1, b"e")]))
            before = snapshot(store)
            # Small records first, so LMDB has really written pages before the map runs out.
            too_big = batch_of(
                {("nodes", b"n%d" % i): b"x" * 100 for i in range(20)}
                | {("positions", b"huge"): b"x" * (256 << 10)},
                [(2, b"e")],
            )

            with pytest.raises(StoreFullError):
                store.commit(too_big)

            assert snapshot(store) == before
            store.commit(batch_of({("nodes", b"n1"): b"fits"}, [(2, b"e")]))
            assert store.load()["nodes"] == {b"n1": b"fits"}
            assert store.last_sequence() == 2

    def test_full_map_error_is_a_store_error(self) -> None:
        assert issubclass(StoreFullError, StoreError)

    def test_read_only_store_reads_but_refuses_writes(self, tmp_path: Path) -> None:
        path = tmp_path / "data"
        with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
            store.commit(batch_of({("holds", b"h"): b"v"}, [(1, b"e")]))

        with LmdbStore(path, readonly=True) as readonly:
            assert readonly.load()["holds"] == {b"h": b"v"}
            with pytest.raises(StoreError, match="read-only"):
                readonly.commit(batch_of({("holds", b"h"): None}))
            with pytest.raises(StoreError, match="read-only"):
                readonly.trim_journal(1)
            assert readonly.last_sequence() == 1

    def test_read_only_open_of_a_missing_directory_is_a_store_error(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="no such data directory"):
            LmdbStore(tmp_path / "missing", readonly=True)

    def test_opening_an_environment_twice_in_one_process_is_a_store_error(
        self, tmp_path: Path
    ) -> None:
        # py-lmdb refuses this: LMDB's fcntl locks belong to the process, so a second handle
        # would silently share and then release the first one's locks.
        with (
            LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE),
            pytest.raises(StoreError, match="already open"),
        ):
            LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE)

    def test_environment_info_counts_entries_per_database(self, tmp_path: Path) -> None:
        with LmdbStore(tmp_path / "data", map_size=TEST_MAP_SIZE) as store:
            store.commit(
                batch_of({("nodes", b"a"): b"1", ("nodes", b"b"): b"2"}, [(4, b"e"), (7, b"e")])
            )

            info = store.environment_info()

        assert info["map_size_bytes"] == TEST_MAP_SIZE
        assert 0 < info["used_bytes"] <= TEST_MAP_SIZE
        assert info["entries"] == {name: 0 for name in DATABASES} | {"nodes": 2, "journal": 2}
        assert info["journal_oldest_sequence"] == 4
        assert info["journal_last_sequence"] == 7
