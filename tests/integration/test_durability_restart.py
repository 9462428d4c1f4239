"""Durability across restarts and expiry on time, with a real atpd on its own LMDB data dir."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from atp.v1 import common_pb2, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    State,
    adjust,
    assert_position,
    commit,
    day,
    expect_error,
    fulfill,
    get_reservation,
    line,
    movement,
    pb_date,
    release,
    reserve,
    reserve_request,
    snapshot,
    stocked,
    uid,
    upsert_node,
    wait_for,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

# Each test here starts a server of its own, and restarts it: three processes each time
# behind gateways. What only the supervisor does (the data directory's lock held by its
# writer, a port in use) runs in both modes; SIGTERM and kill -9 behind gateways are
# tests/gateway/test_gateways.py's, and the ledger's own rules across a restart (expiry,
# TTLs, positions) do not change behind gateways: those run against one process, to keep
# `make test` near its time budget (docs/gateways.md).
ONE_PROCESS_FOR_TIME = pytest.mark.one_process_for_time(
    reason="time: a restart's outcome, the same behind gateways (tests/gateway checks "
    "SIGTERM and kill -9 there)")


@pytest.fixture
def server(tmp_path: Path, gateways: int) -> Iterator[AtpdProcess]:
    process = AtpdProcess(tmp_path / "data", gateways=gateways)
    try:
        yield process
    finally:
        if process.process is not None:
            process.kill()


def connect(server: AtpdProcess) -> Api:
    return Api(server.channel())


def _build_state(api: Api) -> dict[str, Any]:
    """One of everything: nodes, each movement, safety stock, supply, holds, reservations
    in each state."""
    sku = uid("sku")
    node_a = upsert_node(api, handling_days=1, lanes=[("EU", 2, 3)], kind="store", region="north")
    node_b = upsert_node(api)
    inactive = upsert_node(api, active=False)
    receipt_id = uid("adj")
    adjust(
        api,
        movement(sku, node_a, Movement.RECEIPT, 100),
        movement(sku, node_b, Movement.RECEIPT, 40),
        request_id=receipt_id,
    )
    adjust(
        api,
        movement(sku, node_a, Movement.RETURN, 5),
        movement(sku, node_a, Movement.SHRINKAGE, 3),
        movement(sku, node_a, Movement.DAMAGE, 2),
        movement(sku, node_b, Movement.CYCLE_COUNT, 38),
        movement(sku, node_a, Movement.TRANSFER, 10, to_node_id=node_b),
    )
    adjust(api, movement(sku, inactive, Movement.RECEIPT, 1))
    api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_a, quantity=4),
        timeout=CALL_TIMEOUT,
    )
    supply_open, supply_cancelled = uid("po"), uid("po")
    for supply_id, quantity, offset in ((supply_open, 30, 6), (supply_cancelled, 5, 3)):
        api.inventory.UpsertSupply(
            inventory_pb2.UpsertSupplyRequest(
                supply=common_pb2.Supply(
                    supply_id=supply_id,
                    sku=sku,
                    node_id=node_a,
                    quantity=quantity,
                    expected_date=pb_date(day(offset)),
                )
            ),
            timeout=CALL_TIMEOUT,
        )
    receive_id = uid("rcv")
    api.inventory.ReceiveSupply(
        inventory_pb2.ReceiveSupplyRequest(
            request_id=receive_id, supply_id=supply_open, quantity=10
        ),
        timeout=CALL_TIMEOUT,
    )
    api.inventory.UpsertSupply(
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=supply_cancelled, quantity=0, expected_date=pb_date(day(3))
            )
        ),
        timeout=CALL_TIMEOUT,
    )
    hold_active, hold_released = uid("hold"), uid("hold")
    expire = Timestamp(seconds=int(time.time()) + 3600)
    api.inventory.PlaceHold(
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(
                hold_id=hold_active,
                sku=sku,
                node_id=node_b,
                quantity=3,
                reason="qa",
                expire_time=expire,
            )
        )
    )
    api.inventory.PlaceHold(
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(
                hold_id=hold_released, sku=sku, node_id=node_b, quantity=2, force=True
            )
        )
    )
    api.inventory.ReleaseHold(inventory_pb2.ReleaseHoldRequest(hold_id=hold_released))

    held_request = reserve_request(
        None,
        [line("l1", sku, node_a, 2), line("l2", sku, node_b, 1)],
        destination_region="EU",
        channel="web",
        customer_id="c1",
        priority=7,
    )
    held = api.reservations.Reserve(held_request, timeout=CALL_TIMEOUT).reservation_id
    preorder = reserve(api, line("l1", sku, node_a, 95)).reservation_id  # beyond stock: inbound
    committed = reserve(api, line("l1", sku, node_b, 4)).reservation_id
    commit_id = uid("c")
    commit(api, committed, commit_id)
    partial = reserve(api, line("l1", sku, node_b, 5), commit=True).reservation_id
    fulfill(api, partial, [("l1", 2)])
    release(api, partial, [("l1", 1)])
    released = reserve(api, line("l1", sku, node_b, 1)).reservation_id
    release(api, released)
    shipped = reserve(api, line("l1", sku, node_b, 1), commit=True).reservation_id
    fulfill(api, shipped)
    return {
        "sku": sku,
        "node_a": node_a,
        "node_b": node_b,
        "receipt_id": receipt_id,
        "receive_id": receive_id,
        "supply_open": supply_open,
        "held_request": held_request,
        "commit_id": commit_id,
        "ids": [held, preorder, committed, partial, released, shipped],
        "hold_active": hold_active,
    }


@ONE_PROCESS_FOR_TIME
def test_sigterm_exits_zero_and_restart_keeps_every_acknowledged_change(
    server: AtpdProcess,
) -> None:
    server.start()
    api = connect(server)
    state = _build_state(api)
    sku = state["sku"]
    before = snapshot(api, [sku])
    reservations_before = [get_reservation(api, rid) for rid in state["ids"]]
    assert [r.state for r in reservations_before] == [
        State.HELD,
        State.HELD,
        State.COMMITTED,
        State.COMMITTED,
        State.RELEASED,
        State.FULFILLED,
    ]
    api.close()

    assert server.stop() == 0
    server.start()
    api = connect(server)
    try:
        assert snapshot(api, [sku]) == before
        assert [get_reservation(api, rid) for rid in state["ids"]] == reservations_before

        # Idempotency keys survived too: replays change nothing, conflicts are still conflicts.
        node_a, node_b = state["node_a"], state["node_b"]
        replay = inventory_pb2.AdjustStockRequest(
            request_id=state["receipt_id"],
            movements=[
                movement(sku, node_a, Movement.RECEIPT, 100),
                movement(sku, node_b, Movement.RECEIPT, 40),
            ],
        )
        api.inventory.AdjustStock(replay, timeout=CALL_TIMEOUT)
        api.inventory.ReceiveSupply(
            inventory_pb2.ReceiveSupplyRequest(
                request_id=state["receive_id"], supply_id=state["supply_open"], quantity=10
            ),
            timeout=CALL_TIMEOUT,
        )
        assert (
            api.reservations.Reserve(state["held_request"], timeout=CALL_TIMEOUT)
            == reservations_before[0]
        )
        assert snapshot(api, [sku]) == before
        replay.movements[0].quantity = 99
        expect_error(api.inventory.AdjustStock, replay, Code.ALREADY_EXISTS)
        expect_error(
            api.reservations.Release,
            reservations_pb2.ReleaseRequest(
                reservation_id=state["ids"][2], request_id=state["commit_id"]
            ),
            Code.ALREADY_EXISTS,
        )
        changed = reservations_pb2.ReserveRequest()
        changed.CopyFrom(state["held_request"])
        changed.lines[0].quantity = 3
        expect_error(api.reservations.Reserve, changed, Code.ALREADY_EXISTS)

        # And the restored ledger keeps working: commit and ship the HELD reservation.
        held = state["ids"][0]
        commit(api, held)
        assert fulfill(api, held).state == State.FULFILLED
    finally:
        api.close()
    assert server.stop() == 0


@ONE_PROCESS_FOR_TIME
def test_a_second_restart_after_more_changes_keeps_them_all(server: AtpdProcess) -> None:
    server.start()
    for round_number in range(3):
        api = connect(server)
        try:
            if round_number == 0:
                sku, node_id = stocked(api, 10)
            reserve(api, line("l1", sku, node_id, 1), commit=True)
            assert_position(api, sku, node_id, on_hand=10, allocated=round_number + 1)
        finally:
            api.close()
        assert server.stop() == 0
        server.start()
    api = connect(server)
    try:
        assert_position(api, sku, node_id, on_hand=10, allocated=3, available=7)
    finally:
        api.close()


@ONE_PROCESS_FOR_TIME
def test_held_reservation_with_ttl_2_expires_on_time_while_running(server: AtpdProcess) -> None:
    server.start()
    api = connect(server)
    try:
        sku, node_id = stocked(api, 10)
        expiring = reserve(api, line("l1", sku, node_id, 4), ttl_seconds=2)
        firm = reserve(api, line("l1", sku, node_id, 3), commit=True)
        longer = reserve(api, line("l1", sku, node_id, 1), ttl_seconds=600)
        expire_at = expiring.expire_time.ToNanoseconds() / 1e9
        assert abs(expire_at - expiring.create_time.ToNanoseconds() / 1e9 - 2) < 0.01
        assert_position(api, sku, node_id, reserved=5, allocated=3, available=2)

        wait_for(
            lambda: get_reservation(api, expiring.reservation_id).state == State.EXPIRED,
            timeout_s=10,
        )
        assert time.time() >= expire_at - 0.05, "expired early"
        assert time.time() <= expire_at + 3, "expired late"
        expired = get_reservation(api, expiring.reservation_id)
        assert expired.lines[0].fulfilled_quantity == 0
        assert_position(api, sku, node_id, reserved=1, allocated=3, available=6)
        assert get_reservation(api, firm.reservation_id).state == State.COMMITTED
        assert get_reservation(api, longer.reservation_id).state == State.HELD
        listed = api.reservations.ListReservations(
            reservations_pb2.ListReservationsRequest(sku=sku, state=State.EXPIRED),
            timeout=CALL_TIMEOUT,
        )
        assert [r.reservation_id for r in listed.reservations] == [expiring.reservation_id]
    finally:
        api.close()
    assert server.stop() == 0


@ONE_PROCESS_FOR_TIME
def test_held_reservation_and_hold_expire_across_a_restart(server: AtpdProcess) -> None:
    server.start()
    api = connect(server)
    try:
        sku, node_id = stocked(api, 10)
        expiring = reserve(api, line("l1", sku, node_id, 4), ttl_seconds=2)
        staying = reserve(api, line("l1", sku, node_id, 2), ttl_seconds=600)
        hold_id = uid("hold")
        hold_expire = Timestamp()
        hold_expire.FromNanoseconds(time.time_ns() + 2_000_000_000)
        api.inventory.PlaceHold(
            inventory_pb2.PlaceHoldRequest(
                hold=common_pb2.Hold(
                    hold_id=hold_id, sku=sku, node_id=node_id, quantity=3, expire_time=hold_expire
                )
            ),
            timeout=CALL_TIMEOUT,
        )
        assert_position(api, sku, node_id, reserved=6, held=3, available=1)
    finally:
        api.close()
    assert server.stop() == 0

    expire_at = max(expiring.expire_time.ToNanoseconds(), hold_expire.ToNanoseconds()) / 1e9
    time.sleep(max(0.0, expire_at - time.time()) + 0.5)
    server.start()
    api = connect(server)
    try:
        # Expired at start, before any call was taken: no polling needed.
        assert get_reservation(api, expiring.reservation_id).state == State.EXPIRED
        assert get_reservation(api, staying.reservation_id).state == State.HELD
        assert_position(api, sku, node_id, on_hand=10, reserved=2, held=0, available=8)
        holds = api.inventory.ListHolds(
            inventory_pb2.ListHoldsRequest(sku=sku), timeout=CALL_TIMEOUT
        )
        assert list(holds.holds) == []
        expect_error(
            api.reservations.Commit,
            reservations_pb2.CommitRequest(
                reservation_id=expiring.reservation_id, request_id=uid("c")
            ),
            Code.FAILED_PRECONDITION,
            "RESERVATION_EXPIRED",
        )
    finally:
        api.close()
    assert server.stop() == 0


@ONE_PROCESS_FOR_TIME
def test_default_ttl_flag_sets_the_ttl_of_reservations_without_one(
    tmp_path: Path, gateways: int,
) -> None:
    server = AtpdProcess(tmp_path / "data", "--default-ttl", "2", gateways=gateways).start()
    api = connect(server)
    try:
        sku, node_id = stocked(api, 5)
        reservation = reserve(api, line("l1", sku, node_id, 5))
        ttl = (
            reservation.expire_time.ToNanoseconds() - reservation.create_time.ToNanoseconds()
        ) / 1e9
        assert abs(ttl - 2) < 0.01
        wait_for(
            lambda: get_reservation(api, reservation.reservation_id).state == State.EXPIRED,
            timeout_s=10,
        )
        assert_position(api, sku, node_id, reserved=0, available=5)
    finally:
        api.close()
        assert server.stop() == 0


@ONE_PROCESS_FOR_TIME
def test_restart_keeps_a_position_created_by_a_backordered_line(server: AtpdProcess) -> None:
    server.start()
    api = connect(server)
    try:
        sku, _stocked_node = stocked(api, 5)
        empty_node = upsert_node(api)
        reservation = reserve(
            api,
            line("l1", sku, empty_node, 3),
            policy=common_pb2.FulfillmentPolicy(allow_partial=True),
        )
        assert reservation.lines[0].backordered_quantity == 3
        before = snapshot(api, [sku])
    finally:
        api.close()
    assert server.stop() == 0
    server.start()
    api = connect(server)
    try:
        assert snapshot(api, [sku]) == before
    finally:
        api.close()


@pytest.mark.crash
@ONE_PROCESS_FOR_TIME
def test_kill_9_keeps_every_acknowledged_change(server: AtpdProcess) -> None:
    server.start()
    api = connect(server)
    try:
        sku, node_id = stocked(api, 20)
        ids = [reserve(api, line("l1", sku, node_id, 1)).reservation_id for _ in range(5)]
        commit(api, ids[0])
        release(api, ids[1])
        before = snapshot(api, [sku])
    finally:
        api.close()
    server.kill()
    server.start()
    api = connect(server)
    try:
        assert snapshot(api, [sku]) == before
        assert_position(api, sku, node_id, on_hand=20, reserved=3, allocated=1, available=16)
    finally:
        api.close()
    assert server.stop() == 0


def test_a_second_atpd_on_the_same_data_dir_is_refused_and_the_first_keeps_serving(
    server: AtpdProcess,
) -> None:
    """Found by a new-user review against 01834d6: a second atpd started on a data dir in use
    served its own copy of the ledger, and its first write made the other one stop."""
    server.start()
    api = connect(server)
    sku, node_id = stocked(api, 5)
    second = subprocess.run(
        [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
         "--data-dir", str(server.data_dir), "--gateways", str(server.gateways)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert second.returncode == 2, second
    # The lock is the writer's: atpd itself, or with gateways its writer process.
    assert f"in use by another writer (pid {server.writer_pid()})" in second.stderr
    adjust(api, movement(sku, node_id, Movement.RECEIPT, 1))
    assert_position(api, sku, node_id, on_hand=6)
    server.kill()  # kill -9 drops the lock with the process: a restart takes it over
    server.start()
    assert_position(connect(server), sku, node_id, on_hand=6)


def test_a_busy_port_is_one_clear_line_and_exit_code_2(tmp_path: Path, gateways: int) -> None:
    """Found by a new-user review against 01834d6: a 20-line traceback, exit code 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        refused = subprocess.run(
            [sys.executable, "-m", "atp.daemon", "--listen", address,
             "--data-dir", str(tmp_path / "data"), "--gateways", str(gateways)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert refused.returncode == 2, refused
    assert f"atpd: cannot listen on {address}: the address is in use" in refused.stderr
    assert "Traceback" not in refused.stderr
