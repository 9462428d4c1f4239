"""A follower's copy hands each committed batch's journal to its Watch streams as
codec.JournalEvents, decoded as read: every event for a stream that is open, only the last
one (the new head) when none is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from atp.engine.events import EventFilter, EventHub
from atp.ledger.model import Event
from atp.persistence import codec
from atp.store import MemoryStore, WriteBatch

EVENTS = [Event(sequence, 1_700_000_000.0 + sequence, "StockAdjusted",
                {"sku": f"S{sequence}", "node_id": "DC1"}, "ops") for sequence in (1, 2, 3)]


def _journal(events: Sequence[Event]) -> list[tuple[int, bytes]]:
    return [(event.sequence, codec.encode_event(event)) for event in events]


class _CountingReads(codec.JournalEvents):
    def __init__(self, entries: Sequence[tuple[int, bytes]]) -> None:
        super().__init__(entries)
        self.read: list[int | slice] = []

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        self.read.append(index)
        return super().__getitem__(index)


def test_journal_events_decode_to_the_events_written() -> None:
    events = codec.JournalEvents(_journal(EVENTS))
    assert len(events) == 3
    assert list(events) == EVENTS
    assert events[-1] == EVENTS[-1] and events[0] == EVENTS[0]
    assert events[1:] == EVENTS[1:]
    assert not codec.JournalEvents([])


def test_with_no_stream_open_the_hub_reads_only_the_last_event() -> None:
    hub = EventHub(MemoryStore())
    events = _CountingReads(_journal(EVENTS))
    hub.publish(events)
    assert hub.committed_sequence == 3
    assert events.read == [-1]
    hub.publish(codec.JournalEvents([]))  # a batch without events moves nothing
    assert hub.committed_sequence == 3


def test_an_open_stream_gets_every_event_of_a_followers_batch() -> None:
    async def scenario() -> list[Event]:
        store = MemoryStore()
        hub = EventHub(store)
        stream = hub.watch(0, EventFilter(), stop_at_head=False)
        first = asyncio.ensure_future(anext(stream))
        while not hub._watchers:  # the stream is open and waits for live events
            await asyncio.sleep(0)
        batch = WriteBatch()
        for sequence, data in _journal(EVENTS):
            batch.append(sequence, data)
        store.commit(batch)  # as the follower stores it, then announces it
        hub.publish(codec.JournalEvents(batch.journal))
        received = [await asyncio.wait_for(first, 5)]
        received += [await asyncio.wait_for(anext(stream), 5) for _ in range(2)]
        await stream.aclose()
        return received

    assert asyncio.run(scenario()) == EVENTS
