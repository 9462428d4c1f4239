"""What gRPC itself costs on this machine, with none of our code: the floor under the bench.

    python -m bench.grpc_floor                 # all three servers, 6 s of load each
    python -m bench.grpc_floor --seconds 3 --modes unary,stream

Each mode starts a bare grpc.aio server in a child process and loads it from 2 client
processes on loopback, then prints calls (or messages) per second and the server's CPU per
call:

- `unary`: Health/Check answered at once (what bench.run's baseline measures);
- `unary-wait`: the same handler, but it first awaits a future that a commit loop resolves
  in a worker thread, as a durable mutation waits for its group commit;
- `unary-reserve`: Reservations/Reserve with the bench's request (2 lines at explicit nodes)
  and a canned 2-line Reservation as the answer (built once), after awaiting the commit loop
  as in `unary-wait`: the transport's cost with our message sizes and none of our work;
- `stream`: a ReserveStream echo (8 streams per client process, 4 messages in flight each),
  one small result per request message.

bench/README.md uses these to say which part of a call is ours.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.v1 import common_pb2, reservations_pb2, reservations_pb2_grpc

MODES = ("unary", "unary-wait", "unary-reserve", "stream")
CLIENT_PROCESSES = 2


class _Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, wait: bool) -> None:
        self.wait = wait
        self.waiters: list[asyncio.Future[None]] = []
        self.wake = asyncio.Event()

    async def Check(self, request: Any, context: Any) -> Any:
        if self.wait:
            await self.until_committed()
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def until_committed(self) -> None:
        """Waits for the next pass of the commit loop, as a mutation waits for its batch."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.wake.set()
        await future

    async def commit_loop(self) -> None:
        """Resolves the waiters in batches after a thread hop, like the writer's group commit."""
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1) as executor:
            while True:
                await self.wake.wait()
                self.wake.clear()
                waiters, self.waiters = self.waiters, []
                await loop.run_in_executor(executor, time.sleep, 0.0005)
                for future in waiters:
                    future.set_result(None)


def _canned_reservation() -> Any:
    """A HELD 2-line reservation as Reserve answers the bench's `reserve` workload."""
    reservation = common_pb2.Reservation(
        reservation_id="w0-000000123456", state=common_pb2.Reservation.HELD, priority=0)
    for index in (1, 2):
        line = reservation.lines.add(line_id=f"l{index}", sku=f"sku-00{index}234",
                                     node_id=f"dc-0{index}", quantity=3)
        line.ship_date.year, line.ship_date.month, line.ship_date.day = 2026, 11, 22
    reservation.create_time.seconds, reservation.create_time.nanos = 1_795_000_000, 123_456_000
    reservation.expire_time.seconds = 1_795_000_900
    reservation.promise_date.year, reservation.promise_date.month = 2026, 11
    reservation.promise_date.day = 22
    return reservation


def _reserve_request(index: int) -> Any:
    request = reservations_pb2.ReserveRequest(reservation_id=f"w0-{index:012d}")
    request.lines.add(line_id="l1", sku="sku-001234", quantity=3, node_id="dc-01")
    request.lines.add(line_id="l2", sku="sku-002234", quantity=3, node_id="dc-02")
    return request


class _Echo(reservations_pb2_grpc.ReservationsServicer):  # type: ignore[misc]
    def __init__(self, health: _Health) -> None:
        self.health = health
        self.reservation = _canned_reservation()

    async def Reserve(self, request: Any, context: Any) -> Any:
        await self.health.until_committed()
        return self.reservation

    async def ReserveStream(self, requests: Any, context: Any) -> Any:
        async for request in requests:
            yield reservations_pb2.ReserveResult(reservation_id=request.reservation_id)


def _serve(mode: str, port: int, ready: Any, done: Any, cpu: Any) -> None:
    """Serves until `done` is set (the load is over), having set `ready` once listening."""
    async def run() -> None:
        server = grpc.aio.server()
        health = _Health(wait=mode == "unary-wait")
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reservations_pb2_grpc.add_ReservationsServicer_to_server(_Echo(health), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        committer = asyncio.create_task(health.commit_loop())
        started = _cpu_seconds()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, done.wait, SERVE_MAX_S)
        cpu.value = _cpu_seconds() - started
        committer.cancel()
        await server.stop(0)

    asyncio.run(run())


# The longest a bare server waits for its load to end (a stuck load fails, not hangs).
SERVE_MAX_S = 300.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load(mode: str, port: int, seconds: float, counts: Any) -> None:
    async def run() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            end = time.monotonic() + seconds
            if mode == "stream":
                stub = reservations_pb2_grpc.ReservationsStub(channel)
                done = await asyncio.gather(*[_stream(stub, end) for _ in range(8)])
            elif mode == "unary-reserve":
                reservations = reservations_pb2_grpc.ReservationsStub(channel)
                done = await asyncio.gather(*[_reserve(reservations, end) for _ in range(32)])
            else:
                health = health_pb2_grpc.HealthStub(channel)
                done = await asyncio.gather(*[_unary(health, end) for _ in range(32)])
            return sum(done)

    counts.put(asyncio.run(run()))


async def _unary(stub: Any, end: float) -> int:
    count = 0
    while time.monotonic() < end:
        await stub.Check(health_pb2.HealthCheckRequest())
        count += 1
    return count


async def _reserve(stub: Any, end: float) -> int:
    count = 0
    while time.monotonic() < end:
        await stub.Reserve(_reserve_request(count))
        count += 1
    return count


async def _stream(stub: Any, end: float) -> int:
    call = stub.ReserveStream()
    in_flight = asyncio.Semaphore(4)

    async def write() -> None:
        index = 0
        while time.monotonic() < end:
            await in_flight.acquire()
            request = reservations_pb2.ReserveRequest(reservation_id=f"r{index}")
            request.lines.add(line_id="l1", sku="S1", quantity=1, node_id="N1")
            await call.write(request)
            index += 1
        await call.done_writing()

    writer = asyncio.create_task(write())
    count = 0
    async for _ in call:
        count += 1
        in_flight.release()
    await writer
    return count


def measure(mode: str, seconds: float) -> tuple[float, float]:
    """(calls or messages per second, server CPU µs per call) of one bare server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    cpu = context.Value("d", 0.0)
    ready, done = context.Event(), context.Event()
    server = context.Process(target=_serve, args=(mode, port, ready, done, cpu))
    server.start()
    if not ready.wait(30):
        server.kill()
        raise RuntimeError("the bare server did not start within 30 s")
    counts = context.Queue()
    clients = [context.Process(target=_load, args=(mode, port, seconds, counts))
               for _ in range(CLIENT_PROCESSES)]
    for client in clients:
        client.start()
    total = sum(counts.get(timeout=seconds + 30) for _ in clients)
    for client in clients:
        client.join(timeout=10)
    done.set()
    server.join(timeout=30)
    # The server's CPU covers the whole load window (plus a little idle before and after).
    return total / seconds, cpu.value / max(total, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    for mode in modes:
        rate, cpu_us = measure(mode, args.seconds)
        print(f"{mode:11s} {rate:9,.0f} /s   server CPU {cpu_us:6.1f} us per call or message",
              flush=True)


if __name__ == "__main__":
    main()
