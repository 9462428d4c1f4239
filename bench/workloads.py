"""The workloads: each is one async function driving one worker process's share of the load.

A workload function gets a `Ctx` (channel, RNG, bounds, recorder) and returns when both
bounds are reached or either is: `ctx.more()` turns false after `duration_s` or once the
worker has started `max_calls` calls. Every call carries a deadline (`call_timeout_s`), so no
loop can wait forever on a stuck server.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    reservations_pb2,
    reservations_pb2_grpc,
)
from bench.catalog import Catalog
from bench.context import Ctx
from bench.rules import install_rules


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable[[Ctx], Awaitable[None]]
    description: str
    # What throughput counts: "calls" (OK RPCs / stream messages) or "reservations".
    unit: str = "calls"
    # Run once against the server before the workload (not timed): (target, catalog) ->
    # figures for the report.
    setup: Callable[[str, Catalog], dict[str, object]] | None = None


async def baseline(ctx: Ctx) -> None:
    """Empty call: grpc.health.v1.Health/Check, the ceiling of the transport on this machine."""
    stub = health_pb2_grpc.HealthStub(ctx.channel)
    request = health_pb2.HealthCheckRequest()

    async def operation() -> None:
        await ctx.unary("Health/Check", stub.Check, request)

    await ctx.slots(operation)


async def availability(ctx: Ctx) -> None:
    """GetAvailability of one SKU at every node (hot SKUs with probability hot_share)."""
    stub = availability_pb2_grpc.AvailabilityStub(ctx.channel)

    async def operation() -> None:
        request = availability_pb2.GetAvailabilityRequest(skus=ctx.pick_skus(1))
        await ctx.unary("GetAvailability", stub.GetAvailability, request)

    await ctx.slots(operation)


def _count_reservation(ctx: Ctx) -> Callable[[object], int]:
    def units(_response: object) -> int:
        ctx.rec.counters["reservations_acked"] += 1
        return 1

    return units


async def reserve(ctx: Ctx) -> None:
    """Reserve 1-3 lines at explicit nodes, unique reservation ids, plenty of stock."""
    stub = reservations_pb2_grpc.ReservationsStub(ctx.channel)
    acked = _count_reservation(ctx)

    async def operation() -> None:
        await ctx.unary("Reserve", stub.Reserve, ctx.reserve_request(), acked)

    await ctx.slots(operation)


async def reserve_rules(ctx: Ctx) -> None:
    """`reserve`, each line with a unit value, on SKUs that have an allocation policy and
    channel allocations of other channels (bench.rules): the with-rules half of the
    with/without comparison."""
    stub = reservations_pb2_grpc.ReservationsStub(ctx.channel)
    acked = _count_reservation(ctx)

    async def operation() -> None:
        request = ctx.reserve_request()
        for line in request.lines:
            line.unit_value = ctx.rng.randint(1, 500)
        await ctx.unary("Reserve", stub.Reserve, request, acked)

    await ctx.slots(operation)


async def lifecycle(ctx: Ctx) -> None:
    """Reserve -> Commit -> Fulfill (whole reservation), each step one counted call."""
    stub = reservations_pb2_grpc.ReservationsStub(ctx.channel)
    acked = _count_reservation(ctx)

    def shipped(response: object) -> int:
        ctx.rec.counters["units_fulfilled_acked"] += sum(
            line.fulfilled_quantity for line in response.lines  # type: ignore[attr-defined]
        )
        ctx.rec.counters["lifecycles_completed"] += 1
        return 1

    async def operation() -> None:
        request = ctx.reserve_request()
        if await ctx.unary("Reserve", stub.Reserve, request, acked) is None:
            return
        rid = request.reservation_id
        commit = reservations_pb2.CommitRequest(reservation_id=rid, request_id=ctx.next_id("c"))
        if await ctx.unary("Commit", stub.Commit, commit) is None:
            return
        fulfill = reservations_pb2.FulfillRequest(reservation_id=rid, request_id=ctx.next_id("f"))
        await ctx.unary("Fulfill", stub.Fulfill, fulfill, shipped)

    await ctx.slots(operation)


async def promise(ctx: Ctx) -> None:
    """Availability.Promise of 5 lines to a random region over the 50-node promise network."""
    stub = availability_pb2_grpc.AvailabilityStub(ctx.channel)
    catalog = ctx.catalog
    objectives = (
        common_pb2.FulfillmentPolicy.EARLIEST,
        common_pb2.FulfillmentPolicy.CHEAPEST,
    )

    def complete(response: object) -> int:
        if response.complete:  # type: ignore[attr-defined]
            ctx.rec.counters["promises_complete"] += 1
        return 1

    async def operation() -> None:
        count = min(5, catalog.promise_skus)
        lines = [
            availability_pb2.OrderLine(
                line_id=f"l{index}", sku=catalog.promise_sku(sku), quantity=ctx.rng.randint(1, 5)
            )
            for index, sku in enumerate(ctx.rng.sample(range(catalog.promise_skus), count))
        ]
        request = availability_pb2.PromiseRequest(
            lines=lines,
            destination_region=catalog.region(ctx.rng.randrange(catalog.regions)),
            policy=common_pb2.FulfillmentPolicy(
                objective=ctx.rng.choice(objectives)
            ),
        )
        await ctx.unary("Promise", stub.Promise, request, complete)

    await ctx.slots(operation)


async def mixed(ctx: Ctx) -> None:
    """70% GetAvailability, 20% Reserve, 10% Release of an open reservation of this worker.

    A release drawn while this worker holds no open reservation becomes a Reserve.
    """
    availability_stub = availability_pb2_grpc.AvailabilityStub(ctx.channel)
    stub = reservations_pb2_grpc.ReservationsStub(ctx.channel)
    acked = _count_reservation(ctx)
    open_ids: list[str] = []

    async def operation() -> None:
        draw = ctx.rng.random()
        if draw < 0.7:
            request = availability_pb2.GetAvailabilityRequest(skus=ctx.pick_skus(1))
            await ctx.unary("GetAvailability", availability_stub.GetAvailability, request)
        elif draw < 0.9 or not open_ids:
            reserve_request = ctx.reserve_request()
            if await ctx.unary("Reserve", stub.Reserve, reserve_request, acked) is not None:
                open_ids.append(reserve_request.reservation_id)
        else:
            index = ctx.rng.randrange(len(open_ids))
            open_ids[index], open_ids[-1] = open_ids[-1], open_ids[index]
            release = reservations_pb2.ReleaseRequest(
                reservation_id=open_ids.pop(), request_id=ctx.next_id("x")
            )
            await ctx.unary("Release", stub.Release, release)

    await ctx.slots(operation)


async def stream(ctx: Ctx) -> None:
    """ReserveStream: `streams` bidirectional streams per worker, each keeping
    concurrency/streams messages in flight; results are matched to requests in order."""
    stub = reservations_pb2_grpc.ReservationsStub(ctx.channel)
    streams = max(1, ctx.params.streams)
    window = max(1, ctx.params.concurrency // streams)

    async def session() -> None:
        pending: collections.deque[tuple[str, float]] = collections.deque()
        credit = asyncio.Semaphore(window)
        remaining = max(0.0, ctx.deadline - time.monotonic())
        call = stub.ReserveStream(timeout=remaining + ctx.params.call_timeout_s)

        async def writer() -> None:
            while True:
                await credit.acquire()
                if not ctx.more():
                    break
                request = ctx.reserve_request()
                ctx.started += 1
                pending.append((request.reservation_id, time.perf_counter()))
                await call.write(request)
            await call.done_writing()

        async def reader() -> None:
            while True:
                result = await call.read()
                if result is grpc.aio.EOF:
                    return
                if not pending:
                    ctx.rec.failure("ReserveStream", None, "UNEXPECTED_RESULT")
                    continue
                expected_id, sent = pending.popleft()
                latency_ms = (time.perf_counter() - sent) * 1e3
                credit.release()
                if result.reservation_id != expected_id:
                    ctx.rec.failure("ReserveStream", latency_ms, "OUT_OF_ORDER")
                elif result.WhichOneof("result") == "reservation":
                    ctx.rec.counters["reservations_acked"] += 1
                    ctx.rec.success("ReserveStream", latency_ms)
                else:
                    ctx.rec.failure("ReserveStream", latency_ms, _code_name(result.status.code))

        writing = asyncio.ensure_future(writer())
        lost = "STREAM_ENDED"
        try:
            await reader()
        except grpc.aio.AioRpcError as error:
            lost = error.code().name
        finally:
            if not writing.done():
                writing.cancel()
            outcome = (await asyncio.gather(writing, return_exceptions=True))[0]
            if isinstance(outcome, grpc.aio.AioRpcError):
                lost = outcome.code().name
        for _ in pending:  # messages sent whose result never came
            ctx.rec.failure("ReserveStream", None, lost)
        if pending:
            call.cancel()
            await asyncio.sleep(0.05)  # a broken stream is reopened, but not in a tight loop

    async def one_stream() -> None:
        while ctx.more():
            try:
                await session()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                ctx.client_error(error)
                await asyncio.sleep(0.05)

    await asyncio.gather(*(one_stream() for _ in range(streams)))


async def batch(ctx: Ctx) -> None:
    """ReserveBatch of batch_size/5 .. 2*batch_size (capped at 1000) reservations per call,
    batch_concurrency calls in flight per worker; throughput unit: reservations/s."""
    stub = reservations_pb2_grpc.ReservationsStub(ctx.channel)
    size = max(1, ctx.params.batch_size)
    low, high = max(1, size // 5), max(1, min(1000, 2 * size))

    def placed(response: object) -> int:
        ok = 0
        failed: collections.Counter[str] = collections.Counter()
        for result in response.results:  # type: ignore[attr-defined]
            if result.WhichOneof("result") == "reservation":
                ok += 1
            else:
                failed[_code_name(result.status.code)] += 1
        for code, count in failed.items():
            ctx.rec.item_failure("ReserveBatch", code, count)
        ctx.rec.counters["reservations_acked"] += ok
        return ok

    async def operation() -> None:
        requests = [ctx.reserve_request() for _ in range(ctx.rng.randint(low, high))]
        await ctx.unary(
            "ReserveBatch", stub.ReserveBatch,
            reservations_pb2.ReserveBatchRequest(requests=requests), placed,
        )

    await ctx.slots(operation, ctx.params.batch_concurrency)


_CODE_NAMES: dict[int, str] = {code.value[0]: code.name for code in grpc.StatusCode}


def _code_name(value: int) -> str:
    return _CODE_NAMES.get(value, f"CODE_{value}")


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("baseline", baseline, "Health/Check (empty unary call)"),
        Workload("availability", availability, "GetAvailability, 1 SKU x all nodes"),
        Workload("promise", promise, "Promise, 5 lines, 50-node network x 10 lanes"),
        Workload("reserve", reserve, "Reserve, 1-3 lines at explicit nodes"),
        Workload("lifecycle", lifecycle, "Reserve -> Commit -> Fulfill (each step a call)"),
        Workload("mixed", mixed, "70% GetAvailability / 20% Reserve / 10% Release"),
        Workload("stream", stream, "ReserveStream, 1 reservation per message"),
        Workload("batch", batch, "ReserveBatch, batch-size/5..2x batch-size reservations per call",
                 "reservations"),
        # Last: the rules it installs stay, and no other workload should run under them.
        Workload("reserve_rules", reserve_rules,
                 "Reserve as `reserve`, under an allocation policy and channel allocations",
                 setup=install_rules),
    )
}
