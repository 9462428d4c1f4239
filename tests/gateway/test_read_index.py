"""A gateway's read index, in one process: a writer atpd on a Unix socket and a gateway in
front of it, the writer's commit learned from its commit board (as `atpd --gateways` runs
them) or by queries. With the gateway's copy cut off from the writer, a read cannot be
proven current and fails UNAVAILABLE rather than answer stale; reads arriving together
share one query; writes pass through the gateway unchanged."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import grpc
import pytest

from atp.bootstrap import AtpServer, ServerConfig
from atp.ledger.errors import Unavailable
from atp.server.gateway import CommitBoard
from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)

pytestmark = pytest.mark.integration


async def _serve_pair(socket_path: Path, commit_file: str) -> tuple[AtpServer, AtpServer]:
    target = f"unix:{socket_path}"
    writer = AtpServer(ServerConfig(listen=target, data_dir=None, advertise="127.0.0.1:1",
                                    commit_file=commit_file))
    await writer.start()
    gateway = AtpServer(ServerConfig(
        listen="127.0.0.1:0", data_dir=None, follow=target, gateway_of=target,
        commit_file=commit_file, reuse_port=True, follower_id="gateway-0"))
    await gateway.start()
    return writer, gateway


@pytest.mark.parametrize("board", [True, False], ids=["commit-board", "queries"])
def test_a_read_never_answers_from_a_copy_behind_the_writer(tmp_path: Path, board: bool,
                                                           ) -> None:
    async def scenario() -> None:
        commit_file = str(tmp_path / "commit") if board else ""
        writer, gateway = await _serve_pair(tmp_path / "w.sock", commit_file)
        assert gateway.gateway is not None and gateway.follower is not None
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                inventory = inventory_pb2_grpc.InventoryStub(channel)
                availability = availability_pb2_grpc.AvailabilityStub(channel)
                reservations = reservations_pb2_grpc.ReservationsStub(channel)
                await inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
                    node=common_pb2.Node(node_id="n1")), timeout=10)
                await inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
                    request_id="a1", movements=[inventory_pb2.StockMovement(
                        sku="s1", node_id="n1", type=inventory_pb2.StockMovement.RECEIPT,
                        quantity=10)]), timeout=10)
                request = availability_pb2.GetAvailabilityRequest(skus=["s1"])
                reply = await availability.GetAvailability(request, timeout=10)
                assert reply.positions[0].on_hand == 10
                # Reads arriving together share the writer's answer: the query out when
                # they arrive may predate some of them, so they all wait for the next one.
                read_index = gateway.gateway.read_index
                before = read_index.queries
                commits = await asyncio.gather(*(read_index.commit(10) for _ in range(20)))
                assert commits == [writer.writer.commit_index] * 20
                assert read_index.queries - before == 2
                if board:  # ... but with a board, reads ask nobody
                    assert gateway.gateway.board is not None
                    assert gateway.gateway.board.read() == writer.writer.commit_index
                    before = read_index.queries
                    await availability.GetAvailability(request, timeout=10)
                    assert read_index.queries == before
                replies = await asyncio.gather(*(
                    availability.GetAvailability(request, timeout=10) for _ in range(20)))
                assert all(r.positions[0].on_hand == 10 for r in replies)

                await gateway.follower.stop()  # the copy is cut off from the writer
                held = await reservations.Reserve(reservations_pb2.ReserveRequest(
                    reservation_id="r1", lines=[common_pb2.ReservationLine(
                        line_id="l1", sku="s1", node_id="n1", quantity=3)]), timeout=10)
                assert held.state == common_pb2.Reservation.HELD
                assert writer.writer.ledger.reservations["r1"] is not None
                get = reservations_pb2.GetReservationRequest(reservation_id="r1")
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await reservations.GetReservation(get, timeout=1.0)
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
                # A STALE read does not wait: it answers from the copy as it is (which has
                # not seen the reservation), and an unknown consistency is refused. A
                # reservation the copy does not hold may have closed, and closed ones are
                # the writer's (the copy keeps live state only): the writer answers that.
                stale = reservations_pb2.GetReservationRequest(
                    reservation_id="r1", consistency=common_pb2.READ_CONSISTENCY_STALE)
                relayed = gateway.gateway.reads_relayed
                assert await reservations.GetReservation(stale, timeout=5) == held
                assert gateway.gateway.reads_relayed == relayed + 1
                stale_view = await availability.GetAvailability(
                    availability_pb2.GetAvailabilityRequest(
                        skus=["s1"], consistency=common_pb2.READ_CONSISTENCY_STALE), timeout=5)
                assert stale_view.positions[0].reserved == 0
                bad = availability_pb2.GetAvailabilityRequest(skus=["s1"], consistency=7)
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await availability.GetAvailability(bad, timeout=5)
                assert unknown.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert "consistency" in unknown.value.details()

                gateway.follower.start()  # caught up again: the write is there
                assert await reservations.GetReservation(get, timeout=10) == held
                reply = await availability.GetAvailability(request, timeout=10)
                assert reply.positions[0].reserved == 3
        finally:
            await gateway.stop()
            await writer.stop()

    asyncio.run(scenario())


def test_the_commit_board_reads_what_was_published_and_never_a_torn_value(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "commit")
    reader = CommitBoard(path)
    with pytest.raises(Unavailable, match="not published yet"):
        reader.read()
    writer = CommitBoard(path, writable=True)
    writer.publish(0)
    assert reader.read() == 0
    for commit in (1, 2, 2**40 + 7):
        writer.publish(commit)
        assert reader.read() == commit
    # Half a publish (the value without its check) is never taken for a commit.
    with open(path, "r+b") as file:
        file.write(struct.pack("<Q", 99))
    with pytest.raises(Unavailable, match="could not be read"):
        reader.read()
    writer.publish(100)  # a later publish mends it, and a restarted writer reopens the file
    assert reader.read() == 100
    writer.close()
    again = CommitBoard(path, writable=True)
    again.publish(101)
    assert reader.read() == 101
    reader.close()
    again.close()
