"""Soak bench: a long mixed lifecycle load proves atpd's memory, disk and restart time bounded.

    python -m bench.soak [--lifecycles 2000000] [--sync off] [--data-dir DIR]
    python -m bench.soak --smoke          # a few thousand lifecycles, ~20 s (the test uses it)

atpd keeps only live state in memory and purges what its retention windows let go, so under
a steady load its RSS, its data in use and its restart time should level off however many
reservations have come and gone. This bench starts its own atpd (127.0.0.1:0, metrics on a
free port, short windows: --closed-retention / --idempotency-window / --journal-retention
30s), stocks `--skus` x `--nodes` positions and drives `--lifecycles` reservation lifecycles
from `--workers` asyncio workers over one grpc.aio channel. A worker's round is one
ReserveBatch of `--batch-size` reservations (unique ids, 1-3 lines at explicit nodes), then
for each reservation, concurrently: Commit + Fulfill (60%), Release (20%) or nothing, its
ttl_seconds of `--expire-ttl` letting it expire (20%); a share of lifecycles also places and
releases a hold (`--hold-share`); the round ends with an AdjustStock RECEIPT (with a
request_id) of the units it fulfilled, so stock never runs down.

Every `--sample-seconds` it records atpd's VmRSS (/proc/<pid>/status), data.mdb's apparent
and allocated size, the metrics endpoint's gauges (map used/size, retained closed
reservations, idempotency records, journal events, HELD/COMMITTED reservations; absent ones
are None), every LMDB tree's entries and pages (read-only, as `atpctl db stat` does), and the
lifecycles done and their rate. After `--restart-at` of the lifecycles and again at the end
atpd is restarted (SIGTERM, start on the same data dir; `--restart-repeats` times each): the
time from starting the process to Health SERVING.

Targets (judged unless --smoke), lifecycles counted from the start:
- RSS and map used bytes: the median over the end window (95-100% of the lifecycles) within
  +-10% of the median over the reference window (`--reference-at` 10% to 15%: tenfold growth
  in lifecycles, after the first restart at 5%, so both windows are the same process). The
  retained state levels off after a few retention windows (~2 min with 30s): a run whose
  reference window starts earlier gets a note, and `--rejudge JSON --reference-at 0.2`
  judges its samples again from a later window;
- throughput: after `--warmup` (20%) of the lifecycles, the last tenth of the rest runs at
  >= 0.9 x the first tenth's lifecycles/s (atpd's CPU ms per lifecycle and the cores it got
  are shown beside: on a shared machine a busier host slows the run, not atpd);
- restart: the median final restart <= 1.2 x the median first restart.

Exit code: 0 the run completed and every target passed (in --smoke: the run is sane); 1 a
target failed, or the run is not sane (a server stop was not exit 0, lifecycles failed
beyond 1%, no samples); 2 the server could not be started or seeded; 130 interrupted
(Ctrl-C or SIGTERM: atpd is stopped and what was measured is written).
Results: <results-dir>/soak-<timestamp>.json and .png (the PNG needs matplotlib); the last
stdout line is `results: <path of the JSON>`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import lmdb
from prometheus_client.parser import text_string_to_metric_families

import bench
from atp.flags import parse_duration
from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from bench import report
from bench.catalog import SEED_CHUNK
from bench.run import _git_commit, _host
from bench.scale import _src_changes, memory
from bench.server import ServerProcess, free_port

MIB = 1 << 20
# name: (default, smoke default)
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "lifecycles": (2_000_000, 3_000),
    "workers": (8, 2),
    "batch_size": (32, 16),
    "skus": (2_000, 100),
    "nodes": (5, 3),
    "sample_seconds": (5.0, 1.0),
    "max_seconds": (4 * 3600.0, 60.0),
    "retention": ("30s", "5s"),
    "restart_repeats": (3, 1),
}
# What becomes of a reserved reservation, with its share of the lifecycles.
OUTCOMES = (("fulfill", 0.6), ("release", 0.2), ("expire", 0.2))
# Units received per position before the load; receipts give back what is fulfilled.
STOCK_PER_POSITION = 1_000_000
# Lifecycle fractions of the judged windows: the reference window starts where the count
# still has to grow tenfold; the first restart comes before it, so that both windows are
# measured on the same (restarted) process.
REFERENCE_WIDTH = 0.05
END_WINDOW = (0.95, 1.00)
# Retention windows after which the retained state has levelled off (measured: ~3.7).
SETTLE_RETENTIONS = 4
STATE_TOLERANCE = 0.10
THROUGHPUT_FLOOR = 0.90
RESTART_CEILING = 1.20
# Failed lifecycles beyond this share make the run unsound (stock is plentiful).
FAILURE_SHARE_MAX = 0.01
# Gauges kept from every scrape (absent ones are None).
METRICS = (
    "atp_map_used_bytes", "atp_map_size_bytes", "atp_data_file_bytes",
    "atp_retained_closed_reservations", "atp_idempotency_records", "atp_retained_journal_events",
    'atp_reservations{state="HELD"}', 'atp_reservations{state="COMMITTED"}',
    'atp_retention_purged_records_total{kind="closed"}',
    'atp_retention_purged_records_total{kind="requests"}',
    'atp_retention_purged_records_total{kind="journal"}', "atp_reservations_expired_total",
    "atp_writer_waiting_commands", "atp_storage_full", "atp_housekeeping_failures_total",
)
HELD_GAUGE = 'atp_reservations{state="HELD"}'


# -- arguments -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Drive a long mixed reservation-lifecycle load against a fresh atpd and "
        "check that its RSS, data in use and restart time stay bounded; writes "
        "bench/results/soak-<timestamp>.{json,png}.",
    )
    add = parser.add_argument
    add("--lifecycles", type=int, help="reservation lifecycles to drive (2,000,000; smoke 3,000)")
    add("--workers", type=int, help="concurrent asyncio workers (8; smoke 2)")
    add("--batch-size", type=int, dest="batch_size",
        help="reservations per ReserveBatch round of a worker, 1-150 (32; smoke 16)")
    add("--skus", type=int, help="SKUs stocked at every node (2,000; smoke 100)")
    add("--nodes", type=int, help="nodes (5; smoke 3)")
    add("--hold-share", type=float, default=0.02, dest="hold_share",
        help="share of lifecycles that also place and release a hold (0.02)")
    add("--expire-ttl", type=int, default=2, dest="expire_ttl",
        help="ttl_seconds of the reservations left to expire (2)")
    add("--sample-seconds", type=float, dest="sample_seconds", help="seconds between samples (5)")
    add("--rate", type=float, default=0.0,
        help="lifecycles a second at most (0: as fast as atpd takes them). A steady rate makes "
        "the state targets measure growth, not the VM's speed: what the windows retain is "
        "about rate x retention")
    add("--max-seconds", type=float, dest="max_seconds",
        help="stop driving load after this many seconds, whatever is left (14,400; smoke 60)")
    add("--retention", help="atpd --closed-retention, --idempotency-window and "
        "--journal-retention (30s; smoke 5s)")
    add("--journal-retention-events", type=int, default=0, dest="journal_retention_events",
        help="atpd --journal-retention-events (0: no count limit)")
    add("--restart-at", type=float, default=0.05, dest="restart_at",
        help="share of the lifecycles after which atpd is first restarted (0.05)")
    add("--restart-repeats", type=int, dest="restart_repeats",
        help="back-to-back restarts at each point; the median is judged (3; smoke 1)")
    add("--warmup", type=float, default=0.2,
        help="share of the lifecycles left out of the throughput target (0.2)")
    add("--reference-at", type=float, default=0.10, dest="reference_at",
        help="share of the lifecycles where the reference window of RSS and map used begins; "
        "it spans 5%% and the end window is 95-100%% (0.10: tenfold growth)")
    add("--sync", choices=("on", "off"), default="on", help="atpd --sync (on)")
    add("--gateways", type=int, default=0,
        help="atpd --gateways (0: one process); the RSS judged is all its processes' "
        "together, and each sample has each role's (rss_by_role)")
    add("--call-timeout", type=float, default=30.0, dest="call_timeout",
        help="deadline of every call in seconds (30)")
    add("--seed", type=int, default=1, help="random seed (1)")
    add("--data-dir", dest="data_dir",
        help="atpd's data dir (default: a new temporary one, removed unless the run fails)")
    add("--keep-data", action="store_true", dest="keep_data",
        help="keep the temporary data dir and the server log")
    add("--results-dir", dest="results_dir",
        default=os.path.join(bench.REPO_ROOT, "bench", "results"),
        help="where the JSON and PNG go (bench/results)")
    add("--smoke", action="store_true", help="tiny sizes, targets not judged (the test)")
    add("--rejudge", metavar="JSON",
        help="run nothing: judge the samples of an earlier run's JSON again with this "
        "--reference-at and --warmup, and print the summary")
    args = parser.parse_args(argv)
    for name, (default, smoke_default) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke_default if args.smoke else default)
    problems = _problems(args)
    if problems:
        parser.error("; ".join(problems))
    return args


def _problems(args: argparse.Namespace) -> list[str]:
    problems = [
        f"--{name.replace('_', '-')} must be > 0"
        for name in ("lifecycles", "workers", "batch_size", "skus", "nodes", "sample_seconds",
                     "max_seconds", "restart_repeats", "expire_ttl", "call_timeout")
        if getattr(args, name) <= 0
    ]
    if args.batch_size > 150:
        problems.append("--batch-size must be at most 150 (a round's receipt takes 3 "
                        "movements per reservation, at most 500)")
    if not 0.0 <= args.reference_at <= 1.0 - REFERENCE_WIDTH:
        problems.append(f"--reference-at must be within 0..{1.0 - REFERENCE_WIDTH}")
    for name in ("hold_share", "restart_at", "warmup"):
        if not 0.0 <= getattr(args, name) < 1.0:
            problems.append(f"--{name.replace('_', '-')} must be within 0..1")
    return problems


# -- the server ------------------------------------------------------------------------------


class SoakServer:
    """atpd with the soak's flags (passed as ATP_* variables, which atpd reads for every
    flag and ServerProcess hands down) and a metrics port of its own."""

    def __init__(self, args: argparse.Namespace, data_dir: str, log_path: str) -> None:
        self.args = args
        self.process = ServerProcess(data_dir, args.sync, log_path, gateways=args.gateways)
        self.metrics_url = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return self.process.target

    def flags(self) -> dict[str, str]:
        return {
            "ATP_CLOSED_RETENTION": self.args.retention,
            "ATP_IDEMPOTENCY_WINDOW": self.args.retention,
            "ATP_JOURNAL_RETENTION": self.args.retention,
            "ATP_JOURNAL_RETENTION_EVENTS": str(self.args.journal_retention_events),
        }

    def start(self) -> float:
        """Starts atpd; the seconds from starting the process to Health SERVING."""
        port = free_port()
        os.environ.update(self.flags(), ATP_METRICS_PORT=str(port))
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        started = time.monotonic()
        self.process.start()
        return time.monotonic() - started

    def stop(self) -> dict[str, Any]:
        started = time.monotonic()
        code = self.process.stop()
        return {"exit_code": code, "seconds": round(time.monotonic() - started, 3)}


def restart(server: SoakServer, repeats: int) -> dict[str, Any]:
    """Stops and starts atpd `repeats` times; each time to serving, their median, the stops."""
    stops, times = [], []
    for _ in range(repeats):
        stops.append(server.stop())
        times.append(round(server.start(), 3))
    return {"seconds": times, "median_s": statistics.median(times), "stops": stops}


def seed_stock(target: str, skus: int, nodes: int, timeout_s: float) -> dict[str, Any]:
    """Creates the nodes and receives STOCK_PER_POSITION units at every position."""
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryStub(channel)
        for node in range(nodes):
            stub.UpsertNode(inventory_pb2.UpsertNodeRequest(
                node=common_pb2.Node(node_id=node_name(node), kind="DC", region="region-00")
            ), timeout=timeout_s)
        positions = [(sku_name(s), node_name(n)) for s in range(skus) for n in range(nodes)]
        for index in range(0, len(positions), SEED_CHUNK):
            movements = [receipt(sku, node, STOCK_PER_POSITION)
                         for sku, node in positions[index:index + SEED_CHUNK]]
            stub.AdjustStock(inventory_pb2.AdjustStockRequest(
                request_id=f"soak-seed-{index}", movements=movements), timeout=timeout_s)
    return {"positions": len(positions), "units_per_position": STOCK_PER_POSITION,
            "seconds": round(time.monotonic() - started, 3)}


def sku_name(index: int) -> str:
    return f"sku-{index:06d}"


def node_name(index: int) -> str:
    return f"dc-{index:02d}"


def receipt(sku: str, node: str, quantity: int) -> inventory_pb2.StockMovement:
    return inventory_pb2.StockMovement(
        sku=sku, node_id=node, type=inventory_pb2.StockMovement.RECEIPT, quantity=quantity,
        reason="soak",
    )


# -- the load --------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the workers did, over all phases."""

    done: int = 0
    failed: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)

    def finish(self, outcome: str, ok: bool) -> None:
        self.done += 1
        if ok:
            self.outcomes[outcome] += 1
        else:
            self.failed += 1

    def as_dict(self) -> dict[str, Any]:
        return {"lifecycles_done": self.done, "lifecycles_failed": self.failed,
                "outcomes_ok": dict(self.outcomes), "failures": dict(self.failures),
                "calls_ok": dict(self.calls)}


