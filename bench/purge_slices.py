"""How long retention purges hold the writer: a backlog of closed reservations purged at once.

    python -m bench.purge_slices                       # 60,000 reservations, sync on
    python -m bench.purge_slices --reservations 20000 --no-purge   # the same run, no purge

Starts its own atpd on 127.0.0.1 with a short --closed-retention, reserves N one-line HELD
reservations with a 1 s TTL (ReserveBatch), lets them expire and be purged, and meanwhile
polls ListNodes (a read that waits for durability, so it sees commits held back). Prints the
longest purge slice atpd measured (atp_retention_slice_longest_seconds) and the read
latencies. `--no-purge` keeps them (retention 1 h): the same run's latencies without purges.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import grpc

from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from bench.server import free_port

BATCH = 1000
POLL_LIMIT_S = 120.0
PURGED_CLOSED = 'atp_retention_purged_records_total{kind="closed"}'


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="atp-purge-") as data_dir:
        metrics_port = free_port()
        server = start_atpd(data_dir, metrics_port, args)
        try:
            return measure(server, metrics_port, args)
        finally:
            server.terminate()
            server.wait(timeout=30)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reservations", type=int, default=60_000)
    parser.add_argument("--sync", choices=("on", "off"), default="on")
    parser.add_argument("--no-purge", action="store_true", help="retention 1 h: no purge")
    return parser.parse_args()


def start_atpd(data_dir: str, metrics_port: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    retention = "1h" if args.no_purge else "20s"
    command = [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
               "--data-dir", data_dir, "--sync", args.sync, "--closed-retention", retention,
               "--metrics-port", str(metrics_port), "--log-level", "WARNING",
               "--gateways", "0"]  # one process: its own metrics page is the one read
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server


def measure(server: subprocess.Popen[str], metrics_port: int, args: argparse.Namespace) -> int:
    assert server.stdout is not None
    found = re.search(r"listening on (\S+)", server.stdout.readline())
    assert found, "atpd did not start"
    channel = grpc.insecure_channel(found.group(1),
                                    options=[("grpc.max_receive_message_length", 64 << 20)])
    inventory = inventory_pb2_grpc.InventoryStub(channel)
    stock(inventory)
    started = time.monotonic()
    reserve_expiring(reservations_pb2_grpc.ReservationsStub(channel), args.reservations)
    print(f"reserved {args.reservations} in {time.monotonic() - started:.1f} s")
    latencies = poll_until_purged(inventory, metrics_port, args)
    latencies.sort()
    longest = next(metric(metrics_port, "atp_retention_slice_longest_seconds"), 0.0)
    purged = next(metric(metrics_port, PURGED_CLOSED), 0.0)
    print(f"purged {purged:.0f}; longest slice {longest * 1e3:.1f} ms")
    print(f"ListNodes meanwhile: n {len(latencies)}, p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {latencies[-1] * 1e3:.1f} ms")
    return 0


def stock(inventory: inventory_pb2_grpc.InventoryStub) -> None:
    inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id="DC1")))
    inventory.AdjustStock(inventory_pb2.AdjustStockRequest(request_id="stock", movements=[
        inventory_pb2.StockMovement(sku="S", node_id="DC1", quantity=10**9,
                                    type=inventory_pb2.StockMovement.RECEIPT)]))


def reserve_expiring(stub: reservations_pb2_grpc.ReservationsStub, count: int) -> None:
    line = common_pb2.ReservationLine(line_id="l1", sku="S", node_id="DC1", quantity=1)
    for start in range(0, count, BATCH):
        requests = [reservations_pb2.ReserveRequest(reservation_id=f"r{i:07d}", ttl_seconds=1,
                                                    lines=[line])
                    for i in range(start, min(count, start + BATCH))]
        stub.ReserveBatch(reservations_pb2.ReserveBatchRequest(requests=requests), timeout=60)


def poll_until_purged(
    inventory: inventory_pb2_grpc.InventoryStub, metrics_port: int, args: argparse.Namespace,
) -> list[float]:
    """ListNodes latencies until everything is purged (or, without purges, for 30 s)."""
    latencies: list[float] = []
    deadline = time.monotonic() + (30.0 if args.no_purge else POLL_LIMIT_S)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        inventory.ListNodes(inventory_pb2.ListNodesRequest(), timeout=10)
        latencies.append(time.perf_counter() - started)
        purged = next(metric(metrics_port, PURGED_CLOSED), 0.0)
        if purged >= args.reservations:
            break
        time.sleep(0.01)
    return latencies


def metric(port: int, name: str) -> Iterator[float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            yield float(line.rsplit(" ", 1)[1])


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1e3


if __name__ == "__main__":
    sys.exit(main())
