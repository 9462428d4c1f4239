"""Scale scenario: a big ledger (1M positions + 1M open reservation lines) against three targets.

    python -m bench.scale [--skus 100000 --nodes 10 --lines 1000000 --duration 10]
    python -m bench.scale --smoke        # tiny sizes, 1 s workloads (< 30 s; the test uses it)

Targets (from the issue): with `skus x nodes` positions and `lines` open reservation lines
- RSS of atpd <= 2 GiB (the largest VmRSS read: after seeding, after restart, after the run;
  the peak VmHWM is reported beside it);
- restart to serving <= 30 s (SIGTERM, start again on the same data dir, time from starting
  the process to Health SERVING);
- `reserve` throughput >= 0.9 x the small-ledger figure (the bench `reserve` workload, same
  processes and concurrency, against `--small-skus x --small-nodes` on a fresh server).

Steps: (1) small ledger on a fresh server: seed, baseline + reserve, SIGTERM; (2) big ledger on
another fresh server: seed stock (AdjustStock RECEIPT, 500 movements a call), then the open
lines (ReserveBatch of up to 1000 COMMITTED reservations of `--lines-per-reservation` lines at
explicit nodes, a few calls in flight); RSS; (3) SIGTERM (must exit 0) and restart, timed;
RSS; (4) baseline + reserve on the big ledger; RSS; (5) SIGTERM and
`atp.persistence.verify.verify` (in a child process, timed, its peak RSS reported).

Exit code: 0 the measurement completed (a missed target is a result, not an error); 1 the
audit found problems (a server did not exit 0 on SIGTERM, verify found problems) or a
workload's workers failed; 2 a server could not be started or seeded.
Results: <results-dir>/scale-<timestamp>.json and .md; the last stdout line is
`results: <path of the JSON>`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

import bench
from atp import limits
from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from bench import report
from bench.catalog import SEED_CHUNK, SEED_QUANTITY, Catalog
from bench.run import WorkerPool, _git_commit, _host, _run_workload
from bench.server import ServerProcess

GIB = 1 << 30
TARGET_RSS_BYTES = 2 * GIB
TARGET_RESTART_S = 30.0
TARGET_RESERVE_RATIO = 0.9

# name: (default, smoke default)
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "skus": (100_000, 2_000),
    "nodes": (10, 5),
    "lines": (1_000_000, 4_000),
    "small_skus": (10_000, 200),
    "small_nodes": (5, 3),
    "duration": (10.0, 1.0),
    "processes": (2, 2),
    "concurrency": (32, 4),
    "max_calls": (2_000_000, 50_000),
    "call_timeout": (30.0, 10.0),
}
# Figures the JSON's "figures" object always has (None when the step did not run).
FIGURES = (
    "seed_seconds", "seed_stock_seconds", "seed_lines_seconds", "positions", "open_lines",
    "reservations", "rss_after_seed_bytes", "peak_after_seed_bytes", "restart_to_serving_s",
    "rss_after_restart_bytes", "peak_after_restart_bytes", "rss_after_reserve_bytes",
    "peak_after_reserve_bytes", "reserve_small_per_s", "reserve_big_per_s", "reserve_ratio",
    "baseline_small_per_s", "baseline_big_per_s", "reserve_ratio_baseline_normalized",
    "verify_problems", "verify_seconds",
)
# Calls in flight while seeding: AdjustStock (each a group commit) and ReserveBatch (each up to
# 1000 reservations; 4 x 1000 stays well under the server's 20,000 pending mutations).
_STOCK_WINDOW = 8
_BATCH_WINDOW = 4
_SERVER_START_TIMEOUT_S = 900.0
_SERVER_STOP_TIMEOUT_S = 300.0
_VERIFY_TIMEOUT_S = 3600.0


class _SetupFailed(Exception):
    """A server could not be started or seeded."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="Big-ledger scale scenario: RSS, restart to serving and reserve throughput "
        "against a small ledger; writes bench/results/scale-<timestamp>.{json,md}.",
    )
    parser.add_argument("--skus", type=int, help="SKUs of the big ledger (100,000)")
    parser.add_argument("--nodes", type=int, help="nodes of the big ledger (10)")
    parser.add_argument("--lines", type=int, help="open reservation lines seeded (1,000,000)")
    parser.add_argument("--lines-per-reservation", type=int, default=2,
                        dest="lines_per_reservation",
                        help="lines of each seeded reservation, each at an explicit node on a "
                        "distinct SKU (2)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="reservations per ReserveBatch while seeding (1000, the most)")
    parser.add_argument("--small-skus", type=int, dest="small_skus",
                        help="SKUs of the small reference ledger (10,000)")
    parser.add_argument("--small-nodes", type=int, dest="small_nodes",
                        help="nodes of the small reference ledger (5)")
    parser.add_argument("--duration", type=float, help="seconds per workload (10; smoke 1)")
    parser.add_argument("--processes", type=int, help="load-generator processes (2)")
    parser.add_argument("--concurrency", type=int, help="in-flight calls per process (32)")
    parser.add_argument("--max-calls", type=int, dest="max_calls",
                        help="most calls per workload over all processes (2,000,000)")
    parser.add_argument("--hot-share", type=float, dest="hot_share", default=0.2,
                        help="share of reserve calls on the hot SKUs (0.2)")
    parser.add_argument("--hot-skus", type=int, dest="hot_skus", default=10,
                        help="hot SKUs (10)")
    parser.add_argument("--call-timeout", type=float, dest="call_timeout",
                        help="deadline of each workload call in seconds (30)")
    parser.add_argument("--sync", choices=("on", "off"), default="on",
                        help="atpd --sync (on: fsync every group commit, the server default)")
    parser.add_argument("--map-size-mb", type=int, dest="map_size_mb", default=16384,
                        help="atpd --map-size-mb, passed as ATP_MAP_SIZE_MB (16384)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and 1 s workloads (for the smoke test)")
    parser.add_argument("--results-dir", dest="results_dir",
                        default=os.path.join(bench.REPO_ROOT, "bench", "results"),
                        help="where the JSON and markdown go (bench/results)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the temporary data dirs (always kept when the run fails)")
    # bench.run's workload runner reads it; the scale scenario runs one process.
    parser.set_defaults(gateways=0)
    args = parser.parse_args(argv)
    for name, (normal, smoke) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else normal)
    problems = [
        f"--{name.replace('_', '-')} must be > 0"
        for name in ("skus", "nodes", "small_skus", "small_nodes", "duration", "processes",
                     "concurrency", "max_calls", "call_timeout", "lines_per_reservation",
                     "batch", "hot_skus", "map_size_mb")
        if getattr(args, name) <= 0
    ]
    if args.lines < 0:
        problems.append("--lines must be >= 0")
    if args.lines_per_reservation > min(args.skus, limits.lines_max):
        problems.append("--lines-per-reservation must be at most --skus (and 500)")
    if args.batch > limits.batch_requests_max:
        problems.append(f"--batch must be at most {limits.batch_requests_max}")
    if not 0.0 <= args.hot_share <= 1.0:
        problems.append("--hot-share must be within 0..1")
    if problems:
        parser.error("; ".join(problems))
    # What bench.run._run_workload reads besides the above (unused by reserve and baseline).
    args.batch_concurrency, args.batch_size, args.streams = 4, 500, 8
    return args


