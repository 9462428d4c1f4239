"""The command link, in one process: a writer atpd serving its link and a gateway in front
of it that decodes and validates writes itself and sends only commands. Calls arriving
together travel as one frame; bad input is refused at the gateway without reaching the
writer; the writer's refusals come back whole; a writer that is gone makes writes
UNAVAILABLE, and a retry with the same ids once it is back is answered as the first time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from atp.bootstrap import AtpServer, ServerConfig
from atp.server.command_link import runs_by_principal
from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)

pytestmark = pytest.mark.integration


def _writer_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(listen=f"unix:{tmp_path / 'w.sock'}", data_dir=str(tmp_path / "data"),
                        advertise="127.0.0.1:1", commit_file=str(tmp_path / "commit"),
                        command_link=str(tmp_path / "commands.sock"))


async def _gateway(tmp_path: Path) -> AtpServer:
    target = f"unix:{tmp_path / 'w.sock'}"
    gateway = AtpServer(ServerConfig(
        listen="127.0.0.1:0", data_dir=None, follow=target, gateway_of=target,
        commit_file=str(tmp_path / "commit"), command_link=str(tmp_path / "commands.sock"),
        reuse_port=True, follower_id="gateway-0"))
    await gateway.start()
    return gateway


def _reserve(reservation_id: str, quantity: int = 1, node_id: str = "n1",
             ) -> reservations_pb2.ReserveRequest:
    return reservations_pb2.ReserveRequest(reservation_id=reservation_id, lines=[
        common_pb2.ReservationLine(line_id="l1", sku="s1", node_id=node_id, quantity=quantity)])


async def _stock(channel: grpc.aio.Channel, quantity: int) -> None:
    inventory = inventory_pb2_grpc.InventoryStub(channel)
    await inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
        node=common_pb2.Node(node_id="n1")), timeout=10)
    await inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
        request_id="stock", movements=[inventory_pb2.StockMovement(
            sku="s1", node_id="n1", type=inventory_pb2.StockMovement.RECEIPT,
            quantity=quantity)]), timeout=10)


def test_writes_travel_as_commands_and_their_answers_match_one_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        writer = AtpServer(_writer_config(tmp_path))
        await writer.start()
        gateway = await _gateway(tmp_path)
        link_server, link = writer.command_link_server, gateway.command_link
        assert link_server is not None and link is not None
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                reservations = reservations_pb2_grpc.ReservationsStub(channel)
                await _stock(channel, 100)  # UpsertNode by the link, AdjustStock relayed

                # 30 reserves at once: the writer gets them in far fewer frames.
                frames, applied = link_server.frames, link_server.commands
                held = await asyncio.gather(*(
                    reservations.Reserve(_reserve(f"r{i}"), timeout=10) for i in range(30)))
                assert [r.reservation_id for r in held] == [f"r{i}" for i in range(30)]
                assert all(r.state == common_pb2.Reservation.HELD for r in held)
                assert link_server.commands - applied == 30
                assert link_server.frames - frames < 30

                # A sourced reserve goes with the gateway's plan, which the writer takes.
                await inventory_pb2_grpc.InventoryStub(channel).UpsertNode(
                    inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(
                        node_id="n1", lanes=[common_pb2.Lane(region="EU", transit_days=1)])),
                    timeout=10)
                ledger = writer.writer.ledger
                await gateway.writer.until_commit(writer.writer.commit_index, 10)
                offered, taken = ledger.plans_offered, ledger.plans_taken
                sourced = await reservations.Reserve(reservations_pb2.ReserveRequest(
                    reservation_id="r-sourced", destination_region="EU",
                    lines=[common_pb2.ReservationLine(line_id="l1", sku="s1", quantity=2)]),
                    timeout=10)
                assert [(line.node_id, line.quantity) for line in sourced.lines] == [("n1", 2)]
                assert ledger.plans_offered == offered + 1
                assert ledger.plans_taken == taken + 1

                # The answer names the commit it is durable at; the writer holds it.
                call = reservations.Reserve(_reserve("r-commit"), timeout=10)
                answer = await call
                trailing = dict(await call.trailing_metadata())
                assert int(trailing["atp-commit-sequence"]) <= writer.writer.commit_index
                assert writer.writer.ledger.reservations["r-commit"].lines[0].quantity == 1
                # A retry of the same request is answered as the first time.
                assert await reservations.Reserve(_reserve("r-commit"), timeout=10) == answer

                # Bad input is refused by the gateway: nothing reaches the writer.
                applied = link_server.commands
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await reservations.Reserve(_reserve("", quantity=0), timeout=10)
                assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert link_server.commands == applied

                # The writer's refusal comes back whole: code, reason, details.
                with pytest.raises(grpc.aio.AioRpcError) as short:
                    await reservations.Reserve(_reserve("r-big", quantity=1000), timeout=10)
                assert short.value.code() is grpc.StatusCode.FAILED_PRECONDITION
                status = rpc_status.from_call(short.value)
                assert status is not None and len(status.details) >= 2

                # A batch and a stream go through the link, each item answered in order.
                batch = await reservations.ReserveBatch(reservations_pb2.ReserveBatchRequest(
                    requests=[_reserve("b1"), _reserve("", quantity=1), _reserve("b2", 999)]),
                    timeout=10)
                assert [r.reservation_id for r in batch.results] == ["b1", "", "b2"]
                assert batch.results[0].reservation.state == common_pb2.Reservation.HELD
                assert batch.results[1].reason == "INVALID_ARGUMENT"
                assert batch.results[2].reason == "INSUFFICIENT_AVAILABILITY"
                assert batch.commit_sequence >= 1

                async def messages() -> AsyncIterator[reservations_pb2.ReserveRequest]:
                    for i in range(5):
                        yield _reserve(f"st{i}")

                streamed = [result async for result in reservations.ReserveStream(messages())]
                assert [r.reservation_id for r in streamed] == [f"st{i}" for i in range(5)]
                assert all(r.reservation.state == common_pb2.Reservation.HELD for r in streamed)
                assert all(r.commit_sequence > 0 for r in streamed)
                assert writer.writer.ledger.reservations["st4"] is not None
        finally:
            await gateway.stop()
            await writer.stop()

    asyncio.run(scenario())


def test_a_writer_that_is_gone_makes_writes_unavailable_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        writer = AtpServer(_writer_config(tmp_path))
        await writer.start()
        gateway = await _gateway(tmp_path)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                reservations = reservations_pb2_grpc.ReservationsStub(channel)
                await _stock(channel, 10)
                first = await reservations.Reserve(_reserve("r1"), timeout=10)
                await writer.stop()
                with pytest.raises(grpc.aio.AioRpcError) as gone:
                    await reservations.Reserve(_reserve("r2"), timeout=10)
                assert gone.value.code() is grpc.StatusCode.UNAVAILABLE
                assert "retry with the same ids" in (gone.value.details() or "")

                await asyncio.sleep(1.0)  # the gateway's copy retries its feed meanwhile

                writer = AtpServer(_writer_config(tmp_path))  # back, on the same data
                await writer.start()
                assert await reservations.Reserve(_reserve("r1"), timeout=10) == first
                again = await reservations.Reserve(_reserve("r2"), timeout=10)
                assert again.state == common_pb2.Reservation.HELD
                for _ in range(100):  # until the copy follows again
                    if gateway.follower is not None and gateway.follower.connected:
                        break
                    await asyncio.sleep(0.02)
        finally:
            await gateway.stop()
            await writer.stop()

    with caplog.at_level(logging.INFO, logger="atp.replication"):
        asyncio.run(scenario())
    # The copy's feed retried several times while the writer was away: said once, in a
    # follower's words (not a client's "retry with the same ids"), and once when it is back.
    said = [(record.levelno, record.getMessage()) for record in caplog.records
            if record.name == "atp.replication"]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO], said
    assert "commit feed from the writer broke" in said[0][1]
    assert "following the writer's commit feed again" in said[1][1]


def test_a_frames_commands_are_applied_in_runs_of_one_principal() -> None:
    items = [("a", 1), ("a", 2), ("b", 3), ("a", 4)]
    assert runs_by_principal(items) == [("a", [1, 2]), ("b", [3]), ("a", [4])]  # type: ignore[arg-type]


def test_closing_the_link_with_a_gateway_connected_logs_no_traceback(tmp_path: Path) -> None:
    """The writer's shutdown ends each gateway's connection; asyncio must not report the
    connection's handler as failed (Python 3.11 reads a cancelled handler's exception)."""
    reported: list[dict[str, object]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: reported.append(context))
        writer = AtpServer(_writer_config(tmp_path))
        await writer.start()
        link_server = writer.command_link_server
        assert link_server is not None
        reader, stream = await asyncio.open_unix_connection(str(tmp_path / "commands.sock"))
        for _ in range(100):  # until the writer serves the connection
            if link_server._connections:
                break
            await asyncio.sleep(0.01)
        assert link_server._connections, "the connection was never served"
        await writer.stop()
        assert await reader.read() == b"", "the writer closed the connection"
        stream.close()
        await asyncio.sleep(0.05)  # the handler's done callbacks run

    asyncio.run(scenario())
    assert reported == [], reported
