"""The leader's side of replication: every committed batch, numbered, kept in memory for a
while so that followers can stream it, and what each follower has acknowledged.

A batch is the exact record changes and journal entries one group commit wrote; its number
(the commit) is stored with it in the meta database, so a follower that stores the batch as
it is also stores how far it got. A follower asking for batches the log no longer holds must
start from a snapshot instead (SNAPSHOT_REQUIRED).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Sequence

from atp import limits
from atp.ledger.errors import SNAPSHOT_REQUIRED, FailedPrecondition
from atp.store import Store, WriteBatch
from atp.store.base import META, SnapshotRecord

# The meta record holding the number of the last batch committed (8 bytes, big-endian).
COMMIT_KEY = b"commit"
# The meta record of the term history: for each term that committed anything, the term and
# its first commit (two 8-byte big-endian numbers each), oldest first. A new leader adds its
# term with the first batch it commits; followers store it with that batch, so that any two
# members can tell where their histories part (as PostgreSQL's timeline history does).
TERMS_KEY = b"terms"


def stored_commit(store: Store) -> int:
    """The number of the last batch the store holds (0 for a store that never had one)."""
    data = store.get(META, COMMIT_KEY)
    return int.from_bytes(data, "big") if data else 0


def number_batch(batch: WriteBatch, commit: int) -> None:
    """Stores the batch's number with it, in the same atomic commit."""
    batch.put(META, COMMIT_KEY, commit.to_bytes(8, "big"))


def encode_terms(history: list[tuple[int, int]]) -> bytes:
    return b"".join(term.to_bytes(8, "big") + first.to_bytes(8, "big") for term, first in history)


def decode_terms(data: bytes | None) -> list[tuple[int, int]]:
    """The (term, first commit) pairs of a stored term history ([] when none is stored)."""
    data = data or b""
    return [(int.from_bytes(data[at:at + 8], "big"), int.from_bytes(data[at + 8:at + 16], "big"))
            for at in range(0, len(data) - 15, 16)]


def stored_terms(store: Store) -> list[tuple[int, int]]:
    return decode_terms(store.get(META, TERMS_KEY))


def term_of(history: list[tuple[int, int]], commit: int) -> int:
    """The term that made `commit` (0: before any term, or none recorded)."""
    found = 0
    for term, first in history:
        if first > commit:
            break
        found = term
    return found


def snapshot_position(meta: Sequence[SnapshotRecord]) -> tuple[int, int]:
    """The commit a snapshot holds and the term that made it, from its META records (its
    first chunk): (0, 0) for a store that never committed."""
    found = {key: value for database, key, value in meta if database == META}
    commit_data = found.get(COMMIT_KEY)
    commit = int.from_bytes(commit_data, "big") if commit_data else 0
    history = decode_terms(found.get(TERMS_KEY))
    return commit, history[-1][0] if history else 0


def batch_bytes(batch: WriteBatch) -> int:
    return sum(len(key) + len(value or b"") for (_, key), value in batch.records.items()) + sum(
        len(data) for _, data in batch.journal)


