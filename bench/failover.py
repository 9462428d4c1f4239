"""Failover bench: what replication and failover on etcd cost and how fast they are.

    python -m bench.failover [--kills 10] [--seconds 10] [--processes 2] [--concurrency 8]

In one run, each part on fresh clusters (tests.support.cluster: one real etcd, atpd members
with --cluster, --lease-ttl 3s) loaded by tests.support.loader processes (Reserve of 1-3 units
with unique ids, following the leader, retrying with the same ids):

(a) throughput: a 2-member cluster with --sync-replicas 0, then a fresh one with 1, the same
    load for `--seconds` each; acknowledged reservations/s of each and the ratio 1/0
    (target >= 0.7);
(b) replication lag, measured end to end during (a): every 100 ms a probe Reserve on the
    leader, then a GetReservation with min_sequence = its atp-commit-sequence on the follower:
    lag = the time from the leader's acknowledgement to the follower's answer (it includes
    one read round trip under load: an upper bound). p50/p99 per setting. The leader's own
    view (Status followers[].lag_commits and lag_seconds, sampled every 100 ms) is kept in the
    JSON beside it;
(c) failover: a 3-member cluster with --sync-replicas 1 under load, `--kills` times kill -9 of
    the leader: the time to an agreed new leader (every member's Status), to the first
    acknowledged write on it (failover time: target p50/max <= 5 s), and for the killed member,
    restarted, to catch up. Afterwards an audit: every acknowledged reservation is on the last
    leader, and no two members acknowledged writes in one term.

Writes bench/results/failover-<timestamp>.json and prints a table; the last stdout line is
`results: <path of the JSON>`. Exit code 0: every part ran, every target met and the audit
passed; 1: a target missed, the audit failed, or a member did not catch up after a kill (the
kill loop stops there); 2: a cluster could not be started.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

import bench
from atp.v1 import (
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from bench.report import latency_summary, percentile
from bench.run import _git_commit, _host
from tests.support.cluster import Cluster, Member
from tests.support.loader import LoaderProcess

NODE = "N1"
STOCK = 10**9  # per SKU: nothing runs out; every refusal is an error
THROUGHPUT_RATIO_MIN = 0.7
FAILOVER_TARGET_S = 5.0
PROBE_INTERVAL_S = 0.1
WARMUP_S = 1.0  # acknowledgements in the first second of a load are left out of its rate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=(
        "Reserve throughput with --sync-replicas 0 vs 1, replication lag, and failover time "
        "over a kill -9 loop, on atpd clusters on a real etcd; writes "
        "bench/results/failover-<timestamp>.json."))
    add = parser.add_argument
    add("--kills", type=int, default=10, help="kill -9 of the leader, one after another (10)")
    add("--seconds", type=float, default=10.0,
        help="seconds of load for each throughput setting (10)")
    add("--processes", type=int, default=2, help="load-generator processes (2)")
    add("--concurrency", type=int, default=8, help="calls in flight per process (8)")
    add("--batch", type=int, default=1,
        help="reservations per call: 1 Reserve, more ReserveBatch (1)")
    add("--skus", type=int, default=8, help="SKUs the load spreads over (8)")
    add("--lease-ttl", default="3s", dest="lease_ttl", help="atpd --lease-ttl (3s)")
    add("--seed", type=int, default=1, help="random seed of the loaders (1)")
    add("--parts", default="throughput,failover",
        help="which parts to run: throughput (a and b), failover (c), or both (default)")
    add("--results-dir", dest="results_dir",
        default=os.path.join(bench.REPO_ROOT, "bench", "results"),
        help="where the JSON goes (bench/results)")
    add("--keep-data", action="store_true", dest="keep_data",
        help="keep the clusters' data dirs and logs (always kept when the run fails)")
    args = parser.parse_args(argv)
    if args.kills < 0 or args.seconds <= 0 or args.processes < 1 or args.concurrency < 1:
        parser.error("--kills >= 0, --seconds > 0, --processes and --concurrency >= 1")
    args.parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if not args.parts <= {"throughput", "failover"}:
        parser.error("--parts: throughput, failover")
    return args


# -- shared pieces ----------------------------------------------------------------------------


class AckTail:
    """The acknowledgements loaders have written so far, read incrementally."""

    def __init__(self, paths: list[Path]) -> None:
        self.offsets = dict.fromkeys(paths, 0)
        self.acks: list[dict[str, Any]] = []
        self.other: collections.Counter[str] = collections.Counter()

    def poll(self) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for path, offset in self.offsets.items():
            try:
                with open(path, "rb") as source:
                    source.seek(offset)
                    data = source.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # complete lines only
            for line in data[:end].splitlines():
                record = json.loads(line)
                if record["kind"] == "ack":
                    new.append(record)
                else:
                    self.other[record["kind"] if record["kind"] != "refused"
                               else f"refused {record['code']} {record['reason']}"] += 1
            self.offsets[path] = offset + end
        self.acks.extend(new)
        return new


def stock(cluster: Cluster, skus: list[str]) -> None:
    cluster.call_leader(inventory_pb2_grpc.InventoryStub, "UpsertNode",
                        inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id=NODE)))
    cluster.call_leader(inventory_pb2_grpc.InventoryStub, "AdjustStock",
                        inventory_pb2.AdjustStockRequest(
                            request_id=f"stock-{uuid.uuid4().hex}",
                            movements=[inventory_pb2.StockMovement(
                                sku=sku, node_id=NODE, type=inventory_pb2.StockMovement.RECEIPT,
                                quantity=STOCK) for sku in skus]))


def start_loaders(args: argparse.Namespace, work: Path, name: str, cluster: Cluster,
                  skus: list[str], seconds: float) -> list[LoaderProcess]:
    return [LoaderProcess(
        work / f"{name}-loader{index}.jsonl", cluster.members_target(), skus, seconds=seconds,
        seed=args.seed * 100 + index, node=NODE,
        extra=("--concurrency", str(args.concurrency), "--batch", str(args.batch),
               "--call-timeout", "5", "--request-budget", "30")).start()
        for index in range(args.processes)]


def rate(acks: list[dict[str, Any]]) -> tuple[float, int, float]:
    """Acknowledged reservations/s over [first ack + WARMUP_S, last ack]: (rate, count, s)."""
    times = sorted(ack["ack_time"] for ack in acks)
    if len(times) < 2:
        return 0.0, len(times), 0.0
    start = times[0] + min(WARMUP_S, (times[-1] - times[0]) / 4)
    counted = [t for t in times if t >= start]
    width = times[-1] - start
    return (len(counted) / width if width > 0 else 0.0), len(counted), width


# -- (a) and (b): throughput and lag ----------------------------------------------------------


class LagProbe(threading.Thread):
    """Every PROBE_INTERVAL_S: Reserve on the leader, then GetReservation with min_sequence
    on the follower; the seconds between the leader's answer and the follower's. Also the
    leader's Status followers[] lag."""

    def __init__(self, leader: Member, follower: Member, sku: str) -> None:
        super().__init__(daemon=True)
        self.leader, self.follower, self.sku = leader, follower, sku
        self.stop_event = threading.Event()
        self.lags_ms: list[float] = []
        self.status_lag_commits: list[int] = []
        self.status_lag_ms: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        writes = self.leader.stub(reservations_pb2_grpc.ReservationsStub)
        reads = self.follower.stub(reservations_pb2_grpc.ReservationsStub)
        number = 0
        while not self.stop_event.wait(PROBE_INTERVAL_S):
            number += 1
            request = reservations_pb2.ReserveRequest(
                reservation_id=f"probe-{uuid.uuid4().hex[:8]}-{number}",
                lines=[common_pb2.ReservationLine(line_id="l1", sku=self.sku, node_id=NODE,
                                                  quantity=1)])
            try:
                _, call = writes.Reserve.with_call(request, timeout=5)
                acknowledged = time.monotonic()
                commit = int(dict(call.trailing_metadata())["atp-commit-sequence"])
                reads.GetReservation(reservations_pb2.GetReservationRequest(
                    reservation_id=request.reservation_id, min_sequence=commit), timeout=5)
                self.lags_ms.append((time.monotonic() - acknowledged) * 1000)
            except grpc.RpcError as error:
                self.errors[error.code().name] += 1
            status = self.leader.try_status()
            for follower in status.followers if status is not None else ():
                if follower.follower_id == self.follower.address:
                    self.status_lag_commits.append(follower.lag_commits)
                    self.status_lag_ms.append(follower.lag_seconds * 1000)


