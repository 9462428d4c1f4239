"""Offline tools for `atpctl db`: inspect, back up and compact a data directory.

stat, verify, backup and compact-to-a-new-directory only read and are safe while atpd runs;
compacting in place replaces the directory and refuses to run while atpd holds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shlex
import shutil
import stat as file_stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from atp.store.base import StoreError
from atp.store.lmdb_store import WRITER_LOCK_FILE, LmdbStore, claim_writer

_DATA_FILE = "data.mdb"
_LOCK_FILE = "lock.mdb"  # LMDB's reader table, rebuilt by whoever opens the environment next
_OLD_COPY_SUFFIX = ".before-compact"


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


def _prepare_destination(destination: str, role: str) -> bool:
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


def compact(
    data_dir: str | os.PathLike[str], destination_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Write a compacted copy of `data_dir` into a new or empty `destination_dir`, verify that
    it opens, and report the sizes before and after and the steps that put it in service.

    Safe beside a running atpd (the copy is one read transaction, as for backup), but such a
    copy misses what atpd commits after it, so the report then says not to swap it in
    (`swap_safe` false). With atpd stopped, the writer lock is held during the copy so that no
    atpd can start and commit meanwhile."""
    source = os.path.realpath(data_dir)  # through a symlink, the steps move the real directory
    destination = os.path.abspath(destination_dir)
    if os.path.commonpath([source, os.path.realpath(destination)]) == source:
        raise StoreError(f"{destination}: the compacted copy must be outside {source}")
    with _writer_lock(source) as in_use:
        before = _data_file_size(source)
        copy = _compacting_copy(source, destination, "compaction", source_is_still=not in_use)
    report = _compaction_report(source, before, destination, copy)
    report["compacted_dir"] = destination
    report["atpd_running"] = bool(in_use)
    report["writer_lock"] = in_use or "free"
    report["swap_safe"] = not in_use
    report["next_steps"] = _swap_steps(source, destination, running=bool(in_use))
    return report


def compact_in_place(
    data_dir: str | os.PathLike[str], *, discard_old: bool = False
) -> dict[str, Any]:
    """Compact `data_dir` into a directory beside it and swap the two, keeping the old one as
    `<data_dir>.before-compact` unless `discard_old`. Refused while atpd holds the directory
    (its writer lock); the lock is held from the copy to the swap, so no atpd starts meanwhile
    and none can ever open a half-built directory."""
    target = os.path.realpath(data_dir)  # a symlink to the data directory stays one
    old_copy = target + _OLD_COPY_SUFFIX
    if os.path.ismount(target):
        raise StoreError(
            f"{target} is a mount point, which cannot be swapped with a directory beside it: "
            "compact with --to NEWDIR, then with atpd stopped put NEWDIR/data.mdb in its place"
        )
    if not discard_old and os.path.lexists(old_copy):
        raise StoreError(
            f"{old_copy} exists (an earlier compaction's old copy?): move it away or remove "
            "it, or compact with --discard-old"
        )
    with _writer_lock(target) as in_use:
        if in_use:
            raise StoreError(
                f"cannot compact {target} in place: {in_use}. Stop atpd first, or write a "
                "compacted copy elsewhere with --to NEWDIR"
            )
        others = sorted(set(os.listdir(target)) - {_DATA_FILE, _LOCK_FILE, WRITER_LOCK_FILE})
        if others and discard_old:
            raise StoreError(
                f"{target} holds files that compaction does not carry over "
                f"({', '.join(others)}): move them out first, or keep the old copy"
            )
        before = _data_file_size(target)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.compacting-",
                                   dir=os.path.dirname(target))  # fmt: skip
        try:
            copy = _compacting_copy(target, staging, "compaction", source_is_still=True)
            _prepare_for_service(staging, like=target)
            _exchange_directories(target, staging)  # from here on, staging holds the old data
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _sync_directory(os.path.dirname(target))
        if discard_old:
            shutil.rmtree(staging)
        else:
            _keep_old_copy(staging, old_copy)
    report = _compaction_report(target, before, target, copy)
    report["in_place"] = True
    report["old_copy"] = None if discard_old else old_copy
    report["not_carried_over"] = others
    report["next_steps"] = ["start atpd"]
    if not discard_old:
        report["next_steps"].append(
            f"once it serves, free the space of the old copy: rm -r {shlex.quote(old_copy)}"
        )
    return report


def _keep_old_copy(staging: str, old_copy: str) -> None:
    try:
        os.rename(staging, old_copy)
    except OSError as error:  # old_copy appeared since we checked
        raise StoreError(
            f"compacted, but the old data could not be moved to {old_copy} "
            f"({error.strerror}): it is in {staging}"
        ) from error
    _sync_directory(os.path.dirname(old_copy))


