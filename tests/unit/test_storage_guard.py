"""Storage limits: the map grows up to the cap; near it, writes that add data are refused
(STORAGE_FULL) while the commands that end demand go on; the state clears with hysteresis;
a batch that meets a full store waits and is committed once there is room, never lost."""

from __future__ import annotations

import asyncio

import pytest

from atp.engine.storage import MIB, StorageGuard, StorageLimits
from atp.engine.writer import Writer
from atp.ledger import Ledger
from atp.ledger import commands
from atp.ledger.errors import StorageFull
from atp.store import MemoryStore, StoreFullError, StoreUsage, WriteBatch

NOW = 1_795_000_000.0


class SizedStore(MemoryStore):
    """A memory store that reports the usage a test sets, grows its map on request, and
    refuses commits while `full_commits` lasts."""

    def __init__(self, used: int = 0, map_size: int = 4 * MIB, free: int = 1 << 40) -> None:
        super().__init__()
        self.used, self.map_size, self.free = used, map_size, free
        self.grown: list[int] = []
        self.full_commits = 0

    def usage(self) -> StoreUsage:
        return StoreUsage(used=self.used, map_size=self.map_size, filesystem_free=self.free)

    def grow_map(self, map_size: int) -> None:
        self.grown.append(map_size)
        self.map_size = map_size

    def commit(self, batch: WriteBatch) -> None:
        if self.full_commits and not batch.is_empty():
            self.full_commits -= 1
            raise StoreFullError("the LMDB map is full")
        super().commit(batch)


def test_the_map_doubles_as_the_data_nears_it_but_never_past_the_cap() -> None:
    store = SizedStore(used=7 * MIB, map_size=8 * MIB)
    guard = StorageGuard(store, StorageLimits(max_bytes=20 * MIB))
    guard.check()
    assert store.grown == [16 * MIB]
    store.used = 14 * MIB
    guard.check()
    assert store.grown == [16 * MIB, 20 * MIB] and guard.full_reason is None


def test_storage_full_enters_near_the_cap_and_clears_with_hysteresis() -> None:
    limits = StorageLimits(max_bytes=40 * MIB)  # headroom max(1 MiB, 2 MiB) = 2 MiB
    store = SizedStore(used=39 * MIB, map_size=40 * MIB)
    guard = StorageGuard(store, limits)
    guard.check()
    assert guard.full_reason is not None and "--max-data-mb" in guard.full_reason
    store.used = 37 * MIB  # 3 MiB left: out of the refusal band, not yet past twice the headroom
    guard.check()
    assert guard.full_reason is not None
    store.used = 35 * MIB
    guard.check()
    assert guard.full_reason is None


def test_a_nearly_full_filesystem_is_storage_full_too() -> None:
    store = SizedStore(used=1 * MIB, map_size=64 * MIB, free=512 * 1024)
    guard = StorageGuard(store, StorageLimits(max_bytes=64 * MIB))
    guard.check()
    assert guard.full_reason is not None and "filesystem" in guard.full_reason


async def started_writer(store: SizedStore, max_bytes: int) -> Writer:
    writer = Writer(Ledger(), store, clock=lambda: NOW,
                    storage_limits=StorageLimits(max_bytes=max_bytes))
    writer.start()
    await writer.execute(commands.UpsertNode("DC1"))
    await writer.execute(commands.AdjustStock("stock", (commands.Movement("A", "DC1", "RECEIPT", 100),)))
    await writer.execute(commands.Reserve("o1", (commands.LineRequest("l1", "A", 1, "DC1"),)))
    return writer


def test_when_full_writes_that_add_data_are_refused_and_ending_demand_is_not() -> None:
    async def scenario() -> None:
        store = SizedStore(used=1 * MIB, map_size=64 * MIB)
        writer = await started_writer(store, max_bytes=64 * MIB)
        store.used = 63 * MIB
        await writer.check_storage()
        with pytest.raises(StorageFull):
            await writer.execute(commands.Reserve("o2", (commands.LineRequest("l1", "A", 1, "DC1"),)))
        with pytest.raises(StorageFull):
            await writer.execute(commands.AdjustStock("more", (commands.Movement("A", "DC1", "RECEIPT", 1),)))
        assert "o2" not in writer.ledger.known_reservations()
        released = await writer.execute(commands.Release("o1", "cancel-o1"))
        assert released.state.value == "RELEASED"
        store.used = 1 * MIB
        await writer.check_storage()
        await writer.execute(commands.Reserve("o2", (commands.LineRequest("l1", "A", 1, "DC1"),)))
        await writer.close()

    asyncio.run(scenario())


def test_a_batch_that_meets_a_full_store_waits_and_commits_once_there_is_room() -> None:
    async def scenario() -> None:
        store = SizedStore(used=1 * MIB, map_size=64 * MIB)
        writer = await started_writer(store, max_bytes=64 * MIB)
        states: list[bool] = []
        writer.on_storage_state = states.append
        store.full_commits = 2
        store.used = 63 * MIB  # the retries see it full until the test frees room
        pending = asyncio.create_task(
            writer.execute(commands.Reserve("o2", (commands.LineRequest("l1", "A", 1, "DC1"),))))
        await asyncio.sleep(0.2)
        assert not pending.done() and writer.failure is None
        with pytest.raises(StorageFull):  # new data is refused meanwhile
            await writer.execute(commands.Reserve("o3", (commands.LineRequest("l1", "A", 1, "DC1"),)))
        store.used = 1 * MIB
        reservation = await asyncio.wait_for(pending, timeout=5)
        assert reservation.reservation_id == "o2"
        assert store.get("reservations", b"o2") is not None  # durable, not lost
        assert states[0] is False and states[-1] is True
        await writer.close()

    asyncio.run(scenario())
