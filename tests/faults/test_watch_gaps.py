"""Watch never skips events silently: every event in order, or OUT_OF_RANGE naming where to resume.

Found by a review: a slow watcher replaying from the oldest retained event while the journal
was trimmed jumped from 13,003 to 20,004 with no error, as the oldest retained sequence was
checked only when the replay began. Now each journal page of a replay must start right after
the last event sent; if the trim has passed it, the watch ends with OutOfRange (gRPC
OUT_OF_RANGE, metadata oldest_sequence).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atp.engine.events import REPLAY_PAGE_EVENTS, EventFilter, EventHub, OutOfRange
from atp.ledger.model import Event
from atp.persistence import codec
from atp.store import MemoryStore, WriteBatch
from atp.v1 import common_pb2, events_pb2, events_pb2_grpc, inventory_pb2, inventory_pb2_grpc
from tests.support.atpd import AtpdProcess

NOW = 1_795_000_000.0
JOURNAL_EVENTS = 5000
STEP_TIMEOUT_S = 5.0


# ----- unit: a replay over an in-memory journal trimmed under it -----------------------------


def journal_batch(count: int) -> WriteBatch:
    batch = WriteBatch()
    for sequence in range(1, count + 1):
        event = Event(sequence, NOW, "STOCK_MOVED", {"sku": "A", "node_id": "DC1"})
        batch.append(sequence, codec.encode_event(event))
    return batch


def journal_of(count: int) -> MemoryStore:
    store = MemoryStore()
    store.commit(journal_batch(count))
    return store


async def take(stream: AsyncIterator[Event], count: int) -> list[int]:
    return [(await asyncio.wait_for(anext(stream), STEP_TIMEOUT_S)).sequence for _ in range(count)]


async def rest_of(stream: AsyncIterator[Event], into: list[int]) -> None:
    """Appends the stream's remaining sequences to `into` (bounded: the stream stops at head)."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async for event in stream:
            into.append(event.sequence)


@pytest.mark.parametrize("after", [0, 1200])
def test_a_trim_passing_a_slow_replay_ends_it_with_out_of_range_never_a_gap(after: int) -> None:
    consumed = REPLAY_PAGE_EVENTS + 500  # mid-way through the second page
    page_end = after + 2 * REPLAY_PAGE_EVENTS  # the last event of the page in hand
    trimmed_through = page_end + 500  # the trim passes it

    async def scenario() -> tuple[list[int], OutOfRange]:
        store = journal_of(JOURNAL_EVENTS)
        stream = EventHub(store).watch(after, EventFilter(), stop_at_head=True)
        received = await take(stream, consumed)
        store.trim_journal(trimmed_through)
        with pytest.raises(OutOfRange) as raised:
            await rest_of(stream, received)
        return received, raised.value

    received, error = asyncio.run(scenario())
    assert received == list(range(after + 1, page_end + 1)), "contiguous, then stopped"
    assert error.metadata == {"oldest_sequence": str(trimmed_through + 1)}
    assert f"after {page_end}" in error.message, error.message


@pytest.mark.parametrize("trimmed_through", [0, 1500, 2 * REPLAY_PAGE_EVENTS])
def test_a_trim_that_has_not_passed_the_replay_leaves_it_whole(trimmed_through: int) -> None:
    """Up to the last event already sent (the page boundary included) is no gap."""

    async def scenario() -> list[int]:
        store = journal_of(JOURNAL_EVENTS)
        stream = EventHub(store).watch(0, EventFilter(), stop_at_head=True)
        received = await take(stream, REPLAY_PAGE_EVENTS + 500)
        store.trim_journal(trimmed_through)
        await rest_of(stream, received)
        return received

    assert asyncio.run(scenario()) == list(range(1, JOURNAL_EVENTS + 1))


class TrimmedBetweenPages(MemoryStore):
    """The writer's trim runs between the replay's first and second page reads."""

    def __init__(self, trimmed_through: int) -> None:
        super().__init__()
        self.trimmed_through = trimmed_through
        self.page_reads = 0

    def read_journal(self, after_sequence: int, limit: int) -> list[tuple[int, bytes]]:
        self.page_reads += 1
        if self.page_reads == 2:
            self.trim_journal(self.trimmed_through)
        return super().read_journal(after_sequence, limit)


def test_a_filtered_replay_is_refused_too_when_the_trim_passes_it() -> None:
    """A filter matching nothing in the skipped span must not hide the gap either."""
    store = TrimmedBetweenPages(trimmed_through=3 * REPLAY_PAGE_EVENTS)
    store.commit(journal_batch(JOURNAL_EVENTS))
    only_node_upserts = EventFilter(types=frozenset({"NODE_UPSERTED"}))

    async def scenario() -> list[int]:
        received: list[int] = []
        stream = EventHub(store).watch(0, only_node_upserts, stop_at_head=True)
        await rest_of(stream, received)
        return received

    with pytest.raises(OutOfRange) as raised:
        asyncio.run(scenario())
    assert raised.value.metadata == {"oldest_sequence": str(3 * REPLAY_PAGE_EVENTS + 1)}