def throughput_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    skus = [f"tp-sku{index}" for index in range(args.skus)]
    settings: dict[str, Any] = {}
    for sync in (0, 1):
        print(f"(a) throughput, 2 members, --sync-replicas {sync}: {args.seconds:g} s of load",
              flush=True)
        place = work / f"throughput-sync{sync}"
        place.mkdir()
        with Cluster(place, 2, sync_replicas=sync, lease_ttl=args.lease_ttl,
                     name=f"bench-sync{sync}", log_level="WARNING") as cluster:
            leader = cluster.wait_for_leader(30)
            follower = next(m for m in cluster.members if m is not leader)
            stock(cluster, [*skus, "probe-sku"])
            cluster.wait_caught_up(follower, 30)
            loaders = start_loaders(args, place, "load", cluster, skus, args.seconds)
            probe = LagProbe(leader, follower, "probe-sku")
            probe.start()
            for loader in loaders:
                loader.wait(args.seconds + 60)
            probe.stop_event.set()
            probe.join(15)
            tail = AckTail([loader.out for loader in loaders])
            tail.poll()
            per_second, counted, width = rate(tail.acks)
            same_leader = cluster.wait_for_leader(10) is leader
        settings[f"sync{sync}"] = {
            "reservations_per_s": round(per_second, 1),
            "acks": len(tail.acks), "acks_counted": counted, "window_s": round(width, 2),
            "outcomes_other_than_ack": dict(tail.other),
            "leader_unchanged": same_leader,
            "lag_ms": latency_summary(probe.lags_ms), "lag_samples": len(probe.lags_ms),
            "lag_probe_errors": dict(probe.errors),
            "status_lag_commits": {"p50": percentile(sorted(probe.status_lag_commits), 50),
                                   "p99": percentile(sorted(probe.status_lag_commits), 99),
                                   "max": max(probe.status_lag_commits, default=0)},
            "status_lag_ms": latency_summary(probe.status_lag_ms),
        }
    zero = settings["sync0"]["reservations_per_s"]
    ratio = settings["sync1"]["reservations_per_s"] / zero if zero else 0.0
    return {**settings, "ratio_sync1_to_sync0": round(ratio, 3),
            "ratio_target": THROUGHPUT_RATIO_MIN, "ratio_met": ratio >= THROUGHPUT_RATIO_MIN}


