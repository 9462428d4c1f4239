"""`atpctl db verify`: a data directory checked record by record, then rebuilt into a
ledger whose every derived quantity is checked against its records."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator

from atp.ledger.errors import DECODE_FAILURES
from atp.persistence import codec
from atp.persistence.rebuild import ledger_from_records
from atp.store.base import StoreError
from atp.store.integrity import DamagedDataFileError
from atp.store.lmdb_store import LmdbStore

_JOURNAL_PAGE_ENTRIES = 1_000
INTERRUPTED_RESTORE = ("a snapshot restore into this data directory was interrupted: it is "
                       "incomplete (atpd --follow empties it at start and takes a new snapshot)")
_PROBLEMS_LISTED_MAX = 20


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
    if store.restore_incomplete():  # its records are part of a snapshot: nothing to rebuild
        return [INTERRUPTED_RESTORE]
    # One read transaction: beside a running atpd, records read in several would disagree.
    records = store.load()
    record_problems = _listed(_undecodable_records(records), "records")
    journal_problems = _listed(_undecodable_journal(store), "journal entries")
    if record_problems:
        return record_problems + journal_problems  # no ledger to rebuild from them
    return journal_problems + _ledger_problems(records, store.last_sequence())


def _undecodable_records(records: dict[str, dict[bytes, bytes]]) -> Iterator[str]:
    for database in codec.RECORD_DATABASES:
        for key, value in records.get(database, {}).items():
            try:
                codec.decode_record(database, value)
            except DECODE_FAILURES as error:
                yield f"{database} record {_shown(key)} does not decode: {error}"


def _undecodable_journal(store: LmdbStore) -> Iterator[str]:
    """Every journal entry, a page at a time: the journal may be far larger than memory."""
    after_sequence = 0
    while page := store.read_journal(after_sequence, _JOURNAL_PAGE_ENTRIES):
        for sequence, data in page:
            try:
                codec.decode_event(data)
            except DECODE_FAILURES as error:
                yield f"journal entry {sequence} does not decode: {error}"
        after_sequence = page[-1][0]


def _ledger_problems(records: dict[str, dict[bytes, bytes]], last_sequence: int) -> list[str]:
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
