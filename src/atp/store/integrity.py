"""Checks data.mdb against LMDB's own meta pages before LMDB maps it.

LMDB maps the whole file and trusts it: touching a page past the end of a truncated file is a
SIGBUS, which kills atpd (or `atpctl db verify`) without a word in any log. The two meta pages
at the start of the file say how far the last committed transaction reaches, so a few reads
here turn that crash into a StoreError that names the file and says what to do.

Layout of a meta page on 64-bit LMDB (lmdb 0.9, MDB_DATA_VERSION 1), checked against files
written by py-lmdb: a 16-byte page header (pgno u64, pad u16, flags u16, lower u16, upper u16),
then MDB_meta: magic u32 @16, version u32 @20, address @24, map size @32, then two MDB_db of
48 bytes (the free-page database @40, the main database @88), last page @136, txnid @144.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from atp.store.base import StoreError

DATA_FILE = "data.mdb"
RESTORE_ADVICE = "restore the data directory from a backup made with `atpctl db backup`"

_MAGIC = 0xBEEFC0DE
_VERSION = 1
_META_COUNT = 2
_PAGE_HEADER_BYTES = 16
_NODE_HEADER_BYTES = 8
_PAGE_FLAGS_AT = 10
_FREE_SPACE_LOWER_AT = 12  # mp_lower: the end of the page's array of node offsets
_MAGIC_AT = 16
_VERSION_AT = 20
_PAGE_SIZE_AT = 40  # md_pad of the free-page database, which holds the page size
_FREE_ROOT_AT = 80  # md_root of the free-page database
_LAST_PAGE_AT = 136
_TXNID_AT = 144
_META_BYTES = 152
_PAGE_SIZES = tuple(2**shift for shift in range(9, 17))  # what LMDB can write: 512 to 64 KiB
_NO_PAGE = 2**64 - 1  # P_INVALID: the root of an empty database

_META_PAGE_FLAG = 0x08
_BRANCH_PAGE_FLAG = 0x01
_LEAF_PAGE_FLAG = 0x02
_OVERFLOW_NODE_FLAG = 0x01  # F_BIGDATA: the value lives on overflow pages

# A running writer may commit while we read; a changed txnid means we read a moving target.
_ATTEMPTS = 3

# LMDB writes its pages in the machine's byte order ("=": native order, standard sizes).
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_NODE = struct.Struct("=HHHH")  # lo, hi, flags, key size
# The offsets above are those of 64-bit LMDB; elsewhere a wrong guess would refuse sound files.
_LAYOUT_KNOWN = struct.calcsize("P") == 8


class DamagedDataFileError(StoreError):
    """data.mdb is not what its own meta pages describe: LMDB must not map it."""


@dataclass(frozen=True)
class Meta:
    """What one meta page says about the file, when the page itself is sound."""

    page_size: int
    free_root: int
    last_page: int
    txnid: int

    @property
    def used_bytes(self) -> int:
        """Bytes up to the end of the last page the committed transaction allocated."""
        return (self.last_page + 1) * self.page_size


def check_data_file(data_dir: str) -> None:
    """Raise DamagedDataFileError unless `data_dir`'s data.mdb is safe for LMDB to map.

    A missing or empty data.mdb is a new data directory: LMDB initializes it.
    """
    if not _LAYOUT_KNOWN:
        return
    path = os.path.join(data_dir, DATA_FILE)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as error:
        raise StoreError(f"{path}: cannot read: {error.strerror}") from error
    try:
        _check_open_file(descriptor, path)
    finally:
        os.close(descriptor)


def _check_open_file(descriptor: int, path: str) -> None:
    """Judge the file by its newest sound meta page. `atpctl db verify` may run beside atpd:
    when a commit lands while we read, the next attempt reads the new meta page."""
    for attempt in range(1, _ATTEMPTS + 1):
        metas = _read_metas(descriptor, path)
        if metas is None:
            return
        latest = _latest(metas, path)
        # Sized after the meta: LMDB writes a transaction's pages before its meta page.
        size = os.fstat(descriptor).st_size
        if not _is_complete(descriptor, latest, size):
            if attempt < _ATTEMPTS and _latest_txnid(descriptor, path) != latest.txnid:
                continue
            raise DamagedDataFileError(
                f"{path} is truncated: {_bytes(size)}, but its last committed transaction "
                f"uses {_bytes(latest.used_bytes)}; {RESTORE_ADVICE}"
            )
        _require_both_sound(metas, path)
        return


def _read_metas(descriptor: int, path: str) -> list[Meta | str] | None:
    """Both meta pages, each a Meta or what is wrong with it (a phrase to follow "has");
    None for an empty file."""
    size = os.fstat(descriptor).st_size
    if size == 0:
        return None
    page_size = _page_size(descriptor)
    if size < _META_COUNT * page_size:
        raise DamagedDataFileError(
            f"{path} is truncated: {_bytes(size)}, less than the two meta pages "
            f"({_bytes(_META_COUNT * page_size)}) every LMDB file starts with; {RESTORE_ADVICE}"
        )
    return [_read_meta(descriptor, index, page_size) for index in range(_META_COUNT)]


def _page_size(descriptor: int) -> int:
    """The page size meta page 0 records; when that is garbage, LMDB's default (the OS page
    size), so that meta page 1 can still be found and judged."""
    field = os.pread(descriptor, _U32.size, _PAGE_SIZE_AT)
    recorded: int = _U32.unpack(field)[0] if len(field) == _U32.size else 0
    return recorded if recorded in _PAGE_SIZES else mmap.PAGESIZE


def _read_meta(descriptor: int, index: int, page_size: int) -> Meta | str:
    page = os.pread(descriptor, _META_BYTES, index * page_size)
    if len(page) < _META_BYTES:
        return "been cut short"
    if not _unpack(_U16, page, _PAGE_FLAGS_AT) & _META_PAGE_FLAG:
        return "no meta page flag"
    magic = _unpack(_U32, page, _MAGIC_AT)
    if magic != _MAGIC:
        return f"a bad magic number 0x{magic:08X} (LMDB's is 0x{_MAGIC:08X})"
    version = _unpack(_U32, page, _VERSION_AT)
    if version != _VERSION:
        return f"format version {version}, not {_VERSION}"
    return Meta(
        page_size=page_size,
        free_root=_unpack(_U64, page, _FREE_ROOT_AT),
        last_page=_unpack(_U64, page, _LAST_PAGE_AT),
        txnid=_unpack(_U64, page, _TXNID_AT),
    )


def _latest(metas: list[Meta | str], path: str) -> Meta:
    """The sound meta page with the highest txnid (LMDB's choice), the other if it is not."""
    sound = [meta for meta in metas if isinstance(meta, Meta)]
    if not sound:
        described = "; ".join(f"meta page {index} has {meta}" for index, meta in enumerate(metas))
        raise DamagedDataFileError(
            f"{path} is not an LMDB data file or its header is damaged ({described}); "
            f"{RESTORE_ADVICE}"
        )
    return max(sound, key=lambda meta: meta.txnid)


def _latest_txnid(descriptor: int, path: str) -> int | None:
    try:
        metas = _read_metas(descriptor, path)
        return _latest(metas, path).txnid if metas is not None else None
    except DamagedDataFileError:
        return None


def _require_both_sound(metas: list[Meta | str], path: str) -> None:
    """LMDB refuses a file with one bad meta page ("MDB_INVALID"): say which and why."""
    for index, meta in enumerate(metas):
        if not isinstance(meta, Meta):
            raise DamagedDataFileError(
                f"{path} is damaged: meta page {index} has {meta}; {RESTORE_ADVICE}"
            )


def _is_complete(descriptor: int, meta: Meta, size: int) -> bool:
    """True when every page LMDB may read lies inside the file.

    A sound file can end before `meta.used_bytes`: pages a transaction allocated at the end
    and freed again before committing are never written. They are on the free list, which
    LMDB never reads through the map (and rewrites with pwrite when it reuses them), so a
    short file is sound exactly when each missing page is a free one.
    """
    if size >= meta.used_bytes:
        return True
    pages_in_file = size // meta.page_size  # a partial last page is a missing one
    missing = range(pages_in_file, meta.last_page + 1)
    try:
        free = {page for page in _free_pages(descriptor, meta, pages_in_file) if page in missing}
    except _Unreadable:
        return False
    return len(free) == len(missing)


class _Unreadable(Exception):
    """The free-page database lies (partly) outside the file or does not parse."""


def _free_pages(descriptor: int, meta: Meta, pages_in_file: int) -> Iterator[int]:
    """Every page number LMDB's free-page database lists, read from the file with pread."""
    pending = [meta.free_root] if meta.free_root != _NO_PAGE else []
    visited: set[int] = set()
    while pending:
        page_number = pending.pop()
        if page_number in visited:  # a cycle: only damage makes one
            raise _Unreadable(page_number)
        visited.add(page_number)
        page = _read_pages(descriptor, meta.page_size, page_number, 1, pages_in_file)
        flags = _unpack(_U16, page, _PAGE_FLAGS_AT)
        for node_at in _node_offsets(page):
            low, high, node_flags, key_bytes = _unpack_node(page, node_at)
            if flags & _BRANCH_PAGE_FLAG:
                pending.append(low | high << 16 | node_flags << 32)
            elif flags & _LEAF_PAGE_FLAG:
                value_at = node_at + _NODE_HEADER_BYTES + key_bytes
                value_bytes = low | high << 16
                if node_flags & _OVERFLOW_NODE_FLAG:
                    value = _overflow_value(descriptor, meta, page, value_at, value_bytes,
                                            pages_in_file)
                else:
                    value = page[value_at:value_at + value_bytes]
                yield from _page_list(value)
            else:
                raise _Unreadable(page_number)


def _node_offsets(page: bytes) -> list[int]:
    lower = _unpack(_U16, page, _FREE_SPACE_LOWER_AT)
    count = max(0, (lower - _PAGE_HEADER_BYTES) // 2)
    return [_unpack(_U16, page, _PAGE_HEADER_BYTES + 2 * index) for index in range(count)]


def _unpack_node(page: bytes, node_at: int) -> tuple[int, int, int, int]:
    try:
        low, high, flags, key_bytes = _NODE.unpack_from(page, node_at)
    except struct.error as error:
        raise _Unreadable(node_at) from error
    return low, high, flags, key_bytes


def _overflow_value(
    descriptor: int, meta: Meta, page: bytes, value_at: int, value_bytes: int, pages_in_file: int
) -> bytes:
    """A value too big for its leaf: it starts after the header of its first overflow page."""
    first_page = _unpack(_U64, page, value_at)
    page_count = -(-(_PAGE_HEADER_BYTES + value_bytes) // meta.page_size)
    data = _read_pages(descriptor, meta.page_size, first_page, page_count, pages_in_file)
    return data[_PAGE_HEADER_BYTES:_PAGE_HEADER_BYTES + value_bytes]


def _page_list(value: bytes) -> tuple[int, ...]:
    """An LMDB ID list: a count, then that many page numbers, each a little-endian u64."""
    count = _unpack(_U64, value, 0)
    if _U64.size * (count + 1) > len(value):
        raise _Unreadable(count)
    return struct.unpack_from(f"={count}Q", value, _U64.size)


def _read_pages(
    descriptor: int, page_size: int, first_page: int, page_count: int, pages_in_file: int
) -> bytes:
    if first_page + page_count > pages_in_file:
        raise _Unreadable(first_page)
    return os.pread(descriptor, page_count * page_size, first_page * page_size)


def _bytes(count: int) -> str:
    return "1 byte" if count == 1 else f"{count:,} bytes"


def _unpack(layout: struct.Struct, data: bytes, offset: int) -> int:
    try:
        value: int = layout.unpack_from(data, offset)[0]
    except struct.error as error:
        raise _Unreadable(offset) from error
    return value
