"""Retention on a real atpd with windows of seconds: closed reservations readable (and their
ids guarded) from disk until purged, idempotency records honoured through their window, the
journal trimmed by age, and a restart that loads open reservations only.

Windows of the shared server: closed retention 3 s, idempotency window 2 s, journal 3 s.
Every wait is a bounded poll; tests use unique ids, so they share the server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from atp.store import LmdbStore
from atp.v1 import common_pb2, events_pb2, events_pb2_grpc, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    State,
    adjust,
    expect_error,
    failure_of,
    fulfill,
    get_position,
    get_reservation,
    line,
    movement,
    release,
    reserve_request,
    stocked,
    uid,
    wait_for,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

CLOSED_S = 3.0
WINDOW_S = 2.0
JOURNAL_S = 3.0
FLAGS = ("--closed-retention", "3s", "--idempotency-window", "2s",
         "--journal-retention", "3s", "--sync", "off")
CLOSED_STATES = (State.RELEASED, State.FULFILLED, State.EXPIRED)
# atpd's start-up line; with gateways, the writer's (a gateway's copy loads nothing from disk).
SERVING = re.compile(r"^\S+ \S+ INFO (?:\[writer\] )?atp\.\S+: atpd serving on "
                     r"(?:port \d+|unix:\S+) "
                     r"\((\d+) reservations, (\d+) positions", re.MULTILINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateways: int) -> Iterator[AtpdProcess]:
    process = AtpdProcess(tmp_path_factory.mktemp("retention") / "data", *FLAGS,
                          gateways=gateways).start()
    try:
        yield process
    finally:
        if process.process is not None:
            assert process.stop() == 0, f"atpd did not stop cleanly; see {process.log_path}"


@pytest.fixture
def api(server: AtpdProcess) -> Iterator[Api]:
    client = Api(server.channel())
    try:
        yield client
    finally:
        client.close()


def reserve_one(api: Api, reservation_id: str, sku: str, node: str, quantity: int,
                **fields: Any) -> common_pb2.Reservation:
    return api.reservations.Reserve(
        reserve_request(reservation_id, [line("L1", sku, node, quantity)], **fields),
        timeout=CALL_TIMEOUT,
    )


def reserve_batch(api: Api, requests: list[reservations_pb2.ReserveRequest]) -> None:
    reply = api.reservations.ReserveBatch(
        reservations_pb2.ReserveBatchRequest(requests=requests), timeout=CALL_TIMEOUT
    )
    refused = [r for r in reply.results if not r.HasField("reservation")]
    assert not refused, f"{len(refused)} refused, first: {refused[0]}"


def is_gone(api: Api, reservation_id: str) -> bool:
    try:
        get_reservation(api, reservation_id)
    except grpc.RpcError as error:
        assert error.code() == Code.NOT_FOUND, error
        return True
    return False


def listed(api: Api, state: int, prefix: str, page_size: int = 7) -> tuple[list[str], int]:
    """Ids with `prefix` among every reservation ListReservations gives for `state` (each
    checked to be in that state), and how many pages that took."""
    request = reservations_pb2.ListReservationsRequest(state=state, page_size=page_size)
    found: list[str] = []
    for pages in range(1, 10_000):
        reply = api.reservations.ListReservations(request, timeout=CALL_TIMEOUT)
        assert len(reply.reservations) <= page_size
        for reservation in reply.reservations:
            assert reservation.state == state, reservation
            if reservation.reservation_id.startswith(prefix):
                found.append(reservation.reservation_id)
        if not reply.next_page_token:
            return found, pages
        request.page_token = reply.next_page_token
    raise AssertionError("paging never ended")


# ----- closed retention ----------------------------------------------------------------------


def test_a_closed_reservation_guards_its_id_until_purged_then_the_id_is_free(api: Api) -> None:
    sku, node = stocked(api, 10)
    rid = uid("purged")
    reserve_one(api, rid, sku, node, 2, commit=True)
    closing = time.monotonic()
    released = release(api, rid)
    assert released.state == State.RELEASED

    # Within retention: readable from disk, replayed whole, its id refused to others.
    assert get_reservation(api, rid) == released
    assert reserve_one(api, rid, sku, node, 2, commit=True) == released
    expect_error(api.reservations.Reserve, reserve_request(rid, [line("L1", sku, node, 3)]),
                 Code.ALREADY_EXISTS, resource_type="reservation", resource_name=rid)
    assert get_position(api, sku, node).reserved == 0

    wait_for(lambda: is_gone(api, rid), timeout_s=CLOSED_S + 5, interval_s=0.1)
    assert time.monotonic() - closing >= CLOSED_S - 0.1, "purged before its retention ended"
    renewed = reserve_one(api, rid, sku, node, 3)
    assert renewed.state == State.HELD and renewed.lines[0].quantity == 3
    assert get_reservation(api, rid) == renewed
    position = get_position(api, sku, node)
    assert (position.on_hand, position.reserved, position.allocated) == (10, 3, 0)


def test_closed_reservations_are_listed_from_disk_by_state_then_not_after_retention(
    api: Api,
) -> None:
    sku, node = stocked(api, 1000)
    prefix = uid("listed")
    expiring = [f"{prefix}-x{index:03}" for index in range(40)]
    reserve_batch(api, [reserve_request(rid, [line("L1", sku, node, 1)], ttl_seconds=1)
                        for rid in expiring])
    wait_for(lambda: all(get_reservation(api, rid).state == State.EXPIRED
                         for rid in (expiring[0], expiring[-1])), timeout_s=5)
    released = [f"{prefix}-r{index:03}" for index in range(40)]
    shipped = [f"{prefix}-f{index:03}" for index in range(40)]
    reserve_batch(api, [reserve_request(rid, [line("L1", sku, node, 1)], commit=True)
                        for rid in released + shipped])
    for rid in released:
        release(api, rid)
    for rid in shipped:
        fulfill(api, rid)

    for state, expected in zip(CLOSED_STATES, (released, shipped, expiring)):
        found, pages = listed(api, state, prefix)
        assert found == sorted(expected), State.Name(state)  # id order, each once
        assert pages >= len(expected) // 7
    for state in (State.HELD, State.COMMITTED):
        assert listed(api, state, prefix, page_size=100)[0] == []
    position = get_position(api, sku, node)
    assert (position.on_hand, position.reserved, position.allocated) == (960, 0, 0)

    # After retention the purge takes them: neither listed nor readable.
    wait_for(lambda: not any(listed(api, state, prefix, page_size=100)[0]
                             for state in CLOSED_STATES), timeout_s=CLOSED_S + 6, interval_s=0.2)
    assert all(is_gone(api, rid) for rid in (expiring[0], released[-1], shipped[5]))


# ----- idempotency window --------------------------------------------------------------------


def on_disk(server: AtpdProcess, database: str, key: str) -> bytes | None:
    """A record as atpd's data directory holds it (a read-only reader beside atpd, as
    `atpctl db stat` is)."""
    with LmdbStore(server.data_dir, readonly=True) as store:
        return store.get(database, key.encode())


def test_a_replay_in_the_window_answers_first_and_a_retry_after_it_applies_anew(
    server: AtpdProcess, api: Api,
) -> None:
    sku, node = stocked(api, 10)
    rid = uid("window")
    reserve_one(api, rid, sku, node, 6, commit=True)
    adjust_id, ship_id = uid("adj"), uid("ship")
    receipt = movement(sku, node, Movement.RECEIPT, 5)
    first = adjust(api, receipt, request_id=adjust_id)
    answered = time.monotonic()
    assert [p.on_hand for p in first.positions] == [15]
    # Inside the window: the first answer (AdjustStock answers with the positions as they
    # are, which nothing else changed meanwhile), nothing applied twice; another request
    # under the same id is refused.
    assert adjust(api, receipt, request_id=adjust_id) == first
    shipped = fulfill(api, rid, [("L1", 1)], request_id=ship_id)
    assert shipped.lines[0].fulfilled_quantity == 1
    assert fulfill(api, rid, [("L1", 1)], request_id=ship_id) == shipped
    expect_error(api.inventory.AdjustStock, adjust_request(adjust_id, sku, node, 6),
                 Code.ALREADY_EXISTS, resource_type="request", resource_name=adjust_id)
    expect_error(api.reservations.Fulfill, fulfill_request(rid, ship_id, 2),
                 Code.ALREADY_EXISTS, resource_type="request", resource_name=ship_id)
    assert elapsed_since(answered) < WINDOW_S, "too slow to test inside the window"
    position = get_position(api, sku, node)
    assert (position.on_hand, position.allocated) == (14, 5)

    # After the window the same request is a new one, and its record starts a new window.
    time.sleep(max(0.0, answered + WINDOW_S + 0.3 - time.monotonic()))
    again = adjust(api, receipt, request_id=adjust_id)
    assert [p.on_hand for p in again.positions] == [19]
    assert adjust(api, receipt, request_id=adjust_id) == again
    reshipped = fulfill(api, rid, [("L1", 1)], request_id=ship_id)
    assert reshipped.lines[0].fulfilled_quantity == 2
    assert fulfill(api, rid, [("L1", 1)], request_id=ship_id) == reshipped
    assert on_disk(server, "requests", adjust_id) is not None
    # Then the window of the retries ends too, and the purge takes their records from disk.
    wait_for(lambda: on_disk(server, "requests", adjust_id) is None
             and on_disk(server, "requests", ship_id) is None,
             timeout_s=WINDOW_S + 5, interval_s=0.2)
    position = get_position(api, sku, node)
    assert (position.on_hand, position.allocated) == (18, 4)


def adjust_request(request_id: str, sku: str, node: str, quantity: int) -> Any:
    return inventory_pb2.AdjustStockRequest(
        request_id=request_id, movements=[movement(sku, node, Movement.RECEIPT, quantity)]
    )


def fulfill_request(reservation_id: str, request_id: str, quantity: int) -> Any:
    return reservations_pb2.FulfillRequest(
        reservation_id=reservation_id, request_id=request_id,
        lines=[common_pb2.LineQuantity(line_id="L1", quantity=quantity)],
    )


def elapsed_since(instant: float) -> float:
    return time.monotonic() - instant


# ----- journal retention ---------------------------------------------------------------------


def watch(api: Api, after: int, **filters: Any) -> list[events_pb2.Event]:
    stub = events_pb2_grpc.EventsStub(api.channel)
    request = events_pb2.WatchRequest(after_sequence=after, stop_at_head=True, **filters)
    return list(stub.Watch(request, timeout=CALL_TIMEOUT))


def out_of_range(api: Api, after: int) -> int | None:
    """The oldest retained sequence a Watch from `after` is refused with; None if it is not."""
    try:
        watch(api, after)
    except grpc.RpcError as error:
        failure = failure_of(error)
        assert failure.code == Code.OUT_OF_RANGE, failure
        assert failure.error_info is not None and failure.reason == "SEQUENCE_NOT_RETAINED"
        oldest = int(failure.error_info.metadata["oldest_sequence"])
        assert f"the oldest is {oldest}" in failure.message, failure
        return oldest
    return None


def test_a_watch_below_the_journal_trimmed_by_age_is_out_of_range_naming_the_oldest(
    api: Api,
) -> None:
    sku, node = stocked(api, 1)
    early = watch(api, 0, sku=sku)
    assert early, "the stocking left no event"
    first = early[0].sequence
    assert out_of_range(api, first - 1) is None, "fresh events are retained"
    # Events keep coming; the early ones age past the journal retention.
    deadline = time.monotonic() + JOURNAL_S + 6
    oldest = None
    while oldest is None and time.monotonic() < deadline:
        adjust(api, movement(sku, node, Movement.RECEIPT, 1))
        time.sleep(0.2)
        oldest = out_of_range(api, first - 1)
    assert oldest is not None, "the journal was never trimmed"
    assert oldest > first
    # The sequence named is where a watch may resume: from just before it, the replay starts
    # with it (the trim may move on meanwhile, by age: then the newer oldest is named).
    events: list[events_pb2.Event] = []
    for _ in range(5):
        try:
            events = watch(api, oldest - 1)
            break
        except grpc.RpcError as error:
            failure = failure_of(error)
            assert failure.code == Code.OUT_OF_RANGE, failure
            assert failure.error_info is not None
            newer = int(failure.error_info.metadata["oldest_sequence"])
            assert newer > oldest, failure
            oldest = newer
    assert events and events[0].sequence == oldest
    sequences = [event.sequence for event in events]
    assert sequences == list(range(oldest, oldest + len(sequences)))
    assert watch(api, 0)[0].sequence >= oldest


# ----- restart -------------------------------------------------------------------------------


def serving_counts(server: AtpdProcess) -> tuple[int, int]:
    """(reservations, positions) of the last 'atpd serving' log line."""
    found = SERVING.findall(server.log_path.read_text())
    assert found, f"no 'atpd serving' line in {server.log_path}"
    reservations, positions = found[-1]
    return int(reservations), int(positions)


def test_a_restart_loads_open_reservations_only_and_closed_ones_stay_readable(
    tmp_path: Path, gateways: int,
) -> None:
    # Long enough for a stop and a start to fit in it (with gateways, three processes start).
    closed_s = 8.0 if gateways else 5.0
    server = AtpdProcess(tmp_path / "data", "--closed-retention", f"{closed_s:g}s",
                         "--idempotency-window", f"{closed_s:g}s", "--sync", "off",
                         "--log-level", "INFO", gateways=gateways)
    server.start()
    try:
        api = Api(server.channel())
        sku, node = stocked(api, 100)
        held = [f"held-{index}" for index in range(6)]
        committed = [f"committed-{index}" for index in range(6)]
        gone = [f"released-{index}" for index in range(10)]
        shipped = [f"shipped-{index}" for index in range(10)]
        reserve_batch(api, [reserve_request(rid, [line("L1", sku, node, 2)], ttl_seconds=600)
                            for rid in held])
        reserve_batch(api, [reserve_request(rid, [line("L1", sku, node, 2)], commit=True)
                            for rid in committed + gone + shipped])
        for rid in gone:
            release(api, rid)
        closed_at = time.monotonic()
        for rid in shipped:
            fulfill(api, rid)
        before = {rid: get_reservation(api, rid) for rid in held + committed + gone + shipped}
        api.close()

        assert server.stop() == 0
        server.start()
        api = Api(server.channel())
        reservations, positions = serving_counts(server)
        assert reservations == len(held) + len(committed), "closed reservations were loaded"
        assert positions == 1
        assert elapsed_since(closed_at) < closed_s, "restart too slow to read within retention"
        for rid, reservation in before.items():
            assert get_reservation(api, rid) == reservation, rid
        assert sorted(listed(api, State.RELEASED, "released-")[0]) == sorted(gone)
        assert sorted(listed(api, State.FULFILLED, "shipped-")[0]) == sorted(shipped)
        expect_error(api.reservations.Reserve, reserve_request(gone[0], [line("L1", sku, node, 1)]),
                     Code.ALREADY_EXISTS)
        position = get_position(api, sku, node)
        assert (position.on_hand, position.reserved, position.allocated) == (80, 12, 12)

        # Retention runs on after the restart: the closed ones go, the open ones stay.
        wait_for(lambda: all(is_gone(api, rid) for rid in (gone[0], gone[-1], shipped[-1])),
                 timeout_s=closed_s + 6, interval_s=0.2)
        for rid in held + committed:
            assert get_reservation(api, rid) == before[rid], rid
        api.close()
        assert server.stop() == 0
        server.start()
        api = Api(server.channel())
        assert serving_counts(server)[0] == len(held) + len(committed)
        assert all(is_gone(api, rid) for rid in gone + shipped)
        assert listed(api, State.RELEASED, "released-", page_size=100)[0] == []
        api.close()
    finally:
        if server.process is not None:
            server.kill()