class Budget:
    """Hands out lifecycles up to the current phase's limit, until the deadline, and at most
    `rate` a second when one is set (0: as fast as atpd takes them)."""

    def __init__(self, deadline: float, rate: float = 0.0) -> None:
        self.deadline = deadline
        self.started = 0
        self.limit = 0
        self.rate = rate
        self._paced_since = time.monotonic()

    async def pace(self) -> None:
        """Waits until the next lifecycles are due at the set rate. A load that fell behind
        (a timed restart paused it) starts afresh rather than bursting to catch up."""
        if not self.rate:
            return
        ahead = self.started / self.rate - (time.monotonic() - self._paced_since)
        if ahead > 0:
            await asyncio.sleep(ahead)
        elif ahead < -1.0:
            self._paced_since = time.monotonic() - self.started / self.rate

    def take(self, most: int) -> int:
        if time.monotonic() >= self.deadline:
            return 0
        count = max(0, min(most, self.limit - self.started))
        self.started += count
        return count

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline


@dataclass(frozen=True)
class Planned:
    outcome: str
    request: reservations_pb2.ReserveRequest


_CODE_NAMES: dict[int, str] = {code.value[0]: code.name for code in grpc.StatusCode}


class Load:
    """The workers' code: rounds of ReserveBatch, then each reservation's end, holds, receipts."""

    def __init__(self, args: argparse.Namespace, tally: Tally, budget: Budget) -> None:
        self.args = args
        self.tally = tally
        self.budget = budget
        self.tag = uuid.uuid4().hex[:8]
        self.rng = random.Random(args.seed)
        self._ids = 0
        self._outcomes = [name for name, _ in OUTCOMES]
        self._weights = [share for _, share in OUTCOMES]

    def next_id(self, kind: str) -> str:
        self._ids += 1
        return f"soak-{self.tag}-{kind}{self._ids}"

    async def run(self, channel: grpc.aio.Channel) -> None:
        reservations = reservations_pb2_grpc.ReservationsStub(channel)
        inventory = inventory_pb2_grpc.InventoryStub(channel)
        await asyncio.gather(*(self._worker(reservations, inventory)
                               for _ in range(self.args.workers)))

    async def _worker(self, reservations: Any, inventory: Any) -> None:
        while (await self.budget.pace()) is None and (
            count := self.budget.take(self.args.batch_size)
        ):
            fulfilled: collections.Counter[tuple[str, str]] = collections.Counter()
            holds = sum(self.rng.random() < self.args.hold_share for _ in range(count))
            await self._round(reservations, count, fulfilled)
            await asyncio.gather(*(self._hold(inventory) for _ in range(holds)))
            await self._replenish(inventory, fulfilled)

    def _plan(self) -> Planned:
        """A reservation of 1-3 lines (distinct SKUs, explicit nodes, 1-3 units) and its end;
        the ones left to expire get the short ttl, the others the server's default."""
        outcome = self.rng.choices(self._outcomes, self._weights)[0]
        request = reservations_pb2.ReserveRequest(
            reservation_id=self.next_id("r"), lines=self._lines(), channel="soak",
            ttl_seconds=self.args.expire_ttl if outcome == "expire" else 0,
        )
        return Planned(outcome, request)

    def _lines(self) -> list[common_pb2.ReservationLine]:
        skus = self.rng.sample(range(self.args.skus), min(self.args.skus, self.rng.randint(1, 3)))
        return [
            common_pb2.ReservationLine(
                line_id=f"l{index}", sku=sku_name(sku),
                node_id=node_name(self.rng.randrange(self.args.nodes)),
                quantity=self.rng.randint(1, 3),
            )
            for index, sku in enumerate(skus)
        ]

    async def _round(self, stub: Any, count: int,
                     fulfilled: collections.Counter[tuple[str, str]]) -> None:
        plans = [self._plan() for _ in range(count)]
        batch = reservations_pb2.ReserveBatchRequest(requests=[plan.request for plan in plans])
        response = await self._call("ReserveBatch", stub.ReserveBatch, batch)
        if response is None:
            for plan in plans:
                self.tally.finish(plan.outcome, ok=False)
            return
        ends = []
        for plan, result in zip(plans, response.results, strict=True):
            if result.WhichOneof("result") == "reservation":
                ends.append(self._end(stub, plan, fulfilled))
            else:
                self.tally.failures[f"Reserve:{_CODE_NAMES.get(result.status.code)}"] += 1
                self.tally.finish(plan.outcome, ok=False)
        await asyncio.gather(*ends)

    async def _end(self, stub: Any, plan: Planned,
                   fulfilled: collections.Counter[tuple[str, str]]) -> None:
        rid = plan.request.reservation_id
        if plan.outcome == "expire":
            ok = True
        elif plan.outcome == "release":
            ok = await self._call("Release", stub.Release, reservations_pb2.ReleaseRequest(
                reservation_id=rid, request_id=self.next_id("q"))) is not None
        else:
            ok = await self._commit_and_fulfill(stub, rid)
            if ok:
                fulfilled.update({(line.sku, line.node_id): line.quantity
                                  for line in plan.request.lines})
        self.tally.finish(plan.outcome, ok)

    async def _commit_and_fulfill(self, stub: Any, rid: str) -> bool:
        commit = reservations_pb2.CommitRequest(reservation_id=rid, request_id=self.next_id("q"))
        if await self._call("Commit", stub.Commit, commit) is None:
            return False
        fulfill = reservations_pb2.FulfillRequest(reservation_id=rid, request_id=self.next_id("q"))
        return await self._call("Fulfill", stub.Fulfill, fulfill) is not None

    async def _hold(self, stub: Any) -> None:
        hold_id = self.next_id("h")
        hold = common_pb2.Hold(
            hold_id=hold_id, sku=sku_name(self.rng.randrange(self.args.skus)),
            node_id=node_name(self.rng.randrange(self.args.nodes)), quantity=1, reason="soak",
        )
        placed = inventory_pb2.PlaceHoldRequest(hold=hold)
        if await self._call("PlaceHold", stub.PlaceHold, placed) is not None:
            await self._call("ReleaseHold", stub.ReleaseHold,
                             inventory_pb2.ReleaseHoldRequest(hold_id=hold_id))

    async def _replenish(self, stub: Any, fulfilled: collections.Counter[tuple[str, str]]) -> None:
        """Receives what the round fulfilled, so that stock stays where it was."""
        if not fulfilled:
            return
        request = inventory_pb2.AdjustStockRequest(
            request_id=self.next_id("q"),
            movements=[receipt(sku, node, units) for (sku, node), units in fulfilled.items()],
        )
        await self._call("AdjustStock", stub.AdjustStock, request)

    async def _call(self, name: str, method: Any, request: Any) -> Any:
        try:
            response = await method(request, timeout=self.args.call_timeout)
        except grpc.aio.AioRpcError as error:
            self.tally.failures[f"{name}:{error.code().name}"] += 1
            return None
        self.tally.calls[name] += 1
        return response


