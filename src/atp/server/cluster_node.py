"""This process as a cluster member sees it (atp.cluster.member.Node): the writer, the
replication log it feeds followers from, and the follower that feeds it."""

from __future__ import annotations

import math

from atp.engine.replication import ReplicationLog
from atp.engine.writer import Writer
from atp.server.replication import Follower


class ClusterNode:
    def __init__(
        self, writer: Writer, replication_log: ReplicationLog, follower: Follower, address: str
    ) -> None:
        self.writer = writer
        self.log = replication_log
        self.follower = follower
        self.address = address
        self.sync_replicas = writer.sync_replicas

    def commit(self) -> int:
        return self.writer.commit_index

    def ready(self) -> bool:
        """Whether this member's copy is whole (not mid-snapshot) and its writer alive."""
        return not self.writer.restoring and self.writer.failure is None

    def term(self) -> int:
        return self.writer.term

    async def lead(self, term: int, lease_deadline: float) -> None:
        """Stops following and takes commands in `term`; in synchronous mode nothing is
        confirmed until standbys are chosen (and recorded)."""
        await self.follower.stop()
        self.log.reset_followers()
        if self.sync_replicas:
            self.log.choose_standbys(())
        self.writer.lease_deadline = lease_deadline
        self.writer.lead(term)

    async def follow(self, leader: str, term: int) -> None:
        self.writer.lease_deadline = math.inf
        await self.follower.follow(leader, term)

    def stand_by(self) -> None:
        self.writer.step_down(None)

    def extend_lease(self, lease_deadline: float) -> None:
        self.writer.lease_deadline = lease_deadline

    def standbys(self) -> tuple[str, ...] | None:
        return self.log.sync_standbys

    def standby_choices(self) -> list[str]:
        """Connected followers that hold every write confirmed so far (and everything before
        this term, all of which some leader may have confirmed): the current standbys first,
        then the most caught-up."""
        current = self.log.sync_standbys or ()
        confirmed = self.log.replicated_commit(self.sync_replicas) if current else 0
        term_began = self.writer.terms[-1][1] if self.writer.terms else 1
        floor = max(confirmed, term_began - 1)
        ready = [name for name in self.log.connected if self.log.acknowledged.get(name, 0) >= floor]
        return sorted(ready, key=lambda name: (name not in current,
                                               -self.log.acknowledged.get(name, 0), name))

    def choose_standbys(self, standbys: tuple[str, ...]) -> None:
        self.log.choose_standbys(standbys)
