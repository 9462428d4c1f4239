"""Events.Watch over a live atpd: order, filters, stop_at_head, resume, retention, slow consumers.

Journal sequences are contiguous (every event takes the next one), so an unfiltered watch
from `after_sequence = s` must deliver s+1, s+2, ... with no gap and no duplicate: that is
what most checks here rest on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from atp.v1 import common_pb2, events_pb2, events_pb2_grpc, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    adjust,
    check_failure,
    commit,
    failure_of,
    fulfill,
    line,
    movement,
    receive,
    reserve,
    reserve_request,
    stocked,
    uid,
    upsert_node,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

WATCH_TIMEOUT = 60.0


# ----- helpers -----------------------------------------------------------------------------------


def events_stub(api: Api) -> events_pb2_grpc.EventsStub:
    return events_pb2_grpc.EventsStub(api.channel)


def replay(api: Api, after: int = 0, **filters: Any) -> list[events_pb2.Event]:
    """Every retained event after `after` up to the head as of now (stop_at_head)."""
    request = events_pb2.WatchRequest(after_sequence=after, stop_at_head=True, **filters)
    return list(events_stub(api).Watch(request, timeout=WATCH_TIMEOUT))


def head(api: Api) -> int:
    """The sequence of the newest event (0 when there is none)."""
    events = replay(api)
    return events[-1].sequence if events else 0


def sequences(events: Iterable[events_pb2.Event]) -> list[int]:
    return [event.sequence for event in events]


def assert_contiguous(events: list[events_pb2.Event], after: int) -> None:
    """after+1, after+2, ...: no gap, no duplicate, in order."""
    got = sequences(events)
    assert got == list(range(after + 1, after + 1 + len(got))), got[:20]


def concerns(event: events_pb2.Event, ids: set[str]) -> bool:
    """The event names one of `ids` (reservation, sku or node), itself or in data.lines[]."""
    values = {event.reservation_id, event.sku, event.node_id}
    data = event.data
    lines = data.fields["lines"].list_value.values if "lines" in data.fields else []
    for item in lines:
        fields = item.struct_value.fields
        values |= {fields[name].string_value for name in ("sku", "node_id") if name in fields}
    return bool(values & ids)


class Collector:
    """Reads a live Watch on a thread; the test waits for what it expects to arrive."""

    def __init__(self, api: Api, request: events_pb2.WatchRequest) -> None:
        self.call = events_stub(api).Watch(request, timeout=WATCH_TIMEOUT * 2)
        self.events: list[events_pb2.Event] = []
        self.error: grpc.RpcError | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        except grpc.RpcError as error:
            with self._changed:
                self.error = error
                self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.error is not None and not predicate(self.events)):
                    raise AssertionError(
                        f"watch did not deliver in time; got {len(self.events)} events, "
                        f"error {self.error!r}")
                self._changed.wait(remaining)

    def cancel(self) -> None:
        self.call.cancel()
        self._thread.join(10)


# ----- a shared server: order, filters, stop_at_head, resume after disconnect --------------------


def test_scripted_flow_arrives_in_order_with_the_expected_types(api: Api) -> None:
    start = head(api)
    node = upsert_node(api)
    sku = uid("sku")
    receive(api, sku, node, 10)
    reservation = reserve(api, line("l1", sku, node, 5))
    rid = reservation.reservation_id
    commit(api, rid)
    adjust(api, movement(sku, node, Movement.SHRINKAGE, 7))   # on_hand 3 for 5 committed
    adjust(api, movement(sku, node, Movement.RECEIPT, 2))     # 5 again: fits
    fulfill(api, rid)

    events = replay(api, after=start)
    assert_contiguous(events, start)
    mine = [event for event in events if concerns(event, {node, sku, rid})]
    assert [event.type for event in mine] == [
        "NODE_UPSERTED",
        "STOCK_MOVED",
        "POSITION_BACK_IN_STOCK",
        "RESERVATION_CREATED",
        "RESERVATION_COMMITTED",
        "STOCK_MOVED",
        "LINE_AT_RISK",
        "POSITION_OUT_OF_STOCK",
        "STOCK_MOVED",
        "LINE_RECOVERED",
        "RESERVATION_FULFILLED",
    ]
    at_risk = mine[6]
    assert (at_risk.reservation_id, at_risk.sku, at_risk.node_id) == (rid, sku, node)
    assert at_risk.data.fields["reason"].string_value == "SHORTAGE"
    assert at_risk.data.fields["line_id"].string_value == "l1"
    created = mine[3]
    assert created.reservation_id == rid
    assert created.data.fields["lines"].list_value.values[0].struct_value.fields[
        "sku"].string_value == sku
    assert all(event.time.seconds > 0 for event in mine)
    # Over the wire, each event carries its typed payload too (tests/unit/test_event_payloads
    # checks every type against data, field by field).
    assert [event.WhichOneof("payload") for event in mine] == [e.type.lower() for e in mine]
    assert (at_risk.line_at_risk.line_id, at_risk.line_at_risk.at_risk_reason) == (
        "l1", "SHORTAGE")
    [created_line] = created.reservation_created.lines
    assert (created_line.sku, created_line.node_id, created_line.quantity) == (sku, node, 5)
    assert created.reservation_created.state == common_pb2.Reservation.HELD
    shipped = mine[-1].reservation_fulfilled
    assert (shipped.state, [(u.line_id, u.quantity) for u in shipped.lines]) == (
        common_pb2.Reservation.FULFILLED, [("l1", 5)])


def test_live_events_follow_the_replay_without_gap(api: Api) -> None:
    start = head(api)
    sku, node = stocked(api, 100)
    collector = Collector(api, events_pb2.WatchRequest(after_sequence=start))
    try:
        ids = {reserve(api, line("l1", sku, node, 1)).reservation_id for _ in range(20)}
        collector.wait_for(
            lambda events: ids <= {e.reservation_id for e in events if e.type == "RESERVATION_CREATED"})
        assert_contiguous(collector.events, start)
    finally:
        collector.cancel()


def test_filters_by_type_sku_node_and_reservation(api: Api) -> None:
    start = head(api)
    sku_a, node_1 = stocked(api, 50)
    sku_b = uid("sku")
    node_2 = upsert_node(api)
    receive(api, sku_b, node_1, 50)
    receive(api, sku_a, node_2, 50)
    r_a1 = reserve(api, line("l1", sku_a, node_1, 2)).reservation_id
    r_b1 = reserve(api, line("l1", sku_b, node_1, 2)).reservation_id
    r_a2 = reserve(api, line("l1", sku_a, node_2, 2)).reservation_id
    # A two-line reservation concerns both SKUs (through data.lines[]).
    r_ab = reserve(api, line("l1", sku_a, node_2, 1), line("l2", sku_b, node_1, 1)).reservation_id
    commit(api, r_a1)
    adjust(api, movement(sku_a, node_1, Movement.TRANSFER, 3, to_node_id=node_2))

    created = {"types": ["RESERVATION_CREATED"]}
    assert [e.reservation_id for e in replay(api, start, sku=sku_a, **created)] == [r_a1, r_a2, r_ab]
    assert [e.reservation_id for e in replay(api, start, sku=sku_b, **created)] == [r_b1, r_ab]
    assert [e.reservation_id for e in replay(api, start, node_id=node_1, **created)] == [
        r_a1, r_b1, r_ab]
    assert [e.reservation_id for e in replay(api, start, node_id=node_2, **created)] == [r_a2, r_ab]
    # sku and node_id together: r_a1 is surely in; r_ab is examined in its own test below.
    assert r_a1 in [e.reservation_id for e in replay(api, start, sku=sku_a, node_id=node_1,
                                                     **created)]

    by_reservation = replay(api, start, reservation_id=r_a1)
    assert [e.type for e in by_reservation] == ["RESERVATION_CREATED", "RESERVATION_COMMITTED"]
    assert {e.reservation_id for e in by_reservation} == {r_a1}
    assert [e.type for e in replay(api, start, reservation_id=r_a1,
                                   types=["RESERVATION_COMMITTED", "STOCK_MOVED"])] == [
        "RESERVATION_COMMITTED"]

    # Stock movements and commits of sku_a: the receipts at node_1 and node_2, r_a1's commit
    # (a reservation event names its lines), then the transfer's two sides (out of node_1,
    # naming node_2 as to_node_id; into node_2).
    moves = replay(api, start, types=["STOCK_MOVED", "RESERVATION_COMMITTED"], sku=sku_a)
    described = [(e.type, e.node_id, e.data.fields["movement"].string_value) for e in moves]
    assert described[:3] == [("STOCK_MOVED", node_1, "RECEIPT"), ("STOCK_MOVED", node_2, "RECEIPT"),
                             ("RESERVATION_COMMITTED", "", "")]
    assert moves[2].reservation_id == r_a1
    assert sorted(described[3:]) == sorted([("STOCK_MOVED", node_1, "TRANSFER"),
                                            ("STOCK_MOVED", node_2, "TRANSFER_IN")])
    assert replay(api, start, types=["RESERVATION_COMMITTED"], sku=sku_b) == []
    assert sequences(moves) == sorted(sequences(moves))
    # A transfer concerns its destination node too.
    into_2 = replay(api, start, types=["STOCK_MOVED"], node_id=node_2, sku=sku_a)
    assert sorted(e.data.fields["movement"].string_value for e in into_2) == [
        "RECEIPT", "TRANSFER", "TRANSFER_IN"]
    assert replay(api, start, reservation_id="no-such-reservation") == []


def test_sku_and_node_filters_together_mean_one_position(api: Api) -> None:
    start = head(api)
    sku_a, node_1 = stocked(api, 10)
    sku_b, node_2 = stocked(api, 10)
    receive(api, sku_b, node_1, 10)
    receive(api, sku_a, node_2, 10)
    # Lines at (sku_a, node_2) and (sku_b, node_1): nothing at (sku_a, node_1).
    mixed = reserve(api, line("l1", sku_a, node_2, 1), line("l2", sku_b, node_1, 1)).reservation_id
    listed = api.reservations.ListReservations(
        reservations_pb2.ListReservationsRequest(sku=sku_a, node_id=node_1), timeout=CALL_TIMEOUT)
    assert mixed not in [r.reservation_id for r in listed.reservations]
    watched = replay(api, start, types=["RESERVATION_CREATED"], sku=sku_a, node_id=node_1)
    assert mixed not in [e.reservation_id for e in watched]


def test_stop_at_head_ends_at_the_head_as_of_the_call(api: Api) -> None:
    sku, node = stocked(api, 100)
    start = head(api)
    for _ in range(5):
        reserve(api, line("l1", sku, node, 1))
    end = head(api)
    call = events_stub(api).Watch(
        events_pb2.WatchRequest(after_sequence=start, stop_at_head=True), timeout=WATCH_TIMEOUT)
    first = next(call)
    later = reserve(api, line("l1", sku, node, 1)).reservation_id  # after the call: not included
    rest = list(call)
    delivered = [first, *rest]
    assert_contiguous(delivered, start)
    assert delivered[-1].sequence == end
    assert later not in {e.reservation_id for e in delivered}
    assert later in {e.reservation_id for e in replay(api, end)}
    # Nothing after the head: an empty, finished stream.
    assert replay(api, head(api)) == []


def test_resume_after_a_client_disconnect_has_no_gap_and_no_duplicate(api: Api) -> None:
    sku, node = stocked(api, 1000)
    start = head(api)
    collector = Collector(api, events_pb2.WatchRequest(after_sequence=start))
    try:
        for _ in range(15):
            reserve(api, line("l1", sku, node, 1))
        collector.wait_for(lambda events: len(events) >= 10)
    finally:
        collector.cancel()
    seen = list(collector.events)
    assert_contiguous(seen, start)
    last = seen[-1].sequence
    # More happens while the client is away.
    for _ in range(15):
        reserve(api, line("l1", sku, node, 1))
    resumed = replay(api, after=last)
    assert_contiguous(resumed, last)
    combined = seen + resumed
    assert_contiguous(combined, start)
    assert sequences(combined) == sequences(replay(api, after=start))
    assert len({e.reservation_id for e in combined if e.type == "RESERVATION_CREATED"}) == 30


# ----- servers of their own ----------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path, gateways: int) -> Iterator[AtpdProcess]:
    """A fresh atpd for one test, started with the flags given."""
    servers: list[AtpdProcess] = []

    def start(*args: str) -> AtpdProcess:
        server = AtpdProcess(tmp_path / f"data{len(servers)}", *args, gateways=gateways).start()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        if server.process is not None:
            server.kill()


@pytest.mark.one_process_for_time(reason="time: kill -9 under load behind gateways is "
                                   "tests/gateway/test_gateways.py's; the journal is the writer's")
def test_resume_after_kill_9_keeps_every_acknowledged_event(own_server: Any) -> None:
    server: AtpdProcess = own_server()
    api = Api(server.channel())
    sku, node = stocked(api, 10**6)
    watcher = Collector(api, events_pb2.WatchRequest(after_sequence=0))
    acknowledged: list[str] = []
    stop = threading.Event()

    def keep_reserving() -> None:
        own = Api(server.channel())
        while not stop.is_set():
            request = reserve_request(uid("k9"), [line("l1", sku, node, 1)])
            try:
                own.reservations.Reserve(request, timeout=CALL_TIMEOUT)
            except grpc.RpcError:
                return  # the server went away: this one was never acknowledged
            acknowledged.append(request.reservation_id)
        own.close()

    threads = [threading.Thread(target=keep_reserving, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        watcher.wait_for(lambda events: len(events) >= 200)
    finally:
        server.kill()
        stop.set()
    for thread in threads:
        thread.join(30)
    watcher.wait_for(lambda events: watcher.error is not None)
    api.close()
    seen = list(watcher.events)
    assert_contiguous(seen, 0)
    assert len(acknowledged) >= 50, f"only {len(acknowledged)} reserves acknowledged before the kill"

    server.start()
    api = Api(server.channel())
    try:
        journal = replay(api)
        assert_contiguous(journal, 0)
        # Whatever the watcher saw is in the journal, unchanged: it never saw an event a crash
        # took back.
        by_sequence = {event.sequence: event for event in journal}
        for event in seen:
            assert by_sequence[event.sequence] == event
        created = {e.reservation_id for e in journal if e.type == "RESERVATION_CREATED"}
        missing = set(acknowledged) - created
        assert not missing, f"{len(missing)} acknowledged reserves have no event after kill -9"
        # Resuming from the last sequence the watcher saw continues exactly there.
        resumed = replay(api, after=seen[-1].sequence)
        assert_contiguous(resumed, seen[-1].sequence)
        assert seen + resumed == journal
        # New events continue the sequence.
        head_before = journal[-1].sequence
        rid = reserve(api, line("l1", sku, node, 1)).reservation_id
        after = replay(api, after=head_before)
        assert after and after[0].sequence == head_before + 1
        assert rid in {e.reservation_id for e in after}
    finally:
        api.close()


# How long the journal must stay the same to count as trimmed: a single atpd trims beside
# its commits, but a gateway's copy trims on its housekeeping tick (Writer's
# housekeeping_interval_s, one second), a little after the writer.
SETTLED_S = 1.5


def settled_replay(api: Any) -> list[Any]:
    """The retained journal once the trim has caught up (it runs in slices)."""
    previous = replay(api)
    unchanged_since = time.monotonic()
    deadline = unchanged_since + 15
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = replay(api)
        if current != previous:
            previous, unchanged_since = current, time.monotonic()
        elif time.monotonic() - unchanged_since >= SETTLED_S:
            return current
    raise AssertionError("the journal kept changing with no writes")


def test_out_of_range_when_the_journal_no_longer_holds_the_sequence(own_server: Any) -> None:
    server: AtpdProcess = own_server("--journal-retention-events", "20")
    api = Api(server.channel())
    try:
        sku, node = stocked(api, 0)
        for _ in range(60):
            receive(api, sku, node, 1)
        retained = settled_replay(api)
        oldest = retained[0].sequence
        newest = retained[-1].sequence
        assert newest >= 61 and oldest > 1
        assert len(retained) >= 20, "fewer events retained than --journal-retention-events"
        assert_contiguous(retained, oldest - 1)

        with pytest.raises(grpc.RpcError) as refused:
            replay(api, after=1)
        failure = failure_of(refused.value)
        assert failure.code == Code.OUT_OF_RANGE, failure
        assert failure.error_info is not None, failure
        assert failure.error_info.metadata["oldest_sequence"] == str(oldest)

        # From just before the oldest retained event is fine, and so is 0 (= from the oldest).
        assert replay(api, after=oldest - 1) == retained
        assert replay(api, after=0) == retained
        assert replay(api, after=newest - 5) == retained[-5:]
    finally:
        api.close()


def test_a_watcher_that_does_not_read_neither_slows_reserves_nor_grows_without_bound(
    own_server: Any,
) -> None:
    # A 1,000-event queue (10,000 by default) shows the same at a tenth of the events.
    server: AtpdProcess = own_server("--watch-queue-events", "1000")
    api = Api(server.channel())
    try:
        sku, node = stocked(api, 10**9)
        start = head(api)
        # A watcher that reads one event (so it is surely registered), then nothing. Its own
        # channel has BDP probing off, so the client transport absorbs only a flow-control
        # window (~64 KiB) of the stream, not megabytes: the backlog stays on the server.
        lagging_channel = grpc.insecure_channel(server.target, options=[("grpc.http2.bdp_probe", 0)])
        lagging = events_pb2_grpc.EventsStub(lagging_channel).Watch(
            events_pb2.WatchRequest(after_sequence=start - 1), timeout=240)
        assert next(lagging).sequence == start

        def one(index: int) -> str:
            request = reserve_request(uid(f"slow{index}"), [line("l1", sku, node, 1)])
            return api.reservations.Reserve(request, timeout=CALL_TIMEOUT).reservation_id

        began = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            done = list(pool.map(one, range(1000)))
        assert len(set(done)) == 1000
        assert time.monotonic() - began < 60, "1,000 reserves took too long with a stuck watcher"

        # Push the watcher past its 1,000-event queue (plus what the transport buffers: a
        # flow-control window of events, a few hundred).
        for _ in range(3):
            batch = reservations_pb2.ReserveBatchRequest(requests=[
                reserve_request(uid("flood"), [line("l1", sku, node, 1)]) for _ in range(1000)
            ])
            reply = api.reservations.ReserveBatch(batch, timeout=CALL_TIMEOUT)
            assert all(result.HasField("reservation") for result in reply.results)
        end = head(api)

        # Now it reads: what was queued arrives in order, then RESOURCE_EXHAUSTED with the
        # sequence to resume after.
        received = [start]
        with pytest.raises(grpc.RpcError) as ended:
            for event in lagging:
                received.append(event.sequence)
        failure = failure_of(ended.value)
        assert failure.code == Code.RESOURCE_EXHAUSTED, failure
        assert received == list(range(start, start + len(received)))
        assert received[-1] < end
        assert failure.error_info is not None
        resume_after = int(failure.error_info.metadata["resume_after_sequence"])
        assert resume_after == received[-1]
        rest = replay(api, after=resume_after)
        assert_contiguous(rest, resume_after)
        assert rest[-1].sequence >= end
        lagging_channel.close()
    finally:
        api.close()


def test_a_filter_naming_an_unknown_event_type_or_a_bad_id_is_invalid_argument(api: Api) -> None:
    """Instead of a stream that silently matches nothing (a typo in a type)."""
    bad = events_pb2.WatchRequest(types=["RESERVATION_CREATED", "RESERVATON_CREATED"], sku="s" * 200,
                                  stop_at_head=True)
    with pytest.raises(grpc.RpcError) as raised:
        list(events_stub(api).Watch(bad, timeout=WATCH_TIMEOUT))
    failure = check_failure(failure_of(raised.value), Code.INVALID_ARGUMENT, fields=["types[1]", "sku"])
    assert "RESERVATION_CREATED" in failure.bad_request.field_violations[0].description  # the list