# -- sampling --------------------------------------------------------------------------------


def data_file_sizes(data_dir: str) -> dict[str, int | None]:
    """data.mdb's apparent size and the bytes allocated to it (the file is sparse)."""
    try:
        info = os.stat(os.path.join(data_dir, "data.mdb"))
    except OSError:
        return {"data_file_bytes": None, "data_file_allocated_bytes": None}
    return {"data_file_bytes": info.st_size, "data_file_allocated_bytes": info.st_blocks * 512}


def lmdb_trees(data_dir: str) -> dict[str, Any]:
    """Entries and B-tree bytes of every database, read-only beside the running writer (as
    `atpctl db stat` does); `tree_bytes` is the pages in use, `high_water_bytes` the file's
    pages ever used (last_pgno + 1): free pages LMDB reuses lie between the two."""
    environment = lmdb.open(data_dir, readonly=True, lock=True, map_size=0, max_dbs=64,
                            subdir=True)
    try:
        with environment.begin() as transaction:
            page_bytes = environment.stat()["psize"]
            names = [key for key, _ in transaction.cursor()]
            trees = {name.decode(): transaction.stat(environment.open_db(name, txn=transaction,
                                                                        create=False))
                     for name in names}
            pages = sum(_pages(stat) for stat in trees.values()) + _pages(environment.stat())
            return {
                "tree_bytes": (pages + 2) * page_bytes,
                "high_water_bytes": (environment.info()["last_pgno"] + 1) * page_bytes,
                "entries": {name: stat["entries"] for name, stat in trees.items()},
                "tree_bytes_by_db": {name: _pages(stat) * page_bytes
                                     for name, stat in trees.items()},
            }
    finally:
        environment.close()


