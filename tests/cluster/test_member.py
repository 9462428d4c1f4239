"""The cluster member loop (atp.cluster.member.Member) on a real etcd, with fake nodes that
record what the loop tells them: election, terms, lease renewal, resigning and losing the
lease, synchronous standbys and who may take over, asynchronous lag, the published view.

Cycles are driven by hand (`await member.cycle()`) where the order matters; start()/stop()
only where the loop itself is under test (the watch that wakes members, resigning).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from atp.cluster.etcd import EtcdClient, EtcdError
from atp.cluster.member import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    ClusterView,
    Member,
    MemberRecord,
    Node,
    Timing,
)
from tests.support.etcd import EtcdProcess

pytestmark = pytest.mark.integration

CLUSTER = "c1"
PREFIX = f"/atp/{CLUSTER}/"
LEADER_KEY = PREFIX + "leader"
TIMING = Timing(ttl_s=3)


@dataclass
class FakeNode:
    """A Node that records every call: (name, *arguments, monotonic time of the call)."""

    address: str
    sync_replicas: int = 0
    commit_index: int = 0
    term_value: int = 0
    choices: list[str] = field(default_factory=list)
    current_standbys: tuple[str, ...] | None = None
    is_ready: bool = True
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def commit(self) -> int:
        return self.commit_index

    def ready(self) -> bool:
        return self.is_ready

    def term(self) -> int:
        return self.term_value

    async def lead(self, term: int, lease_deadline: float) -> None:
        self.calls.append(("lead", term, lease_deadline, time.monotonic()))
        self.term_value = term
        if self.sync_replicas:  # as ClusterNode: nothing confirmed until standbys are chosen
            self.current_standbys = ()

    async def follow(self, leader: str, term: int) -> None:
        self.calls.append(("follow", leader, term, time.monotonic()))

    def stand_by(self) -> None:
        self.calls.append(("stand_by", time.monotonic()))

    def extend_lease(self, lease_deadline: float) -> None:
        self.calls.append(("extend_lease", lease_deadline, time.monotonic()))

    def standbys(self) -> tuple[str, ...] | None:
        return self.current_standbys

    def standby_choices(self) -> list[str]:
        return list(self.choices)

    def choose_standbys(self, standbys: tuple[str, ...]) -> None:
        self.calls.append(("choose_standbys", standbys, time.monotonic()))
        self.current_standbys = standbys

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]

    def leads(self) -> list[int]:
        return [int(call[1]) for call in self.named("lead")]


def _conforms(node: FakeNode) -> Node:
    return node  # mypy checks that FakeNode is a Node


class Members:
    """Members of one cluster on one etcd, each with its own client and fake node."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.clients: list[EtcdClient] = []
        self.members: list[Member] = []

    def add(self, node: FakeNode, timing: Timing = TIMING, max_lag: int = 1000) -> Member:
        client = EtcdClient(self.endpoint)
        self.clients.append(client)
        member = Member(client, CLUSTER, node, timing, max_lag_on_failover=max_lag)
        self.members.append(member)
        return member

    async def close(self) -> None:
        for member in self.members:
            await stop(member)
        for client in self.clients:
            await client.close()


async def stop(member: Member) -> None:
    """member.stop(), having first made sure that its tasks ended: on Python 3.11 a single
    cancel can be lost (see test_stop_ends_the_loop_when_woken_as_it_stops), and the test
    must not hang on that bug."""
    for _ in range(25):
        running = [task for task in member._tasks if not task.done()]
        if not running:
            break
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=0.2)
    await member.stop()


def node_of(member: Member) -> FakeNode:
    node = member.node
    assert isinstance(node, FakeNode)
    return node


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


def run(etcd: EtcdProcess, scenario: Callable[[Members, EtcdClient], Awaitable[None]]) -> None:
    async def main() -> None:
        members = Members(etcd.endpoint)
        async with EtcdClient(etcd.endpoint) as admin:
            try:
                await asyncio.wait_for(scenario(members, admin), 20)
            finally:
                await members.close()

    asyncio.run(main())


# -- election -------------------------------------------------------------------------------