def _catalog(args: argparse.Namespace, skus: int, nodes: int) -> Catalog:
    """A reservation network only: no promise network (the reserve workload never uses it)."""
    return Catalog(skus=skus, nodes=nodes, hot_skus=min(args.hot_skus, skus), promise_nodes=0,
                   promise_skus=0, regions=1, seed=args.seed)


# -- process memory ------------------------------------------------------------------------

_STATUS_FIELDS = {"VmRSS": "rss", "VmHWM": "hwm", "RssAnon": "rss_anon", "RssFile": "rss_file",
                  "RssShmem": "rss_shmem"}


def memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and the RSS split of a process, in bytes, from /proc/<pid>/status.

    RssFile counts the pages of the LMDB memory map the process has touched: the kernel may
    drop them under pressure (they are clean or written back), unlike RssAnon.
    """
    figures: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in _STATUS_FIELDS:
                figures[_STATUS_FIELDS[key] + "_bytes"] = int(rest.split()[0]) * 1024
    return figures


def _dir_bytes(path: str) -> int:
    """Bytes allocated on disk under `path` (LMDB's data file is sparse up to the map size)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.2f} GiB"


# -- seeding -------------------------------------------------------------------------------


def _pipelined(method: Any, requests: Iterable[Any], window: int, timeout_s: float,
               check: Callable[[Any], None] | None = None) -> int:
    """Sends requests with up to `window` in flight; raises the first failure."""
    inflight: deque[Any] = deque()
    count = 0

    def settle() -> None:
        response = inflight.popleft().result()
        if check is not None:
            check(response)

    for request in requests:
        if len(inflight) >= window:
            settle()
        inflight.append(method.future(request, timeout=timeout_s))
        count += 1
    while inflight:
        settle()
    return count


class _Progress:
    """One progress line every `every_s` seconds and at the end."""

    def __init__(self, what: str, total: int, unit: str, every_s: float = 5.0) -> None:
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.started = time.monotonic()
        self.next = self.started + every_s

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next:
            return
        self.next = now + self.every_s
        elapsed = now - self.started
        share = done / self.total if self.total else 1.0
        print(f"  seed {self.what:<12} {elapsed:7.1f}s  {done:>11,} / {self.total:,} {self.unit} "
              f"({share:6.1%})  {done / elapsed if elapsed > 0 else 0.0:>9,.0f} {self.unit}/s",
              flush=True)


def seed_stock(target: str, catalog: Catalog, tag: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """UpsertNode for every node, then AdjustStock RECEIPT of every position, 500 per call."""
    started = time.monotonic()
    positions = catalog.skus * catalog.nodes
    progress = _Progress("stock", positions, "positions")
    done = 0
    with grpc.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryStub(channel)
        for index in range(catalog.nodes):
            stub.UpsertNode(inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(
                node_id=catalog.node(index), kind="DC", region=catalog.region(0))),
                timeout=timeout_s)

        def pairs() -> Iterator[tuple[str, str]]:
            for sku in range(catalog.skus):
                for node in range(catalog.nodes):
                    yield catalog.sku(sku), catalog.node(node)

        def requests() -> Iterator[inventory_pb2.AdjustStockRequest]:
            chunk: list[inventory_pb2.StockMovement] = []
            number = 0
            for sku, node in pairs():
                chunk.append(inventory_pb2.StockMovement(
                    sku=sku, node_id=node, type=inventory_pb2.StockMovement.RECEIPT,
                    quantity=SEED_QUANTITY, reason="bench scale seed"))
                if len(chunk) == SEED_CHUNK:
                    yield inventory_pb2.AdjustStockRequest(
                        request_id=f"{tag}-stock-{number}", movements=chunk)
                    number += 1
                    chunk = []
            if chunk:
                yield inventory_pb2.AdjustStockRequest(
                    request_id=f"{tag}-stock-{number}", movements=chunk)

        def counted(response: Any) -> None:
            nonlocal done
            done = min(positions, done + SEED_CHUNK)
            progress.update(done)

        calls = _pipelined(stub.AdjustStock, requests(), _STOCK_WINDOW, timeout_s, counted)
    progress.update(positions, force=True)
    return {"nodes": catalog.nodes, "positions": positions, "adjust_stock_calls": calls,
            "seconds": round(time.monotonic() - started, 3)}


def seed_lines(target: str, catalog: Catalog, tag: str, lines: int, per_reservation: int,
               batch: int, seed: int, timeout_s: float = 300.0) -> dict[str, Any]:
    """`lines` open lines as COMMITTED reservations (never expire) via ReserveBatch.

    Each reservation has `per_reservation` lines (the last one fewer if `lines` does not
    divide) of 1-5 units on distinct random SKUs, each at a random explicit node.
    """
    started = time.monotonic()
    reservations = -(-lines // per_reservation) if lines else 0
    progress = _Progress("open lines", lines, "lines")
    rng = random.Random(f"{seed}/scale-lines")
    done = 0
    item_failures: dict[str, int] = {}

    def reservation(number: int) -> reservations_pb2.ReserveRequest:
        count = min(per_reservation, lines - number * per_reservation)
        skus = (rng.sample(range(catalog.skus), count) if count > 1
                else [rng.randrange(catalog.skus)])
        return reservations_pb2.ReserveRequest(
            reservation_id=f"{tag}-open-{number:07d}",
            lines=[
                common_pb2.ReservationLine(
                    line_id=f"l{index}", sku=catalog.sku(sku),
                    node_id=catalog.node(rng.randrange(catalog.nodes)),
                    quantity=rng.randint(1, 5))
                for index, sku in enumerate(skus)
            ],
            commit=True, channel="bench-scale",
        )

    def requests() -> Iterator[reservations_pb2.ReserveBatchRequest]:
        for first in range(0, reservations, batch):
            yield reservations_pb2.ReserveBatchRequest(
                requests=[reservation(n) for n in range(first, min(reservations, first + batch))])

    def counted(response: Any) -> None:
        nonlocal done
        for result in response.results:
            if result.WhichOneof("result") == "reservation":
                done += len(result.reservation.lines)
            else:
                key = result.reason or f"code {result.status.code}"
                item_failures[key] = item_failures.get(key, 0) + 1
        progress.update(done)

    with grpc.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", limits.message_bytes_max),
    ]) as channel:
        stub = reservations_pb2_grpc.ReservationsStub(channel)
        calls = _pipelined(stub.ReserveBatch, requests(), _BATCH_WINDOW, timeout_s, counted)
    progress.update(done, force=True)
    if item_failures:
        raise RuntimeError(f"ReserveBatch refused reservations while seeding: {item_failures}")
    if done != lines:
        raise RuntimeError(f"seeded {done} open lines, expected {lines}")
    return {"reservations": reservations, "lines": done, "reserve_batch_calls": calls,
            "seconds": round(time.monotonic() - started, 3)}


