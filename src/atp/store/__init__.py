"""Storage behind a narrow bytes-only interface: an LMDB store and an in-memory one, the
names of the stored databases, and the offline tools of `atpctl db` (stat, backup, compact).

May import: nothing of atp (it knows bytes, not the ledger); lmdb.
"""

from atp.store.base import (
    DATABASES,
    JOURNAL_DATABASE,
    KEY_BYTES_MAX,
    SEQUENCE_MAX,
    Store,
    StoreError,
    StoreFullError,
    StoreUsage,
    WriteBatch,
)
from atp.store.lmdb_store import LmdbStore
from atp.store.memory import MemoryStore

__all__ = [
    "DATABASES",
    "JOURNAL_DATABASE",
    "KEY_BYTES_MAX",
    "SEQUENCE_MAX",
    "LmdbStore",
    "MemoryStore",
    "Store",
    "StoreError",
    "StoreFullError",
    "StoreUsage",
    "WriteBatch",
]
