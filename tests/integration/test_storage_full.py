"""Storage limits that never lose data, against a real atpd with a tiny --max-data-mb.

Writes that add data are refused RESOURCE_EXHAUSTED / STORAGE_FULL before they apply; reads
and releases keep working; health's atp.v1.Writes says NOT_SERVING; once retention purges
the released reservations, writes succeed again by themselves, with no restart; every
acknowledged reservation is still there after a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

# Bigger records fill the 4 MiB cap in fewer calls (a few hundred, each later released).
PADDING = "x" * 100
LINES_PER_RESERVATION = 25
ATTEMPTS_MAX = 4000


def reservation_id(index: int) -> str:
    return f"order-{index:06d}-{PADDING}"


def reserve(stub: reservations_pb2_grpc.ReservationsStub, index: int) -> None:
    stub.Reserve(reservations_pb2.ReserveRequest(
        reservation_id=reservation_id(index), customer_id=PADDING,
        lines=[common_pb2.ReservationLine(line_id=f"l{n}", sku="SKU", node_id="DC1", quantity=1)
               for n in range(LINES_PER_RESERVATION)],
    ), timeout=10)


def error_reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, error
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def writes_health(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="atp.v1.Writes"), timeout=5)
    return int(reply.status)


def fill_until_refused(stub: reservations_pb2_grpc.ReservationsStub) -> tuple[int, grpc.RpcError]:
    for index in range(ATTEMPTS_MAX):
        try:
            reserve(stub, index)
        except grpc.RpcError as error:
            return index, error
    raise AssertionError(f"{ATTEMPTS_MAX} reservations fitted in a 4 MiB cap")


@pytest.mark.one_process_for_time(reason="time: the writer's storage guard; a gateway "
                                   "following the writer's health is tests/gateway's")
def test_a_full_store_refuses_writes_serves_reads_and_recovers_by_itself(
    tmp_path: Path, gateways: int,
) -> None:
    server = AtpdProcess(
        tmp_path / "data", "--max-data-mb", "4", "--map-size-mb", "1", "--sync", "off",
        "--closed-retention", "1s", "--idempotency-window", "1s", "--journal-retention", "1s",
        gateways=gateways,
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            inventory = inventory_pb2_grpc.InventoryStub(channel)
            stub = reservations_pb2_grpc.ReservationsStub(channel)
            inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id="DC1")))
            inventory.AdjustStock(inventory_pb2.AdjustStockRequest(request_id="stock", movements=[
                inventory_pb2.StockMovement(sku="SKU", node_id="DC1", quantity=10**9,
                                            type=inventory_pb2.StockMovement.RECEIPT)]))
            acknowledged, refusal = fill_until_refused(stub)
            assert acknowledged > 100  # the map grew from 1 MiB towards the cap first
            assert refusal.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_reason(refusal) == "STORAGE_FULL"
            assert "--max-data-mb" in refusal.details()
            with pytest.raises(grpc.RpcError):  # the refused one was not applied
                stub.GetReservation(reservations_pb2.GetReservationRequest(
                    reservation_id=reservation_id(acknowledged)), timeout=5)
            assert writes_health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING

            # Reads and releases go on; the releases let retention free the space.
            held = stub.GetReservation(reservations_pb2.GetReservationRequest(
                reservation_id=reservation_id(0)), timeout=5)
            assert held.state == common_pb2.Reservation.HELD
            for index in range(acknowledged):
                stub.Release(reservations_pb2.ReleaseRequest(
                    reservation_id=reservation_id(index), request_id=f"release-{index}"), timeout=10)

            deadline = time.monotonic() + 20
            while True:
                try:
                    reserve(stub, ATTEMPTS_MAX + 1)
                    break
                except grpc.RpcError as error:
                    assert error_reason(error) == "STORAGE_FULL"
                    assert time.monotonic() < deadline, "writes never came back"
                    time.sleep(0.2)
            assert writes_health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert server.stop() == 0
        server.start()
        with grpc.insecure_channel(server.target) as channel:
            stub = reservations_pb2_grpc.ReservationsStub(channel)
            after = stub.GetReservation(reservations_pb2.GetReservationRequest(
                reservation_id=reservation_id(ATTEMPTS_MAX + 1)), timeout=5)
            assert after.state == common_pb2.Reservation.HELD
    finally:
        server.kill()
