"""Offline tools for `atpctl db`: inspect and back up a data directory, safe while atpd runs."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from atp.store.base import StoreError
from atp.store.lmdb_store import LmdbStore

_DATA_FILE = "data.mdb"


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
    created = _prepare_destination(destination)
    try:
        with LmdbStore(data_dir, readonly=True) as source:
            source_info = source.environment_info()
            source.copy_to(destination, compact=True)
        # Opening the copy proves it is a usable environment before we report success.
        with LmdbStore(destination, readonly=True) as copy:
            backup_info = copy.environment_info()
    except BaseException:
        _discard_destination(destination, created)
        raise
    return {
        "source": source_info,
        "backup": backup_info,
        "backup_file_bytes": os.path.getsize(os.path.join(destination, _DATA_FILE)),
    }


def _prepare_destination(destination: str) -> bool:
    """Create the destination directory or check it is empty; True if it was created here."""
    if os.path.lexists(destination):
        if not os.path.isdir(destination):
            raise StoreError(f"{destination}: backup destination exists and is not a directory")
        if os.listdir(destination):
            raise StoreError(f"{destination}: backup destination is not empty")
        return False
    try:
        os.makedirs(destination)
    except OSError as error:
        raise StoreError(
            f"{destination}: cannot create backup directory: {error.strerror}"
        ) from error
    return True


def _discard_destination(destination: str, created: bool) -> None:
    """Remove what a failed backup left behind, so a retry finds the destination as it was."""
    if created:
        shutil.rmtree(destination, ignore_errors=True)
        return
    for name in (_DATA_FILE, "lock.mdb"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(destination, name))


def verify(data_dir: str | os.PathLike[str]) -> list[str]:
    """Every problem found by decoding all records and rebuilding the ledger; [] when sound."""
    # Imported here: the store package stays independent of the domain core.
    from atp.ledger import codec, ledger_from_records

    with LmdbStore(data_dir, readonly=True) as store:
        records = store.load()
        last_sequence = store.last_sequence()
        journal_tail = store.read_journal(max(0, last_sequence - 1), 1)
    problems = _undecodable_records(records, codec)
    if problems:
        return problems
    for sequence, data in journal_tail:
        try:
            codec.decode_event(data)
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"journal entry {sequence} does not decode: {error}")
    ledger = ledger_from_records(records, last_sequence, None)
    return problems + ledger.check_invariants()


def _undecodable_records(records: dict[str, dict[bytes, bytes]], codec: Any) -> list[str]:
    problems: list[str] = []
    for database in codec.RECORD_DATABASES:
        for key, value in records.get(database, {}).items():
            try:
                codec.decode_record(database, value)
            except (ValueError, KeyError, TypeError) as error:
                problems.append(f"{database} record {key!r} does not decode: {error}")
    return problems
