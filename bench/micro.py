"""In-process micro-benchmarks of the domain core: what one reserve or promise costs without gRPC.

    python -m bench.micro              # both, default sizes
    python -m bench.micro --profile    # and the top functions by own time (cProfile)

Used to profile before optimising and to record before/after figures in bench/README.md.
Absolute times drift on a shared machine; compare runs made back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import pstats
import random
import time
from collections.abc import Callable

from atp.engine.writer import Writer
from atp.ledger import Ledger, commands
from atp.ledger.model import Lane, Policy
from atp.ledger.promising import OrderLine
from atp.persistence import encode_batch
from atp.server import convert
from atp.server.servicers import AvailabilityServicer
from atp.store import MemoryStore
from atp.v1 import availability_pb2

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()


def stocked_ledger(now: float = NOW, skus: int = 10_000) -> Ledger:
    """SKUs S0.. x 5 nodes (N0..N4), 10^9 units at every position; changes already taken."""
    ledger = Ledger()
    for node in range(5):
        ledger.execute(commands.UpsertNode(f"N{node}"), now)
    for chunk in range(0, skus, 100):
        movements = tuple(
            commands.Movement(f"S{sku}", f"N{node}", "RECEIPT", 10**9)
            for sku in range(chunk, chunk + 100)
            for node in range(5)
        )
        ledger.execute(commands.AdjustStock(f"seed-{chunk}", movements), now)
    ledger.take_changes()
    return ledger


def reserve_core(reserves: int, seed: int) -> Callable[[], int]:
    """Reserve 1-3 lines at explicit nodes over 10k SKUs x 5 nodes, encoded in batches of 50."""
    ledger = stocked_ledger()
    rng = random.Random(seed)
    batch = [
        commands.Reserve(f"r{index}", tuple(
            commands.LineRequest(f"l{line}", f"S{rng.randrange(2000)}", 1, f"N{rng.randrange(5)}")
            for line in range(rng.randint(1, 3))
        ))
        for index in range(reserves)
    ]

    def run() -> int:
        for index, command in enumerate(batch):
            convert.reservation_message(ledger.execute(command, NOW))
            if index % 50 == 49:
                encode_batch(ledger.take_changes())
        return len(batch)

    return run


def promise_network(promises: int, seed: int) -> tuple[Ledger, list[tuple[list[OrderLine], str]]]:
    """50 nodes with 10 lanes each, 1,000 SKUs stocked at 2-10 nodes, and 5-line orders."""
    rng = random.Random(seed)
    ledger = Ledger()
    for node in range(50):
        lanes = tuple(Lane(f"R{r}", rng.randint(1, 5), rng.randint(1, 20)) for r in range(10))
        node_command = commands.UpsertNode(f"P{node}", handling_days=rng.randint(0, 2), lanes=lanes)
        ledger.execute(node_command, NOW)
    movements = [
        commands.Movement(f"K{sku}", f"P{node}", "RECEIPT", rng.randint(50, 500))
        for sku in range(1000)
        for node in sorted(rng.sample(range(50), rng.randint(2, 10)))
    ]
    for start in range(0, len(movements), 500):
        chunk = tuple(movements[start:start + 500])
        ledger.execute(commands.AdjustStock(f"seed-{start}", chunk), NOW)
    orders = [
        ([OrderLine(f"l{line}", f"K{rng.randrange(1000)}", rng.randint(1, 20))
          for line in range(5)],
         f"R{rng.randrange(10)}")
        for _ in range(promises)
    ]
    return ledger, orders


def promise_payloads(orders: list[tuple[list[OrderLine], str]]) -> list[bytes]:
    """Each order as the bytes of a PromiseRequest, as a client would send it."""
    return [
        availability_pb2.PromiseRequest(
            lines=[availability_pb2.OrderLine(line_id=line.line_id, sku=line.sku,
                                              quantity=line.quantity) for line in lines],
            destination_region=region,
        ).SerializeToString()
        for lines, region in orders
    ]


def promise_core(promises: int, seed: int) -> Callable[[], int]:
    """Promise 5 lines over 50 nodes with 10 lanes each; SKUs stocked at 2-10 nodes."""
    ledger, orders = promise_network(promises, seed)

    def run() -> int:
        for lines, region in orders:
            convert.promise_response(ledger.promise(lines, region, Policy(), 0, NOW))
        return len(orders)

    return run


def promise_server_side(promises: int, seed: int) -> None:
    """Server-side time of each Promise: bytes in -> Availability servicer -> bytes out.

    What the handler costs without the transport: parse the request, plan, build and
    serialise the response, one call at a time; prints the median and p99 per call.
    """
    ledger, orders = promise_network(promises, seed)
    ledger.take_changes()  # as if committed: a read waits for whatever is not yet durable
    servicer = AvailabilityServicer(Writer(ledger, MemoryStore(), clock=lambda: NOW))
    payloads = promise_payloads(orders)

    async def run() -> list[float]:
        times = []
        for payload in payloads:
            started = time.perf_counter()
            request = availability_pb2.PromiseRequest.FromString(payload)
            (await servicer.Promise(request, None)).SerializeToString()
            times.append(time.perf_counter() - started)
        return times

    times = sorted(asyncio.run(run()))
    median, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
    print(f"promise server-side   median {median * 1e6:6.1f} us   p99 {p99 * 1e6:6.1f} us "
          f"({len(times):,} calls, parse + plan + serialise, no transport)")


def measure(name: str, prepare: Callable[[], Callable[[], int]], profile: bool) -> None:
    """Times one prepared run; with profile, profiles a second, freshly prepared one."""
    run = prepare()
    started = time.perf_counter()
    count = run()
    elapsed = time.perf_counter() - started
    print(f"{name:14s} {count / elapsed:10,.0f} /s   {elapsed / count * 1e6:8.1f} us each")
    if profile:
        run = prepare()
        profiler = cProfile.Profile()
        profiler.enable()
        run()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--reserves", type=int, default=20_000)
    parser.add_argument("--promises", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    measure("reserve core", lambda: reserve_core(args.reserves, args.seed), args.profile)
    measure("promise core", lambda: promise_core(args.promises, args.seed), args.profile)
    promise_server_side(args.promises, args.seed)


if __name__ == "__main__":
    main()
