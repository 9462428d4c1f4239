"""Offline commands on a data directory (no server needed): stat, verify, backup, compact."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from atp.cli.outcome import EXIT_FAILURE, CommandTree, Outcome
from atp.cli.views import format_table


def add_database_commands(tree: CommandTree) -> None:
    database = tree.group("db", "offline tools on an LMDB data directory (no server needed)")
    for name, help_text, run in (
        ("stat", "show the size and record counts of a data directory", _database_stat),
        ("verify", "check a data directory's invariants (exit 1 on problems)", _database_verify),
        ("backup", "write a compacted copy of a data directory", _database_backup),
        ("compact", "shrink a data directory and report the space saved", _database_compact),
    ):
        command = database.command(name, help_text, run, offline=True)
        command.add_argument(
            "--data-dir",
            default=os.environ.get("ATP_DATA_DIR"),
            required="ATP_DATA_DIR" not in os.environ,
            metavar="DIR",
            help="the data directory (default: $ATP_DATA_DIR)",
        )
        if name == "backup":
            command.add_argument("destination", metavar="DEST", help="directory for the copy")
        if name == "compact":
            _add_compact_arguments(command)

def _add_compact_arguments(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to",
        dest="destination",
        metavar="NEWDIR",
        help="new or empty directory for the compacted copy (may run beside atpd, but only a "
        "copy taken with atpd stopped may replace the data directory: follow the printed steps)",
    )
    where.add_argument(
        "--in-place",
        action="store_true",
        help="compact beside the data directory and swap the two (refused while atpd runs); "
        "the old one is kept as DIR.before-compact",
    )
    command.add_argument(
        "--discard-old", action="store_true", help="with --in-place: delete the old directory"
    )

def _database_stat(arguments: argparse.Namespace) -> Outcome:
    statistics = _offline_store_call("stat", arguments.data_dir)
    document = dict(statistics) if isinstance(statistics, Mapping) else {"stat": statistics}
    rows = list(_flattened(document))
    return Outcome(_jsonable(document), format_table(("FIELD", "VALUE"), rows))

def _flattened(document: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested mappings as dotted keys (entries.reservations), for a two-column table."""
    for key, value in document.items():
        if isinstance(value, Mapping):
            yield from _flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value

def _database_verify(arguments: argparse.Namespace) -> Outcome:
    problems = [str(problem) for problem in _offline_store_call("verify", arguments.data_dir)]
    if not problems:
        return Outcome({"ok": True, "problems": []}, "ok: no problems found")
    text = "\n".join(f"problem: {problem}" for problem in problems)
    return Outcome({"ok": False, "problems": problems}, text, EXIT_FAILURE)

def _database_backup(arguments: argparse.Namespace) -> Outcome:
    result = _offline_store_call("backup", arguments.data_dir, arguments.destination)
    document = {"destination": arguments.destination, "result": _jsonable(result)}
    size_bytes = result.get("backup_file_bytes") if isinstance(result, Mapping) else None
    size_text = f" ({size_bytes} bytes)" if size_bytes is not None else ""
    return Outcome(document, f"backup written to {arguments.destination}{size_text}")

def _database_compact(arguments: argparse.Namespace) -> Outcome:
    if arguments.discard_old and not arguments.in_place:
        raise ValueError("--discard-old goes with --in-place")
    if arguments.in_place:
        report = _offline_store_call(
            "compact_in_place", arguments.data_dir, discard_old=arguments.discard_old
        )
        old_copy = report["old_copy"]
        heading = f"compacted {report['data_dir']} in place; " + (
            f"the old directory is {old_copy}" if old_copy else "the old directory was deleted"
        )
        notes = []
        if report["not_carried_over"]:
            others = ", ".join(report["not_carried_over"])
            notes.append(f"not carried over (still in {old_copy}): {others}")
        notes.append("then:")
    else:
        report = _offline_store_call("compact", arguments.data_dir, arguments.destination)
        heading = f"compacted copy of {report['data_dir']} written to {report['compacted_dir']}"
        notes = []
        if report["atpd_running"]:
            notes.append(
                f"warning: atpd was running during the copy ({report['writer_lock']}): the copy "
                "lacks what atpd commits after it, so do not swap it in as it is. To compact "
                "for service:"
            )
        else:
            notes.append("to put it in service:")
    notes += [f"  {number}. {step}" for number, step in enumerate(report["next_steps"], 1)]
    parts = [heading, _compaction_table(report), "\n".join(notes)]
    return Outcome(_jsonable(report), "\n\n".join(part for part in parts if part))

def _compaction_table(report: Mapping[str, Any]) -> str:
    """data.mdb before and after, its length and the disk space it takes, and the saving."""
    before, after, saved = report["before"], report["after"], report["saved"]
    rows = [
        (f"data.mdb {label}", before[key], after[key], saved[key])
        for label, key in (("file bytes", "file_bytes"), ("allocated bytes", "allocated_bytes"))
    ]
    table = format_table(("SIZE", "BEFORE", "AFTER", "SAVED"), rows)
    return f"{table}\nsaved {saved['percent']}% of the file"

class OfflineStoreError(Exception):
    """An expected failure of an offline store tool (missing, locked or damaged data)."""

def _offline_store_call(function_name: str, *arguments: str, **options: Any) -> Any:
    try:
        from atp.persistence import verify
        from atp.store import offline
    except ImportError as error:
        raise OfflineStoreError(f"offline store tools are not available ({error})") from None
    tools = verify if function_name == "verify" else offline  # verify rebuilds the ledger
    try:
        return getattr(tools, function_name)(*arguments, **options)
    except Exception as error:
        if _is_expected_store_failure(error):
            raise OfflineStoreError(f"{type(error).__name__}: {error}") from None
        raise

def _is_expected_store_failure(error: Exception) -> bool:
    # StoreError lives in the store package (not imported here); LMDB and the file system
    # raise their own errors for a missing, locked or damaged directory.
    module = type(error).__module__ or ""
    return (
        isinstance(error, OSError)
        or module.startswith(("atp.store", "lmdb"))
        or type(error).__name__ == "StoreError"
    )

def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
