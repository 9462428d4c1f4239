"""The writer's capacity, measured: a real writer process (`atpd --gateway-role writer`, the
process `atpd --gateways N` runs, with its synced LMDB store) driven at full speed over its
command link by driver processes that act as gateways do (frames of commands, at most two
out per link, each link following the commit feed, the first applying it to a copy of the
ledger as a gateway does), without gRPC or any client.

    python -m bench.writer_cap                        # 2 drivers x 256 in flight, 6 s
    python -m bench.writer_cap --drivers 4 --in-flight 64 --seconds 10

With gateways the writer's core caps the rate of writes. bench.gateways projects that cap
from the writer's CPU per reserve measured on this machine, where one gateway on the
second core cannot give the writer big groups: each group commit is paid by few reserves.
On a machine whose gateways saturate the writer, its groups grow and its cost per reserve
falls; this measures that case directly: the writer's CPU per reservation and the
reservations per second it commits while busy. On a 2-core machine the drivers share the
second core with the kernel and nothing else (they cost a fraction of a gateway: no gRPC).

Commands are bench.writer_step's node-given Reserves (1-3 one-unit lines at a named node;
unique ids per driver) over its network of 2,000 SKUs x 5 nodes, seeded through the link.
The figure counts reserves answered (durable) inside the measured window, between its two
readings of the writer's CPU (/proc, utime + stime). The copy's figure is the CPU its
thread spent storing and applying the feed in the same window (Writer.follow_cpu_s), per
reserve: what each gateway pays per write when the writer is saturated and its batches
are large.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from atp.bootstrap import freeze_survivors
from atp.engine.writer import Writer
from atp.ledger import Ledger, Refused, commands
from atp.ledger.model import Lane
from atp.server.command_link import CommandLink
from atp.server.gateway import gateway_follower_id
from atp.supervisor import COMMAND_LINK_NAME, LISTENING, SOCKET_NAME
from bench.server import process_cpu_seconds
from bench.writer_step import NODES, REGION, SKUS, gateways_copy

BUCKET_S = 0.1  # drivers count answers per bucket of this long, from the shared start
WARM_S = 1.0  # the window opens this long after the drivers start


def writer_command(data_dir: str, socket_dir: str) -> list[str]:
    return [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
            "--data-dir", data_dir, "--gateway-role", "writer",
            "--writer-socket", str(Path(socket_dir) / SOCKET_NAME), "--gateway-index", "0"]


def start_writer(data_dir: str, socket_dir: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(writer_command(data_dir, socket_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(LISTENING):
            return process
    process.kill()
    raise SystemExit("the writer did not start")


def seed_commands() -> list[commands.Command]:
    """bench.writer_step's network: N0..N4 with a lane to EU, S0..S1999 at every node."""
    seeded: list[commands.Command] = [
        commands.UpsertNode(f"N{node}", kind="DC", region=REGION, handling_days=node % 2,
                            lanes=(Lane(REGION, 1 + node % 3, 5 + node),))
        for node in range(NODES)]
    for chunk in range(0, SKUS, 100):
        seeded.append(commands.AdjustStock(f"seed-{chunk}", tuple(
            commands.Movement(f"S{sku}", f"N{node}", "RECEIPT", 10**9)
            for sku in range(chunk, chunk + 100) for node in range(NODES))))
    return seeded


async def seed(link_path: str) -> None:
    link = CommandLink(link_path)
    outcomes = await link.execute_each(seed_commands(), lambda outcome: outcome)
    await link.close()
    refused = [outcome for outcome in outcomes if isinstance(outcome, Refused)]
    if refused:
        raise SystemExit(f"seeding refused: {refused[0].message}")


def reserve(tag: str, index: int, rng: random.Random) -> commands.Reserve:
    return commands.Reserve(f"{tag}-{index}", tuple(
        commands.LineRequest(f"l{line}", f"S{rng.randrange(SKUS)}", 1,
                             f"N{rng.randrange(NODES)}")
        for line in range(rng.randint(1, 3))), destination_region=REGION)


