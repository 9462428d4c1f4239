"""Damaged data files: one clear line and a non-zero exit, never a SIGBUS or a traceback.

Found by a review: a truncated data.mdb killed atpd with SIGBUS and an empty log, `atpctl db
verify` and `atpctl db stat` died with "Bus error", and a record that did not decode ended
atpd's start-up in a raw traceback.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from atp.persistence.verify import verify
from atp.store import LmdbStore, StoreError, WriteBatch
from atp.store.integrity import DamagedDataFileError, check_data_file
from atp.store.lmdb_store import encode_sequence
from tests.integration.helpers import Api, line, reserve, stocked
from tests.support.atpd import AtpdProcess

RUN_TIMEOUT_S = 60
TEST_MAP_SIZE = 64 << 20
# Where LMDB (64-bit) keeps these in a meta page, as integrity.py reads them.
MAGIC_AT = 16
VERSION_AT = 20
LAST_PAGE_AT = 136
TXNID_AT = 144
ADVICE = "atpctl db backup"
RESERVATIONS = 5


# ---------------------------------------------------------------------------------------------
# A real data directory written by atpd, and ways to damage a copy of it


@pytest.fixture(scope="module")
def atpd_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nodes, stock, reservations and their journal, written by a real atpd, then stopped."""
    data_dir = tmp_path_factory.mktemp("written-by-atpd") / "data"
    server = AtpdProcess(data_dir).start()
    try:
        api = Api(server.channel())
        try:
            for number in range(RESERVATIONS):
                sku, node_id = stocked(api, 100)
                reserve(api, line(f"l{number}", sku, node_id, 3))
        finally:
            api.close()
    finally:
        assert server.stop() == 0, f"atpd did not stop cleanly; see {server.log_path}"
    return data_dir


@pytest.fixture
def data_dir(atpd_data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the atpd data directory that the test may damage."""
    copy = tmp_path / "data"
    shutil.copytree(atpd_data_dir, copy, ignore=shutil.ignore_patterns("lock.mdb", "writer.lock"))
    return copy


def data_file(data_dir: Path) -> Path:
    return data_dir / "data.mdb"


def meta_fields(data_dir: Path, meta_index: int) -> dict[str, int]:
    """Page size, last page and txnid of one meta page, read the way LMDB lays them out."""
    raw = data_file(data_dir).read_bytes()
    page_size = struct.unpack_from("<I", raw, 40)[0]
    at = meta_index * page_size
    last_page, txnid = struct.unpack_from("<QQ", raw, at + LAST_PAGE_AT)
    return {"page_size": page_size, "last_page": last_page, "txnid": txnid,
            "used_bytes": (last_page + 1) * page_size}


def overwrite_meta_u32(data_dir: Path, meta_index: int, offset: int, value: int) -> None:
    page_size = meta_fields(data_dir, 0)["page_size"]
    with data_file(data_dir).open("r+b") as file:
        file.seek(meta_index * page_size + offset)
        file.write(struct.pack("<I", value))


def put_raw(data_dir: Path, database: str, key: bytes, value: bytes) -> None:
    """Write bytes into a named database behind atp's back, as a damaged disk would."""
    environment = lmdb.open(str(data_dir), max_dbs=16, map_size=TEST_MAP_SIZE)
    try:
        with environment.begin(write=True) as transaction:
            transaction.put(key, value, db=environment.open_db(database.encode(), txn=transaction))
    finally:
        environment.close()


def first_key(data_dir: Path, database: str) -> bytes:
    environment = lmdb.open(str(data_dir), max_dbs=16, readonly=True, lock=False)
    try:
        with environment.begin() as transaction:
            cursor = transaction.cursor(db=environment.open_db(database.encode(), txn=transaction))
            assert cursor.first(), f"no {database} records to damage"
            key: bytes = cursor.key()
    finally:
        environment.close()
    return key


def truncated_size(data_dir: Path, length: str) -> int:
    size = data_file(data_dir).stat().st_size
    return {"half": size // 2, "one_page": meta_fields(data_dir, 0)["page_size"], "one_byte": 1}[
        length
    ]


# ---------------------------------------------------------------------------------------------
# Running atpd and atpctl as an operator would


def run(*command: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("ATP_")}
    return subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False, env=environment,
    )


