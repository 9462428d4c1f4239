"""`atpctl db compact`: a compacted copy of a data directory (--to), or the directory itself
replaced by one (--in-place), with the sizes before and after."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atp.client import Client
from atp.store import LmdbStore, StoreError, WriteBatch
from atp.store.offline import compact, compact_in_place
from tests.support.atpd import AtpdProcess

TEST_MAP_SIZE = 64 << 20
RECORDS_PER_BATCH = 500
BATCHES = 12
VALUE = b"v" * 900  # a few records per page: the records alone fill thousands of pages


def _build_store_dir(path: Path) -> None:
    """Records in three databases and a trimmed journal; most records, committed over several
    batches, then deleted again, as retention purges do: the file keeps its high-water mark."""
    with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
        sequence = 0
        for number in range(BATCHES):
            batch = WriteBatch()
            for index in range(RECORDS_PER_BATCH):
                batch.put("requests", b"req-%02d-%04d" % (number, index), VALUE)
                batch.put("closed", b"res-%02d-%04d" % (number, index), VALUE)
            for _ in range(50):
                sequence += 1
                batch.append(sequence, b"event-%d" % sequence + VALUE)
            store.commit(batch)
        store.commit(WriteBatch(records={("nodes", b"dc-1"): b"node", ("meta", b"v"): b"1"}))
        store.commit(
            WriteBatch(
                records={
                    (database, b"%s-%02d-%04d" % (prefix, number, index)): None
                    for database, prefix in (("requests", b"req"), ("closed", b"res"))
                    for number in range(BATCHES)
                    for index in range(RECORDS_PER_BATCH)
                    if index % 20  # keep one record in twenty
                }
            )
        )
        store.trim_journal(sequence - 30)


def _run_a_short_atpd(path: Path) -> None:
    """A real ledger: nodes, stock, reservations and a released hold written by atpd."""
    with AtpdProcess(path, "--sync", "off") as server, Client(server.target) as client:
        for node_id, transit_days in (("DC1", 2), ("DC2", 4)):
            client.upsert_node(node_id=node_id, region="EU", handling_days=1,
                               lanes=[{"region": "EU", "transit_days": transit_days}])  # fmt: skip
            client.adjust_stock(
                [{"sku": "SKU-1", "node_id": node_id, "type": "RECEIPT", "quantity": 100}]
            )
        for number in range(20):
            client.reserve(f"order-{number}", [{"line_id": "l1", "sku": "SKU-1", "quantity": 2}],
                           destination_region="EU", commit=True)  # fmt: skip
        client.place_hold(hold_id="QA-1", sku="SKU-1", node_id="DC1", quantity=3)
        client.release_hold("QA-1")
    # Then churn, as retention purges leave it: pages filled and freed again.
    with LmdbStore(path, map_size=8 << 30) as store:
        keys = [("requests", b"churn-%05d" % number) for number in range(6_000)]
        for start in range(0, len(keys), 1_000):
            store.commit(WriteBatch(records=dict.fromkeys(keys[start : start + 1_000], VALUE)))
        store.commit(WriteBatch(records=dict.fromkeys(keys)))


@pytest.fixture(scope="module")
def pristine_store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "data"
    _build_store_dir(path)
    return path


@pytest.fixture(scope="module")
def pristine_ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine-ledger") / "data"
    _run_a_short_atpd(path)
    return path


@pytest.fixture
def store_dir(pristine_store_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy per test (file for file, free pages included): some tests replace it."""
    return _copied(pristine_store_dir, tmp_path / "data")


@pytest.fixture
def ledger_dir(pristine_ledger_dir: Path, tmp_path: Path) -> Path:
    return _copied(pristine_ledger_dir, tmp_path / "data")


def _copied(source: Path, destination: Path) -> Path:
    destination.mkdir()
    shutil.copy2(source / "data.mdb", destination / "data.mdb")
    return destination


def contents(path: Path) -> tuple[object, ...]:
    """Everything a store holds: records, journal, sequences."""
    with LmdbStore(path, readonly=True) as store:
        return (
            store.load(),
            store.read_journal(0, 1_000_000),
            store.last_sequence(),
            store.oldest_sequence(),
        )