# ----- integration: a slow watcher against a live atpd whose journal is being trimmed --------

RETENTION_EVENTS = 3 * REPLAY_PAGE_EVENTS // 2  # more than a page: a replay reads several
EVENTS_PER_BURST = 100  # one per movement, at least
PRELOADED_BURSTS = 20  # more than RETENTION_EVENTS are journaled when the watch starts
# Written while the watcher lags: the trim passes the end of the replay's first page
# (RETENTION_EVENTS - REPLAY_PAGE_EVENTS events past its start) but stays below its head.
LAGGING_BURSTS = 13
WATCHER_PAUSE_S = 0.002  # per event, once it reads on
# The watcher's channel keeps HTTP/2's initial flow-control window (64 KiB, a few hundred
# events): atpd's replay stalls inside its first page while the watcher does not read.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


@dataclass
class WatchOutcome:
    sequences: list[int] = field(default_factory=list)
    error: grpc.RpcError | None = None
    started: threading.Event = field(default_factory=threading.Event)
    read_on: threading.Event = field(default_factory=threading.Event)


@pytest.mark.integration
def test_a_slow_watcher_over_a_trimmed_journal_sees_every_event_or_out_of_range(
    tmp_path: Path,
) -> None:
    with AtpdProcess(
        tmp_path / "data", "--journal-retention-events", str(RETENTION_EVENTS), "--sync", "off"
    ) as server, server.channel() as channel:
        inventory = inventory_pb2_grpc.InventoryStub(channel)
        inventory.UpsertNode(
            inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id="DC1")), timeout=10
        )
        for burst in range(PRELOADED_BURSTS):
            receive_burst(inventory, f"preload-{burst}")
        head = newest_sequence(channel)  # nothing is written until the slow watch has begun
        outcome = WatchOutcome()
        watcher = threading.Thread(target=watch_slowly, args=(server.target, outcome),
                                   daemon=True)
        watcher.start()
        try:
            assert outcome.started.wait(10), "the watch never started"
            for burst in range(LAGGING_BURSTS):  # each commit trims the journal
                receive_burst(inventory, f"while-lagging-{burst}")
        finally:
            outcome.read_on.set()
        watcher.join(30)
        assert not watcher.is_alive(), "the watch never ended"

    assert_no_silent_gap(outcome, head)


def newest_sequence(channel: grpc.Channel) -> int:
    request = events_pb2.WatchRequest(after_sequence=0, stop_at_head=True)
    replayed = list(events_pb2_grpc.EventsStub(channel).Watch(request, timeout=30))
    return replayed[-1].sequence


def receive_burst(inventory: inventory_pb2_grpc.InventoryStub, request_id: str) -> None:
    """One call, one commit, at least EVENTS_PER_BURST events (one per movement)."""
    movements = [
        inventory_pb2.StockMovement(
            sku=f"S{index}", node_id="DC1", type=inventory_pb2.StockMovement.RECEIPT, quantity=1
        )
        for index in range(EVENTS_PER_BURST)
    ]
    request = inventory_pb2.AdjustStockRequest(request_id=request_id, movements=movements)
    inventory.AdjustStock(request, timeout=10)


def watch_slowly(target: str, outcome: WatchOutcome) -> None:
    """From the oldest retained event up to the head as of the call: it lags after the first
    event until told to read on, then takes a few ms per event."""
    request = events_pb2.WatchRequest(after_sequence=0, stop_at_head=True)
    try:
        with grpc.insecure_channel(target, options=SMALL_WINDOW) as channel:
            for event in events_pb2_grpc.EventsStub(channel).Watch(request, timeout=30):
                outcome.sequences.append(event.sequence)
                outcome.started.set()
                outcome.read_on.wait(30)
                time.sleep(WATCHER_PAUSE_S)
    except grpc.RpcError as error:
        outcome.error = error
    finally:
        outcome.started.set()


def assert_no_silent_gap(outcome: WatchOutcome, head: int) -> None:
    """Consecutive sequences, and either every one up to the head the watch began at or an
    OUT_OF_RANGE naming the oldest retained sequence, past the last one received."""
    received = outcome.sequences
    assert received, f"no event received: {outcome.error}"
    gaps = [(before, after) for before, after in itertools.pairwise(received)
            if after != before + 1]
    assert not gaps, f"the watcher skipped events: {gaps[:5]}"
    if outcome.error is None:
        assert received[-1] >= head, (
            f"the watch ended at {received[-1]} without an error, short of the head {head}"
        )
        return
    assert outcome.error.code() is grpc.StatusCode.OUT_OF_RANGE, outcome.error
    oldest = int(error_info(outcome.error).metadata["oldest_sequence"])
    assert oldest > received[-1] + 1, (oldest, received[-1])
    assert f"after {received[-1]}" in (outcome.error.details() or "")


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status on the error"
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details if detail.Is(info.DESCRIPTOR))
    return info