def run_atpd(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """atpd on a damaged directory must refuse to start: it ends by itself."""
    return run("atp.daemon", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir))


def run_atpctl_db(command: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return run("atp.cli", "db", command, "--data-dir", str(data_dir))


def one_line(result: subprocess.CompletedProcess[str], exit_code: int, *needles: str) -> str:
    """The process exited with `exit_code`, saying one line on stderr holding every needle."""
    assert result.returncode == exit_code, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def verify_problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """`atpctl db verify` found problems: exit 1, each on stdout, nothing on stderr."""
    assert result.returncode == 1, result
    assert result.stderr == "", result.stderr
    problems = result.stdout.splitlines()
    assert problems and all(p.startswith("problem: ") for p in problems), result.stdout
    return problems


# ---------------------------------------------------------------------------------------------
# (a) A truncated data.mdb


@pytest.mark.integration
@pytest.mark.parametrize("length", ["half", "one_page", "one_byte"])
def test_a_truncated_file_stops_atpd_with_one_line_and_exit_code_2(
    data_dir: Path, length: str
) -> None:
    os.truncate(data_file(data_dir), truncated_size(data_dir, length))

    said = one_line(run_atpd(data_dir), 2, str(data_file(data_dir)), "is truncated", ADVICE)

    assert said.startswith("atpd: ")


@pytest.mark.integration
@pytest.mark.parametrize("length", ["half", "one_page", "one_byte"])
def test_a_truncated_file_is_a_problem_for_verify_and_an_error_for_stat(
    data_dir: Path, length: str
) -> None:
    os.truncate(data_file(data_dir), truncated_size(data_dir, length))

    problems = verify_problems(run_atpctl_db("verify", data_dir))
    assert len(problems) == 1 and "is truncated" in problems[0] and ADVICE in problems[0]
    said = one_line(run_atpctl_db("stat", data_dir), 1, "is truncated", ADVICE)
    assert said.startswith("error: ")


@pytest.mark.integration
def test_the_truncation_message_gives_both_sizes(data_dir: Path) -> None:
    needed = meta_fields(data_dir, 0)["used_bytes"], meta_fields(data_dir, 1)["used_bytes"]
    newest = max((0, 1), key=lambda index: meta_fields(data_dir, index)["txnid"])
    half = data_file(data_dir).stat().st_size // 2
    os.truncate(data_file(data_dir), half)

    one_line(run_atpd(data_dir), 2, f"{half:,} bytes",
             f"last committed transaction uses {needed[newest]:,} bytes")


# ---------------------------------------------------------------------------------------------
# (b) A record or journal entry that does not decode


@pytest.mark.integration
def test_an_undecodable_record_stops_atpd_naming_database_and_key_and_verify_lists_it(
    data_dir: Path,
) -> None:
    key = first_key(data_dir, "reservations")
    put_raw(data_dir, "reservations", key, b"\xffnot json\x00")

    said = one_line(run_atpd(data_dir), 2, "reservations", repr(key.decode()),
                    "does not decode", str(data_dir), ADVICE)
    assert said.startswith("atpd: ")
    problems = verify_problems(run_atpctl_db("verify", data_dir))
    assert any("reservations" in p and repr(key.decode()) in p and "does not decode" in p
               for p in problems), problems


@pytest.mark.integration
def test_a_record_of_the_wrong_shape_stops_atpd_too(data_dir: Path) -> None:
    key = first_key(data_dir, "positions")
    put_raw(data_dir, "positions", key, b'{"not": "a position"}')

    one_line(run_atpd(data_dir), 2, "positions", repr(key.decode()), "does not decode")


@pytest.mark.integration
def test_verify_decodes_every_journal_entry_not_only_the_last(data_dir: Path) -> None:
    with LmdbStore(data_dir, readonly=True) as store:
        oldest, last = store.oldest_sequence(), store.last_sequence()
    assert last - oldest >= 2, "the journal needs a middle entry"
    middle = (oldest + last) // 2
    put_raw(data_dir, "journal", encode_sequence(middle), b"\x00garbage")

    problems = verify_problems(run_atpctl_db("verify", data_dir))

    assert problems == [f"problem: journal entry {middle} does not decode: "
                        + problems[0].split("does not decode: ", 1)[1]], problems


# ---------------------------------------------------------------------------------------------
# (c) Damaged meta pages


@pytest.mark.integration
def test_a_flipped_magic_in_both_meta_pages_is_one_clear_line(data_dir: Path) -> None:
    for meta_index in (0, 1):
        overwrite_meta_u32(data_dir, meta_index, MAGIC_AT, 0xDEADBEEF)

    needles = ("not an LMDB data file", "meta page 0", "meta page 1", "0xDEADBEEF", ADVICE)
    one_line(run_atpd(data_dir), 2, *needles)
    problems = verify_problems(run_atpctl_db("verify", data_dir))
    assert len(problems) == 1 and all(needle in problems[0] for needle in needles), problems
    one_line(run_atpctl_db("stat", data_dir), 1, *needles)


@pytest.mark.integration
def test_a_flipped_magic_in_one_meta_page_names_that_page(data_dir: Path) -> None:
    overwrite_meta_u32(data_dir, 1, MAGIC_AT, 0xDEADBEEF)

    one_line(run_atpd(data_dir), 2, "meta page 1 has a bad magic number 0xDEADBEEF", ADVICE)


# ---------------------------------------------------------------------------------------------
# integrity.py on files built here


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A sound data directory of several transactions (so the two meta pages differ)."""
    path = tmp_path / "store"
    with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
        for round_number in range(3):
            batch = WriteBatch()
            for number in range(300):
                batch.put("positions", b"sku-%d@dc-%d" % (number, round_number), b"[]" * 50)
            store.commit(batch)
    return path


def test_a_missing_or_empty_data_file_is_a_new_directory(tmp_path: Path) -> None:
    check_data_file(str(tmp_path))
    data_file(tmp_path).touch()
    check_data_file(str(tmp_path))

    with LmdbStore(tmp_path, map_size=TEST_MAP_SIZE) as store:  # LMDB initializes it
        assert store.last_sequence() == 0


def test_a_sound_file_passes(store_dir: Path) -> None:
    check_data_file(str(store_dir))


@pytest.mark.parametrize("size", [1, 100, 4096, 8191])
def test_a_file_shorter_than_its_two_meta_pages_is_truncated(store_dir: Path, size: int) -> None:
    os.truncate(data_file(store_dir), size)
    shown = "1 byte," if size == 1 else f"{size:,} bytes,"

    with pytest.raises(DamagedDataFileError, match="is truncated") as raised:
        check_data_file(str(store_dir))

    assert shown in str(raised.value)
    assert "two meta pages (8,192 bytes)" in str(raised.value)


def test_the_newest_meta_page_sets_the_size_the_file_needs(store_dir: Path) -> None:
    metas = [meta_fields(store_dir, index) for index in (0, 1)]
    newest, older = sorted(metas, key=lambda meta: meta["txnid"], reverse=True)
    assert newest["used_bytes"] > older["used_bytes"], "the last commit must have grown the file"
    os.truncate(data_file(store_dir), older["used_bytes"])

    with pytest.raises(DamagedDataFileError) as raised:
        check_data_file(str(store_dir))

    assert f"uses {newest['used_bytes']:,} bytes" in str(raised.value)


def test_a_damaged_newest_meta_falls_back_to_the_other_and_names_the_damage(
    store_dir: Path,
) -> None:
    metas = [meta_fields(store_dir, index) for index in (0, 1)]
    newest_index = max((0, 1), key=lambda index: metas[index]["txnid"])
    older = metas[1 - newest_index]
    # Long enough for the older meta page, too short for the damaged newest one.
    os.truncate(data_file(store_dir), older["used_bytes"])
    overwrite_meta_u32(store_dir, newest_index, MAGIC_AT, 0)

    with pytest.raises(DamagedDataFileError) as raised:
        check_data_file(str(store_dir))

    message = str(raised.value)
    assert f"meta page {newest_index} has a bad magic number 0x00000000" in message
    assert "truncated" not in message


def test_a_meta_page_of_another_format_version_is_named(store_dir: Path) -> None:
    overwrite_meta_u32(store_dir, 0, VERSION_AT, 999)

    with pytest.raises(DamagedDataFileError, match="meta page 0 has format version 999, not 1"):
        check_data_file(str(store_dir))


@pytest.mark.parametrize("readonly", [False, True])
def test_the_store_checks_before_lmdb_maps_the_file(store_dir: Path, readonly: bool) -> None:
    # One page, not half: before the check, half a file would SIGBUS this very test process.
    os.truncate(data_file(store_dir), 4096)

    with pytest.raises(DamagedDataFileError, match="is truncated"):
        LmdbStore(store_dir, map_size=TEST_MAP_SIZE, readonly=readonly)


def short_but_sound_data_dir(path: Path) -> Path:
    """A data directory whose file ends before its last page, as LMDB leaves files: pages a
    transaction allocated at the end and freed again are never written. A seeded workload
    that is known (LMDB 0.9, 4 KiB pages) to get there within a few commits."""
    generator = random.Random(1)
    environment = lmdb.open(str(path), map_size=1 << 29)
    try:
        for _ in range(25):
            with environment.begin(write=True) as transaction:
                keys = [generator.randbytes(8) for _ in range(generator.randint(1, 1500))]
                for key in keys:
                    transaction.put(key, generator.randbytes(generator.choice([10, 100, 2000, 5000])))
                if generator.random() < 0.7:
                    for key in keys[: generator.randint(0, len(keys))]:
                        transaction.delete(key)
            used = (environment.info()["last_pgno"] + 1) * environment.stat()["psize"]
            if data_file(path).stat().st_size < used:
                return path
    finally:
        environment.close()
    pytest.skip("this LMDB build or page size never left a file short of its last page")


def test_a_file_ending_in_never_written_free_pages_passes(tmp_path: Path) -> None:
    path = short_but_sound_data_dir(tmp_path / "short")

    check_data_file(str(path))

    # And it is sound: LMDB reads every record of it.
    environment = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with environment.begin() as transaction:
            assert sum(len(value) for _, value in transaction.cursor()) > 0
    finally:
        environment.close()


def test_a_file_ending_in_free_pages_is_still_truncated_when_cut_further(tmp_path: Path) -> None:
    path = short_but_sound_data_dir(tmp_path / "short")
    os.truncate(data_file(path), data_file(path).stat().st_size // 2)

    with pytest.raises(DamagedDataFileError, match="is truncated"):
        check_data_file(str(path))


def test_a_damaged_file_is_a_store_error_for_callers_that_catch_those(store_dir: Path) -> None:
    os.truncate(data_file(store_dir), 1)

    with pytest.raises(StoreError):
        check_data_file(str(store_dir))


# ---------------------------------------------------------------------------------------------
# verify on files built here


def test_verify_lists_the_first_journal_problems_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with LmdbStore(path, map_size=TEST_MAP_SIZE) as store:
        # More entries than one page of the journal scan, every one undecodable.
        store.commit(WriteBatch(journal=[(sequence, b"\xff") for sequence in range(1, 2_501)]))

    problems = verify(path)

    assert len(problems) == 21
    assert problems[0].startswith("journal entry 1 does not decode")
    assert problems[19].startswith("journal entry 20 does not decode")
    assert problems[20] == "2,480 more journal entries do not decode"