class ReplicationLog:
    """The recent committed batches, in commit order, bounded by count and bytes."""

    def __init__(
        self, last_commit: int, batches_max: int = limits.replication_log_batches_max,
        bytes_max: int = limits.replication_log_bytes_max,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.last_commit = last_commit
        self.clock = clock
        self.batches_max = batches_max
        self.bytes_max = bytes_max
        # (commit, batch, its term, its size in bytes), oldest first.
        self._batches: collections.deque[tuple[int, WriteBatch, int, int]] = collections.deque()
        # commit -> when it was committed (clock), for the lag in seconds; as bounded as the
        # batches, and kept beside them so that a lag stays known after its batch left.
        self._commit_times: collections.deque[tuple[int, float]] = collections.deque()
        self._bytes = 0
        self._appended = asyncio.Event()
        # follower id -> the highest commit it acknowledged as durable.
        self.acknowledged: dict[str, int] = {}
        # The followers streaming now.
        self.connected: set[str] = set()
        # Called with the highest commit `sync_replicas` followers all hold, when it grows.
        self.on_replicated: Callable[[int], None] | None = None
        self.sync_replicas = 0
        # In a cluster, the followers chosen as synchronous standbys (recorded in etcd before
        # they count): only their acknowledgements confirm writes, so that a standby holds
        # everything confirmed and may take over. None: any sync_replicas followers count.
        self.sync_standbys: tuple[str, ...] | None = None
        # Whether a follower's acknowledgements count towards sync_replicas (the gateways of
        # `atpd --gateways N` follow their writer, but are no replicas: they hold memory only).
        self.counts_as_replica: Callable[[str], bool] = _every_follower
        # Snapshots streamed to followers in full (server.snapshot counts them).
        self.snapshots_sent = 0

    def restart_at(self, commit: int) -> None:
        """This member's store was replaced by a snapshot at `commit`: the batches held
        before it are of another history, and the next one appended follows it."""
        self._batches.clear()
        self._commit_times.clear()
        self._bytes = 0
        self.last_commit = commit

    def choose_standbys(self, standbys: tuple[str, ...]) -> None:
        """The synchronous standbys from now on (already recorded where a successor reads
        them); writes they all hold are confirmed at once."""
        self.sync_standbys = standbys
        if self.on_replicated is not None and self.sync_replicas:
            self.on_replicated(self.replicated_commit(self.sync_replicas))

    def reset_followers(self) -> None:
        """Forgets every follower's progress (a new term: they must connect again)."""
        self.acknowledged.clear()
        self.connected.clear()

    def append(self, commit: int, batch: WriteBatch, term: int = 0) -> None:
        """A batch is durable here: followers may have it now."""
        if commit != self.last_commit + 1:  # a snapshot replaced what came before
            self.restart_at(commit - 1)
        size = batch_bytes(batch)
        self._batches.append((commit, batch, term, size))
        self._bytes += size
        self.last_commit = commit
        self._commit_times.append((commit, self.clock()))
        if len(self._commit_times) > self.batches_max:
            self._commit_times.popleft()
        while len(self._batches) > self.batches_max or (
            self._bytes > self.bytes_max and len(self._batches) > 1
        ):
            self._bytes -= self._batches.popleft()[3]
        self._appended.set()
        self._appended = asyncio.Event()

    @property
    def oldest_commit(self) -> int:
        """The first commit the log can still send."""
        return self._batches[0][0] if self._batches else self.last_commit + 1

    async def after(self, commit: int) -> AsyncIterator[tuple[int, WriteBatch, int]]:
        """Every batch after `commit`, then each new one as it is committed (forever)."""
        wanted = commit + 1
        while True:
            if wanted <= self.last_commit:
                oldest = self.oldest_commit
                if wanted < oldest:
                    raise FailedPrecondition(
                        SNAPSHOT_REQUIRED,
                        f"commit {wanted} is no longer in the leader's replication log (it "
                        f"holds {oldest}..{self.last_commit}); start from a snapshot",
                        {"oldest_commit": str(oldest), "last_commit": str(self.last_commit)},
                    )
                found, batch, term, _ = self._batches[wanted - oldest]
                yield found, batch, term
                wanted += 1
            else:
                await self._appended.wait()

    def acknowledge(self, follower_id: str, commit: int) -> None:
        if commit > self.acknowledged.get(follower_id, 0):
            self.acknowledged[follower_id] = commit
            if self.on_replicated is not None and self.sync_replicas:
                self.on_replicated(self.replicated_commit(self.sync_replicas))

    def lag_of(self, follower_id: str) -> tuple[int, float]:
        """(commits the follower has not acknowledged, seconds since the oldest of them was
        committed); (0, 0.0) when it is caught up."""
        acknowledged = self.acknowledged.get(follower_id, 0)
        behind = max(0, self.last_commit - acknowledged)
        if not behind:
            return 0, 0.0
        for commit, when in self._commit_times:
            if commit > acknowledged:
                return behind, max(0.0, self.clock() - when)
        return behind, 0.0

    def replicated_commit(self, replicas: int) -> int:
        """The highest commit that at least `replicas` followers hold (0: none yet); in a
        cluster, that every synchronous standby holds."""
        if self.sync_standbys is not None:
            if len(self.sync_standbys) < replicas:
                return 0
            return min(self.acknowledged.get(name, 0) for name in self.sync_standbys)
        held = sorted((commit for name, commit in self.acknowledged.items()
                       if self.counts_as_replica(name)), reverse=True)
        return held[replicas - 1] if len(held) >= replicas else 0


def _every_follower(_follower_id: str) -> bool:
    return True
