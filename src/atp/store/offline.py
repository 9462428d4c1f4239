"""Offline tools for `atpctl db`: inspect, back up and compact a data directory.

stat, verify, backup and compact-to-a-new-directory only read and are safe while atpd runs;
compacting in place replaces the directory and refuses to run while atpd holds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shlex
import shutil
import stat as file_stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from atp.store.base import StoreError
from atp.store.integrity import DamagedDataFileError
from atp.store.lmdb_store import WRITER_LOCK_FILE, LmdbStore, _claim_writer

_DATA_FILE = "data.mdb"
_LOCK_FILE = "lock.mdb"  # LMDB's reader table, rebuilt by whoever opens the environment next
_OLD_COPY_SUFFIX = ".before-compact"
_JOURNAL_PAGE_ENTRIES = 1_000
_PROBLEMS_LISTED_MAX = 20


def stat(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Map size, bytes used, entries per database and journal range of the data directory."""
    # Read-only with the lock file: registering as a reader is what makes this safe beside a
    # running writer (lock=False would let the writer reuse pages we are still reading).
    with LmdbStore(data_dir, readonly=True) as store:
        return store.environment_info()


def backup(
    data_dir: str | os.PathLike[str], destination_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Write a compacted, consistent copy of `data_dir` into a new or empty `destination_dir`."""
    destination = os.fspath(destination_dir)
    copy = _compacting_copy(os.fspath(data_dir), destination, "backup")
    return {
        "source": copy.source_info,
        "backup": copy.copy_info,
        "backup_file_bytes": os.path.getsize(os.path.join(destination, _DATA_FILE)),
    }


@dataclass(frozen=True)
class _Copy:
    """The environment info of a source and of its verified compacted copy."""

    source_info: dict[str, Any]
    copy_info: dict[str, Any]


def _compacting_copy(
    data_dir: str, destination: str, role: str, *, source_is_still: bool = False
) -> _Copy:
    """Copy `data_dir` compacted into the new or empty `destination` (the `role` destination,
    in errors), then open the copy to prove it is a usable environment. With `source_is_still`
    (no writer can commit meanwhile) the copy must also hold as many entries as the source.
    On any failure the destination is left as it was found."""
    created = _prepare_destination(destination, role)
    try:
        with LmdbStore(data_dir, readonly=True) as source:
            source_info = source.environment_info()
            source.copy_to(destination, compact=True)
        with LmdbStore(destination, readonly=True) as copy:
            copy_info = copy.environment_info()
        if source_is_still and _contents(copy_info) != _contents(source_info):
            raise StoreError(
                f"the compacted copy in {destination} does not hold what {data_dir} holds "
                f"(copy {_contents(copy_info)}, source {_contents(source_info)})"
            )
    except BaseException:
        _discard_destination(destination, created)
        raise
    return _Copy(source_info, copy_info)


def _contents(info: dict[str, Any]) -> dict[str, Any]:
    """What a compacting copy must preserve: entries per database and the journal range."""
    return {
        "entries": info["entries"],
        "journal_oldest_sequence": info["journal_oldest_sequence"],
        "journal_last_sequence": info["journal_last_sequence"],
    }


def _prepare_destination(destination: str, role: str = "backup") -> bool:
    """Create the destination directory or check it is empty; True if it was created here."""
    if os.path.lexists(destination):
        if not os.path.isdir(destination):
            raise StoreError(f"{destination}: {role} destination exists and is not a directory")
        if os.listdir(destination):
            raise StoreError(f"{destination}: {role} destination is not empty")
        return False
    try:
        os.makedirs(destination)
    except OSError as error:
        raise StoreError(
            f"{destination}: cannot create {role} directory: {error.strerror}"
        ) from error
    return True


def _discard_destination(destination: str, created: bool) -> None:
    """Remove what a failed backup left behind, so a retry finds the destination as it was."""
    if created:
        shutil.rmtree(destination, ignore_errors=True)
        return
    for name in (_DATA_FILE, _LOCK_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(destination, name))


def verify(data_dir: str | os.PathLike[str]) -> list[str]:
    """Every problem found by checking the file, decoding every record and journal entry and
    rebuilding the ledger; [] when sound. Damage is reported as problems, never raised."""
    try:
        store = LmdbStore(data_dir, readonly=True)
    except DamagedDataFileError as error:
        return [str(error)]
    with store:
        try:
            return _store_problems(store)
        except StoreError as error:  # LMDB met a damaged page while reading
            return [str(error)]


def _store_problems(store: LmdbStore) -> list[str]:
    # Imported here: the store package stays independent of the domain core.
    from atp.ledger import codec

    # One read transaction: beside a running atpd, records read in several would disagree.
    records = store.load()
    record_problems = _listed(_undecodable_records(records, codec), "records")
    journal_problems = _listed(_undecodable_journal(store, codec), "journal entries")
    if record_problems:
        return record_problems + journal_problems  # no ledger to rebuild from them
    return journal_problems + _ledger_problems(records, store.last_sequence())


def _undecodable_records(records: dict[str, dict[bytes, bytes]], codec: Any) -> Iterator[str]:
    from atp.ledger.errors import DECODE_FAILURES

    for database in codec.RECORD_DATABASES:
        for key, value in records.get(database, {}).items():
            try:
                codec.decode_record(database, value)
            except DECODE_FAILURES as error:
                yield f"{database} record {_shown(key)} does not decode: {error}"


def _undecodable_journal(store: LmdbStore, codec: Any) -> Iterator[str]:
    """Every journal entry, a page at a time: the journal may be far larger than memory."""
    from atp.ledger.errors import DECODE_FAILURES

    after_sequence = 0
    while page := store.read_journal(after_sequence, _JOURNAL_PAGE_ENTRIES):
        for sequence, data in page:
            try:
                codec.decode_event(data)
            except DECODE_FAILURES as error:
                yield f"journal entry {sequence} does not decode: {error}"
        after_sequence = page[-1][0]


def _ledger_problems(records: dict[str, dict[bytes, bytes]], last_sequence: int) -> list[str]:
    from atp.ledger import ledger_from_records
    from atp.ledger.errors import DECODE_FAILURES

    try:
        ledger = ledger_from_records(records, last_sequence, None)
    except DECODE_FAILURES as error:  # records that decode but hold values of the wrong kind
        return [f"the ledger cannot be rebuilt from the records: {type(error).__name__}: {error}"]
    return ledger.check_invariants()


def _listed(problems: Iterable[str], kind: str) -> list[str]:
    """The first problems, then a count of the rest: a file damaged throughout must not make
    verify print, or hold, millions of lines."""
    remaining = iter(problems)
    listed = list(itertools.islice(remaining, _PROBLEMS_LISTED_MAX))
    unlisted = sum(1 for _ in remaining)
    if unlisted:
        listed.append(f"{unlisted:,} more {kind} do not decode")
    return listed


def _shown(key: bytes) -> str:
    return repr(key.decode(errors="backslashreplace"))