def file_bytes(path: Path) -> int:
    return (path / "data.mdb").stat().st_size


def atpctl(*arguments: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "atp.cli", *arguments], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == expect, (
        f"atpctl {' '.join(arguments)} exited {result.returncode}, expected {expect}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


@pytest.fixture
def writer_lock_held(store_dir: Path) -> Iterator[None]:
    """The data directory's writer lock taken as a running atpd holds it."""
    descriptor = os.open(store_dir / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(descriptor, b"4242\n")
        yield
    finally:
        os.close(descriptor)


def leftovers(parent: Path) -> list[str]:
    """Anything a compaction left beside the data directory besides what it was asked for."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".data.compacting"))


# ---------------------------------------------------------------------------------------------
# To a new directory


def test_compact_writes_a_smaller_copy_holding_the_same_data(
    store_dir: Path, tmp_path: Path
) -> None:
    before = contents(store_dir)
    size_before = file_bytes(store_dir)
    destination = tmp_path / "compacted"

    report = compact(store_dir, destination)

    assert contents(destination) == before
    assert contents(store_dir) == before and file_bytes(store_dir) == size_before
    assert file_bytes(destination) < size_before // 4
    assert report["before"]["file_bytes"] == size_before
    assert report["after"]["file_bytes"] == file_bytes(destination)
    assert report["after"]["allocated_bytes"] == (destination / "data.mdb").stat().st_blocks * 512
    assert report["saved"]["file_bytes"] == size_before - file_bytes(destination)
    assert report["saved"]["allocated_bytes"] == (
        report["before"]["allocated_bytes"] - report["after"]["allocated_bytes"]
    )
    assert 75 < report["saved"]["percent"] < 100
    assert report["after"]["used_bytes"] < report["before"]["used_bytes"]
    assert report["entries"]["requests"] == BATCHES * RECORDS_PER_BATCH // 20
    assert (report["atpd_running"], report["swap_safe"]) == (False, True)
    assert report["next_steps"][1:] == [
        f"mv {store_dir} {store_dir}.before-compact",
        f"mv {destination} {store_dir}",
        "start atpd",
    ]


def test_compacted_copy_opens_as_a_writable_store(store_dir: Path, tmp_path: Path) -> None:
    compact(store_dir, tmp_path / "compacted")

    with LmdbStore(tmp_path / "compacted", map_size=TEST_MAP_SIZE) as store:
        next_sequence = store.last_sequence() + 1
        store.commit(
            WriteBatch(records={("nodes", b"dc-2"): b"n"}, journal=[(next_sequence, b"e")])
        )
        assert store.get("nodes", b"dc-2") == b"n"


@pytest.mark.integration
def test_cli_compacts_an_atpd_ledger_that_then_verifies(ledger_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "compacted"

    result = atpctl("db", "compact", "--data-dir", str(ledger_dir), "--to", str(destination))

    assert contents(destination) == contents(ledger_dir)
    assert file_bytes(destination) < file_bytes(ledger_dir) // 2
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"compacted copy of {ledger_dir} written to {destination}"
    assert "to put it in service:" in lines
    assert lines[-3:] == [
        f"  2. mv {ledger_dir} {ledger_dir}.before-compact",
        f"  3. mv {destination} {ledger_dir}",
        "  4. start atpd",
    ]
    sizes = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("data.mdb")}
    assert sizes["file"][-3:] == [
        str(file_bytes(ledger_dir)),
        str(file_bytes(destination)),
        str(file_bytes(ledger_dir) - file_bytes(destination)),
    ]
    verified = atpctl("db", "verify", "--data-dir", str(destination))
    assert "no problems" in verified.stdout


@pytest.mark.integration
def test_cli_json_report(ledger_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "compacted"

    result = atpctl(
        "--json", "db", "compact", "--data-dir", str(ledger_dir), "--to", str(destination)
    )

    report = json.loads(result.stdout)
    assert report["compacted_dir"] == str(destination)
    assert report["after"]["file_bytes"] == file_bytes(destination)
    assert report["saved"]["file_bytes"] > 0
    assert report["swap_safe"] is True
    assert report["writer_lock"] == "free"


def test_compact_refuses_a_non_empty_destination(store_dir: Path, tmp_path: Path) -> None:
    destination = tmp_path / "occupied"
    destination.mkdir()
    (destination / "keep.txt").write_text("precious")

    with pytest.raises(StoreError, match="compaction destination is not empty"):
        compact(store_dir, destination)
    refused = atpctl("db", "compact", "--data-dir", str(store_dir), "--to", str(destination),
                     expect=1)  # fmt: skip

    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: StoreError: ")
    assert "not empty" in refused.stderr
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]


def test_compact_refuses_a_destination_inside_the_data_dir(store_dir: Path) -> None:
    with pytest.raises(StoreError, match="must be outside"):
        compact(store_dir, store_dir / "compacted")

    assert not (store_dir / "compacted").exists()


def test_compact_of_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such data directory"):
        compact(tmp_path / "missing", tmp_path / "compacted")

    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_compact_beside_a_running_atpd_says_not_to_swap_the_copy_in(
    store_dir: Path, tmp_path: Path, writer_lock_held: None
) -> None:
    destination = tmp_path / "compacted"

    report = compact(store_dir, destination)

    assert contents(destination) == contents(store_dir)
    assert (report["atpd_running"], report["swap_safe"]) == (True, False)
    assert "pid 4242" in report["writer_lock"]
    assert report["next_steps"][:3] == [
        "stop atpd, and keep it stopped until the last step",
        f"rm -r {destination}",
        f"atpctl db compact --data-dir {store_dir} --to {destination}",
    ]


# ---------------------------------------------------------------------------------------------
# In place


def test_in_place_is_refused_while_the_writer_lock_is_held(
    store_dir: Path, tmp_path: Path, writer_lock_held: None
) -> None:
    before, size_before = contents(store_dir), file_bytes(store_dir)

    with pytest.raises(StoreError, match=r"cannot compact .* in place: .*pid 4242"):
        compact_in_place(store_dir)
    refused = atpctl("db", "compact", "--data-dir", str(store_dir), "--in-place", expect=1)

    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "in use by another writer (pid 4242)" in refused.stderr
    assert "Stop atpd first" in refused.stderr
    assert (contents(store_dir), file_bytes(store_dir)) == (before, size_before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_in_place_swaps_in_the_compacted_copy_and_keeps_the_old_one(
    store_dir: Path, tmp_path: Path
) -> None:
    before, size_before = contents(store_dir), file_bytes(store_dir)

    result = atpctl("db", "compact", "--data-dir", str(store_dir), "--in-place")

    old_copy = tmp_path / "data.before-compact"
    lines = result.stdout.splitlines()
    assert lines[0] == f"compacted {store_dir} in place; the old directory is {old_copy}"
    assert lines[-3:] == [
        "then:",
        "  1. start atpd",
        f"  2. once it serves, free the space of the old copy: rm -r {old_copy}",
    ]
    # Only the data file: atpd makes its own lock files.
    assert sorted(p.name for p in store_dir.iterdir()) == ["data.mdb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.before-compact"]
    assert contents(store_dir) == before
    assert file_bytes(store_dir) < size_before // 4
    assert (contents(old_copy), file_bytes(old_copy)) == (before, size_before)


def test_in_place_discard_old(store_dir: Path, tmp_path: Path) -> None:
    before, size_before = contents(store_dir), file_bytes(store_dir)

    report = compact_in_place(store_dir, discard_old=True)

    assert contents(store_dir) == before
    assert report["old_copy"] is None
    assert report["before"]["file_bytes"] == size_before
    assert report["after"]["file_bytes"] == file_bytes(store_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_in_place_refuses_to_overwrite_an_earlier_old_copy(store_dir: Path, tmp_path: Path) -> None:
    compact_in_place(store_dir)
    size_after_first = file_bytes(store_dir)

    with pytest.raises(StoreError, match="before-compact exists"):
        compact_in_place(store_dir)

    assert file_bytes(store_dir) == size_after_first
    assert leftovers(tmp_path) == []


def test_in_place_keeps_the_directory_mode(store_dir: Path) -> None:
    store_dir.chmod(0o750)

    compact_in_place(store_dir, discard_old=True)

    assert store_dir.stat().st_mode & 0o777 == 0o750


def test_failed_in_place_compaction_leaves_the_directory_as_it_was(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atp.store import offline

    before, size_before = contents(store_dir), file_bytes(store_dir)

    def fail(first: str, second: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(offline, "_exchange_directories", fail)
    with pytest.raises(OSError, match="No space left"):
        compact_in_place(store_dir)

    assert (contents(store_dir), file_bytes(store_dir)) == (before, size_before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    # And the writer lock was let go: a writer can open it.
    with LmdbStore(store_dir, map_size=TEST_MAP_SIZE):
        pass


@pytest.mark.integration
def test_atpd_serves_the_ledger_after_an_in_place_compaction(ledger_dir: Path) -> None:
    atpctl("db", "compact", "--data-dir", str(ledger_dir), "--in-place", "--discard-old")
    assert "no problems" in atpctl("db", "verify", "--data-dir", str(ledger_dir)).stdout

    with AtpdProcess(ledger_dir, "--sync", "off") as server, Client(server.target) as client:
        reservation = client.get_reservation("order-19")
        assert [(line.sku, line.quantity) for line in reservation.lines] == [("SKU-1", 2)]
        assert [hold.hold_id for hold in client.iter_holds()] == []


def test_discard_old_without_in_place_is_a_usage_error(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from atp.cli import main

    arguments = ["db", "compact", "--data-dir", str(store_dir), "--to", str(tmp_path / "new")]

    assert main([*arguments, "--discard-old"]) == 2
    assert capsys.readouterr().err == "error: --discard-old goes with --in-place\n"
    assert main([*arguments, "--in-place"]) == 2  # --to and --in-place exclude each other
    assert not (tmp_path / "new").exists()


def test_in_place_without_an_atomic_exchange_falls_back_to_renames(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atp.store import offline

    before = contents(store_dir)
    monkeypatch.setattr(offline, "_renameat2_exchange", lambda first, second: False)

    compact_in_place(store_dir)

    assert contents(store_dir) == before
    assert file_bytes(store_dir) < file_bytes(tmp_path / "data.before-compact") // 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.before-compact"]


def test_in_place_through_a_symlink_compacts_the_directory_it_names(
    store_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "current"
    link.symlink_to(store_dir)
    before = contents(store_dir)

    report = compact_in_place(link, discard_old=True)

    assert link.is_symlink() and link.resolve() == store_dir
    assert report["data_dir"] == str(store_dir)
    assert contents(link) == before
    assert file_bytes(store_dir) < report["before"]["file_bytes"] // 4


def test_in_place_refuses_a_mount_point(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os.path, "ismount", lambda path: path == str(store_dir))

    with pytest.raises(StoreError, match="is a mount point"):
        compact_in_place(store_dir)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.integration
def test_beside_a_real_atpd_a_copy_is_taken_and_in_place_is_refused(
    ledger_dir: Path, tmp_path: Path
) -> None:
    with AtpdProcess(ledger_dir, "--sync", "off") as server, Client(server.target) as client:
        copied = atpctl(
            "--json", "db", "compact", "--data-dir", str(ledger_dir), "--to", str(tmp_path / "hot")
        )
        refused = atpctl("db", "compact", "--data-dir", str(ledger_dir), "--in-place", expect=1)
        assert client.health() == "SERVING"
        assert server.process is not None
        atpd_pid = server.process.pid

    report = json.loads(copied.stdout)
    assert (report["atpd_running"], report["swap_safe"]) == (True, False)
    assert f"(pid {atpd_pid})" in report["writer_lock"]
    assert "in use by another writer" in refused.stderr
    assert not (tmp_path / "data.before-compact").exists()
    assert "no problems" in atpctl("db", "verify", "--data-dir", str(tmp_path / "hot")).stdout