# -- (c): the kill loop ------------------------------------------------------------------------


def failover_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    place = work / "failover"
    place.mkdir()
    skus = [f"fo-sku{index}" for index in range(args.skus)]
    kills: list[dict[str, Any]] = []
    problems: list[str] = []
    print(f"(c) failover, 3 members, --sync-replicas 1, lease {args.lease_ttl}: "
          f"{args.kills} kills", flush=True)
    with Cluster(place, 3, sync_replicas=1, lease_ttl=args.lease_ttl, name="bench-failover",
                 log_level="INFO") as cluster:
        cluster.wait_for_leader(30)
        stock(cluster, skus)
        loaders = start_loaders(args, place, "kill", cluster, skus,
                                seconds=60.0 + 60.0 * args.kills)
        tail = AckTail([loader.out for loader in loaders])
        try:
            for number in range(1, args.kills + 1):
                kill = one_kill(cluster, tail, number)
                kills.append(kill)
                print(f"  kill {number}: {kill['killed']} -> {kill.get('new_leader')}: "
                      f"elected {kill.get('elected_s')} s, first write "
                      f"{kill.get('first_write_s')} s, caught up {kill.get('rejoined_s')} s"
                      + (f"  {kill['problem']}" if "problem" in kill else ""), flush=True)
                if "problem" in kill:
                    problems.append(f"kill {number}: {kill['problem']}")
                    break
        finally:
            for loader in loaders:
                loader.stop()
        tail.poll()
        audit = audit_acks(cluster, tail.acks, skus)
    problems.extend(audit["problems"])
    write_times = [k["first_write_s"] for k in kills if k.get("first_write_s") is not None]
    elected = [k["elected_s"] for k in kills if k.get("elected_s") is not None]
    rejoined = [k["rejoined_s"] for k in kills if k.get("rejoined_s") is not None]
    summary = {
        "failover_s": summary_of(write_times), "elected_s": summary_of(elected),
        "rejoined_s": summary_of(rejoined),
        "target_s": FAILOVER_TARGET_S,
        "target_met": bool(write_times) and max(write_times) <= FAILOVER_TARGET_S,
        "kills_done": len(write_times), "kills_asked": args.kills,
    }
    return {"kills": kills, **summary, "audit": audit, "problems": problems,
            "acks": len(tail.acks), "outcomes_other_than_ack": dict(tail.other)}