# -- the scenario --------------------------------------------------------------------------


def _start(server: ServerProcess, what: str) -> float:
    """Starts the server; seconds from starting the process to Health SERVING."""
    started = time.monotonic()
    try:
        server.start(timeout_s=_SERVER_START_TIMEOUT_S)
    except (RuntimeError, OSError) as error:
        raise _SetupFailed(f"{what}: {error}") from error
    seconds = time.monotonic() - started
    print(f"scale: {what}: atpd pid {server.pid} on {server.target} SERVING after "
          f"{seconds:.2f} s", flush=True)
    return seconds


def _stop(server: ServerProcess, what: str, audit: dict[str, Any]) -> int:
    started = time.monotonic()
    code = server.stop(_SERVER_STOP_TIMEOUT_S)
    seconds = round(time.monotonic() - started, 3)
    audit.setdefault("stops", []).append({"server": what, "exit_code": code, "seconds": seconds})
    print(f"scale: {what}: SIGTERM -> exit code {code} after {seconds:.2f} s", flush=True)
    if code != 0:
        audit["problems"].append(f"{what}: server exited with code {code} on SIGTERM (expected 0)")
    return code


def _workloads(pool: WorkerPool, server: ServerProcess, args: argparse.Namespace,
               catalog: Catalog, tag: str, section: dict[str, Any]) -> None:
    """baseline then reserve; figures into section[name]; a worker failure raises."""
    for name in ("baseline", "reserve"):
        figures = _run_workload(pool, server, args, catalog, tag, name)
        if isinstance(figures, str):
            raise _WorkloadFailed(f"{name}: {figures}")
        figures.pop("_latencies", None)
        section[name] = figures


