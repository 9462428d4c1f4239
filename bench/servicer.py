"""The reservation servicer path without gRPC: CPU per reservation through servicer, writer,
group commit and LMDB (synced), for unary Reserve, ReserveStream and ReserveBatch.

    python -m bench.servicer                    # all three modes, 20,000 reservations each
    python -m bench.servicer stream --profile   # one mode, with the top functions (cProfile)

The gRPC bench (bench.run) shows what a call costs end to end; this shows the part that is
ours, so that changes to the servicers and the writer can be measured without the transport's
noise. Unary runs 64 callers; stream runs 16 streams fed as fast as they are read; batch
sends batches of 500.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import tempfile
import time
from collections.abc import AsyncIterator

from atp.engine.writer import Writer
from atp.server.servicers import ReservationsServicer
from atp.store import LmdbStore
from atp.v1 import reservations_pb2
from bench.micro import stocked_ledger

MODES = ("unary", "stream", "batch")


def reserve_requests(count: int, seed: int) -> list[reservations_pb2.ReserveRequest]:
    """1-3 one-unit lines at explicit nodes over the stocked ledger's first 2,000 SKUs."""
    rng = random.Random(seed)
    requests = []
    for index in range(count):
        request = reservations_pb2.ReserveRequest(reservation_id=f"r{index}")
        for line in range(rng.randint(1, 3)):
            request.lines.add(line_id=f"l{line}", sku=f"S{rng.randrange(2000)}", quantity=1,
                              node_id=f"N{rng.randrange(5)}")
        requests.append(request)
    return requests


async def drive(mode: str, servicer: ReservationsServicer,
                requests: list[reservations_pb2.ReserveRequest]) -> None:
    if mode == "unary":
        pending = iter(requests)

        async def caller() -> None:
            for request in pending:
                await servicer.Reserve(request, None)

        await asyncio.gather(*[caller() for _ in range(64)])
    elif mode == "stream":
        await asyncio.gather(*[_one_stream(servicer, requests[index::16]) for index in range(16)])
    else:
        for start in range(0, len(requests), 500):
            batch = reservations_pb2.ReserveBatchRequest(requests=requests[start:start + 500])
            await servicer.ReserveBatch(batch, None)


async def _one_stream(servicer: ReservationsServicer,
                      requests: list[reservations_pb2.ReserveRequest]) -> None:
    async def messages() -> AsyncIterator[reservations_pb2.ReserveRequest]:
        for request in requests:
            yield request

    async for _result in servicer.ReserveStream(messages(), None):
        pass


async def measure(mode: str, count: int, seed: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        store = LmdbStore(data_dir, sync=True)
        writer = Writer(stocked_ledger(time.time()), store)
        writer.start()
        servicer = ReservationsServicer(writer)
        requests = reserve_requests(count, seed)
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        await drive(mode, servicer, requests)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{mode:7s} {count / wall:9,.0f} /s wall  {cpu / count * 1e6:7.1f} us CPU per "
              f"reservation  ({writer.batches_committed} group commits)")
        await writer.close()
        store.close()
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servicer", description=__doc__)
    parser.add_argument("modes", nargs="*", help=f"any of {', '.join(MODES)} (default all)")
    parser.add_argument("--reservations", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    for mode in args.modes or MODES:
        asyncio.run(measure(mode, args.reservations, args.seed, args.profile))


if __name__ == "__main__":
    main()