async def drive(link_path: str, driver: int, start: float, seconds: float,
                in_flight: int, window: tuple[float, float]) -> dict[str, Any]:
    """Keeps `in_flight` reserves out until start + seconds; answers counted per bucket.
    Driver 0 keeps a gateway's copy from the commit feed, and reports the CPU that copy
    spent inside `window` (every reserve of every driver reaches it, as every write reaches
    each gateway)."""
    link = CommandLink(link_path, follower_id=gateway_follower_id(driver))
    # Empty: the feed from commit 0 brings the seeding too.
    copy = gateways_copy(Ledger()) if driver == 0 else None
    follower = asyncio.create_task(_follow(link, copy))
    # The collector as in a gateway: its copy's objects frozen every second, no automatic
    # full collections (left to run by themselves they rescan the whole growing copy).
    freezing = asyncio.create_task(freeze_survivors())
    copy_cpu = asyncio.create_task(_copy_cpu_in(copy, window)) if copy else None
    buckets = [0] * (int(seconds / BUCKET_S) + 2)
    refused = 0
    rng = random.Random(driver)
    counter = iter(range(10**9))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    end = start + seconds

    async def lane() -> None:
        nonlocal refused
        while time.monotonic() < end:
            outcome = await link.submit(reserve(f"d{driver}", next(counter), rng),
                                        lambda outcome: outcome)
            if isinstance(outcome, Refused):
                refused += 1
                continue
            bucket = int((time.monotonic() - start) / BUCKET_S)
            if 0 <= bucket < len(buckets):
                buckets[bucket] += 1

    await asyncio.gather(*(lane() for _ in range(in_flight)))
    copy_cpu_s = await copy_cpu if copy_cpu is not None else None
    follower.cancel()
    freezing.cancel()
    await link.close()
    return {"buckets": buckets, "refused": refused, "frames": link.frames_sent,
            "copy_cpu_s": copy_cpu_s}


async def _follow(link: CommandLink, copy: Writer | None) -> None:
    """Reads the commit feed as a gateway does, applying it to `copy` (or only reading)."""
    async for commit, batch, term in link.feed(0, lambda: None):
        if copy is not None:
            await copy.commit_replicated(commit, batch, term)


async def _copy_cpu_in(copy: Writer, window: tuple[float, float]) -> float:
    """The CPU seconds the copy spent on the feed between the window's two moments."""
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    before = copy.follow_cpu_s
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    return copy.follow_cpu_s - before


def _driver_main(link_path: str, driver: int, start: float, seconds: float, in_flight: int,
                 window: tuple[float, float], results: Any) -> None:
    results.put(asyncio.run(drive(link_path, driver, start, seconds, in_flight, window)))


def measure(drivers: int, in_flight: int, seconds: float) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="atp-writer-cap-")
    socket_dir = tempfile.mkdtemp(prefix="atp-writer-cap-sock-")
    writer = start_writer(data_dir, socket_dir)
    link_path = str(Path(socket_dir) / COMMAND_LINK_NAME)
    try:
        asyncio.run(seed(link_path))
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        start = time.monotonic() + 2.0  # the drivers' start: time for them to connect
        window = (start + WARM_S, start + WARM_S + seconds)
        processes = [context.Process(target=_driver_main, args=(
            link_path, driver, start, seconds + WARM_S + 0.5, in_flight, window, results))
            for driver in range(drivers)]
        for process in processes:
            process.start()
        time.sleep(max(0.0, window[0] - time.monotonic()))
        cpu_before = process_cpu_seconds(writer.pid)
        time.sleep(max(0.0, window[1] - time.monotonic()))
        cpu_after = process_cpu_seconds(writer.pid)
        answers = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
    finally:
        writer.terminate()
        writer.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)
    first, last = int(WARM_S / BUCKET_S), int((WARM_S + seconds) / BUCKET_S)
    reserves = sum(sum(answer["buckets"][first:last]) for answer in answers)
    cpu = cpu_after - cpu_before
    frames = sum(answer["frames"] for answer in answers)
    total = sum(sum(answer["buckets"]) for answer in answers)
    [copy_cpu_s] = [answer["copy_cpu_s"] for answer in answers if answer["copy_cpu_s"] is not None]
    return {
        "drivers": drivers, "in_flight_per_driver": in_flight, "seconds": seconds,
        "reserves": reserves, "reserves_per_s": round(reserves / seconds),
        "writer_cpu_cores": round(cpu / seconds, 3),
        "writer_cpu_us_per_reserve": round(cpu / max(1, reserves) * 1e6, 1),
        "reserves_per_frame": round(total / max(1, frames), 1),
        "refused": sum(answer["refused"] for answer in answers),
        # What each gateway's copy spends per reserve when the writer is saturated (its
        # batches large): F in bench.run's projection, measured at full speed.
        "copy_cpu_us_per_reserve": round(copy_cpu_s / max(1, reserves) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, default=2, help="driver processes (2)")
    parser.add_argument("--in-flight", type=int, default=256,
                        help="reserves each driver keeps out (256)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured window (6)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    figures = measure(args.drivers, args.in_flight, args.seconds)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"writer: {figures['reserves_per_s']:,} reserves/s at "
              f"{figures['writer_cpu_cores']:.2f} cores, "
              f"{figures['writer_cpu_us_per_reserve']:.1f} µs of writer CPU per reserve "
              f"({figures['reserves_per_frame']:.0f} reserves per frame, "
              f"{figures['refused']} refused; {args.drivers} drivers x "
              f"{args.in_flight} in flight); a gateway's copy "
              f"{figures['copy_cpu_us_per_reserve']:.1f} µs per reserve")
    return 0 if figures["refused"] == 0 and figures["reserves"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
