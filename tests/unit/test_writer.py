"""Group commit: answers only after the batch is durable; a storage failure acknowledges nothing."""

from __future__ import annotations

import asyncio
import threading

import pytest

from atp.engine.writer import Writer
from atp.ledger import Ledger, Refused
from atp.ledger import commands
from atp.ledger.errors import Unavailable
from atp.store import MemoryStore, StoreError, WriteBatch

NOW = 1_795_000_000.0


class GatedStore(MemoryStore):
    """A memory store whose commits wait for a gate, and can be told to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.batch_sizes: list[int] = []

    def commit(self, batch: WriteBatch) -> None:
        self.gate.wait(10)
        if self.fail:
            raise StoreError("disk on fire")
        super().commit(batch)
        self.batch_sizes.append(len(batch))


def receipt(request_id: str, quantity: int = 1) -> commands.AdjustStock:
    return commands.AdjustStock(request_id, (commands.Movement("A", "DC1", "RECEIPT", quantity),))


async def started_writer(store: GatedStore, **options: object) -> Writer:
    ledger = Ledger()
    writer = Writer(ledger, store, clock=lambda: NOW, **options)  # type: ignore[arg-type]
    writer.start()
    await writer.execute(commands.UpsertNode("DC1"))
    return writer


def test_commands_applied_while_a_batch_commits_join_the_next_batch() -> None:
    async def scenario() -> None:
        store = GatedStore()
        writer = await started_writer(store)
        store.gate.clear()
        first = asyncio.create_task(writer.execute(receipt("r0")))
        await asyncio.sleep(0.05)  # r0's batch is now committing (blocked at the gate)
        rest = [asyncio.create_task(writer.execute(receipt(f"r{i}"))) for i in range(1, 20)]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(task.done() for task in rest)
        store.gate.set()
        await asyncio.gather(first, *rest)
        assert len(store.batch_sizes) == 3  # the node, r0 alone, then r1..r19 together
        stored = store.load()["positions"]
        assert len(stored) == 1
        await writer.close()

    asyncio.run(scenario())


def test_storage_failure_acknowledges_nothing_and_refuses_new_work() -> None:
    async def scenario() -> None:
        store = GatedStore()
        fatal: list[BaseException] = []
        writer = await started_writer(store, on_fatal=fatal.append)
        store.fail = True
        with pytest.raises(Unavailable):
            await writer.execute(receipt("r1"))
        assert fatal and "disk on fire" in str(fatal[0])
        with pytest.raises(Unavailable):
            await writer.execute(receipt("r2"))
        assert store.load()["positions"] == {}
        await writer.close()

    asyncio.run(scenario())


def test_refused_command_waits_for_earlier_changes_to_be_durable() -> None:
    async def scenario() -> None:
        store = GatedStore()
        writer = await started_writer(store)
        store.gate.clear()
        accepted = asyncio.create_task(writer.execute(receipt("r1", 5)))
        await asyncio.sleep(0.02)
        refused = asyncio.create_task(writer.execute(receipt("r1", 6)))  # same id, other request
        await asyncio.sleep(0.05)
        assert not refused.done(), "a refusal based on undurable state must wait for it"
        store.gate.set()
        await accepted
        outcome = await refused  # a refusal is a value, answered once durable
        assert isinstance(outcome, Refused) and "already exists" in outcome.message
        await writer.close()

    asyncio.run(scenario())


def test_overload_is_refused_with_resource_exhausted() -> None:
    async def scenario() -> None:
        from atp.ledger.errors import ResourceExhausted

        store = GatedStore()
        writer = await started_writer(store, pending_max=5)
        store.gate.clear()
        tasks = [asyncio.create_task(writer.execute(receipt(f"r{i}"))) for i in range(5)]
        await asyncio.sleep(0.05)
        with pytest.raises(ResourceExhausted):
            await writer.execute(receipt("r-over"))
        store.gate.set()
        await asyncio.gather(*tasks)
        await writer.close()

    asyncio.run(scenario())
