"""A cluster member's loop: lead through an etcd lease, or follow whoever does.

Keys under /atp/NAME/ (the cluster's prefix):
- `leader`: the leader's address, attached to its lease. Whoever creates it leads; its
  create_revision is the term (etcd revisions only grow, so a later leader has a larger term).
- `members/ADDRESS`: each member's role, commit and term, attached to its lease (gone with it),
  rewritten every loop: `atpctl cluster status` lists them, candidates compare commits.
- `sync`: the synchronous standbys of the last leader that chose any (no lease). Only they
  and that leader hold everything that was confirmed, so only they may take over.
- `status`: the last leader's term and commit (no lease): with asynchronous followers, a
  candidate further behind than --max-lag-on-failover commits may not take over.

Timing (Patroni's rule, loop_wait + 2 * retry_timeout <= ttl): the loop runs every ttl/3 and
gives etcd ttl/3 to answer. A leader renews its lease each loop; it stops confirming writes
at the send time of its last successful renewal plus the TTL, less a margin
(`Timing.fence_margin_s`): etcd counts the TTL from when it received that renewal, which is
later, so the old leader is silent before any successor can be elected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from atp.cluster.etcd import EtcdClient, EtcdError, KeyValue, Lease

log = logging.getLogger("atp.cluster")

LEADER, FOLLOWER, CANDIDATE = "leader", "follower", "candidate"
# Seconds between a new leader's checks for followers to make standbys (in synchronous mode
# it confirms nothing until it has them: a failover's last step).
STANDBY_CHECK_S = 0.05


class Node(Protocol):
    """What the member loop drives: this process's replication roles."""

    address: str
    sync_replicas: int

    def commit(self) -> int: ...

    def ready(self) -> bool: ...

    def term(self) -> int: ...

    async def lead(self, term: int, lease_deadline: float) -> None: ...

    async def follow(self, leader: str, term: int) -> None: ...

    def stand_by(self) -> None: ...

    def extend_lease(self, lease_deadline: float) -> None: ...

    def standbys(self) -> tuple[str, ...] | None: ...

    def standby_choices(self) -> list[str]: ...

    def choose_standbys(self, standbys: tuple[str, ...]) -> None: ...


@dataclass(frozen=True)
class Timing:
    """The lease TTL and what follows from it."""

    ttl_s: int = 10

    @property
    def loop_wait_s(self) -> float:
        return self.ttl_s / 3

    @property
    def retry_timeout_s(self) -> float:
        return self.ttl_s / 3

    @property
    def fence_margin_s(self) -> float:
        """Kept between the leader's last confirmation and the earliest its lease can end
        (clock rate differences, a confirmation already on its way out)."""
        return min(1.0, self.ttl_s / 6)


@dataclass(frozen=True)
class MemberRecord:
    """What a member publishes of itself each loop."""

    address: str
    role: str
    commit: int
    term: int
    published: float  # wall-clock time of publishing

    @classmethod
    def parse(cls, text: str) -> MemberRecord | None:
        try:
            data = json.loads(text)
            return cls(str(data["address"]), str(data["role"]), int(data["commit"]),
                       int(data["term"]), float(data["published"]))
        except (ValueError, KeyError, TypeError):
            return None

    def dump(self) -> str:
        return json.dumps({"address": self.address, "role": self.role, "commit": self.commit,
                           "term": self.term, "published": self.published})


@dataclass
class ClusterView:
    """What this member last learned of the cluster (Status and metrics show it)."""

    name: str
    role: str = CANDIDATE
    leader: str = ""
    term: int = 0
    members: list[MemberRecord] = field(default_factory=list)
    eligible: set[str] = field(default_factory=set)
    sync_standbys: tuple[str, ...] = ()
    renewed_at: float | None = None  # monotonic time of the last successful renewal


