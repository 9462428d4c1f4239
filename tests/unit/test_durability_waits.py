"""Waiting for durability: a caller that goes away cancels nothing but its own wait, and
ReserveStream answers each message once durable, in order, without hanging on failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from atp.server.servicers import ReservationsServicer
from atp.v1 import reservations_pb2
from tests.unit.test_writer import GatedStore, receipt, started_writer


def test_a_cancelled_caller_does_not_cancel_the_commit_others_wait_for() -> None:
    async def scenario() -> None:
        store = GatedStore()
        writer = await started_writer(store)
        store.gate.clear()
        leaving = asyncio.create_task(writer.execute(receipt("r1")))
        staying = asyncio.create_task(writer.execute(receipt("r2")))
        await asyncio.sleep(0.05)
        leaving.cancel()
        await asyncio.sleep(0.01)
        store.gate.set()
        positions = await asyncio.wait_for(staying, 5)
        assert positions[0].on_hand == 2  # both receipts applied, r2 acknowledged
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await writer.close()
        assert store.batch_sizes and writer.failure is None

    asyncio.run(scenario())


def _reserve(reservation_id: str, quantity: int = 1) -> reservations_pb2.ReserveRequest:
    request = reservations_pb2.ReserveRequest(reservation_id=reservation_id)
    request.lines.add(line_id="l1", sku="A", quantity=quantity, node_id="DC1")
    return request


async def _stocked_servicer(store: GatedStore) -> ReservationsServicer:
    writer = await started_writer(store)
    await writer.execute(receipt("stock", 10))
    return ReservationsServicer(writer)


def test_stream_answers_in_order_only_once_durable() -> None:
    async def scenario() -> None:
        store = GatedStore()
        servicer = await _stocked_servicer(store)
        store.gate.clear()

        async def messages() -> AsyncIterator[reservations_pb2.ReserveRequest]:
            for request in (_reserve("a"), _reserve("b", 99), _reserve("c")):
                yield request

        answers = servicer.ReserveStream(messages(), None)
        first = asyncio.ensure_future(answers.__anext__())
        await asyncio.sleep(0.1)
        assert not first.done()  # applied, but its batch is not on disk yet
        store.gate.set()
        results = [await asyncio.wait_for(first, 5)]
        results += [result async for result in answers]
        assert [r.reservation_id for r in results] == ["a", "b", "c"]
        assert [r.WhichOneof("result") for r in results] == ["reservation", "status", "reservation"]
        assert results[1].reason == "INSUFFICIENT_AVAILABILITY"

    asyncio.run(scenario())


def test_stream_whose_reading_fails_answers_what_was_applied_then_raises() -> None:
    async def scenario() -> None:
        servicer = await _stocked_servicer(GatedStore())

        async def messages() -> AsyncIterator[reservations_pb2.ReserveRequest]:
            yield _reserve("a")
            raise RuntimeError("connection torn")

        results = []
        with pytest.raises(RuntimeError, match="connection torn"):
            async for result in servicer.ReserveStream(messages(), None):
                results.append(result)
        assert [r.reservation_id for r in results] == ["a"]

    asyncio.run(asyncio.wait_for(scenario(), 10))


class _AbortingContext:
    """Stands in for grpc's servicer context: abort() ends the call by raising."""

    async def abort(self, code: grpc.StatusCode, message: str, **_: object) -> None:
        raise _Aborted(code, message)


class _Aborted(Exception):
    pass


def test_a_read_answers_only_once_what_it_shows_is_durable() -> None:
    """Found by a kill -9 review against 01834d6: GetReservation showed a reservation whose
    batch was still committing, and a crash then took it back."""
    async def scenario() -> None:
        store = GatedStore()
        servicer = await _stocked_servicer(store)
        store.gate.clear()
        reserving = asyncio.create_task(servicer.Reserve(_reserve("a"), None))
        await asyncio.sleep(0.02)
        reading = asyncio.create_task(servicer.GetReservation(
            reservations_pb2.GetReservationRequest(reservation_id="a"), None))
        await asyncio.sleep(0.1)
        assert not reading.done(), "the read shows a reservation not yet on disk"
        store.gate.set()
        assert (await asyncio.wait_for(reading, 5)).reservation_id == "a"
        await reserving

    asyncio.run(scenario())


def test_an_answer_shows_the_state_its_own_command_made() -> None:
    async def scenario() -> None:
        store = GatedStore()
        servicer = await _stocked_servicer(store)
        store.gate.clear()
        reserving = asyncio.create_task(servicer.Reserve(_reserve("a"), None))
        await asyncio.sleep(0.05)  # the reserve's batch is committing, blocked at the gate
        committing = asyncio.create_task(servicer.Commit(
            reservations_pb2.CommitRequest(reservation_id="a", request_id="c1"), None))
        await asyncio.sleep(0.02)
        store.gate.set()
        held, committed = await asyncio.wait_for(asyncio.gather(reserving, committing), 5)
        assert held.state == held.HELD  # not the later, then undurable, COMMITTED
        assert committed.state == committed.COMMITTED

    asyncio.run(scenario())


def test_reads_are_refused_once_storage_failed() -> None:
    async def scenario() -> None:
        store = GatedStore()
        servicer = await _stocked_servicer(store)
        store.fail = True
        with pytest.raises(_Aborted, match="failed and is stopping"):
            await servicer.Reserve(_reserve("a"), _AbortingContext())
        with pytest.raises(_Aborted, match="failed and is stopping") as refused:
            await servicer.GetReservation(
                reservations_pb2.GetReservationRequest(reservation_id="a"), _AbortingContext())
        assert refused.value.args[0] == grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())


def test_a_batch_counts_each_of_its_reservations_against_the_waiting_limit() -> None:
    async def scenario() -> None:
        store = GatedStore()
        servicer = await _stocked_servicer(store)
        servicer.writer.pending_max = 5
        store.gate.clear()
        batch = reservations_pb2.ReserveBatchRequest(requests=[_reserve(f"b{i}") for i in range(4)])
        waiting = asyncio.create_task(servicer.ReserveBatch(batch, None))
        await asyncio.sleep(0.05)
        more = reservations_pb2.ReserveBatchRequest(requests=[_reserve("c0"), _reserve("c1")])
        with pytest.raises(_Aborted) as refused:
            await servicer.ReserveBatch(more, _AbortingContext())
        assert refused.value.args[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        store.gate.set()
        assert len((await asyncio.wait_for(waiting, 5)).results) == 4

    asyncio.run(scenario())