def summary_of(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    return {"p50": round(percentile(ordered, 50), 3), "max": round(ordered[-1], 3)
            if ordered else 0.0, "n": len(ordered)}


def one_kill(cluster: Cluster, tail: AckTail, number: int) -> dict[str, Any]:
    before = cluster.wait_for_leader(30)
    term = before.status().term
    # Writes are flowing on this leader before it is killed.
    settled = time.time()
    deadline = time.monotonic() + 30
    while not any(a["ack_time"] > settled and (a["member"] or a["target"]) == before.address
                  for a in tail.poll()):
        if time.monotonic() > deadline:
            return {"number": number, "killed": before.name, "term": term,
                    "problem": "no write acknowledged by the leader before the kill"}
        time.sleep(0.05)
    killed = cluster.kill_leader()
    assert killed.killed_at is not None
    kill: dict[str, Any] = {"number": number, "killed": killed.name, "term": term}
    try:
        new = cluster.wait_for_leader(30, exclude=[killed])
    except AssertionError as error:
        kill["problem"] = f"no new leader: {str(error).splitlines()[0]}"
        return kill
    kill["elected_s"] = round(time.time() - killed.killed_at, 3)
    kill["new_leader"] = new.name
    kill["new_term"] = new.status().term
    deadline = time.monotonic() + 30
    first = None
    while first is None and time.monotonic() < deadline:
        tail.poll()
        times = [a["ack_time"] for a in tail.acks if a["ack_time"] > killed.killed_at
                 and (a["member"] or a["target"]) == new.address]
        first = min(times) if times else None
        if first is None:
            time.sleep(0.05)
    if first is None:
        kill["problem"] = "no write acknowledged by the new leader within 30 s"
        return kill
    kill["first_write_s"] = round(first - killed.killed_at, 3)
    restarted = time.monotonic()
    try:
        killed.start()
        cluster.wait_caught_up(killed, 30)
    except (AssertionError, RuntimeError) as error:
        kill["problem"] = f"{killed.name} did not catch up: {str(error).splitlines()[0]}"
        return kill
    kill["rejoined_s"] = round(time.monotonic() - restarted, 3)
    return kill


def audit_acks(cluster: Cluster, acks: list[dict[str, Any]], skus: list[str]) -> dict[str, Any]:
    """Every acknowledged reservation on the leader (ListReservations per SKU); one member
    acknowledging per term."""
    problems: list[str] = []
    by_term: dict[int | None, set[str]] = collections.defaultdict(set)
    for ack in acks:
        by_term[ack["term"]].add(ack["member"] or ack["target"])
    shared = {str(t): sorted(m) for t, m in by_term.items() if len(m) > 1}
    if shared:
        problems.append(f"two members acknowledged writes in one term: {shared}")
    if None in by_term:
        problems.append("acknowledgements without atp-term")
    try:
        leader = cluster.wait_for_leader(30)
        stub = leader.stub(reservations_pb2_grpc.ReservationsStub)
        held: set[str] = set()
        for sku in skus:
            request = reservations_pb2.ListReservationsRequest(sku=sku, page_size=1000)
            for _ in range(100_000):
                reply = stub.ListReservations(request, timeout=30)
                held.update(r.reservation_id for r in reply.reservations)
                if not reply.next_page_token:
                    break
                request.page_token = reply.next_page_token
        lost = [a["reservation_id"] for a in acks if a["reservation_id"] not in held]
    except (AssertionError, grpc.RpcError) as error:
        problems.append(f"could not read the reservations back: {error}")
        lost = []
    if lost:
        problems.append(f"{len(lost)} acknowledged reservations lost, e.g. {lost[:3]}")
    return {"acks": len(acks), "lost": len(lost), "terms": len(by_term),
            "one_member_per_term": not shared, "problems": problems}


# -- the run ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    heading = (f"failover bench  {result['started_at']}  host {result['host']['cpus']} cpus  "
               f"lease {result['config']['lease_ttl']}")
    lines = [heading]
    part = result.get("throughput")
    if part:
        lines.append("")
        lines.append("| --sync-replicas | reservations/s | lag p50 ms | lag p99 ms | "
                     "leader's lag_commits p99 |")
        lines.append("|---|---|---|---|---|")
        for sync in (0, 1):
            figures = part[f"sync{sync}"]
            lines.append(f"| {sync} | {figures['reservations_per_s']:,.1f} | "
                         f"{figures['lag_ms']['p50']:.1f} | {figures['lag_ms']['p99']:.1f} | "
                         f"{figures['status_lag_commits']['p99']:g} |")
        lines.append(f"throughput ratio sync 1 / sync 0: {part['ratio_sync1_to_sync0']:.2f} "
                     f"(target >= {THROUGHPUT_RATIO_MIN}: "
                     f"{'met' if part['ratio_met'] else 'MISSED'})")
        lines.append("lag: leader's ack -> the follower answers a min_sequence read of it")
    part = result.get("failover")
    if part:
        lines.append("")
        lines.append("| kill -9 of the leader | p50 s | max s | n |")
        lines.append("|---|---|---|---|")
        for key, label in (("failover_s", "-> first write acknowledged by the new leader"),
                           ("elected_s", "-> every member agrees on the new leader"),
                           ("rejoined_s", "restart -> the killed member caught up")):
            figures = part[key]
            lines.append(f"| {label} | {figures['p50']:.2f} | {figures['max']:.2f} | "
                         f"{figures['n']} |")
        lines.append(f"failover target <= {FAILOVER_TARGET_S:g} s: "
                     f"{'met' if part['target_met'] else 'MISSED'} over "
                     f"{part['kills_done']} of {part['kills_asked']} kills; audit: "
                     f"{part['audit']['acks']} acks, {part['audit']['lost']} lost, "
                     f"one member per term: {part['audit']['one_member_per_term']}")
        for problem in part["problems"]:
            lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