class Member:
    """Runs the loop until stopped; see the module docstring."""

    def __init__(
        self, etcd: EtcdClient, cluster: str, node: Node, timing: Timing = Timing(),
        max_lag_on_failover: int = 1000, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.etcd = etcd
        self.node = node
        self.timing = timing
        self.max_lag_on_failover = max_lag_on_failover
        self.clock = clock
        self.prefix = f"/atp/{cluster}/"
        self.view = ClusterView(cluster)
        self._lease: Lease | None = None
        self._leader_key: KeyValue | None = None  # the key we created, while we lead
        self._sync_key: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Set when the leader key changes (watched), to act at once rather than a loop later.
        self._wake = asyncio.Event()

    @property
    def leader_key(self) -> str:
        return self.prefix + "leader"

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="atp-cluster-member"),
                       asyncio.create_task(self._watch_leader(), name="atp-cluster-watch")]

    async def stop(self) -> None:
        """Stops the loop; a leader resigns (its keys go with its lease, so that a successor
        is elected at once rather than a TTL later)."""
        self._stopping = True  # a cancellation lost in a race still ends the loop
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.node.stand_by()
        await self._give_up_lease()

    async def _give_up_lease(self) -> None:
        """Revokes the lease: the leader key (if ours) and our member key go at once."""
        if self._lease is None:
            return
        lease, self._lease = self._lease, None
        try:
            await self.etcd.revoke_lease(lease.id, timeout=self.timing.retry_timeout_s)
        except EtcdError as error:
            log.warning("could not give up the lease (it ends by itself): %s", error)

    async def _run(self) -> None:
        """The loop never ends by itself: etcd failing is waited out, and anything else is
        logged and answered by standing by and giving up the lease (a member that holds the
        leader key but cannot lead must not keep it), then the loop goes on."""
        while not self._stopping:
            started = self.clock()
            self._wake.clear()
            try:
                await self.cycle()
                await self._until_next_cycle(started)
                continue
            except EtcdError as error:
                self._etcd_failed(error)
            except Exception:
                log.exception("the member loop failed; standing by")
                await self._stand_by_after_failure()
            await asyncio.sleep(max(0.0, self.timing.loop_wait_s - (self.clock() - started)))

    async def _stand_by_after_failure(self) -> None:
        if self.view.role == LEADER:
            self._lost("the member loop failed")
        self.node.stand_by()
        self.view.role, self.view.leader = CANDIDATE, ""
        await self._give_up_lease()

    async def _until_next_cycle(self, started: float) -> None:
        """Sleeps out the loop; a new leader short of standbys looks for them meanwhile, and
        a change of the leader key ends the sleep."""
        while (remaining := self.timing.loop_wait_s - (self.clock() - started)) > 0:
            short = self.view.role == LEADER and self._short_of_standbys()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancellation
                # that arrives as the wait completes, and stop() would wait forever.
                async with asyncio.timeout(min(remaining, STANDBY_CHECK_S) if short else remaining):
                    await self._wake.wait()
                return
            except TimeoutError:
                if short:
                    await self._keep_standbys()

    def _short_of_standbys(self) -> bool:
        return bool(self.node.sync_replicas) and len(
            self.node.standbys() or ()) < self.node.sync_replicas

    async def _watch_leader(self) -> None:
        while True:
            try:
                async for _ in self.etcd.watch(self.leader_key):
                    self._wake.set()  # gone: campaign; taken: follow the new leader
            except EtcdError:
                pass
            await asyncio.sleep(self.timing.loop_wait_s)

    async def cycle(self) -> None:
        """One pass: renew, look at the leader key, act, publish."""
        await self._renew()
        holder = await self.etcd.get(self.leader_key, timeout=self.timing.retry_timeout_s)
        if holder is not None and self._lease is not None and holder.lease == self._lease.id:
            await self._keep_leading(holder)
        elif holder is not None:
            await self._follow(holder)
        else:
            if self.view.role == LEADER:
                self._lost("its leader key is gone")
            await self._campaign()
        await self._publish()

    async def _renew(self) -> None:
        timeout = self.timing.retry_timeout_s
        sent = self.clock()
        if self._lease is None:
            self._lease = await self.etcd.grant_lease(self.timing.ttl_s, timeout=timeout)
            ttl = self._lease.ttl
        else:
            ttl = await self.etcd.keep_alive_once(self._lease.id, timeout=timeout)
            if ttl <= 0:  # expired (we were stopped or cut off for longer than the TTL)
                self._lease = None
                if self.view.role == LEADER:
                    self._lost("its lease expired")
                await self._renew()
                return
        self.view.renewed_at = sent
        if self.view.role == LEADER:
            self.node.extend_lease(self._deadline(sent, ttl))

    def _deadline(self, sent: float, ttl: int) -> float:
        return sent + ttl - self.timing.fence_margin_s

    def _etcd_failed(self, error: EtcdError) -> None:
        """etcd did not answer: a leader goes on until its deadline (the writer stops
        confirming by itself then), after which it is no longer leader."""
        log.warning("etcd: %s", error)
        renewed = self.view.renewed_at
        if self.view.role == LEADER and (
                renewed is None or self.clock() >= self._deadline(renewed, self.timing.ttl_s)):
            self._lost("it cannot reach etcd to renew its lease")

    def _lost(self, why: str) -> None:
        log.error("leadership of term %d lost: %s; confirming nothing more", self.view.term, why)
        self.node.stand_by()
        self.view.role, self.view.leader = CANDIDATE, ""
        self._leader_key = None

    async def _follow(self, holder: KeyValue) -> None:
        address = _address_of(holder)
        if self.view.role == LEADER:
            self._lost(f"{address} holds the leader key")
        if address == self.node.address:  # our key from before a restart: wait for its end
            self.node.stand_by()
            self.view.role, self.view.leader = CANDIDATE, ""
            return
        term = holder.create_revision
        if self.view.role != FOLLOWER or (self.view.leader, self.view.term) != (address, term):
            log.info("following %s (term %d)", address, term)
            await self.node.follow(address, term)
            self.view.role, self.view.leader, self.view.term = FOLLOWER, address, term

    async def _campaign(self) -> None:
        if self._lease is None or not await self._may_take_over():
            return
        won, holder = await self.etcd.create_if_absent(
            self.leader_key, json.dumps({"address": self.node.address}), self._lease.id,
            timeout=self.timing.retry_timeout_s)
        if not won or holder is None:
            if holder is not None:
                await self._follow(holder)
            return
        term = holder.create_revision
        renewed = self.view.renewed_at or self.clock()
        await self.node.lead(term, self._deadline(renewed, self._lease.ttl))
        self._leader_key = holder
        self.view.role, self.view.leader, self.view.term = LEADER, self.node.address, term
        log.warning("leading the cluster in term %d from commit %d", term, self.node.commit())

    async def _may_take_over(self) -> bool:
        """Whether this member holds everything any leader confirmed, and no live eligible
        member holds more (which would lose less)."""
        if not self.node.ready():  # installing a snapshot, or failed
            return False
        members = await self._read_members()
        eligible = await self._eligible(members)
        self.view.eligible = eligible
        if self.node.address not in eligible:
            return False
        mine = self.node.commit()
        return not any(record.commit > mine for record in members
                       if record.address in eligible and record.address != self.node.address)

    async def _eligible(self, members: list[MemberRecord]) -> set[str]:
        """The members that may take over: in synchronous mode, the last standbys and their
        leader; otherwise those within --max-lag-on-failover of the last leader's commit."""
        addresses = {record.address for record in members} | {self.node.address}
        sync = await self.etcd.get(self.prefix + "sync", timeout=self.timing.retry_timeout_s)
        self._sync_key = sync
        if self.node.sync_replicas and sync is not None:
            data = _json(sync.value)
            standbys = _strings(data.get("standbys"))
            return addresses & (standbys | {str(data.get("leader", ""))})
        status = await self.etcd.get(self.prefix + "status", timeout=self.timing.retry_timeout_s)
        last_commit = _number(_json(status.value).get("commit")) if status is not None else 0
        commits = {record.address: record.commit for record in members}
        commits[self.node.address] = self.node.commit()
        return {address for address in addresses
                if commits.get(address, 0) >= last_commit - self.max_lag_on_failover}

    async def _keep_leading(self, holder: KeyValue) -> None:
        self._leader_key = holder
        self.view.eligible = {self.node.address, *(self.node.standbys() or ())}
        await self.etcd.put(self.prefix + "status", json.dumps(
            {"leader": self.node.address, "term": self.view.term, "commit": self.node.commit()}),
            timeout=self.timing.retry_timeout_s)
        if self.node.sync_replicas:
            await self._keep_standbys()

    async def _keep_standbys(self) -> None:
        """Keeps sync_replicas connected, caught-up followers as standbys. A change is
        recorded in etcd before it counts; while it is being recorded, the old and the new
        standbys must all confirm, so that whoever may take over holds every confirmed write."""
        current = self.node.standbys() or ()
        wanted = tuple(self.node.standby_choices()[: self.node.sync_replicas])
        if len(wanted) < self.node.sync_replicas or set(wanted) == set(current):
            self.view.sync_standbys = current
            return
        self.node.choose_standbys(tuple(dict.fromkeys((*current, *wanted))))
        record = json.dumps({"leader": self.node.address, "term": self.view.term,
                             "standbys": list(wanted)})
        await self.etcd.put(self.prefix + "sync", record, timeout=self.timing.retry_timeout_s)
        self.node.choose_standbys(wanted)
        self.view.sync_standbys = wanted
        log.info("synchronous standbys now %s", ", ".join(wanted))

    async def _publish(self) -> None:
        if self._lease is None:
            return
        record = MemberRecord(self.node.address, self.view.role, self.node.commit(),
                              self.node.term(), time.time())
        await self.etcd.put(self.prefix + "members/" + self.node.address, record.dump(),
                            self._lease.id, timeout=self.timing.retry_timeout_s)
        self.view.members = await self._read_members()

    async def _read_members(self) -> list[MemberRecord]:
        found = await self.etcd.get_prefix(self.prefix + "members/",
                                           timeout=self.timing.retry_timeout_s)
        return [record for kv in found if (record := MemberRecord.parse(kv.value)) is not None]


def _json(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _strings(value: object) -> set[str]:
    return {str(item) for item in value} if isinstance(value, list) else set()


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0


def _address_of(holder: KeyValue) -> str:
    return str(_json(holder.value).get("address", ""))
