"""Reserve throughput through a real atpd with and without channel allocations.

    python -m bench.quota_live                      # 2 rounds x 8 s per configuration
    python -m bench.quota_live --duration 5 --rounds 3

Each run starts a fresh atpd (--sync off: the CPU path, not the disk), stocks SKUs x 5
nodes with 10^9 units, and drives Reserve calls of 1-3 lines at explicit nodes from the
channels web, store and market in turn (one asyncio process, --concurrency calls in flight,
each loop bounded by --duration and --max-calls). Configuration `fenced` first gives every
SKU a node-scoped allocation for web at each node and a SKU-wide 10 % share for store, so
every Reserve fences. Prints calls per second and the server's CPU time per call of each run,
and the ratios of the best of each (CPU per call is the steadier figure: the load generator
may be what limits calls per second).
The load generator shares the machine with the server: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time

import grpc

from atp.v1 import (
    allocation_pb2,
    allocation_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from bench.server import ServerProcess

CHANNELS = ("web", "store", "market")
NODES = 5


async def seed(channel: grpc.aio.Channel, skus: int, fenced: bool) -> None:
    inventory = inventory_pb2_grpc.InventoryStub(channel)
    for node in range(NODES):
        await inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
            node=common_pb2.Node(node_id=f"N{node}")), timeout=30)
    for start in range(0, skus, 100):
        movements = [inventory_pb2.StockMovement(sku=f"S{sku}", node_id=f"N{node}",
                                                 type=inventory_pb2.StockMovement.RECEIPT,
                                                 quantity=10**9)
                     for sku in range(start, min(skus, start + 100)) for node in range(NODES)]
        await inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
            request_id=f"seed-{start}", movements=movements), timeout=30)
    if fenced:
        allocations = allocation_pb2_grpc.AllocationsStub(channel)
        for sku in range(skus):
            for node in range(NODES):
                await allocations.SetChannelAllocation(allocation_pb2.SetChannelAllocationRequest(
                    allocation=allocation_pb2.ChannelAllocation(
                        sku=f"S{sku}", node_id=f"N{node}", channel="web", quantity=1000)),
                    timeout=30)
            await allocations.SetChannelAllocation(allocation_pb2.SetChannelAllocationRequest(
                allocation=allocation_pb2.ChannelAllocation(
                    sku=f"S{sku}", channel="store", share=0.1)), timeout=30)


async def load(server: ServerProcess, arguments: argparse.Namespace, fenced: bool
               ) -> tuple[float, float]:
    """(reserves per second, server CPU microseconds per reserve)."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        await seed(channel, arguments.skus, fenced)
        stub = reservations_pb2_grpc.ReservationsStub(channel)
        rng = random.Random(arguments.seed)
        counter = iter(range(arguments.max_calls))
        done = 0
        deadline = time.monotonic() + arguments.duration

        async def worker() -> None:
            nonlocal done
            for index in counter:
                if time.monotonic() > deadline:
                    return
                request = reservations_pb2.ReserveRequest(
                    reservation_id=f"r{index}", channel=CHANNELS[index % 3])
                for line in range(rng.randint(1, 3)):
                    request.lines.add(line_id=f"l{line}", sku=f"S{rng.randrange(arguments.skus)}",
                                      quantity=1, node_id=f"N{rng.randrange(NODES)}")
                await stub.Reserve(request, timeout=30)
                done += 1

        started, cpu = time.monotonic(), server.cpu_seconds()
        await asyncio.gather(*(worker() for _ in range(arguments.concurrency)))
        elapsed, cpu = time.monotonic() - started, server.cpu_seconds() - cpu
        return done / elapsed, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-calls", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    best = {"none": 0.0, "fenced": 0.0}
    cheapest = {"none": float("inf"), "fenced": float("inf")}
    for _ in range(arguments.rounds):
        for name in ("none", "fenced"):
            with tempfile.TemporaryDirectory() as data_dir:
                server = ServerProcess(f"{data_dir}/data", "off", f"{data_dir}/atpd.log").start()
                try:
                    rate, cpu_us = asyncio.run(load(server, arguments, name == "fenced"))
                finally:
                    server.stop()
            print(f"{name:7s} {rate:8.0f} reserves/s  {cpu_us:6.0f} us server CPU each",
                  flush=True)
            best[name] = max(best[name], rate)
            cheapest[name] = min(cheapest[name], cpu_us)
    print(f"best: none {best['none']:.0f}/s, fenced {best['fenced']:.0f}/s, "
          f"ratio {best['fenced'] / best['none']:.3f}; server CPU per reserve none "
          f"{cheapest['none']:.0f} us, fenced {cheapest['fenced']:.0f} us, ratio "
          f"{cheapest['fenced'] / cheapest['none']:.3f}")


if __name__ == "__main__":
    main()