def result_path(results_dir: str, stamp: str) -> str:
    os.makedirs(results_dir, exist_ok=True)
    base = os.path.join(results_dir, f"failover-{stamp}")
    path, suffix = base + ".json", 1
    while os.path.exists(path):
        path, suffix = f"{base}-{suffix}.json", suffix + 1
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now()
    work = Path(tempfile.mkdtemp(prefix="atp-failover-"))
    result: dict[str, Any] = {
        "bench": "failover", "started_at": started.isoformat(timespec="seconds"),
        "git_commit": _git_commit(), "host": _host(),
        "config": {key: (sorted(value) if isinstance(value, set) else value)
                   for key, value in vars(args).items()},
        "work_dir": str(work),
    }
    code = 0
    try:
        if "throughput" in args.parts:
            result["throughput"] = throughput_part(args, work)
            code |= 0 if result["throughput"]["ratio_met"] else 1
        if "failover" in args.parts and args.kills:
            result["failover"] = failover_part(args, work)
            failover = result["failover"]
            complete = failover["kills_done"] == failover["kills_asked"]
            code |= 0 if failover["target_met"] and complete and not failover["problems"] else 1
    except RuntimeError as error:  # a cluster did not start
        print(f"cluster failed: {error}", file=sys.stderr)
        result["error"] = str(error)
        code = 2
    result["exit_code"] = code
    path = result_path(args.results_dir, started.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
        out.write("\n")
    print(table(result) if "error" not in result else result["error"])
    if code == 0 and not args.keep_data:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"data and logs kept in {work}")
    print(f"results: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