def test_one_of_three_leads_and_the_others_follow_it_in_its_term(etcd: EtcdProcess) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        trio = [members.add(FakeNode(f"m{i}:1")) for i in range(3)]
        await asyncio.gather(*(member.cycle() for member in trio))  # all campaign at once
        leaders = [member for member in trio if node_of(member).named("lead")]
        assert len(leaders) == 1
        leader = leaders[0]
        holder = await admin.get(LEADER_KEY)
        assert holder is not None
        term = holder.create_revision
        assert json.loads(holder.value) == {"address": leader.node.address}
        assert node_of(leader).leads() == [term]
        assert leader.view.role == LEADER and leader.view.term == term
        for member in trio:
            if member is leader:
                continue
            node = node_of(member)
            assert [call[1:3] for call in node.named("follow")] == [(leader.node.address, term)]
            assert node.named("lead") == []
            assert (member.view.role, member.view.leader, member.view.term) == (
                FOLLOWER, leader.node.address, term)
        # Further cycles change nothing: no second lead, no second follow.
        for _ in range(2):
            for member in trio:
                await member.cycle()
        assert sum(len(node_of(member).named("lead")) for member in trio) == 1
        assert all(len(node_of(member).named("follow")) == 1 for member in trio
                   if member is not leader)
        assert all(node_of(member).named("stand_by") == [] for member in trio)

    run(etcd, scenario)