def _pages(stat: Any) -> int:
    return int(stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"])


def scrape(url: str) -> dict[str, float | None]:
    """The METRICS gauges from atpd's /metrics (None for absent ones, all None if it fails)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return dict.fromkeys(METRICS)
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return {name: values.get(name) for name in METRICS}


class Sampler:
    """Takes a sample every `sample_seconds` while a phase runs, and one at each phase edge."""

    def __init__(self, args: argparse.Namespace, data_dir: str, tally: Tally) -> None:
        self.args = args
        self.data_dir = data_dir
        self.tally = tally
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self._last: tuple[float, int] | None = None

    async def every_interval(self, server: SoakServer, phase: str) -> None:
        while True:
            await asyncio.sleep(self.args.sample_seconds)
            await self.take(server, phase)

    async def take(self, server: SoakServer, phase: str, edge: bool = False) -> dict[str, Any]:
        now, done = time.monotonic(), self.tally.done
        sample: dict[str, Any] = {
            "elapsed_s": round(now - self.started, 2), "phase": phase, "lifecycles": done,
            "lifecycles_failed": self.tally.failed, "lifecycles_per_s": None, "edge": edge,
        }
        if self._last is not None and now > self._last[0]:
            sample["lifecycles_per_s"] = round((done - self._last[1]) / (now - self._last[0]), 1)
        self._last = (now, done)
        sample.update(await asyncio.to_thread(self._server_figures, server))
        sample["client_cpu_s"] = round(time.process_time(), 2)
        self.samples.append(sample)
        print(progress_line(sample), flush=True)
        return sample

    def end_phase(self) -> None:
        self._last = None

    def _server_figures(self, server: SoakServer) -> dict[str, Any]:
        figures: dict[str, Any] = {key: None for key in ("rss_bytes", "hwm_bytes",
                                                         "rss_anon_bytes", "rss_file_bytes")}
        with contextlib.suppress(OSError):
            figures.update(tree_memory(server.process))
            figures["server_cpu_s"] = round(server.process.cpu_seconds(), 2)
        figures.update(data_file_sizes(self.data_dir))
        metrics = scrape(server.metrics_url)
        try:
            trees = lmdb_trees(self.data_dir)
        except lmdb.Error as error:
            trees = {"error": str(error)}
        figures["metrics"] = metrics
        figures["lmdb"] = trees
        used = metrics.get("atp_map_used_bytes")
        figures["map_used_bytes"] = used if used is not None else trees.get("tree_bytes")
        return figures


def tree_memory(process: ServerProcess) -> dict[str, Any]:
    """memory() of atpd; with --gateways, of all its processes summed (VmHWM: the sum of
    each one's peak), with each role's RSS beside (rss_by_role; gateways: the largest)."""
    if not process.gateways:
        return memory(process.pid)
    figures: dict[str, Any] = {}
    by_role: dict[str, int] = {}
    for pid, role in process.pids_by_role():
        try:
            one = memory(pid)
        except OSError:
            continue  # a child restarting
        for key, value in one.items():
            figures[key] = figures.get(key, 0) + value
        by_role[role] = max(by_role.get(role, 0), one.get("rss_bytes", 0))
    figures["rss_by_role"] = by_role
    return figures


def progress_line(sample: dict[str, Any]) -> str:
    metrics = sample["metrics"]
    rate = sample["lifecycles_per_s"]
    return (f"soak {sample['elapsed_s']:7.1f} s {sample['phase']:<8} "
            f"lifecycles {sample['lifecycles']:>10,} ({'-' if rate is None else f'{rate:,.0f}'}/s)"
            f"  RSS {_mib(sample['rss_bytes'])}  map used {_mib(sample['map_used_bytes'])}"
            f"  file {_mib(sample['data_file_allocated_bytes'])}"
            f"  closed {_count(metrics.get('atp_retained_closed_reservations'))}"
            f"  requests {_count(metrics.get('atp_idempotency_records'))}"
            f"  journal {_count(metrics.get('atp_retained_journal_events'))}"
            f"  held {_count(metrics.get(HELD_GAUGE))}")


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.1f} MiB"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Soak:
    """One run: its server, load, sampler and what they measured."""

    args: argparse.Namespace
    server: SoakServer
    data_dir: str
    result: dict[str, Any]
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self.budget = Budget(time.monotonic() + self.args.max_seconds, self.args.rate)
        self.load = Load(self.args, self.tally, self.budget)
        self.sampler = Sampler(self.args, self.data_dir, self.tally)

    async def phase(self, name: str, upto: int) -> None:
        """Drives lifecycles until `upto` have been handed out (or time is up), sampling."""
        self.budget.limit = upto
        await self.sampler.take(self.server, name, edge=True)
        sampling = asyncio.create_task(self.sampler.every_interval(self.server, name))
        try:
            async with grpc.aio.insecure_channel(self.server.target) as channel:
                await self.load.run(channel)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        await self.sampler.take(self.server, name, edge=True)
        self.sampler.end_phase()

    async def drive(self) -> None:
        total = self.args.lifecycles
        await self.phase("warm-up", max(1, round(total * self.args.restart_at)))
        if not self.budget.out_of_time:
            self.result["restarts"]["first"] = self.restart("first")
            await self.phase("main", total)
        self.result["restarts"]["last"] = self.restart("last")

    def restart(self, which: str) -> dict[str, Any]:
        print(f"soak: {which} restart ({self.args.restart_repeats}x) after "
              f"{self.tally.done:,} lifecycles", flush=True)
        at_elapsed_s = round(time.monotonic() - self.sampler.started, 2)
        outcome = restart(self.server, self.args.restart_repeats)
        outcome.update(after_lifecycles=self.tally.done, at_elapsed_s=at_elapsed_s)
        print(f"soak: {which} restart to serving {outcome['seconds']} s", flush=True)
        return outcome


def run(args: argparse.Namespace, result: dict[str, Any], data_dir: str, log_path: str) -> int:
    server = SoakServer(args, data_dir, log_path)
    try:
        result["first_start_s"] = round(server.start(), 3)
        result["seed"] = seed_stock(server.target, args.skus, args.nodes, args.call_timeout)
    except (RuntimeError, grpc.RpcError) as error:
        result["error"] = f"could not start or seed atpd: {error}"
        print(f"soak: {result['error']}", file=sys.stderr)
        server.process.kill()
        return 2
    soak = Soak(args, server, data_dir, result)
    code = 0
    try:
        asyncio.run(soak.drive())
    except RuntimeError as error:  # a restart found atpd not starting or not serving
        result["error"] = str(error)
        print(f"soak: {error}", file=sys.stderr)
        code = 1
    finally:
        result["samples"] = soak.sampler.samples
        result["tally"] = soak.tally.as_dict()
        result["final_stop"] = server.stop()
        result["capped_by_max_seconds"] = soak.tally.done < args.lifecycles
    return code


# -- judging ---------------------------------------------------------------------------------


def value_of(sample: dict[str, Any], key: str) -> Any:
    """A sample's figure, a gauge of its scrape, an LMDB entry count ("entries:holds") or a
    figure derived from them (DERIVED)."""
    if key in DERIVED:
        return DERIVED[key](sample)
    if key.startswith("entries:"):
        return sample.get("lmdb", {}).get("entries", {}).get(key.split(":", 1)[1])
    return sample[key] if key in sample else sample.get("metrics", {}).get(key)


# What the retention windows keep: ~ the load's rate x the window, so it follows the rate.
RETAINED_GAUGES = ("atp_retained_closed_reservations", "atp_idempotency_records",
                   "atp_retained_journal_events")


def retained_records(sample: dict[str, Any]) -> float | None:
    counts = [value_of(sample, name) for name in RETAINED_GAUGES]
    return None if None in counts else sum(counts)


def map_used_per_retained_record(sample: dict[str, Any]) -> float | None:
    """Map used bytes over the retained records: flat when the data in use grows only with
    what the windows keep (the load's recent rate), rising when something else piles up."""
    retained, used = retained_records(sample), sample.get("map_used_bytes")
    return round(used / retained, 1) if retained and used is not None else None


DERIVED = {
    "retained_records": retained_records,
    "map_used_bytes_per_retained_record": map_used_per_retained_record,
}


class Timeline:
    """A run's samples seen by lifecycle count: the windows the targets compare, medians
    and rates over them."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.samples: list[dict[str, Any]] = result.get("samples", [])
        self.total: int = result.get("tally", {}).get("lifecycles_done", 0)
        reference_at = result["config"]["reference_at"]
        self.reference = (reference_at, reference_at + REFERENCE_WIDTH)
        self.end = END_WINDOW

    def window(self, window: tuple[float, float], periodic: bool = False) -> list[dict[str, Any]]:
        """Samples whose lifecycle count lies in the window (fractions of the lifecycles
        done), only the periodic ones if asked; the nearest sample when none does."""
        samples = [s for s in self.samples if not (periodic and s["edge"])]
        low, high = window[0] * self.total, window[1] * self.total
        inside = [s for s in samples if low <= s["lifecycles"] <= high]
        if inside or not samples:
            return inside
        middle = (low + high) / 2
        return [min(samples, key=lambda s: abs(s["lifecycles"] - middle))]

    def drift(self, key: str) -> dict[str, Any]:
        """A figure's median over the reference window and over the end window, their ratio."""
        reference = median_of(self.window(self.reference), key)
        end = median_of(self.window(self.end), key)
        return {"reference": reference, "end": end, "ratio": ratio(end, reference)}

    def pace(self, window: tuple[float, float]) -> dict[str, float] | None:
        """Lifecycles/s, atpd's CPU ms per lifecycle and the cores it got, between the first
        and last periodic sample of the window (left out: a phase's edge samples, as the last
        one ends on the workers' tail of rounds); None across a restart."""
        inside = self.window(window, periodic=True)
        if len(inside) < 2 or inside[0]["phase"] != inside[-1]["phase"]:
            return None
        first, last = inside[0], inside[-1]
        seconds = last["elapsed_s"] - first["elapsed_s"]
        lifecycles = last["lifecycles"] - first["lifecycles"]
        cpu = (last.get("server_cpu_s") or 0.0) - (first.get("server_cpu_s") or 0.0)
        if seconds <= 0 or lifecycles <= 0:
            return None
        return {"per_s": round(lifecycles / seconds, 1),
                "server_cpu_ms_per_lifecycle": round(1000 * cpu / lifecycles, 3),
                "server_cores": round(cpu / seconds, 3)}


def median_of(samples: Iterable[dict[str, Any]], key: str) -> float | None:
    values = [value for s in samples if (value := value_of(s, key)) is not None]
    return statistics.median(values) if values else None


def ratio(later: float | None, earlier: float | None) -> float | None:
    return round(later / earlier, 3) if later is not None and earlier else None


def _window_text(window: tuple[float, float]) -> str:
    return f"{window[0]:.0%}-{window[1]:.0%}"


def state_target(timeline: Timeline, key: str, what: str) -> dict[str, Any]:
    """The figure's end median against its reference median; the rate of each window is
    shown beside (the retained state follows the rate of the last retention window)."""
    figures = timeline.drift(key)
    value = figures["ratio"]
    reference_pace, end_pace = timeline.pace(timeline.reference), timeline.pace(timeline.end)
    rates = (_count(_per_s(reference_pace)), _count(_per_s(end_pace)))
    return {
        "status": _status(value, value is not None and abs(value - 1) <= STATE_TOLERANCE),
        "target": f"{what} at {_window_text(timeline.end)} of the lifecycles within "
                  f"+-{STATE_TOLERANCE:.0%} of {_window_text(timeline.reference)} (medians)",
        "shown": f"{_mib(figures['reference'])} -> {_mib(figures['end'])} = x{value} "
                 f"(at {rates[0]} -> {rates[1]} lifecycles/s)",
        "reference_pace": reference_pace, "end_pace": end_pace,
        **figures,
    }


def throughput_target(timeline: Timeline, warmup: float) -> dict[str, Any]:
    """The last tenth after the warm-up against the first; atpd's CPU per lifecycle and the
    cores it got are shown beside, to tell a slower atpd from a busier machine."""
    tenth = (1 - warmup) / 10
    first_window, last_window = (warmup, warmup + tenth), (1 - tenth, 1.0)
    first, last = timeline.pace(first_window), timeline.pace(last_window)
    value = ratio(_per_s(last), _per_s(first))
    return {
        "status": _status(value, value is not None and value >= THROUGHPUT_FLOOR),
        "target": f"lifecycles/s over {_window_text(last_window)} >= {THROUGHPUT_FLOOR} x over "
                  f"{_window_text(first_window)} (the first and last tenth after a "
                  f"{warmup:.0%} warm-up)",
        "shown": f"{_pace_text(first)} -> {_pace_text(last)} = x{value}",
        "first": first, "last": last, "ratio": value,
    }


def _per_s(pace: dict[str, float] | None) -> float | None:
    return None if pace is None else pace["per_s"]


def _pace_text(pace: dict[str, float] | None) -> str:
    if pace is None:
        return "n/a"
    return (f"{pace['per_s']:,.0f}/s ({pace['server_cpu_ms_per_lifecycle']:.2f} ms atpd CPU per "
            f"lifecycle, {pace['server_cores']:.2f} cores)")


def restart_target(restarts: dict[str, Any]) -> dict[str, Any]:
    first = restarts.get("first", {}).get("median_s")
    last = restarts.get("last", {}).get("median_s")
    value = ratio(last, first)
    return {
        "status": _status(value, value is not None and value <= RESTART_CEILING),
        "target": f"final restart to serving <= {RESTART_CEILING} x the first (medians)",
        "shown": f"{first} s -> {last} s = x{value}",
        "first_s": first, "last_s": last, "ratio": value,
    }


def _status(value: float | None, passed: bool) -> str:
    if value is None:
        return "n/a"
    return "PASS" if passed else "FAIL"


def judge(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    timeline = Timeline(result)
    return {
        "rss": state_target(timeline, "rss_bytes", "RSS (VmRSS)"),
        "map_used": state_target(timeline, "map_used_bytes", "map used bytes"),
        "throughput": throughput_target(timeline, result["config"]["warmup"]),
        "restart": restart_target(result.get("restarts", {})),
    }


# Figures not judged, shown beside the targets: where growth is, when there is some.
INFORMATIONAL = (
    "rss_anon_bytes", "rss_file_bytes", "data_file_allocated_bytes",
    "atp_retained_closed_reservations", "atp_idempotency_records",
    "atp_retained_journal_events", HELD_GAUGE, 'atp_reservations{state="COMMITTED"}',
    "entries:closed", "entries:requests", "entries:journal", "entries:holds",
    "entries:ended_holds", "entries:reservations", "retained_records",
    "map_used_bytes_per_retained_record",
)


def informational(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    timeline = Timeline(result)
    return {key: timeline.drift(key) for key in INFORMATIONAL}


def notes(result: dict[str, Any]) -> list[str]:
    """Caveats on the judging: a reference window taken before the retained state can have
    levelled off (it takes a few retention windows)."""
    timeline = Timeline(result)
    reference = timeline.window(timeline.reference)
    settle_s = SETTLE_RETENTIONS * parse_duration(result["config"]["retention"])
    if reference and reference[0]["elapsed_s"] < settle_s:
        started_s = reference[0]["elapsed_s"]
        note = (f"the reference window starts {started_s:.0f} s into the run, before "
                f"{SETTLE_RETENTIONS} x the retention ({settle_s:.0f} s): the retained state "
                f"may not have levelled off yet (run longer, or pass a later --reference-at)")
        return [note]
    return []


def sanity(result: dict[str, Any]) -> list[str]:
    """Why the run's figures cannot be trusted; [] when they can."""
    problems = []
    tally = result.get("tally", {})
    done, failed = tally.get("lifecycles_done", 0), tally.get("lifecycles_failed", 0)
    if done == 0:
        problems.append("no lifecycle was driven")
    elif failed > FAILURE_SHARE_MAX * done:
        problems.append(f"{failed:,} of {done:,} lifecycles failed: {tally.get('failures')}")
    if not any(s.get("rss_bytes") for s in result.get("samples", [])):
        problems.append("no sample read atpd's RSS")
    stops = [stop for which in ("first", "last")
             for stop in result.get("restarts", {}).get(which, {}).get("stops", [])]
    stops.append(result.get("final_stop", {"exit_code": None}))
    if any(stop["exit_code"] != 0 for stop in stops):
        problems.append(f"atpd did not always exit 0 on SIGTERM: {stops}")
    return problems


def summary(result: dict[str, Any]) -> dict[str, Any]:
    samples = result.get("samples", [])
    last = samples[-1] if samples else {}
    return {
        "lifecycles_done": result.get("tally", {}).get("lifecycles_done"),
        "seconds": last.get("elapsed_s"),
        "peak_rss_bytes": max((s["rss_bytes"] or 0 for s in samples), default=None),
        "final_rss_bytes": last.get("rss_bytes"),
        "final_map_used_bytes": last.get("map_used_bytes"),
        "final_data_file_allocated_bytes": last.get("data_file_allocated_bytes"),
        "peak_data_file_allocated_bytes": max(
            (s["data_file_allocated_bytes"] or 0 for s in samples), default=None),
        "final_lmdb_entries": last.get("lmdb", {}).get("entries"),
    }


# -- outputs ---------------------------------------------------------------------------------


def plot(path: str, result: dict[str, Any]) -> str | None:
    """RSS, disk, retained counts and throughput over time; a note instead without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install -e '.[bench]' to get one)"
    samples = result["samples"]
    figure, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    _plot_series(axes[0], samples, {"VmRSS": "rss_bytes", "RssAnon": "rss_anon_bytes"},
                 MIB, "atpd memory (MiB)")
    _plot_series(axes[1], samples, {"data.mdb allocated": "data_file_allocated_bytes",
                                    "map used": "map_used_bytes"}, MIB, "disk (MiB)")
    counts = {"closed retained": "atp_retained_closed_reservations",
              "idempotency records": "atp_idempotency_records",
              "journal events": "atp_retained_journal_events",
              "HELD": HELD_GAUGE,
              "COMMITTED": 'atp_reservations{state="COMMITTED"}'}
    _plot_series(axes[2], [{**s, **s["metrics"]} for s in samples], counts, 1, "retained / open")
    _plot_series(axes[3], samples, {"lifecycles/s": "lifecycles_per_s"}, 1, "throughput")
    for axis in axes:
        for point in result.get("restarts", {}).values():
            axis.axvline(point["at_elapsed_s"], color="grey", linestyle=":", linewidth=1)
    axes[-1].set_xlabel("seconds since start (dotted: restarts)")
    config = result["config"]
    figure.suptitle(f"atpd soak {result['started_at']}: {config['lifecycles']:,} lifecycles, "
                    f"sync {config['sync']}, retention {config['retention']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None


def _plot_series(axis: Any, samples: list[dict[str, Any]], series: dict[str, str],
                 unit: float, title: str) -> None:
    for label, key in series.items():
        points = [(s["elapsed_s"], s[key] / unit) for s in samples if s.get(key) is not None]
        if points:
            axis.plot(*zip(*points, strict=True), marker=".", markersize=3, label=label)
    axis.set_ylabel(title)
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")


def result_paths(results_dir: str, stamp: str) -> dict[str, str]:
    report.ensure_dir(results_dir)
    base = os.path.join(results_dir, f"soak-{stamp}")
    suffix = 1
    while os.path.exists(base + ".json"):
        suffix += 1
        base = os.path.join(results_dir, f"soak-{stamp}-{suffix}")
    return {"json": base + ".json", "png": base + ".png"}


def print_summary(result: dict[str, Any]) -> None:
    figures = result["summary"]
    print(f"soak: {figures['lifecycles_done']:,} lifecycles in {figures['seconds']} s; "
          f"peak RSS {_mib(figures['peak_rss_bytes'])}, final {_mib(figures['final_rss_bytes'])}; "
          f"map used {_mib(figures['final_map_used_bytes'])}; data.mdb allocated "
          f"{_mib(figures['final_data_file_allocated_bytes'])}", flush=True)
    if result["config"]["smoke"]:
        print("  (smoke: the targets are shown, not judged)", flush=True)
    for entry in result["targets"].values():
        print(f"  {entry['status']:<4} {entry['target']}: {entry['shown']}", flush=True)
    per_record = result["informational"]["map_used_bytes_per_retained_record"]
    print(f"  not judged: map used bytes per retained record (closed reservations + "
          f"idempotency records + journal events) {_count(per_record['reference'])} -> "
          f"{_count(per_record['end'])} = x{per_record['ratio']}", flush=True)
    growing = {key: entry["ratio"] for key, entry in result["informational"].items()
               if entry["ratio"] is not None and abs(entry["ratio"] - 1) > STATE_TOLERANCE}
    if growing:
        print(f"  not judged, moved beyond +-{STATE_TOLERANCE:.0%} (end / reference): "
              + ", ".join(f"{key} x{value}" for key, value in growing.items()), flush=True)
    for note in result["notes"]:
        print(f"  note: {note}", flush=True)
    for problem in result["sanity_problems"]:
        print(f"  PROBLEM: {problem}", flush=True)


def assess(result: dict[str, Any]) -> None:
    result["summary"] = summary(result)
    result["targets"] = judge(result)
    result["informational"] = informational(result)
    result["notes"] = notes(result)
    result["sanity_problems"] = sanity(result)


def rejudge(args: argparse.Namespace) -> int:
    """Judges an earlier run's samples again with this run's windows; writes nothing."""
    with open(args.rejudge, encoding="utf-8") as source:
        result = json.load(source)
    result["config"].update(reference_at=args.reference_at, warmup=args.warmup)
    assess(result)
    print(f"soak: {args.rejudge} judged again with --reference-at {args.reference_at} "
          f"--warmup {args.warmup}", flush=True)
    print_summary(result)
    return exit_code(result, 0)


def exit_code(result: dict[str, Any], setup_code: int) -> int:
    if setup_code:
        return setup_code
    if result["sanity_problems"]:
        return 1
    if result["config"]["smoke"]:
        return 0
    return 0 if all(t["status"] == "PASS" for t in result["targets"].values()) else 1


def _config(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("lifecycles", "workers", "batch_size", "skus", "nodes", "hold_share", "expire_ttl",
            "sample_seconds", "max_seconds", "retention", "journal_retention_events",
            "restart_at", "restart_repeats", "warmup", "reference_at", "sync", "call_timeout",
            "seed", "smoke")
    config = {key: getattr(args, key) for key in keys}
    config["outcomes"] = dict(OUTCOMES)
    return config


def _interrupt(signal_number: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal_number}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rejudge:
        return rejudge(args)
    # SIGTERM, or SIGINT even when started in the background (which ignores it), ends the
    # run as Ctrl-C does: atpd is stopped and what was measured is written.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    started_at = datetime.datetime.now().astimezone()
    paths = result_paths(args.results_dir, started_at.strftime("%Y%m%d-%H%M%S"))
    result: dict[str, Any] = {
        "schema": "atp-bench-soak/1",
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.soak", *(sys.argv[1:] if argv is None else argv)]),
        "host": _host(), "git_commit": _git_commit(), "src_changes": _src_changes(),
        "config": _config(args), "files": paths, "restarts": {},
    }
    print(f"soak: {args.lifecycles:,} lifecycles, {args.workers} workers x batches of "
          f"{args.batch_size}, {args.skus:,} SKUs x {args.nodes} nodes, sync {args.sync}, "
          f"retention {args.retention}", flush=True)
    work_dir = tempfile.mkdtemp(prefix="atp-soak-")
    data_dir = args.data_dir or os.path.join(work_dir, "data")
    try:
        code = run(args, result, data_dir, os.path.join(work_dir, "atpd.log"))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("soak: interrupted", file=sys.stderr)
        code = 130
    result["finished_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["git_commit_at_end"], result["src_changes_at_end"] = _git_commit(), _src_changes()
    result["src_changed_during_run"] = (
        (result["git_commit_at_end"], result["src_changes_at_end"])
        != (result["git_commit"], result["src_changes"]))
    if result["src_changed_during_run"]:
        print("soak: WARNING: the code under src/ changed during the run (commit or working "
              "tree): the restarted servers may have run other code", file=sys.stderr)
    assess(result)
    result["exit_code"] = exit_code(result, code)
    note = plot(paths["png"], result) if result.get("samples") else "no samples: no plot"
    if note:
        print(f"soak: {note}", file=sys.stderr)
        result["files"]["png"] = None
    report.write_json(paths["json"], result)
    print_summary(result)
    if result["exit_code"] or args.keep_data:
        print(f"soak: data dir and server log kept in {work_dir}", file=sys.stderr)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"results: {paths['json']}", flush=True)
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