@contextlib.contextmanager
def _writer_lock(data_dir: str) -> Iterator[str]:
    """Holds the writer lock of `data_dir` (atpd's `writer.lock`) for the body, so that no
    atpd starts meanwhile; yields "" then, or why it is held (by a running atpd, say)."""
    # The checks LmdbStore makes, so that the lock file is never created in a wrong directory.
    if not os.path.isdir(data_dir):
        raise StoreError(f"{data_dir}: no such data directory")
    if not os.path.isfile(os.path.join(data_dir, _DATA_FILE)):
        raise StoreError(f"{data_dir}: not an LMDB data directory (no {_DATA_FILE})")
    try:
        descriptor = claim_writer(data_dir)
    except StoreError as held:
        holder = str(held)
    except OSError as error:
        raise StoreError(
            f"{data_dir}: cannot take its writer lock ({WRITER_LOCK_FILE}): {error.strerror}"
        ) from error
    else:
        holder = ""
    if holder:
        yield holder
        return
    try:
        yield ""
    finally:
        os.close(descriptor)


def _data_file_size(data_dir: str) -> dict[str, int]:
    """The size of data.mdb: its length and the disk space it takes (less if it is sparse)."""
    status = os.stat(os.path.join(data_dir, _DATA_FILE))
    return {"file_bytes": status.st_size, "allocated_bytes": status.st_blocks * 512}


def _compaction_report(
    source: str, before: dict[str, int], destination: str, copy: _Copy
) -> dict[str, Any]:
    after = _data_file_size(destination)
    before = {**before, "used_bytes": copy.source_info["used_bytes"]}
    after = {**after, "used_bytes": copy.copy_info["used_bytes"]}
    saved = {name: before[name] - after[name] for name in before}
    saved_percent = 100 * saved["file_bytes"] / before["file_bytes"] if before["file_bytes"] else 0
    return {
        "data_dir": source,
        "before": before,
        "after": after,
        "saved": {**saved, "percent": round(saved_percent, 1)},
        "entries": copy.copy_info["entries"],
        "journal_last_sequence": copy.copy_info["journal_last_sequence"],
    }


def _swap_steps(source: str, destination: str, *, running: bool) -> list[str]:
    """Shell steps that put the compacted copy in service in place of `source`."""
    old, new = shlex.quote(source), shlex.quote(destination)
    swap = [f"mv {old} {shlex.quote(source + _OLD_COPY_SUFFIX)}", f"mv {new} {old}", "start atpd"]
    if running:
        # This copy misses what atpd committed after it: take the copy again, atpd stopped.
        return [
            "stop atpd, and keep it stopped until the last step",
            f"rm -r {new}",
            f"atpctl db compact --data-dir {old} --to {new}",
            *swap,
        ]
    keep_stopped = (
        "keep atpd stopped until the last step (if it ran since the copy, compact again: "
        "the copy lacks what it committed)"
    )
    return [keep_stopped, *swap]


def _prepare_for_service(staging: str, *, like: str) -> None:
    """Make the new directory what atpd expects: the old directory's mode and owner, no
    lock.mdb left by our own reading, everything on disk before it is swapped in."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(staging, _LOCK_FILE))
    new_file, old_file = os.path.join(staging, _DATA_FILE), os.path.join(like, _DATA_FILE)
    for new_path, old_path in ((staging, like), (new_file, old_file)):
        old_status = os.stat(old_path)
        os.chmod(new_path, file_stat.S_IMODE(old_status.st_mode))
        new_status = os.stat(new_path)
        if (new_status.st_uid, new_status.st_gid) != (old_status.st_uid, old_status.st_gid):
            # Only root can give files away; root must, or atpd could not open its own data.
            os.chown(new_path, old_status.st_uid, old_status.st_gid)
    descriptor = os.open(new_file, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _sync_directory(staging)


def _sync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange_directories(first: str, second: str) -> None:
    """Swap two directories: atomically where the system can (Linux renameat2), so that the
    data directory's path always names a whole environment; else with three renames."""
    if _renameat2_exchange(first, second):
        return
    aside = second + ".swapping"
    os.rename(first, aside)
    try:
        os.rename(second, first)
    except BaseException:
        os.rename(aside, first)
        raise
    os.rename(aside, second)


def _renameat2_exchange(first: str, second: str) -> bool:
    """True once exchanged; False where renameat2(RENAME_EXCHANGE) is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a C library older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]  # fmt: skip
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:  # fmt: skip
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system lacks it
        return False
    raise OSError(code, os.strerror(code), first)
