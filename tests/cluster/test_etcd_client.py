"""EtcdClient against a real etcd on loopback: the operations leader election, fencing and
failover will build on, and what the client does when members are missing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from atp.cluster.etcd import (
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    EventType,
    KeyValue,
    WatchEvent,
)
from tests.support.atpd import free_port
from tests.support.etcd import EtcdProcess

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    """Polls `check` until it is true or `within_s` passed; the last answer."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return await check()


def test_put_get_delete_round_trip_and_status(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        async with EtcdClient(etcd.endpoint) as client:
            first = await client.put("atp/k", "v1")
            assert await client.get("atp/k") == KeyValue("atp/k", "v1", first, first, 1, 0)
            second = await client.put("atp/k", "v2 é")  # str at our API, UTF-8 on the wire
            assert second > first
            assert await client.get("atp/k") == KeyValue("atp/k", "v2 é", first, second, 2, 0)
            status = await client.status()
            assert status.revision == second
            assert status.leader == status.member_id != 0  # a single member leads itself
            assert status.version.startswith("3.5")
            assert await client.delete("atp/k") == 1
            assert await client.get("atp/k") is None
            assert await client.delete("atp/k") == 0

    asyncio.run(scenario())


def test_a_lease_keeps_its_key_while_kept_alive_and_drops_it_after_the_ttl(
    etcd: EtcdProcess,
) -> None:
    async def scenario() -> None:
        async with EtcdClient(etcd.endpoint) as client:
            lease = await client.grant_lease(2)
            assert lease.ttl == 2 and lease.id != 0
            await client.put("atp/leader", "node-a", lease.id)
            kept_until = time.monotonic() + 2.5  # longer than the TTL: only renewals keep it
            while time.monotonic() < kept_until:
                assert await client.keep_alive_once(lease.id) == 2
                await asyncio.sleep(0.5)
                assert (await client.get("atp/leader")) is not None
            async def gone() -> bool:
                return await client.get("atp/leader") is None
            assert await eventually(gone, within_s=5.0), "the key outlived its lease"
            assert await client.keep_alive_once(lease.id) == 0  # the lease is gone too
            assert await client.lease_ttl(lease.id) == 0

    asyncio.run(scenario())


def test_revoking_a_lease_deletes_its_keys_at_once(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        async with EtcdClient(etcd.endpoint) as client:
            lease = await client.grant_lease(30)
            await client.put("atp/leader", "node-a", lease.id)
            assert 0 < await client.lease_ttl(lease.id) <= 30
            await client.revoke_lease(lease.id)
            assert await client.get("atp/leader") is None
            await client.revoke_lease(lease.id)  # already gone: not an error
            with pytest.raises(EtcdError) as refused:  # a refusal, not an outage
                await client.put("atp/leader", "node-a", lease.id)
            assert refused.value.code == "NOT_FOUND"
            assert not isinstance(refused.value, EtcdUnavailable)

    asyncio.run(scenario())


def test_exactly_one_of_many_concurrent_campaigners_wins(etcd: EtcdProcess) -> None:
    async def campaign(name: str) -> tuple[str, int, bool, KeyValue | None]:
        async with EtcdClient(etcd.endpoint) as client:  # one client each, as separate nodes
            lease = await client.grant_lease(30)
            won, holder = await client.create_if_absent("atp/leader", name, lease.id)
            return name, lease.id, won, holder

    async def scenario() -> None:
        results = await asyncio.gather(*(campaign(f"node-{i}") for i in range(10)))
        winners = [(name, lease, holder) for name, lease, won, holder in results if won]
        assert len(winners) == 1, winners
        name, lease, held = winners[0]
        assert held is not None and (held.value, held.lease) == (name, lease)
        async with EtcdClient(etcd.endpoint) as client:
            assert await client.get("atp/leader") == held
        losers = [holder for _, _, won, holder in results if not won]
        assert losers == [held] * 9  # every loser is told who holds it

    asyncio.run(scenario())


def test_replace_if_and_delete_if_refuse_a_stale_revision(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        async with EtcdClient(etcd.endpoint) as client:
            seen = await client.put("atp/epoch", "1")
            newer = await client.put("atp/epoch", "2")  # someone wrote after we read
            assert not await client.replace_if("atp/epoch", seen, "3", 0)
            assert (await client.get("atp/epoch")) == KeyValue("atp/epoch", "2", seen, newer, 2, 0)
            assert await client.replace_if("atp/epoch", newer, "3", 0)
            # A resigning leader deletes its own incarnation of the key, not a successor's.
            old = await client.get("atp/epoch")
            assert old is not None
            await client.delete("atp/epoch")
            won, successor = await client.create_if_absent("atp/epoch", "successor", 0)
            assert won and successor is not None
            assert not await client.delete_if("atp/epoch", old.create_revision)
            assert await client.delete_if("atp/epoch", successor.create_revision)
            assert await client.get("atp/epoch") is None

    asyncio.run(scenario())


def test_watch_sees_a_put_and_a_delete(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        async with EtcdClient(etcd.endpoint) as client:
            start = await client.put("atp/w", "v0") + 1  # from here: no race with the watcher

            async def two_events() -> list[WatchEvent]:
                seen: list[WatchEvent] = []
                async for event in client.watch("atp/w", start_revision=start):
                    seen.append(event)
                    if len(seen) == 2:
                        break
                return seen

            watcher = asyncio.create_task(two_events())
            put = await client.put("atp/w", "v1")
            await client.put("atp/other", "not watched")
            assert await client.delete("atp/w") == 1
            deleted = (await client.status()).revision
            assert await asyncio.wait_for(watcher, 5.0) == [
                WatchEvent(EventType.PUT, "atp/w", "v1", put),
                WatchEvent(EventType.DELETE, "atp/w", "", deleted),
            ]

    asyncio.run(scenario())


def test_a_watch_ends_cleanly_when_cancelled_or_when_the_client_closes(
    etcd: EtcdProcess,
) -> None:
    async def consume(client: EtcdClient) -> str:
        async for _ in client.watch("atp/quiet"):
            pass
        return "ended"

    async def scenario() -> None:
        client = EtcdClient(etcd.endpoint)
        cancelled = asyncio.create_task(consume(client))
        await asyncio.sleep(0.3)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(cancelled, 5.0)
        closed = asyncio.create_task(consume(client))
        await asyncio.sleep(0.3)
        await client.close()
        assert await asyncio.wait_for(closed, 5.0) == "ended"

    asyncio.run(scenario())


def test_a_dead_first_endpoint_is_skipped(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        target = f"127.0.0.1:{free_port()},{etcd.endpoint}"
        async with EtcdClient(target, timeout_s=2.0) as client:
            started = time.monotonic()
            revision = await client.put("atp/k", "v")
            assert (await client.get("atp/k")) == KeyValue("atp/k", "v", revision, revision, 1, 0)
            assert time.monotonic() - started < 2.0

    asyncio.run(scenario())


def test_no_live_endpoint_raises_etcd_unavailable_within_the_timeout() -> None:
    async def scenario() -> None:
        target = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        calls: list[tuple[float, Callable[[EtcdClient], Awaitable[object]]]] = [
            (1.0, lambda client: client.get("atp/k")),  # the client's timeout_s
            (0.5, lambda client: client.put("atp/k", "v", timeout=0.5)),
            (0.5, lambda client: client.keep_alive_once(1, timeout=0.5)),
            (0.5, lambda client: client.status(timeout=0.5)),
        ]
        async with EtcdClient(target, timeout_s=1.0) as client:
            for timeout, call in calls:
                started = time.monotonic()
                with pytest.raises(EtcdUnavailable, match="no etcd endpoint answered"):
                    await asyncio.wait_for(call(client), 5.0)
                assert time.monotonic() - started < timeout + 1.0

    asyncio.run(scenario())


def test_a_killed_member_is_unavailable_then_found_again_after_its_restart(
    etcd: EtcdProcess,
) -> None:
    async def scenario() -> None:
        async with EtcdClient(etcd.endpoint) as client:
            await client.put("atp/k", "before")
            await asyncio.to_thread(etcd.kill)
            started = time.monotonic()
            with pytest.raises(EtcdUnavailable):
                await client.get("atp/k", timeout=0.5)
            assert time.monotonic() - started < 1.5
            await asyncio.to_thread(etcd.restart)
            kv = await client.get("atp/k", timeout=5.0)  # reconnects within its backoff bound
            assert kv is not None and kv.value == "before"

    asyncio.run(scenario())