class _WorkloadFailed(Exception):
    """A workload's load-generator workers crashed or hung."""


def _verify(data_dir: str) -> dict[str, Any]:
    """atp.persistence.verify.verify in a child process: problems, seconds and its peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        "from atp.persistence.verify import verify\n"
        "t = time.monotonic()\n"
        "problems = verify(sys.argv[1])\n"
        "print(json.dumps({'problems_total': len(problems), 'problems': problems[:50],\n"
        "    'seconds': round(time.monotonic() - t, 3),\n"
        "    'max_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))\n"
    )
    env = dict(os.environ)
    source = os.path.join(bench.REPO_ROOT, "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    completed = subprocess.run([sys.executable, "-c", code, data_dir], capture_output=True,
                               text=True, timeout=_VERIFY_TIMEOUT_S, env=env, check=False)
    if completed.returncode != 0:
        return {"problems_total": 1, "seconds": None, "max_rss_bytes": None,
                "problems": [(f"verify crashed (exit {completed.returncode}): "
                              f"{completed.stderr.strip()[-2000:]}")]}
    verified: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return verified


def run(args: argparse.Namespace, result: dict[str, Any], temp_dir: str) -> int:
    """The scenario; fills `result`; returns the exit code."""
    os.environ["ATP_MAP_SIZE_MB"] = str(args.map_size_mb)  # read by atpd; ServerProcess passes env
    run_tag = uuid.uuid4().hex[:8]
    small_catalog = _catalog(args, args.small_skus, args.small_nodes)
    big_catalog = _catalog(args, args.skus, args.nodes)
    audit: dict[str, Any] = {"problems": []}
    result["audit"] = audit
    small: dict[str, Any] = {}
    big: dict[str, Any] = {}
    result["small"], result["big"] = small, big
    pool = WorkerPool(args.processes)
    servers: list[ServerProcess] = []
    try:
        # 1. the small reference ledger
        server = ServerProcess(os.path.join(temp_dir, "small"), args.sync,
                               os.path.join(temp_dir, "atpd-small.log"))
        servers.append(server)
        small["start_seconds"] = round(_start(server, "small ledger"), 3)
        try:
            small["seed"] = seed_stock(server.target, small_catalog, f"{run_tag}-s")
        except (grpc.RpcError, RuntimeError) as error:
            raise _SetupFailed(f"seeding the small ledger: {error}") from error
        print(f"scale: small ledger: {small['seed']['positions']:,} positions in "
              f"{small['seed']['seconds']} s", flush=True)
        _workloads(pool, server, args, small_catalog, f"{run_tag}-s", small)
        small["memory_after_reserve"] = memory(server.pid)
        _stop(server, "small ledger", audit)
        if not args.keep_data:
            shutil.rmtree(server.data_dir, ignore_errors=True)

        # 2. the big ledger
        server = ServerProcess(os.path.join(temp_dir, "big"), args.sync,
                               os.path.join(temp_dir, "atpd-big.log"))
        servers.append(server)
        big["start_seconds"] = round(_start(server, "big ledger"), 3)
        cpu_before = server.cpu_seconds()
        try:
            stock = seed_stock(server.target, big_catalog, f"{run_tag}-b")
            cpu_stock = server.cpu_seconds()
            big["memory_after_stock"] = memory(server.pid)
            lines = seed_lines(server.target, big_catalog, f"{run_tag}-b", args.lines,
                               args.lines_per_reservation, args.batch, args.seed)
        except (grpc.RpcError, RuntimeError) as error:
            raise _SetupFailed(f"seeding the big ledger: {error}") from error
        cpu_after = server.cpu_seconds()
        big["seed"] = {
            **stock, **lines,
            "stock_seconds": stock["seconds"], "lines_seconds": lines["seconds"],
            "seconds": round(stock["seconds"] + lines["seconds"], 3),
            "server_cpu_stock_s": round(cpu_stock - cpu_before, 3),
            "server_cpu_lines_s": round(cpu_after - cpu_stock, 3),
        }
        big["memory_after_seed"] = memory(server.pid)
        print(f"scale: big ledger seeded in {big['seed']['seconds']:.1f} s (stock "
              f"{stock['seconds']:.1f} s, open lines {lines['seconds']:.1f} s); RSS "
              f"{_gib(big['memory_after_seed']['rss_bytes'])}, peak "
              f"{_gib(big['memory_after_seed']['hwm_bytes'])}", flush=True)

        # 3. restart
        _stop(server, "big ledger after seeding", audit)
        big["data_dir_bytes"] = _dir_bytes(server.data_dir)
        big["restart_to_serving_s"] = round(_start(server, "big ledger restart"), 3)
        big["memory_after_restart"] = memory(server.pid)
        print(f"scale: restart: RSS {_gib(big['memory_after_restart']['rss_bytes'])}, peak "
              f"{_gib(big['memory_after_restart']['hwm_bytes'])}", flush=True)

        # 4. reserve against the big ledger
        _workloads(pool, server, args, big_catalog, f"{run_tag}-b", big)
        big["memory_after_reserve"] = memory(server.pid)

        # 5. audit
        _stop(server, "big ledger after the run", audit)
        print("scale: verifying the big ledger offline (atp.persistence.verify.verify)", flush=True)
        verified = _verify(server.data_dir)
        audit["verify"] = verified
        audit["problems"].extend(f"verify: {p}" for p in verified["problems"])
        print(f"scale: verify: {verified['problems_total']} problems in {verified['seconds']} s "
              f"(peak RSS {_gib(verified['max_rss_bytes'])})", flush=True)
    except _SetupFailed as error:
        print(f"scale: setup failed: {error}", file=sys.stderr)
        for server in servers:
            if server.process is not None:
                print(server.log_tail(), file=sys.stderr)
        result["error"] = str(error)
        return 2
    except _WorkloadFailed as error:
        print(f"scale: workload failed: {error}", file=sys.stderr)
        result["error"] = str(error)
        return 1
    finally:
        pool.close()
        for server in servers:
            if server.process is not None:
                server.kill()
    audit["passed"] = not audit["problems"]
    return 0 if audit["passed"] else 1


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    small, big = result.get("small", {}), result.get("big", {})
    seed = big.get("seed", {})

    def mem(section: dict[str, Any], when: str, key: str) -> int | None:
        value: int | None = section.get(when, {}).get(key)
        return value

    def rate(section: dict[str, Any], name: str) -> float | None:
        value: float | None = section.get(name, {}).get("throughput_per_s")
        return value

    small_reserve, big_reserve = rate(small, "reserve"), rate(big, "reserve")
    verify = result.get("audit", {}).get("verify", {})
    figures = {
        "seed_seconds": seed.get("seconds"),
        "seed_stock_seconds": seed.get("stock_seconds"),
        "seed_lines_seconds": seed.get("lines_seconds"),
        "positions": seed.get("positions"),
        "open_lines": seed.get("lines"),
        "reservations": seed.get("reservations"),
        "rss_after_seed_bytes": mem(big, "memory_after_seed", "rss_bytes"),
        "peak_after_seed_bytes": mem(big, "memory_after_seed", "hwm_bytes"),
        "restart_to_serving_s": big.get("restart_to_serving_s"),
        "rss_after_restart_bytes": mem(big, "memory_after_restart", "rss_bytes"),
        "peak_after_restart_bytes": mem(big, "memory_after_restart", "hwm_bytes"),
        "rss_after_reserve_bytes": mem(big, "memory_after_reserve", "rss_bytes"),
        "peak_after_reserve_bytes": mem(big, "memory_after_reserve", "hwm_bytes"),
        "reserve_small_per_s": small_reserve,
        "reserve_big_per_s": big_reserve,
        "reserve_ratio": (round(big_reserve / small_reserve, 3)
                          if small_reserve and big_reserve is not None else None),
        "baseline_small_per_s": rate(small, "baseline"),
        "baseline_big_per_s": rate(big, "baseline"),
        # (big reserve / big baseline) / (small reserve / small baseline): the ratio with the
        # host's speed during each run factored out; shown beside the target, not judged.
        "reserve_ratio_baseline_normalized": _normalized(
            small_reserve, big_reserve, rate(small, "baseline"), rate(big, "baseline")),
        "verify_problems": verify.get("problems_total"),
        "verify_seconds": verify.get("seconds"),
    }
    assert tuple(figures) == FIGURES
    return figures


def _normalized(small_reserve: float | None, big_reserve: float | None,
                small_base: float | None, big_base: float | None) -> float | None:
    if not (small_reserve and small_base and big_base) or big_reserve is None:
        return None
    return round((big_reserve / big_base) / (small_reserve / small_base), 3)


def _targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rss_values = [figures[k] for k in ("rss_after_seed_bytes", "rss_after_restart_bytes",
                                       "rss_after_reserve_bytes") if figures[k] is not None]
    peaks = [figures[k] for k in ("peak_after_seed_bytes", "peak_after_restart_bytes",
                                  "peak_after_reserve_bytes") if figures[k] is not None]

    def target(value: float | None, limit: float, at_most: bool, text: str) -> dict[str, Any]:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        return {"target": text, "limit": limit, "value": value,
                "status": "n/a" if met is None else ("PASS" if met else "MISS")}

    return {
        "rss": target(max(rss_values) if rss_values else None, TARGET_RSS_BYTES, True,
                      "RSS <= 2 GiB (largest VmRSS: after seeding, after restart, after reserve)"),
        "restart": target(figures["restart_to_serving_s"], TARGET_RESTART_S, True,
                          "restart to serving <= 30 s"),
        "reserve": target(figures["reserve_ratio"], TARGET_RESERVE_RATIO, False,
                          "reserve throughput >= 0.9 x the small-ledger figure"),
        # Informational: the issue bounds RSS; the transient peak is shown against the same bound.
        "peak_rss": target(max(peaks) if peaks else None, TARGET_RSS_BYTES, True,
                           "(informational) peak RSS VmHWM <= 2 GiB"),
    }


def markdown(result: dict[str, Any]) -> str:
    config, host, figures, targets = (result["config"], result["host"], result["figures"],
                                      result["targets"])

    def num(value: Any, digits: int = 1, suffix: str = "") -> str:
        return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"

    warning = ("- **WARNING**: src/ changed during the run (commit at the end "
               f"{(result.get('git_commit_at_end') or '?')[:12]}): the servers may have run "
               "different code")
    lines = [
        f"# atpd scale scenario — {result['started_at']}",
        "",
        f"- command: `{result['command']}`",
        (f"- host: {host['hostname']}, {host['cpus']} CPUs, load average before "
         f"{host['loadavg_before']}, Python {host['python']}, grpcio {host['grpcio']}"
         + (f", commit {result['git_commit'][:12]}" if result.get("git_commit") else "")
         + (f" + uncommitted changes in src/ ({len(result['src_changes'])} files)"
            if result.get("src_changes") else "")),
        (f"- big ledger: {config['skus']:,} SKUs x {config['nodes']} nodes, {config['lines']:,} "
         f"open lines ({config['lines_per_reservation']} per COMMITTED reservation); small: "
         f"{config['small_skus']:,} x {config['small_nodes']}; sync {config['sync']}, map "
         f"{config['map_size_mb']:,} MiB"),
        (f"- load: {config['processes']} processes x {config['concurrency']} in flight, "
         f"{config['duration']:g} s per workload"),
        *([warning] if result.get("src_changed_during_run") else []),
        "",
        "| target | value | status |",
        "|---|---:|---|",
    ]
    for key, entry in targets.items():
        value = entry["value"]
        if key in ("rss", "peak_rss"):
            shown = _gib(value)
        elif key == "restart":
            shown = num(value, 2, " s")
        else:
            shown = num(value, 3)
        lines.append(f"| {entry['target']} | {shown} | **{entry['status']}** |")
    f = figures
    rows = [
        ("seeding (stock + open lines)",
         (f"{num(f['seed_seconds'])} s ({num(f['seed_stock_seconds'])} + "
         f"{num(f['seed_lines_seconds'])})")),
        ("positions / open lines / reservations",
         f"{num(f['positions'], 0)} / {num(f['open_lines'], 0)} / {num(f['reservations'], 0)}"),
        ("RSS after seeding (peak)",
         f"{_gib(f['rss_after_seed_bytes'])} ({_gib(f['peak_after_seed_bytes'])})"),
        ("restart to serving", f"{num(f['restart_to_serving_s'], 2)} s"),
        ("RSS after restart (peak)",
         f"{_gib(f['rss_after_restart_bytes'])} ({_gib(f['peak_after_restart_bytes'])})"),
        ("RSS after reserve on the big ledger (peak)",
         f"{_gib(f['rss_after_reserve_bytes'])} ({_gib(f['peak_after_reserve_bytes'])})"),
        ("reserve small / big ledger",
         (f"{num(f['reserve_small_per_s'])} / {num(f['reserve_big_per_s'])} calls/s "
         f"(ratio {num(f['reserve_ratio'], 3)})")),
        ("baseline small / big server",
         f"{num(f['baseline_small_per_s'])} / {num(f['baseline_big_per_s'])} calls/s"),
        ("reserve ratio with each run's baseline factored out",
         num(f["reserve_ratio_baseline_normalized"], 3)),
        ("verify", f"{num(f['verify_problems'], 0)} problems in {num(f['verify_seconds'])} s"),
    ]
    lines += ["", "| figure | value |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    memory_rows = [
        ("small ledger after reserve", result.get("small", {}).get("memory_after_reserve")),
    ]
    big = result.get("big", {})
    for key, label in (("memory_after_stock", "big: after stock"),
                       ("memory_after_seed", "big: after open lines"),
                       ("memory_after_restart", "big: after restart"),
                       ("memory_after_reserve", "big: after reserve")):
        memory_rows.append((label, big.get(key)))
    lines += ["", "| server memory | VmRSS | RssAnon | RssFile (LMDB map) | VmHWM (peak) |",
              "|---|---:|---:|---:|---:|"]
    for label, values in memory_rows:
        if values:
            lines.append(f"| {label} | {_gib(values.get('rss_bytes'))} "
                         f"| {_gib(values.get('rss_anon_bytes'))} "
                         f"| {_gib(values.get('rss_file_bytes'))} "
                         f"| {_gib(values.get('hwm_bytes'))} |")
    lines += ["", ("| ledger | workload | throughput /s | p50 ms | p99 ms | errors | "
              "server CPU s (cores) |"), "|---|---|---:|---:|---:|---|---:|"]
    for ledger in ("small", "big"):
        for name in ("baseline", "reserve"):
            figures_w = result.get(ledger, {}).get(name)
            if not figures_w:
                continue
            lat = figures_w["latency_ms"]
            lines.append(
                f"| {ledger} | {name} | {figures_w['throughput_per_s']:,.1f} | {lat['p50']:.2f} "
                f"| {lat['p99']:.2f} | {report.errors_text(figures_w)} | "
                f"{figures_w['server_cpu_s']:.2f} ({figures_w['server_cpu_share']:.2f}) |")
    audit = result.get("audit", {})
    lines += ["", f"## Audit: {'PASSED' if audit.get('passed') else 'FAILED'}", ""]
    for stop in audit.get("stops", []):
        lines.append(f"- {stop['server']}: SIGTERM -> exit {stop['exit_code']} in "
                     f"{stop['seconds']} s")
    verify = audit.get("verify")
    if verify:
        lines.append(f"- `atp.persistence.verify.verify`: {verify['problems_total']} problems in "
                     f"{verify['seconds']} s (verifier peak RSS {_gib(verify['max_rss_bytes'])})")
    for problem in audit.get("problems", [])[:50]:
        lines.append(f"- PROBLEM: {problem}")
    if result.get("error"):
        lines += ["", f"**Error:** {result['error']}"]
    return "\n".join(lines) + "\n"


def _src_changes() -> list[str] | None:
    """Uncommitted changes under src/ (`git status --porcelain src`): the server runs the
    working tree, so a figure belongs to the commit only when this is empty."""
    try:
        completed = subprocess.run(["git", "status", "--porcelain", "--", "src"],
                                   cwd=bench.REPO_ROOT, capture_output=True, text=True,
                                   timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return [line for line in completed.stdout.splitlines() if line.strip()]


def _paths(results_dir: str, stamp: str) -> dict[str, str]:
    report.ensure_dir(results_dir)
    base = os.path.join(results_dir, f"scale-{stamp}")
    suffix = 1
    while os.path.exists(base + ".json"):
        suffix += 1
        base = os.path.join(results_dir, f"scale-{stamp}-{suffix}")
    return {"json": base + ".json", "md": base + ".md"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.datetime.now().astimezone()
    paths = _paths(args.results_dir, started_at.strftime("%Y%m%d-%H%M%S"))
    config_keys = ("skus", "nodes", "lines", "lines_per_reservation", "batch", "small_skus",
                   "small_nodes", "duration", "processes", "concurrency", "max_calls",
                   "hot_share", "hot_skus", "call_timeout", "sync", "map_size_mb", "seed", "smoke")
    result: dict[str, Any] = {
        "schema": "atp-bench-scale/1",
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.scale", *(sys.argv[1:] if argv is None else argv)]),
        "host": _host(),
        "git_commit": _git_commit(),
        "src_changes": _src_changes(),
        "config": {key: getattr(args, key) for key in config_keys},
        "files": paths,
    }
    print(f"scale: big ledger {args.skus:,} SKUs x {args.nodes} nodes + {args.lines:,} open lines; "
          f"small {args.small_skus:,} x {args.small_nodes}; {args.processes} processes x "
          f"{args.concurrency} in flight, {args.duration:g} s per workload, sync {args.sync}",
          flush=True)
    temp_dir = tempfile.mkdtemp(prefix="atp-scale-")
    try:
        exit_code = run(args, result, temp_dir)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("scale: interrupted", file=sys.stderr)
        exit_code = 130
    result["finished_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["git_commit_at_end"] = _git_commit()
    result["src_changes_at_end"] = _src_changes()
    result["src_changed_during_run"] = (
        (result["git_commit_at_end"], result["src_changes_at_end"])
        != (result["git_commit"], result["src_changes"]))
    if result["src_changed_during_run"]:
        print("scale: WARNING: the code under src/ changed during the run (commit or working "
              "tree): the servers may not all have run the same code", file=sys.stderr)
    result["figures"] = _figures(result)
    result["targets"] = _targets(result["figures"])
    result["exit_code"] = exit_code
    report.write_json(paths["json"], result)
    with open(paths["md"], "w", encoding="utf-8") as out:
        out.write(markdown(result))
    if exit_code != 0 or args.keep_data:
        print(f"scale: data dirs and server logs kept in {temp_dir}", file=sys.stderr)
    else:
        shutil.rmtree(temp_dir, ignore_errors=True)
    figures, targets = result["figures"], result["targets"]
    print("scale: summary", flush=True)
    print(f"  seeding {figures['seed_seconds']} s; RSS after seed "
          f"{_gib(figures['rss_after_seed_bytes'])} (peak {_gib(figures['peak_after_seed_bytes'])})"
          f"; restart to serving {figures['restart_to_serving_s']} s, RSS after restart "
          f"{_gib(figures['rss_after_restart_bytes'])} (peak "
          f"{_gib(figures['peak_after_restart_bytes'])})", flush=True)
    print(f"  reserve small {figures['reserve_small_per_s']} / big {figures['reserve_big_per_s']} "
          f"calls/s = {figures['reserve_ratio']} (baseline-normalized "
          f"{figures['reserve_ratio_baseline_normalized']}); "
          f"verify {figures['verify_problems']} problems "
          f"in {figures['verify_seconds']} s", flush=True)
    for entry in targets.values():
        print(f"  {entry['status']:<4} {entry['target']}", flush=True)
    print(f"results: {paths['json']}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
