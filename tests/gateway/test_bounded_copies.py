"""A gateway's copy of the ledger stays bounded however long atpd runs: it keeps live state
and the newest --gateway-journal-events journal events, not the retention windows' worth of
closed reservations, idempotency records and events (those are the writer's, on disk). Reads
that need what a gateway let go are answered by the writer, so clients see no difference."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import pytest

from atp.engine.events import REPLAY_PAGE_EVENTS, EventFilter, EventHub, WatcherLagging
from atp.ledger.archive import NotHeldHere
from atp.ledger.model import Event
from atp.persistence import codec
from atp.store import MemoryStore, WriteBatch
from atp.store.base import CLOSED, CLOSED_BY_TIME, POSITIONS, REQUESTS
from atp.v1 import common_pb2, events_pb2, events_pb2_grpc, reservations_pb2
from tests.gateway.support import GATEWAYS, channels, gateway_atpd
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    expect_error,
    get_reservation,
    line,
    list_all,
    release,
    reserve,
    stocked,
    uid,
)
from tests.support.atpd import free_port

TAIL = 40  # --gateway-journal-events in the live test: far fewer than it writes
RESERVATIONS = 60


def test_a_live_copy_keeps_no_archive_and_a_bounded_journal_tail() -> None:
    store = MemoryStore.live_copy(journal_events_max=10)
    assert store.commits_inline and not MemoryStore().commits_inline  # no thread round trip
    for sequence in range(1, 101):
        batch = WriteBatch()
        batch.put(POSITIONS, f"p{sequence}".encode(), b"live")
        batch.put(CLOSED, f"r{sequence}".encode(), b"ended")
        batch.put(CLOSED_BY_TIME, f"t{sequence}".encode(), b"")
        batch.put(REQUESTS, f"q{sequence}".encode(), b"ended")
        batch.append(sequence, b"event")
        store.commit(batch)
        info = store.environment_info()["entries"]
        assert info["journal"] <= 10 + 10 // 8
    records = store.load()
    assert len(records[POSITIONS]) == 100
    assert not records[CLOSED] and not records[CLOSED_BY_TIME] and not records[REQUESTS]
    kept = store.read_journal(0, 1000)
    assert [sequence for sequence, _ in kept] == list(range(101 - len(kept), 101))
    assert store.journal_dropped_through == 100 - len(kept)
    assert store.last_sequence() == 100
    # The test store keeps everything, as before.
    assert MemoryStore().keeps_archive and MemoryStore().journal_dropped_through == 0


def _events(first: int, last: int) -> WriteBatch:
    batch = WriteBatch()
    for sequence in range(first, last + 1):
        batch.append(sequence, codec.encode_event(
            Event(sequence, 1_795_000_000.0, "STOCK_MOVED", {"sku": "A", "node_id": "DC1"})))
    return batch


def test_a_watch_from_before_the_tail_is_the_writers_and_a_replay_overtaken_resumes() -> None:
    bound = 2 * REPLAY_PAGE_EVENTS

    async def scenario() -> tuple[list[int], WatcherLagging]:
        store = MemoryStore.live_copy(journal_events_max=bound)
        store.commit(_events(1, bound))
        hub = EventHub(store)
        hub.committed_sequence = bound
        stream = hub.watch(0, EventFilter(), stop_at_head=True)
        received = [(await anext(stream)).sequence]  # the first page is in hand
        # Writes go on: the bound lets go of events the replay has not reached.
        store.commit(_events(bound + 1, 2 * bound))
        assert store.journal_dropped_through == bound
        with pytest.raises(NotHeldHere):  # from 0, or before the tail: the writer's
            await anext(hub.watch(0, EventFilter(), stop_at_head=True))
        with pytest.raises(WatcherLagging) as lagging:
            async for event in stream:
                received.append(event.sequence)
        return received, lagging.value

    received, error = asyncio.run(scenario())
    # Every event up to where it stopped, in order and no gap; resume right after it.
    assert received == list(range(1, len(received) + 1))
    assert len(received) == REPLAY_PAGE_EVENTS
    assert error.metadata == {"resume_after_sequence": str(REPLAY_PAGE_EVENTS)}


@pytest.mark.integration
def test_gateways_keep_live_state_and_the_writer_answers_for_what_ended(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = gateway_atpd(tmp_path / "data", "--gateway-journal-events", str(TAIL),
                          "--metrics-port", str(metrics_port)).start()
    spread = channels(server, 4)
    try:
        api = Api(server.channel())
        sku, node = stocked(api, RESERVATIONS)
        released = []
        for _ in range(RESERVATIONS):
            reservation = reserve(api, line("l1", sku, node, 1))
            release(api, reservation.reservation_id)
            released.append(reservation.reservation_id)
        head = _writer_head(api)

        pages = [_metrics(metrics_port + 1 + offset) for offset in range(GATEWAYS + 1)]
        gateways, writer = pages[:GATEWAYS], pages[GATEWAYS]
        assert _gauge(writer, "atp_retained_closed_reservations") >= RESERVATIONS
        assert _gauge(writer, "atp_retained_journal_events") >= head
        for page in gateways:
            assert _gauge(page, "atp_retained_closed_reservations") == 0
            assert _gauge(page, "atp_idempotency_records") == 0
            assert _gauge(page, "atp_retained_journal_events") <= TAIL + TAIL // 8

        # Through every connection (so through both gateways): closed reservations are
        # read, listed and watched as from one process.
        for channel in spread:
            each = Api(channel)
            assert get_reservation(each, released[0]).state == common_pb2.Reservation.RELEASED
            expect_error(each.reservations.GetReservation,
                         reservations_pb2.GetReservationRequest(reservation_id=uid("never")),
                         Code.NOT_FOUND)
            listed = list_all(each.reservations.ListReservations,
                              reservations_pb2.ListReservationsRequest(
                                  state=common_pb2.Reservation.RELEASED, sku=sku),
                              "reservations")
            assert sorted(r.reservation_id for r in listed) == sorted(released)
            events = list(events_pb2_grpc.EventsStub(channel).Watch(
                events_pb2.WatchRequest(stop_at_head=True), timeout=CALL_TIMEOUT))
            sequences = [event.sequence for event in events]
            assert sequences == list(range(1, len(sequences) + 1))
            assert sequences[-1] >= head
            recent = list(events_pb2_grpc.EventsStub(channel).Watch(
                events_pb2.WatchRequest(after_sequence=head - 5, stop_at_head=True),
                timeout=CALL_TIMEOUT))
            assert [event.sequence for event in recent][:5] == list(range(head - 4, head + 1))
    finally:
        for channel in spread:
            channel.close()
        assert server.stop() == 0


def _writer_head(api: Api) -> int:
    """The newest journal sequence (a Watch from the start, to its head)."""
    events = list(events_pb2_grpc.EventsStub(api.channel).Watch(
        events_pb2.WatchRequest(stop_at_head=True), timeout=CALL_TIMEOUT))
    return events[-1].sequence


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def _gauge(page: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", page, re.MULTILINE)
    assert match is not None, f"{name} is not on the page"
    return float(match.group(1))


def test_a_live_copy_lets_its_live_records_go_once_its_ledger_is_built() -> None:
    # The ledger's objects are the copy; its records would be a second one nothing reads.
    store = MemoryStore.live_copy(journal_events_max=10)
    first = WriteBatch()
    first.put(POSITIONS, b"p1", b"live")
    first.append(1, b"event")
    store.commit(first)
    assert store.load()[POSITIONS] == {b"p1": b"live"}  # kept until a ledger is built
    store.loaded()
    assert not store.load()[POSITIONS]
    later = WriteBatch()
    later.put(POSITIONS, b"p2", b"live")
    later.append(2, b"event")
    store.commit(later)
    assert not store.load()[POSITIONS]
    assert store.last_sequence() == 2 and len(store.read_journal(0, 10)) == 2
    # A snapshot's records are kept until the ledger is rebuilt from them, then let go.
    store.begin_restore()
    store.restore([(POSITIONS, b"p3", b"restored")])
    store.finish_restore()
    assert store.load()[POSITIONS] == {b"p3": b"restored"}
    store.loaded()
    assert not store.load()[POSITIONS]
    # A store of record keeps everything.
    kept = MemoryStore()
    kept.commit(first)
    kept.loaded()
    assert kept.load()[POSITIONS] == {b"p1": b"live"}
