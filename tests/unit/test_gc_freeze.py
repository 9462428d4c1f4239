"""The server's periodic gc.freeze() must not freeze garbage: frozen objects are never freed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from atp.bootstrap import freeze_survivors

ROUNDS = 40
CYCLES_PER_ROUND = 300


@pytest.fixture
def frozen_process() -> Iterator[None]:
    """Everything alive now is frozen, so that the freeze count grows only by what follows."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()  # hand this process's objects back to the collector for the other tests


def _dead_cycle() -> None:
    node: list[object] = []
    node.append(node)  # unreachable once this returns; only the cyclic collector frees it


@pytest.mark.usefixtures("frozen_process")
def test_dead_cycles_are_collected_before_each_freeze() -> None:
    async def churn() -> int:
        frozen_before = gc.get_freeze_count()
        freezer = asyncio.create_task(freeze_survivors(interval_s=0.002))
        try:
            for _ in range(ROUNDS):
                for _ in range(CYCLES_PER_ROUND):
                    _dead_cycle()
                await asyncio.sleep(0.004)  # lets the freezer run between rounds
        finally:
            freezer.cancel()
        return gc.get_freeze_count() - frozen_before

    frozen_growth = asyncio.run(churn())
    # Freezing without collecting first froze ~12,000 of the 12,000 cycles for good (every
    # cycle still in the young generations at a freeze); with the collection, ~120 objects
    # are frozen, all of them live ones of the event loop and the test.
    assert frozen_growth < ROUNDS * CYCLES_PER_ROUND // 10, frozen_growth


def test_only_the_freezer_collects_the_older_generations_and_thresholds_come_back() -> None:
    before = gc.get_threshold()

    async def while_freezing() -> tuple[int, int, int]:
        freezer = asyncio.create_task(freeze_survivors(interval_s=60))
        await asyncio.sleep(0)  # let it start
        during = gc.get_threshold()
        freezer.cancel()
        await asyncio.gather(freezer, return_exceptions=True)
        return during

    during = asyncio.run(while_freezing())
    # The young generation collects as before; the older two only by the freezer's hand.
    assert during[0] == before[0] and during[1] >= 2**30 and during[2] >= 2**30
    assert gc.get_threshold() == before