def test_the_leader_deadline_is_renewal_send_time_plus_ttl_less_the_margin(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        member = members.add(FakeNode("a:1"))
        node = node_of(member)
        before = time.monotonic()
        await member.cycle()
        ((_, _, first_deadline, lead_called),) = node.named("lead")
        ttl, margin = TIMING.ttl_s, TIMING.fence_margin_s
        assert before + ttl - margin <= first_deadline <= lead_called + ttl - margin
        deadlines = [first_deadline]
        for _ in range(3):
            await asyncio.sleep(0.15)
            sent = time.monotonic()
            await member.cycle()
            _, deadline, called = node.named("extend_lease")[-1]
            assert isinstance(deadline, float) and isinstance(called, float)
            # From the renewal's send time: never past what etcd's TTL allows.
            assert sent + ttl - margin <= deadline <= called + ttl - margin
            assert deadline < called + ttl
            deadlines.append(deadline)
        assert deadlines == sorted(deadlines) and len(set(deadlines)) == len(deadlines)
        assert len(node.named("extend_lease")) == 3
        assert member.view.renewed_at is not None
        assert member.view.renewed_at + ttl - margin == pytest.approx(deadlines[-1])

    run(etcd, scenario)


def test_a_resigning_leader_is_succeeded_at_once_through_the_watch(etcd: EtcdProcess) -> None:
    timing = Timing(ttl_s=6)  # a loop every 2 s: a takeover well within it is the watch's

    async def scenario(members: Members, admin: EtcdClient) -> None:
        trio = [members.add(FakeNode(f"m{i}:1"), timing) for i in range(3)]
        for member in trio:
            member.start()

        async def elected() -> bool:
            return sum(member.view.role == LEADER for member in trio) == 1 and all(
                member.view.role == FOLLOWER for member in trio if member.view.role != LEADER)

        assert await eventually(elected, within_s=5)
        old = next(member for member in trio if member.view.role == LEADER)
        old_term = old.view.term
        others = [member for member in trio if member is not old]
        await asyncio.sleep(0.3)  # the others' watches are open
        resigned = time.monotonic()
        await stop(old)
        assert node_of(old).named("stand_by"), "a resigning leader stands by"
        assert await admin.get(PREFIX + "members/" + old.node.address) is None

        async def succeeded() -> bool:
            holder = await admin.get(LEADER_KEY)
            return holder is not None and holder.create_revision > old_term and any(
                node_of(member).named("lead") for member in others)

        assert await eventually(succeeded, within_s=timing.loop_wait_s * 2)
        new = next(member for member in others if node_of(member).named("lead"))
        (lead_call,) = node_of(new).named("lead")
        took_s = float(lead_call[3]) - resigned
        assert took_s < timing.loop_wait_s * 0.75, f"took {took_s:.2f} s: the watch did not wake"
        new_term = node_of(new).leads()[0]
        assert new_term > old_term
        holder = await admin.get(LEADER_KEY)
        assert holder is not None and holder.create_revision == new_term
        assert json.loads(holder.value)["address"] == new.node.address
        third = next(member for member in others if member is not new)

        async def followed() -> bool:
            return [call[1:3] for call in node_of(third).named("follow")][-1:] == [
                (new.node.address, new_term)]

        assert await eventually(followed, within_s=timing.loop_wait_s * 2)
        assert node_of(third).named("lead") == []

    run(etcd, scenario)


def test_a_leader_whose_lease_is_revoked_stands_by_and_never_leads_that_term_again(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        a = members.add(FakeNode("a:1"))
        b = members.add(FakeNode("b:1"))
        await a.cycle()
        await b.cycle()
        (term,) = node_of(a).leads()
        assert a._lease is not None
        await admin.revoke_lease(a._lease.id)  # behind its back
        await b.cycle()  # b takes over first
        (b_term,) = node_of(b).leads()
        assert b_term > term
        await a.cycle()
        node = node_of(a)
        assert node.named("stand_by"), "a leader without its lease must stand by"
        assert node.leads() == [term]
        assert [call[1:3] for call in node.named("follow")] == [("b:1", b_term)]
        assert (a.view.role, a.view.leader, a.view.term) == (FOLLOWER, "b:1", b_term)
        # stand_by came before following: nothing was confirmed in between.
        names = [call[0] for call in node.calls]
        assert names.index("stand_by") < names.index("follow")
        # And no extend_lease after it lost the lease.
        stood = names.index("stand_by")
        assert "extend_lease" not in names[stood:]

    run(etcd, scenario)


def test_a_lone_leader_whose_lease_is_revoked_leads_again_only_in_a_new_term(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        a = members.add(FakeNode("a:1"))
        await a.cycle()
        (term,) = node_of(a).leads()
        assert a._lease is not None
        old_lease = a._lease.id
        await admin.revoke_lease(old_lease)
        await a.cycle()
        node = node_of(a)
        names = [call[0] for call in node.calls]
        assert names.count("stand_by") == 1 and names.index("stand_by") < len(names) - 1
        assert node.leads()[0] == term and len(node.leads()) == 2
        assert node.leads()[1] > term  # a new key, a new term: never the same one again
        assert a._lease is not None and a._lease.id != old_lease
        assert names[names.index("stand_by") + 1] == "lead"

    run(etcd, scenario)


# -- synchronous mode -----------------------------------------------------------------------


def test_sync_mode_only_the_recorded_standbys_and_leader_may_take_over(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        await admin.put(PREFIX + "sync", json.dumps(
            {"leader": "a:1", "term": 7, "standbys": ["b:1"]}))
        c = members.add(FakeNode("c:1", sync_replicas=1, commit_index=500))
        b = members.add(FakeNode("b:1", sync_replicas=1, commit_index=100))
        await c.cycle()
        assert await admin.get(LEADER_KEY) is None, "c is not a standby: it may not campaign"
        assert node_of(c).named("lead") == [] and c.view.role == CANDIDATE
        assert "c:1" not in c.view.eligible
        await b.cycle()  # behind c, but c is not eligible: b leads
        holder = await admin.get(LEADER_KEY)
        assert holder is not None and json.loads(holder.value)["address"] == "b:1"
        assert node_of(b).leads() == [holder.create_revision]
        assert b.view.eligible == {"b:1"}  # a:1 never published: only its address is known
        await c.cycle()
        assert [call[1:3] for call in node_of(c).named("follow")] == [
            ("b:1", holder.create_revision)]

    run(etcd, scenario)


def test_the_recorded_leader_takes_over_too_and_the_most_caught_up_wins(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        await admin.put(PREFIX + "sync", json.dumps(
            {"leader": "a:1", "term": 7, "standbys": ["b:1"]}))
        lease = await admin.grant_lease(30)  # someone else leads meanwhile: all publish
        await admin.put(LEADER_KEY, json.dumps({"address": "z:1"}), lease.id)
        a = members.add(FakeNode("a:1", sync_replicas=1, commit_index=900))
        b = members.add(FakeNode("b:1", sync_replicas=1, commit_index=800))
        for member in (a, b):
            await member.cycle()
        await admin.revoke_lease(lease.id)
        await b.cycle()  # b sees a (eligible: the last leader) ahead of it: b defers
        assert await admin.get(LEADER_KEY) is None
        assert b.view.eligible == {"a:1", "b:1"}
        await a.cycle()
        assert len(node_of(a).leads()) == 1 and node_of(b).named("lead") == []

    run(etcd, scenario)


def test_the_leader_records_its_standbys_before_they_count(etcd: EtcdProcess) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        await admin.put(PREFIX + "sync", json.dumps(
            {"leader": "a:1", "term": 7, "standbys": ["b:1"]}))
        b = members.add(FakeNode("b:1", sync_replicas=1))
        node = node_of(b)
        await b.cycle()
        (term,) = node.leads()
        assert node.current_standbys == ()  # leads with none: confirms nothing yet
        node.current_standbys = ("old:1",)  # say, standbys chosen before
        node.choices = ["x:1"]
        await b.cycle()
        sync = await admin.get(PREFIX + "sync")
        assert sync is not None
        assert json.loads(sync.value) == {"leader": "b:1", "term": term, "standbys": ["x:1"]}
        chosen = [call[1] for call in node.named("choose_standbys")]
        assert chosen == [("old:1", "x:1"), ("x:1",)]  # old and new while it is written
        assert b.view.sync_standbys == ("x:1",)
        revision = sync.mod_revision
        await b.cycle()  # unchanged: nothing rewritten, nothing chosen again
        again = await admin.get(PREFIX + "sync")
        assert again is not None and again.mod_revision == revision
        assert len(node.named("choose_standbys")) == 2
        node.choices = []  # too few to choose from: the standbys stay as they are
        await b.cycle()
        assert len(node.named("choose_standbys")) == 2 and node.current_standbys == ("x:1",)

    run(etcd, scenario)


# -- asynchronous mode ------------------------------------------------------------------------


def test_async_mode_a_member_too_far_behind_the_last_leader_does_not_campaign(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        await admin.put(PREFIX + "status", json.dumps(
            {"leader": "old:1", "term": 3, "commit": 5000}))
        member = members.add(FakeNode("a:1", commit_index=100), max_lag=1000)
        await member.cycle()
        assert await admin.get(LEADER_KEY) is None
        assert node_of(member).named("lead") == [] and member.view.eligible == set()
        node_of(member).commit_index = 3999  # one commit beyond the bound
        await member.cycle()
        assert await admin.get(LEADER_KEY) is None
        node_of(member).commit_index = 4500
        await member.cycle()
        assert len(node_of(member).leads()) == 1 and member.view.role == LEADER
        status = await admin.get(PREFIX + "status")
        assert status is not None and json.loads(status.value)["commit"] == 5000  # not yet
        await member.cycle()  # leading: it publishes its own status
        status = await admin.get(PREFIX + "status")
        assert status is not None
        assert json.loads(status.value) == {
            "leader": "a:1", "term": node_of(member).leads()[0], "commit": 4500}

    run(etcd, scenario)


def test_async_mode_the_member_with_the_higher_published_commit_wins(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        await admin.put(PREFIX + "status", json.dumps(
            {"leader": "old:1", "term": 3, "commit": 5000}))
        lease = await admin.grant_lease(30)  # another leader while both publish their records
        await admin.put(LEADER_KEY, json.dumps({"address": "old:1"}), lease.id)
        low = members.add(FakeNode("low:1", commit_index=4500))
        high = members.add(FakeNode("high:1", commit_index=4800))
        for member in (low, high):
            await member.cycle()
            assert member.view.role == FOLLOWER
        await admin.revoke_lease(lease.id)  # the leader is gone
        await low.cycle()  # eligible, but high's record shows more: it defers
        assert await admin.get(LEADER_KEY) is None
        assert low.view.eligible == {"low:1", "high:1"}
        assert node_of(low).named("lead") == []
        await high.cycle()
        assert len(node_of(high).leads()) == 1
        await low.cycle()
        term = node_of(high).leads()[0]
        assert [call[1:3] for call in node_of(low).named("follow")][-1] == ("high:1", term)
        assert node_of(low).named("lead") == []

    run(etcd, scenario)


# -- the view -----------------------------------------------------------------------------------


def test_the_view_lists_every_member_with_its_role(etcd: EtcdProcess) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        trio = [members.add(FakeNode(f"m{i}:1", commit_index=10 * i)) for i in range(3)]
        for _ in range(2):  # the second round sees everyone's first records
            for member in trio:
                await member.cycle()
        leader = next(member for member in trio if member.view.role == LEADER)
        term = leader.view.term
        for member in trio:
            view: ClusterView = member.view
            assert view.name == CLUSTER and view.leader == leader.node.address
            assert view.term == term
            records = {record.address: record for record in view.members}
            assert set(records) == {"m0:1", "m1:1", "m2:1"}
            for other in trio:
                record: MemberRecord = records[other.node.address]
                expected = LEADER if other is leader else FOLLOWER
                assert record.role == expected
                assert record.commit == node_of(other).commit_index
                assert record.published > 0
        assert records[leader.node.address].term == term  # the node's term() as published
        stored = await admin.get_prefix(PREFIX + "members/")
        assert {kv.key.rsplit("/", 1)[1] for kv in stored} == {"m0:1", "m1:1", "m2:1"}
        assert all(kv.lease != 0 for kv in stored)  # they go with their members' leases

    run(etcd, scenario)


# -- etcd refusing writes ---------------------------------------------------------------------


def test_the_loop_outlives_etcd_refusing_writes_while_short_of_standbys(
    etcd: EtcdProcess,
) -> None:
    async def scenario(members: Members, admin: EtcdClient) -> None:
        a = members.add(FakeNode("a:1", sync_replicas=1))
        node = node_of(a)
        a.start()

        async def leading() -> bool:
            return a.view.role == LEADER

        assert await eventually(leading, within_s=3)
        assert node.current_standbys == ()  # a new leader, short of standbys
        # etcd refuses writes at once (as with its NOSPACE alarm: RESOURCE_EXHAUSTED) while
        # reads and lease renewals go on. The leader's next cycle fails on its status put;
        # meanwhile a follower catches up and becomes ready to be its standby.
        real_put = a.etcd.put
        refusing = True
        refused: list[str] = []

        async def put(key: str, value: str, lease: int = 0, *,
                      timeout: float | None = None) -> int:
            if refusing:
                refused.append(key.removeprefix(PREFIX))
                node.choices = ["x:1"]
                raise EtcdError("etcdserver: mvcc: database space exceeded",
                                "RESOURCE_EXHAUSTED")
            return await real_put(key, value, lease, timeout=timeout)

        a.etcd.put = put  # type: ignore[method-assign]

        async def refused_twice() -> bool:  # the loop went on after the first refusal
            return refused.count("status") >= 2

        assert await eventually(refused_twice, within_s=TIMING.loop_wait_s * 4)
        refusing = False  # etcd takes writes again
        renewed = a.view.renewed_at

        async def renewing() -> bool:
            return a.view.renewed_at != renewed

        alive = await eventually(renewing, within_s=TIMING.loop_wait_s * 2.5)
        loop = a._tasks[0]
        assert alive and not loop.done(), (
            f"refused {refused}; the member loop ended: "
            f"{loop.exception() if loop.done() else None!r}")

    run(etcd, scenario)


# -- stopping ---------------------------------------------------------------------------------


def test_stop_ends_the_loop_when_woken_as_it_stops() -> None:
    async def scenario() -> None:
        client = EtcdClient("127.0.0.1:1")  # never called: the cycle is stubbed out
        member = Member(client, CLUSTER, FakeNode("a:1"), TIMING)
        cycles = 0

        async def cycle() -> None:
            nonlocal cycles
            cycles += 1

        member.cycle = cycle  # type: ignore[method-assign]
        member._tasks = [asyncio.create_task(member._run())]
        await asyncio.sleep(0.05)  # asleep until the next cycle
        member._wake.set()  # the watch saw the leader key change...
        stopping = asyncio.create_task(member.stop())  # ...as the member is being stopped
        done, _ = await asyncio.wait([stopping], timeout=TIMING.loop_wait_s * 2)
        running = not member._tasks[0].done()
        if running:  # clean up: a second cancel gets through
            member._tasks[0].cancel()
        await stopping
        await client.close()
        assert done and not running, f"stop() did not end the loop ({cycles} cycles ran)"

    asyncio.run(scenario())
