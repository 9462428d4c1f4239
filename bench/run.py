"""Bench runner: fresh atpd, seed, workloads from a multi-process load generator, audit, report.

    python -m bench.run [--workloads reserve,batch] [--duration 10] [--processes 2] ...
    python -m bench.run --smoke          # tiny sizes, 0.5 s per workload (the test uses it)

Exit code 0: every workload ran and the audit passed; 1: the audit found oversell or drift,
or a workload's workers failed; 2: the server could not be started or seeded.
Results: <results-dir>/<timestamp>.json, .md and .png (the PNG needs matplotlib).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import bench
from bench import report
from bench.audit import audit
from bench.catalog import Catalog
from bench.context import Params
from bench.seed import seed
from bench.server import ServerProcess
from bench.workloads import WORKLOADS

# name: (default, smoke default)
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "duration": (10.0, 0.5),
    "processes": (2, 2),
    "concurrency": (32, 4),
    "skus": (10_000, 200),
    "nodes": (5, 3),
    "hot_share": (0.2, 0.2),
    "hot_skus": (10, 10),
    "batch_size": (500, 20),
    "batch_concurrency": (4, 2),
    "streams": (8, 2),
    "promise_nodes": (50, 10),
    "promise_skus": (2_000, 50),
    "regions": (10, 10),
    "max_calls": (2_000_000, 50_000),
    "call_timeout": (30.0, 10.0),
}
# Seconds a workload may overrun duration + call timeout before its workers are given up on.
_OVERRUN_S = 30.0


class HarnessError(Exception):
    """The load generator itself failed (a worker crashed or hung)."""


class _SetupFailed(Exception):
    """The server could not be started or seeded."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Start a fresh atpd, run load workloads against it, audit the ledger, "
        "write bench/results/<timestamp>.{json,md,png}.",
    )
    names = ", ".join(WORKLOADS)
    parser.add_argument("--workloads", default="all",
                        help=f"comma-separated subset of: {names} (default all; the baseline "
                        "always runs first, every ratio needs it)")
    parser.add_argument("--duration", type=float, help="seconds per workload (10; smoke 0.5)")
    parser.add_argument("--max-calls", type=int, dest="max_calls",
                        help="most calls per workload over all processes (2,000,000)")
    parser.add_argument("--processes", type=int, help="load-generator processes (2)")
    parser.add_argument("--concurrency", type=int, help="in-flight calls per process (32)")
    parser.add_argument("--skus", type=int, help="SKUs of the reservation network (10,000)")
    parser.add_argument("--nodes", type=int, help="nodes of the reservation network (5)")
    parser.add_argument("--hot-share", type=float, dest="hot_share",
                        help="share of calls on the hot SKUs (0.2)")
    parser.add_argument("--hot-skus", type=int, dest="hot_skus", help="hot SKUs (10)")
    parser.add_argument("--batch-size", type=int, dest="batch_size",
                        help="mean-ish ReserveBatch size: each call draws size/5 .. 2*size, "
                        "at most 1000 (500)")
    parser.add_argument("--batch-concurrency", type=int, dest="batch_concurrency",
                        help="ReserveBatch calls in flight per process (4): keeps the reservations "
                        "waiting for a commit under the server's 20,000 limit")
    parser.add_argument("--streams", type=int,
                        help="ReserveStream streams per process (8); each keeps "
                        "concurrency/streams messages in flight")
    parser.add_argument("--promise-nodes", type=int, dest="promise_nodes",
                        help="nodes of the promise network (50)")
    parser.add_argument("--promise-skus", type=int, dest="promise_skus",
                        help="SKUs of the promise network (2,000)")
    parser.add_argument("--regions", type=int, help="regions = lanes per promise node (10)")
    parser.add_argument("--call-timeout", type=float, dest="call_timeout",
                        help="deadline of each call in seconds (30)")
    parser.add_argument("--baseline", choices=("each", "once"), default="each",
                        help="each (default): run the baseline before every workload and after "
                        "the last, and rate each workload against the mean of the baselines "
                        "just before and after it, so a shared machine's drift during the run "
                        "does not skew the ratios; once: one baseline first")
    parser.add_argument("--sync", choices=("on", "off"), default="on",
                        help="atpd --sync: on = fsync every group commit (default)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--gateways", type=int, default=0,
                        help="atpd --gateways N: a writer and N gateway processes; the CPU "
                        "of each role is reported (0: one process, the default)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and 0.5 s per workload (for the smoke test)")
    parser.add_argument("--results-dir", dest="results_dir",
                        default=os.path.join(bench.REPO_ROOT, "bench", "results"),
                        help="where the JSON/markdown/PNG go (bench/results)")
    parser.add_argument("--skip-restart-check", action="store_true",
                        help="audit without restarting the server to compare GetAvailability")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the temporary data dir (always kept when the run fails)")
    args = parser.parse_args(argv)
    for name, (normal, smoke) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else normal)
    selected = list(WORKLOADS) if args.workloads == "all" else [
        w.strip() for w in args.workloads.split(",") if w.strip()
    ]
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {names}")
    if "baseline" in selected:
        selected.remove("baseline")
    args.selected = ["baseline", *[w for w in WORKLOADS if w in selected]]
    problems = [
        f"--{name.replace('_', '-')} must be > 0"
        for name in ("duration", "processes", "concurrency", "skus", "nodes", "hot_skus",
                     "batch_size", "batch_concurrency", "streams", "promise_nodes",
                     "promise_skus", "regions", "max_calls", "call_timeout")
        if getattr(args, name) <= 0
    ]
    if not 0.0 <= args.hot_share <= 1.0:
        problems.append("--hot-share must be within 0..1")
    if args.batch_size > 1000:
        problems.append("--batch-size must be at most 1000")
    if problems:
        parser.error("; ".join(problems))
    return args


