"""Storage limits that never lose data: grow the map, then refuse what adds data.

LMDB's map is the most its file may grow to. The guard grows it as the data nears it, up to
the operator's cap (--max-data-mb). Past `headroom` below the cap, or with less than that
left on the filesystem, the server enters the storage-full state: commands that add data
are refused before they apply (RESOURCE_EXHAUSTED, reason STORAGE_FULL), while reads and
the commands that end demand (release, fulfil, commit, hold release, expiry) keep working
on the headroom. As retention purges free pages (LMDB reuses them), the state clears by
itself, with hysteresis so that it does not flap. This is etcd's NOSPACE alarm (writes
refused, reads and deletes served), not Redis's eviction: nothing is ever dropped to make
room.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from atp.store import Store, StoreFullError, StoreUsage

log = logging.getLogger("atp.storage")

MIB = 1 << 20
# Grow the map once the data takes this share of it; by doubling, never past the cap.
GROW_AT = 0.75


@dataclass(frozen=True)
class StorageLimits:
    max_bytes: int = 16384 * MIB

    @property
    def headroom_bytes(self) -> int:
        """Space kept for the commands that end demand, and for LMDB's copy-on-write."""
        return max(1 * MIB, self.max_bytes // 20)


class StorageGuard:
    def __init__(self, store: Store, limits: StorageLimits) -> None:
        self.store = store
        self.limits = limits
        self.usage: StoreUsage | None = None
        # Why writes are refused now; None while there is room.
        self.full_reason: str | None = None
        # A commit failed for want of space and none has succeeded since: the measure alone
        # (data committed so far) cannot say the pending batch fits, so the state holds.
        self.commit_failed = False

    def check(self) -> None:
        """Measures, grows the map if due, and enters or leaves the storage-full state.
        Runs on the commit thread (after commits and purge slices)."""
        usage = self.store.usage()
        wanted = self._map_size_for(usage)
        if wanted > usage.map_size:
            self.store.grow_map(wanted)
            log.info("grew the LMDB map from %d to %d MiB", usage.map_size // MIB, wanted // MIB)
            usage = self.store.usage()
        self.usage = usage
        self._update_state(usage)

    def grow_for(self, error: StoreFullError) -> bool:
        """A batch found the map full: double the map (up to the cap) whatever the data
        committed so far uses, since one batch may be larger than the map's free part; False
        when that cannot help (the cap is reached, or it is the filesystem that is full)."""
        map_size = self.store.usage().map_size
        if not error.map_full or map_size >= self.limits.max_bytes:
            return False
        wanted = min(self.limits.max_bytes, map_size * 2)
        self.store.grow_map(wanted)
        log.info("grew the LMDB map from %d to %d MiB for a large batch", map_size // MIB,
                 wanted // MIB)
        return True

    def note_failed_commit(self, error: Exception) -> None:
        """A commit found no space although the guard thought there was (a batch larger than
        the headroom, or the filesystem filled from outside): refuse until a commit succeeds
        and the measure shows room."""
        self.full_reason = f"storage is full: {error}"
        self.commit_failed = True
        log.error("%s; refusing writes that add data until space frees", self.full_reason)

    def note_commit(self) -> None:
        self.commit_failed = False

    def _map_size_for(self, usage: StoreUsage) -> int:
        size = usage.map_size
        while usage.used > GROW_AT * size and size < self.limits.max_bytes:
            size = min(self.limits.max_bytes, size * 2)
        return size

    def _update_state(self, usage: StoreUsage) -> None:
        headroom = self.limits.headroom_bytes
        left_in_cap = self.limits.max_bytes - usage.used
        reason = None
        if left_in_cap < headroom:
            reason = (f"the data uses {usage.used // MIB} MiB of its "
                      f"{self.limits.max_bytes // MIB} MiB cap (--max-data-mb)")
        elif usage.filesystem_free < headroom:
            reason = f"the filesystem has {usage.filesystem_free // MIB} MiB left"
        if reason is not None and self.full_reason is None:
            self.full_reason = f"storage is full: {reason}"
            log.error("%s; refusing writes that add data until retention or the operator "
                      "frees space", self.full_reason)
        elif reason is None and self.full_reason is not None and not self.commit_failed and (
            left_in_cap > 2 * headroom and usage.filesystem_free > 2 * headroom
        ):
            self.full_reason = None
            log.warning("storage has room again; accepting all writes")
