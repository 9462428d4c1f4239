"""Review: a group commit that does not fit the free part of the LMDB map is never committed.

`_commit_until_room` (src/atp/engine/writer.py) meets MDB_MAP_FULL, marks storage full and
calls `check_storage`; `StorageGuard.check` (src/atp/engine/storage.py) grows the map only when
the data already *committed* takes more than 75% of it, so a batch larger than the free 25%
never makes it grow. `_update_state` then sees plenty of room below the cap and clears the
full state at once, so the loop retries immediately (no sleep), fails again, and so on for
ever: the batch's callers wait for ever, health flaps between SERVING and NOT_SERVING
hundreds of times a second, and writes are refused every other moment, although the map may
grow many times over before the operator's cap.

A realistic trigger is the first start of a data directory written before this version:
`_move_closed_out` (src/atp/ledger/rebuild.py) rewrites every closed reservation into the
`closed` database in the first commit (roughly doubling the data in one transaction), and
`AtpServer.start` awaits that commit (expire_backlog) before serving anything.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from atp.engine.storage import MIB, StorageLimits
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig
from atp.ledger import commands
from atp.persistence import codec, encode_batch, ledger_from_records
from atp.store import LmdbStore, WriteBatch

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()


async def _stop(writer: Writer) -> None:
    writer.closing = True
    for task in writer._tasks:
        task.cancel()
    await asyncio.gather(*writer._tasks, return_exceptions=True)
    writer._executor.shutdown(wait=True)


def test_a_batch_larger_than_the_free_part_of_the_map_grows_it_and_commits(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = LmdbStore(tmp_path / "data", map_size=2 * MIB, sync=False)
        writer = Writer(Ledger(), store, clock=lambda: NOW,
                        storage_limits=StorageLimits(max_bytes=256 * MIB))
        flips: list[bool] = []
        writer.on_storage_state = flips.append
        writer.start()
        try:
            await writer.check_storage()
            # ~2.5 MB of node records in one group commit: more than the 2 MiB map holds, far
            # less than the 256 MiB cap the map may grow to.
            nodes = [commands.UpsertNode(f"NODE-{i:06d}-" + "x" * 100, region="EU")
                     for i in range(12_000)]
            try:
                await asyncio.wait_for(writer.execute_batch(nodes), timeout=5)
            except TimeoutError:
                pytest.fail(f"the batch was not committed in 5 s; the storage state flipped "
                            f"{len(flips)} times; map {store.usage().map_size} bytes")
            assert store.get("nodes", nodes[-1].node_id.encode()) is not None
        finally:
            await _stop(writer)
            store.close()

    asyncio.run(scenario())


def test_first_start_of_an_old_data_dir_with_many_closed_reservations_completes(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # An "old" data directory: closed reservations kept in `reservations` (no `closed`).
        source = Ledger(LedgerConfig(default_ttl_seconds=600))
        source.execute(commands.UpsertNode("DC1"), NOW)
        source.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),)), NOW)
        batch = WriteBatch()
        for i in range(5400):
            rid = f"order-{i:06d}-" + "y" * 60
            source.execute(commands.Reserve(rid, (commands.LineRequest("l1", "A", 1, "DC1"),)), NOW)
            closed = source.execute(commands.Release(rid, f"cancel-{rid}"), NOW)
            closed.close_time = None  # as written before retention existed
            closed.first_promise_day = None  # and before first promise dates were kept
            batch.put("reservations", rid.encode(), codec.encode_record("reservations", closed))
        for (database, key), data in encode_batch(source.take_changes()).records.items():
            if database in ("nodes", "positions"):
                batch.put(database, key, data)
        path = tmp_path / "old"
        store = LmdbStore(path, map_size=4 * MIB, sync=False)
        store.commit(batch)
        usage = store.usage()
        assert usage.used < 0.75 * usage.map_size  # the guard sees no reason to grow

        ledger = ledger_from_records(store.iter_records, store.last_sequence(),
                                     LedgerConfig(), NOW)
        writer = Writer(ledger, store, clock=lambda: NOW,
                        storage_limits=StorageLimits(max_bytes=256 * MIB))
        writer.start()
        try:
            await writer.check_storage()
            # What AtpServer.start awaits before it serves: its first commit carries the move.
            await asyncio.wait_for(writer.expire_backlog(), timeout=5)
            assert len(store.load()["closed"]) == 5400
        except TimeoutError:
            pytest.fail("start-up's first commit (the migration) never completed")
        finally:
            await _stop(writer)
            store.close()

    asyncio.run(scenario())