class WorkerPool:
    """N spawned load-generator processes, reused for every workload."""

    def __init__(self, processes: int) -> None:
        from bench import worker

        context = multiprocessing.get_context("spawn")
        self.size = processes
        self.progress = context.Array("q", 3 * processes, lock=False)
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in range(processes)]
        self.processes = [
            context.Process(
                target=worker.main, args=(index, self.commands[index], self.results, self.progress),
                name=f"bench-worker-{index}", daemon=True,
            )
            for index in range(processes)
        ]
        for process in self.processes:
            process.start()

    def run(self, name: str, params: Params, ready_timeout_s: float, limit_s: float,
            on_tick: Any) -> tuple[list[dict[str, Any]], float, float]:
        """Runs one workload on every worker; returns (results, start, end) in monotonic time."""
        for commands in self.commands:
            commands.put(("run", name, params))
        ready: set[int] = set()
        failures: list[str] = []
        deadline = time.monotonic() + ready_timeout_s
        while len(ready) + len(failures) < self.size:
            message = self._get(deadline, "to connect")
            if message[0] == "ready":
                ready.add(message[1])
            elif message[0] == "failed":
                failures.append(message[2])
        if failures:
            for index in ready:
                self.commands[index].put(("skip",))
            for _ in ready:
                self._get(time.monotonic() + 30, "to stand down")
            raise HarnessError(failures[0])
        started = time.monotonic()
        for commands in self.commands:
            commands.put(("go",))
        results: list[dict[str, Any]] = []
        next_tick = started + 1.0
        limit = started + limit_s
        while len(results) + len(failures) < self.size:
            now = time.monotonic()
            if now > limit:
                raise HarnessError(f"workers did not finish {name} within {limit_s:.0f} s")
            try:
                message = self.results.get(timeout=max(0.0, min(next_tick, limit) - now))
            except queue.Empty:
                message = None
            if message is not None:
                if message[0] == "done":
                    results.append(message[2])
                elif message[0] == "failed":
                    failures.append(message[2])
            if time.monotonic() >= next_tick and len(results) + len(failures) < self.size:
                on_tick(time.monotonic() - started, self.totals())
                next_tick += 1.0
        ended = time.monotonic()
        if failures:
            raise HarnessError(failures[0])
        return results, started, ended

    def _get(self, deadline: float, what: str) -> Any:
        try:
            return self.results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise HarnessError(f"workers took too long {what}") from None

    def totals(self) -> tuple[int, int, int]:
        values = list(self.progress)
        return sum(values[0::3]), sum(values[1::3]), sum(values[2::3])

    def close(self) -> None:
        for commands in self.commands:
            try:
                commands.put(("exit",))
            except (ValueError, OSError):
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)


