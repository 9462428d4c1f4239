"""The offline tools behind `atpctl db stat|backup`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atp.store import DATABASES, LmdbStore, StoreError, WriteBatch
from atp.store.offline import backup, stat

TEST_MAP_SIZE = 16 << 20


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A closed data directory with records in two databases and a trimmed journal 3..5."""
    path = tmp_path / "data"
    with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
        batch = WriteBatch()
        for number in range(50):
            batch.put("positions", b"sku-%d@dc-1" % number, b"%d" % number)
        batch.put("nodes", b"dc-1", b"node")
        for sequence in range(1, 6):
            batch.append(sequence, b"event-%d" % sequence)
        store.commit(batch)
        # Deleted records leave free pages behind, which a compacting copy drops.
        store.commit(
            WriteBatch(records={("positions", b"sku-%d@dc-1" % n): None for n in range(40)})
        )
        store.trim_journal(2)
    return path


def contents(path: Path) -> tuple[object, ...]:
    with LmdbStore(path, readonly=True) as store:
        return store.load(), store.read_journal(0, 1000), store.last_sequence()


def test_stat_reports_entries_and_journal_range(data_dir: Path) -> None:
    info = stat(data_dir)

    assert info["path"] == str(data_dir)
    assert info["map_size_bytes"] == TEST_MAP_SIZE
    assert 0 < info["used_bytes"] <= TEST_MAP_SIZE
    assert info["used_bytes"] % info["page_size_bytes"] == 0
    assert info["entries"] == {name: 0 for name in DATABASES} | {
        "positions": 10,
        "nodes": 1,
        "journal": 3,
    }
    assert info["journal_oldest_sequence"] == 3
    assert info["journal_last_sequence"] == 5


def test_stat_leaves_the_directory_writable(data_dir: Path) -> None:
    stat(data_dir)

    with LmdbStore(data_dir, map_size=TEST_MAP_SIZE) as store:
        store.commit(WriteBatch(journal=[(6, b"e")]))
        assert store.last_sequence() == 6


def test_backup_loads_identically(data_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "backups" / "today"

    report = backup(data_dir, destination)

    assert contents(destination) == contents(data_dir)
    assert report["backup"]["entries"] == report["source"]["entries"]
    assert report["backup_file_bytes"] == (destination / "data.mdb").stat().st_size
    assert report["backup"]["used_bytes"] <= report["source"]["used_bytes"]


def test_backup_copy_opens_as_a_writable_store(data_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "copy"
    backup(data_dir, destination)

    with LmdbStore(destination, map_size=TEST_MAP_SIZE) as restored:
        restored.commit(WriteBatch(journal=[(6, b"after restore")]))
        assert [s for s, _ in restored.read_journal(0, 10)] == [3, 4, 5, 6]


def test_backup_into_an_existing_empty_directory(data_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "empty"
    destination.mkdir()

    backup(data_dir, destination)

    assert contents(destination) == contents(data_dir)


def test_backup_refuses_a_non_empty_destination(data_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "occupied"
    destination.mkdir()
    (destination / "keep.txt").write_text("precious")

    with pytest.raises(StoreError, match="not empty"):
        backup(data_dir, destination)

    assert [p.name for p in destination.iterdir()] == ["keep.txt"]


def test_backup_refuses_a_file_as_destination(data_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "file"
    destination.write_text("")

    with pytest.raises(StoreError, match="not a directory"):
        backup(data_dir, destination)


def test_failed_backup_removes_the_directory_it_created(tmp_path: Path) -> None:
    destination = tmp_path / "copy"

    with pytest.raises(StoreError):
        backup(tmp_path / "missing", destination)

    assert not destination.exists()


@pytest.mark.parametrize("tool", [stat, lambda path: backup(path, path.parent / "copy")])
def test_missing_data_directory_is_a_one_line_store_error(tool: object, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such data directory") as raised:
        tool(tmp_path / "missing")  # type: ignore[operator]

    assert "\n" not in str(raised.value)


def test_directory_without_lmdb_files_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not an LMDB data directory"):
        stat(tmp_path)


def test_corrupt_data_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "data.mdb").write_bytes(b"this is not an LMDB file" * 1000)

    with pytest.raises(StoreError, match="not an LMDB data file") as raised:
        stat(tmp_path)

    assert "\n" not in str(raised.value)


def test_lmdb_environment_of_another_application_is_a_store_error(tmp_path: Path) -> None:
    import lmdb

    with lmdb.open(str(tmp_path), max_dbs=2) as environment:
        environment.open_db(b"something-else")

    with pytest.raises(StoreError, match="not an atp data directory"):
        stat(tmp_path)


# A writer in another process, as atpd would be, holding the environment open.
_RUNNING_WRITER = """
import sys
from atp.store import LmdbStore, WriteBatch
store = LmdbStore(sys.argv[1], map_size=16 << 20)
next_sequence = store.last_sequence() + 1
store.commit(WriteBatch(records={("nodes", b"live"): b"1"}, journal=[(next_sequence, b"e")]))
print("ready", flush=True)
sys.stdin.readline()
store.commit(WriteBatch(records={("nodes", b"after-backup"): b"1"}))
store.close()
"""


@pytest.fixture
def running_writer(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    writer = subprocess.Popen(
        [sys.executable, "-c", _RUNNING_WRITER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    yield writer
    writer.communicate("\n", timeout=30)


def test_stat_and_backup_beside_a_running_writer(
    data_dir: Path, tmp_path: Path, running_writer: subprocess.Popen[str]
) -> None:
    info = stat(data_dir)
    backup(data_dir, tmp_path / "hot")

    assert info["entries"]["nodes"] == 2
    assert info["journal_last_sequence"] == 6
    with LmdbStore(tmp_path / "hot", readonly=True) as copy:
        assert copy.load()["nodes"] == {b"dc-1": b"node", b"live": b"1"}