def _host() -> dict[str, Any]:
    import grpc

    return {
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=bench.REPO_ROOT, capture_output=True, text=True,
            timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


def _result_paths(results_dir: str, stamp: str) -> dict[str, str]:
    report.ensure_dir(results_dir)
    base = os.path.join(results_dir, stamp)
    suffix = 1
    while os.path.exists(base + ".json"):
        suffix += 1
        base = os.path.join(results_dir, f"{stamp}-{suffix}")
    return {"json": base + ".json", "md": base + ".md", "png": base + ".png"}


def _config(args: argparse.Namespace) -> dict[str, Any]:
    keys = ["workloads", "duration", "max_calls", "processes", "concurrency", "skus", "nodes",
            "hot_share", "hot_skus", "batch_size", "batch_concurrency", "streams",
            "promise_nodes", "promise_skus", "regions", "call_timeout", "sync", "seed", "smoke",
            "gateways"]
    config = {key: getattr(args, key) for key in keys}
    config["workloads"] = args.selected
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.datetime.now().astimezone()
    paths = _result_paths(args.results_dir, started_at.strftime("%Y%m%d-%H%M%S"))
    run_tag = uuid.uuid4().hex[:8]
    catalog = Catalog(
        skus=args.skus, nodes=args.nodes, hot_skus=min(args.hot_skus, args.skus),
        promise_nodes=args.promise_nodes, promise_skus=args.promise_skus,
        regions=args.regions, seed=args.seed,
    )
    result: dict[str, Any] = {
        "schema": "atp-bench/1",
        "started_at": started_at.isoformat(timespec="seconds"),
        "host": _host(),
        "git_commit": _git_commit(),
        "config": _config(args),
        "workloads": {},
        "workload_failures": {},
        "notes": [],
        "files": paths,
    }
    print(f"bench: {', '.join(args.selected)}; {args.processes} processes x {args.concurrency} "
          f"in flight, {args.duration:g} s each, sync {args.sync}", flush=True)
    temp_dir = tempfile.mkdtemp(prefix="atp-bench-")
    server = ServerProcess(os.path.join(temp_dir, "data"), args.sync,
                           os.path.join(temp_dir, "atpd.log"), gateways=args.gateways)
    pool = WorkerPool(args.processes)
    keep_data = args.keep_data
    exit_code = 1
    try:
        try:
            server.start()
            print(f"bench: atpd pid {server.pid} on {server.target}, data {server.data_dir}",
                  flush=True)
            seeded = seed(server.target, catalog, run_tag)
        except Exception as error:
            raise _SetupFailed(str(error)) from error
        stocked = seeded.pop("stocked")
        result["seed"] = seeded
        print(f"bench: seeded {seeded['nodes']} nodes, {seeded['positions']:,} positions "
              f"in {seeded['seconds']} s", flush=True)
        acked: dict[str, int] = {}
        baseline_runs: list[float] = []
        for name in _schedule(args):
            figures = _run_workload(pool, server, args, catalog, run_tag, name)
            if isinstance(figures, str):
                # A crashed or hung worker leaves the pool in an unknown state: stop here.
                result["workload_failures"][name] = figures
                break
            if name == "baseline":
                baseline_runs.append(figures["calls_per_s"])
                result["workloads"].setdefault("baseline", figures)
                if figures["ok_calls"] == 0:
                    print("bench: the baseline had no OK call; ratios are meaningless",
                          file=sys.stderr)
                continue
            figures["_baseline_before"] = len(baseline_runs) - 1  # index of the run before it
            result["workloads"][name] = figures
            for key in ("reservations_acked", "units_fulfilled_acked"):
                acked[key] = acked.get(key, 0) + figures["counters"].get(key, 0)
        result["baseline_runs_calls_per_s"] = baseline_runs
        _rate_against_adjacent(result["workloads"], baseline_runs)
        result["baseline_calls_per_s"] = report.add_ratios(result["workloads"], baseline_runs)
        _compare_rules(result)
        print("bench: auditing (SIGTERM, verify, recompute every position, restart)", flush=True)
        result["audit"] = audit(server, stocked, acked, restart=not args.skip_restart_check)
        passed = result["audit"]["passed"] and not result["workload_failures"]
        exit_code = 0 if passed else 1
        if not passed:
            keep_data = True
    except _SetupFailed as error:
        print(f"bench: setup failed: {error}", file=sys.stderr)
        keep_data = True
        exit_code = 2
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        print("bench: interrupted", file=sys.stderr)
        exit_code = 130
    finally:
        pool.close()
        if server.process is not None:
            server.kill()
    result["finished_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["passed"] = exit_code == 0
    result["exit_code"] = exit_code
    if "audit" in result:
        _write_outputs(result, paths)
    if keep_data:
        print(f"bench: data dir and server log kept in {temp_dir}", file=sys.stderr)
    else:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return exit_code


def _compare_rules(result: dict[str, Any]) -> None:
    """`reserve_rules` against `reserve`, each as its ratio to the baselines around it: what
    an allocation policy and channel allocations cost a Reserve (issue 18: within 10%)."""
    workloads = result["workloads"]
    plain, ruled = workloads.get("reserve"), workloads.get("reserve_rules")
    if not plain or not ruled or not plain.get("ratio_to_baseline"):
        return
    change = ruled["ratio_to_baseline"] / plain["ratio_to_baseline"] - 1
    result["rules_throughput_change"] = round(change, 3)
    print(f"bench: reserve under allocation rules {ruled['ratio_to_baseline']:.3f} x baseline "
          f"against {plain['ratio_to_baseline']:.3f} x without: {change:+.1%}", flush=True)


def _schedule(args: argparse.Namespace) -> list[str]:
    """The order of runs: with --baseline each, a baseline before every workload and at the end."""
    workloads = [name for name in args.selected if name != "baseline"]
    if args.baseline == "once" or not workloads:
        return ["baseline", *workloads]
    return [run for name in workloads for run in ("baseline", name)] + ["baseline"]


def _rate_against_adjacent(
    workloads: dict[str, dict[str, Any]], baseline_runs: list[float]
) -> None:
    """Sets each workload's baseline_calls_per_s: the mean of the baseline run just before it
    and the one just after it (only the one before when the run stopped early)."""
    for figures in workloads.values():
        before = figures.get("_baseline_before")
        if before is not None:
            around = baseline_runs[before:before + 2]
            figures["baseline_calls_per_s"] = round(sum(around) / len(around), 1)


PROJECTED_CORES = (4, 8, 16, 32)


def projected_throughput(cpu_us_by_role: dict[str, float], follow_us: float = 0.0,
                         gateways: int = 1) -> dict[int, float]:
    """What the measured CPU per unit allows on machines of PROJECTED_CORES cores: the
    writer has one core and caps the rate; the gateways share the others. A projection from
    CPU cost alone (no contention, no load generator on the machine), not a measurement.

    Every gateway applies every write to its copy of the ledger, whichever gateway took it:
    `follow_us` is what all `gateways` gateways measured spent on their copies per unit. So
    a unit costs g gateways T + g*F: T their CPU per unit less the copies', paid once, and
    F = follow_us / gateways, paid by each. The rate at C cores (g = C - 1) is
    min(1e6 / writer, g * 1e6 / (T + g * F)): with writes, more gateways add less and less."""
    writer_us = max(cpu_us_by_role.get("writer", 0.0), 1e-3)
    per_copy = follow_us / max(gateways, 1)
    per_call = max(cpu_us_by_role.get("gateway", 0.0) - follow_us, 1e-3)
    return {cores: round(min(1e6 / writer_us,
                             (cores - 1) * 1e6 / (per_call + (cores - 1) * per_copy)))
            for cores in PROJECTED_CORES}


def _run_workload(
    pool: WorkerPool, server: ServerProcess, args: argparse.Namespace, catalog: Catalog,
    run_tag: str, name: str,
) -> dict[str, Any] | str:
    """Figures of one workload, or the failure text when its workers failed."""
    workload = WORKLOADS[name]
    setup: dict[str, object] = {}
    if workload.setup is not None:
        setup = workload.setup(server.target, catalog)
        print(f"  {name:<12} setup  {setup}", flush=True)
    params = Params(
        target=server.target,
        tag=f"{run_tag}-{name}",  # unique per workload: reserve and reserve_rules
        duration_s=args.duration,
        max_calls=max(1, args.max_calls // args.processes),
        concurrency=args.concurrency,
        batch_concurrency=args.batch_concurrency,
        batch_size=args.batch_size,
        streams=args.streams,
        hot_share=args.hot_share,
        call_timeout_s=args.call_timeout,
        seed=args.seed,
        catalog=catalog,
    )
    unit = workload.unit

    def tick(elapsed: float, totals: tuple[int, int, int]) -> None:
        ok, units, errors = totals
        rate = (units if unit != "calls" else ok) / elapsed if elapsed > 0 else 0.0
        extra = f"  ({ok / elapsed:,.0f} calls/s)" if unit != "calls" else ""
        print(f"  {name:<12} {elapsed:5.1f}s  ok {units if unit != 'calls' else ok:>10,}  "
              f"{rate:>10,.0f} {unit}/s{extra}  errors {errors:,}", flush=True)

    cpu_before, follow_before = server.cpu_seconds_by_role(), server.follow_cpu_seconds()
    try:
        results, _, _ = pool.run(name, params, ready_timeout_s=30.0 + args.call_timeout,
                                 limit_s=args.duration + args.call_timeout + _OVERRUN_S,
                                 on_tick=tick)
    except HarnessError as error:
        print(f"  {name:<12} FAILED: {error}", file=sys.stderr)
        return str(error)
    cpu_after, follow_after = server.cpu_seconds_by_role(), server.follow_cpu_seconds()
    by_role = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
    figures = report.merge(name, workload.description, unit, results, sum(by_role.values()))
    if setup:
        figures["setup"] = setup
    if args.gateways:  # CPU microseconds per unit of each role
        units = max(1, figures["ok_units"])
        figures["cpu_us_per_unit_by_role"] = {
            role: round(seconds / units * 1e6, 1) for role, seconds in by_role.items()}
        print(f"  {name:<12} CPU per {unit.removesuffix('s')}: " + ", ".join(
            f"{role} {us:,.0f} µs" for role, us in figures["cpu_us_per_unit_by_role"].items()),
            flush=True)
        # Of the gateways' CPU, what keeping their copies cost (a restarted gateway's
        # counter starts again: never below 0).
        figures["follow_cpu_us_per_unit"] = round(
            max(follow_after - follow_before, 0.0) / units * 1e6, 1)
        print(f"  {name:<12} of the gateways' CPU, keeping their copies: "
              f"{figures['follow_cpu_us_per_unit']:,.1f} µs per {unit.removesuffix('s')} "
              f"({args.gateways} copies)", flush=True)
        figures["projected_per_s_at_cores"] = projected_throughput(
            figures["cpu_us_per_unit_by_role"], figures["follow_cpu_us_per_unit"],
            args.gateways)
        print(f"  {name:<12} projected {unit}/s: " + ", ".join(
            f"{cores} cores {rate:,.0f}" for cores, rate in
            figures["projected_per_s_at_cores"].items()), flush=True)
    lat = figures["latency_ms"]
    errors = report.errors_text(figures)
    print(f"  {name:<12} done   {figures['throughput_per_s']:,.0f} {unit}/s over "
          f"{figures['elapsed_s']:.2f} s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
          f"errors {errors}, server CPU {figures['server_cpu_s']:.2f} s", flush=True)
    return figures


def _write_outputs(result: dict[str, Any], paths: dict[str, str]) -> None:
    note = report.plot(paths["png"], result)
    if note:
        result["notes"].append(note)
        result["files"]["png"] = None
        print(f"bench: {note}", file=sys.stderr)
    report.write_json(paths["json"], result)
    with open(paths["md"], "w", encoding="utf-8") as out:
        out.write(report.markdown(result))
    print(f"bench: audit {'PASSED' if result['audit'].get('passed') else 'FAILED'}; "
          f"results in {paths['json']} (+ .md{'' if note else ', .png'})", flush=True)
    print(f"results: {paths['json']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
