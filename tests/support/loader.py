"""A reservation load generator for failover tests and the failover bench, run as a process:

    python -m tests.support.loader --target A,B,C --out FILE --sku S1,S2 --node N1 \
        --seconds 10 --seed 1 [--concurrency 4] [--batch 1] [--pin] [--max-count N]

Each of `--concurrency` asyncio workers loops: a Reserve (or, with `--batch K`, a
ReserveBatch of K reservations) of 1..`--quantity-max` units of one of the SKUs at the node,
each reservation with a unique id. A call refused NOT_LEADER goes at once to the leader its
ErrorInfo names; UNAVAILABLE, DEADLINE_EXCEEDED, an overloaded RESOURCE_EXHAUSTED and a
NOT_LEADER naming no leader go again, after a short backoff, to the next member, with the
SAME reservation ids (Reserve is idempotent by reservation_id), until the reservation's
`--request-budget` is spent. With `--pin` the loader never leaves the members it was given
and does not follow NOT_LEADER (it records the refusal and moves on to a new id): it keeps
calling a member however the cluster changes, which is how a fencing test probes a deposed
leader.

One JSON object a line goes to `--out` (appended, flushed after each):
- `{"kind": "ack", reservation_id, quantity, node, sku, term, member, commit, ack_time,
  target, sent_time, attempts, reply_quantity}` for every acknowledged reservation:
  `term`/`member` from the trailing metadata `atp-term`/`atp-member` (null when the server
  does not send them), `commit` from `atp-commit-sequence` (a batch's commit_sequence),
  `target` the address the answer came from, `ack_time` time.time() at the answer;
- `{"kind": "refused", reason, code, ...}` a refusal (INSUFFICIENT_AVAILABILITY: the stock ran
  out; NOT_LEADER with --pin; ALREADY_EXISTS would be a bug);
- `{"kind": "gave_up", last_code, ...}` a reservation whose budget ran out: its outcome is
  unknown (it may or may not have been applied);
- `{"kind": "exhausted", sku}` once a 1-unit reserve of the SKU was refused
  INSUFFICIENT_AVAILABILITY (stock never comes back in these tests);
- one `{"kind": "summary", ...}` last (also printed to stdout).
The loop ends after `--seconds`, after `--max-count` reservations, once every SKU is
exhausted, or on SIGTERM/SIGINT; a reservation already in flight then has at most its
budget (SIGTERM: none) to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

from atp.v1 import common_pb2, reservations_pb2, reservations_pb2_grpc

COMMIT_KEY = "atp-commit-sequence"
TERM_KEY = "atp-term"
MEMBER_KEY = "atp-member"
DETAILS_KEY = "grpc-status-details-bin"
NOT_LEADER = "NOT_LEADER"
INSUFFICIENT = "INSUFFICIENT_AVAILABILITY"
Code = grpc.StatusCode
# Codes after which the same call may go again (to the next member): nothing was applied, or
# the outcome is unknown and the retry is idempotent.
RETRIED = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED})
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 0.5
# Reconnect quickly to a member that was down: gRPC's default backoff grows to minutes.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.loader", description=(
        "Reserve small quantities of scarce stock with unique ids against an atpd cluster, "
        "following leaders and retrying idempotently; one JSON line per outcome."))
    add = parser.add_argument
    add("--target", required=True, help="members, comma separated (HOST:PORT,...)")
    add("--out", required=True, help="JSON-lines file to append outcomes to")
    add("--sku", action="append", required=True,
        help="SKU to reserve (repeat or comma separate)")
    add("--node", default="N1", help="node every line names (N1)")
    add("--seconds", type=float, default=10.0, help="issue reservations for this long (10)")
    add("--seed", type=int, default=1, help="random seed (1)")
    add("--max-count", type=int, default=1_000_000, dest="max_count",
        help="most reservations to issue (1,000,000)")
    add("--concurrency", type=int, default=1, help="asyncio workers, each one call at a time")
    add("--batch", type=int, default=1,
        help="reservations per call: 1 Reserve, >1 ReserveBatch (1)")
    add("--quantity-max", type=int, default=3, dest="quantity_max",
        help="units per reservation, 1..this (3)")
    add("--call-timeout", type=float, default=2.0, dest="call_timeout",
        help="deadline of one attempt in seconds (2)")
    add("--request-budget", type=float, default=30.0, dest="request_budget",
        help="seconds one reservation may be retried before it is given up (30)")
    add("--pin", action="store_true",
        help="stay on the given members: no NOT_LEADER redirect (a fencing probe)")
    add("--prefix", default="",
        help="reservation id prefix (default: ld<seed>-<random>)")
    args = parser.parse_args(argv)
    args.skus = [s.strip() for item in args.sku for s in item.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.target.split(",") if t.strip()]
    if not args.skus or not args.targets:
        parser.error("--sku and --target need at least one value")
    if args.concurrency < 1 or args.batch < 1 or args.quantity_max < 1:
        parser.error("--concurrency, --batch and --quantity-max must be >= 1")
    if not args.prefix:
        args.prefix = f"ld{args.seed}-{uuid.uuid4().hex[:6]}"
    return args


@dataclass
class Refusal:
    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str]
    target: str = ""


def refusal_of(error: grpc.aio.AioRpcError) -> Refusal:
    """Code, ErrorInfo reason and metadata of a failed call (from grpc-status-details-bin)."""
    reason, metadata = "", {}
    for key, value in error.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason, metadata = info.reason, dict(info.metadata)
    return Refusal(error.code(), reason, error.details() or "", metadata)


def refusal_of_status(status: status_pb2.Status, reason: str) -> Refusal:
    code = next((c for c in Code if c.value[0] == status.code), Code.UNKNOWN)
    return Refusal(code, reason, status.message, {})


@dataclass
class Loader:
    args: argparse.Namespace
    out: IO[str]
    rng: random.Random
    targets: list[str] = field(init=False)
    preferred: int = 0
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    exhausted: set[str] = field(default_factory=set)
    # SKUs refused for more than one unit: the next reservation of it asks for one.
    probing: set[str] = field(default_factory=set)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    stopping: bool = False
    issued: int = 0

    def __post_init__(self) -> None:
        self.targets = list(self.args.targets)

    def stub(self, target: str) -> reservations_pb2_grpc.ReservationsStub:
        if target not in self.channels:
            self.channels[target] = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        return reservations_pb2_grpc.ReservationsStub(self.channels[target])

    def write(self, record: dict[str, Any]) -> None:
        self.counts[record["kind"]] += 1
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    # -- one call, retried across members --------------------------------------------------

    async def call(
        self, requests: list[reservations_pb2.ReserveRequest]
    ) -> tuple[Any, dict[str, str], str, int, float] | Refusal:
        """Sends the reservations until answered: (reply, trailing metadata, target,
        attempts, send time), or the refusal that ends it (Refusal with code None-like
        UNKNOWN and reason GAVE_UP when the budget ran out)."""
        loop_deadline = time.monotonic() + self.args.request_budget
        index = self.preferred
        target = self.targets[index % len(self.targets)]
        sent = time.time()
        last = Refusal(Code.UNKNOWN, "", "never sent", {})
        for attempt in itertools.count(1):
            remaining = loop_deadline - time.monotonic()
            if remaining <= 0.01 or (self.stopping and attempt > 1):
                return Refusal(last.code, "GAVE_UP", f"{last.reason} {last.message}".strip(),
                               {"attempts": str(attempt - 1)})
            timeout = min(self.args.call_timeout, remaining)
            stub = self.stub(target)
            try:
                if len(requests) == 1:
                    call = stub.Reserve(requests[0], timeout=timeout)
                else:
                    call = stub.ReserveBatch(
                        reservations_pb2.ReserveBatchRequest(requests=requests), timeout=timeout)
                reply = await call
                trailing = {k: v for k, v in (await call.trailing_metadata() or ())
                            if isinstance(v, str)}
                if not self.args.pin:
                    self.preferred = self.targets.index(target)
                return reply, trailing, target, attempt, sent
            except grpc.aio.AioRpcError as error:
                last = refusal_of(error)
            if last.code is Code.FAILED_PRECONDITION and last.reason == NOT_LEADER:
                leader = last.metadata.get("leader", "")
                if self.args.pin:
                    last.target = target
                    return last
                if leader and leader != target:
                    if leader not in self.targets:
                        self.targets.append(leader)
                    target = leader  # nothing was applied: again at once, to the leader
                    continue
            elif last.code not in RETRIED and not (
                    last.code is Code.RESOURCE_EXHAUSTED and last.reason == "OVERLOADED"):
                last.target = target
                return last  # a refusal of the request itself
            if not self.args.pin:
                index = (self.targets.index(target) + 1) % len(self.targets)
                target = self.targets[index]
            backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(attempt - 1, 8))
            await asyncio.sleep(backoff * (0.5 + self.rng.random() / 2))
        raise AssertionError("unreachable")

    # -- the loop --------------------------------------------------------------------------

    def next_request(self) -> tuple[reservations_pb2.ReserveRequest, str, int] | None:
        live = [sku for sku in self.args.skus if sku not in self.exhausted]
        if not live:
            return None
        sku = self.rng.choice(live)
        quantity = 1 if sku in self.probing else self.rng.randint(1, self.args.quantity_max)
        reservation_id = f"{self.args.prefix}-{next(self.ids)}"
        request = reservations_pb2.ReserveRequest(
            reservation_id=reservation_id,
            lines=[common_pb2.ReservationLine(
                line_id="l1", sku=sku, node_id=self.args.node, quantity=quantity)])
        return request, sku, quantity

    def record(self, request: reservations_pb2.ReserveRequest, sku: str, quantity: int,
               result: Any, outcome: Refusal | None, where: dict[str, Any]) -> None:
        base = {"reservation_id": request.reservation_id, "quantity": quantity,
                "node": self.args.node, "sku": sku}
        if outcome is None:
            reservation: common_pb2.Reservation = result
            self.probing.discard(sku)
            self.write({"kind": "ack", **base, **where,
                        "reply_quantity": sum(line.quantity for line in reservation.lines),
                        "state": common_pb2.Reservation.State.Name(reservation.state)})
            return
        if outcome.reason == "GAVE_UP":
            self.write({"kind": "gave_up", **base, "last_code": outcome.code.name,
                        "message": outcome.message, "time": time.time()})
            return
        self.write({"kind": "refused", **base, "code": outcome.code.name,
                    "reason": outcome.reason, "message": outcome.message[:300],
                    "target": where.get("target") or outcome.target, "time": time.time(),
                    "leader": outcome.metadata.get("leader")})
        if outcome.reason == INSUFFICIENT:
            if quantity == 1:
                if sku not in self.exhausted:
                    self.exhausted.add(sku)
                    self.write({"kind": "exhausted", "sku": sku, "time": time.time()})
            else:
                self.probing.add(sku)

    async def worker(self, stop_at: float) -> None:
        while not self.stopping and time.monotonic() < stop_at:
            batch = []
            for _ in range(self.args.batch):
                if self.issued >= self.args.max_count:
                    break
                item = self.next_request()
                if item is None:
                    break
                self.issued += 1
                batch.append(item)
            if not batch:
                return
            answer = await self.call([request for request, _, _ in batch])
            if isinstance(answer, Refusal):
                for request, sku, quantity in batch:
                    self.record(request, sku, quantity, None, answer, {})
                if answer.reason == NOT_LEADER:  # pinned: do not spin on a follower
                    await asyncio.sleep(0.1)
                continue
            reply, trailing, target, attempts, sent = answer
            term = trailing.get(TERM_KEY)
            where = {
                "term": int(term) if term else None,
                "member": trailing.get(MEMBER_KEY),
                "target": target,
                "ack_time": time.time(),
                "sent_time": sent,
                "attempts": attempts,
            }
            if len(batch) == 1:
                commit = trailing.get(COMMIT_KEY)
                where["commit"] = int(commit) if commit else None
                request, sku, quantity = batch[0]
                self.record(request, sku, quantity, reply, None, where)
                continue
            where["commit"] = reply.commit_sequence or None
            for (request, sku, quantity), result in zip(batch, reply.results, strict=True):
                if result.HasField("reservation"):
                    self.record(request, sku, quantity, result.reservation, None, where)
                else:
                    self.record(request, sku, quantity, None,
                                refusal_of_status(result.status, result.reason),
                                {"target": target})

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        stop_at = started + self.args.seconds
        loop = asyncio.get_running_loop()
        workers = [asyncio.ensure_future(self.worker(stop_at))
                   for _ in range(self.args.concurrency)]

        def terminate() -> None:
            self.stopping = True
            for task in workers:
                task.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, terminate)
        try:
            await asyncio.gather(*workers, return_exceptions=True)
        finally:
            for channel in self.channels.values():
                await channel.close()
        crashed = [repr(task.exception()) for task in workers
                   if not task.cancelled() and task.exception() is not None]
        summary = {
            "kind": "summary", "issued": self.issued, "acks": self.counts["ack"],
            "refused": self.counts["refused"], "gave_up": self.counts["gave_up"],
            "exhausted": sorted(self.exhausted), "seconds": time.monotonic() - started,
            "terminated": self.stopping, "crashed": crashed, "targets": self.targets,
            "time": time.time(),
        }
        self.write(summary)
        return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with open(args.out, "a", encoding="utf-8") as out:
        loader = Loader(args, out, random.Random(args.seed))
        summary = asyncio.run(loader.run())
    print(json.dumps(summary), flush=True)
    return 1 if summary["crashed"] else 0


REPO_ROOT = Path(__file__).resolve().parents[2]


class LoaderProcess:
    """`python -m tests.support.loader` as a subprocess of a test or bench; its output file
    is `out`, its stdout and stderr go to `out` with the suffix .log."""

    def __init__(self, out: Path, target: str, skus: Sequence[str], *, seconds: float,
                 seed: int, node: str = "N1", extra: Sequence[str] = ()) -> None:
        self.out = out
        self.log_path = out.with_suffix(".log")
        self.command = [
            sys.executable, "-m", "tests.support.loader", "--target", target,
            "--out", str(out), "--sku", ",".join(skus), "--node", node,
            "--seconds", str(seconds), "--seed", str(seed), *extra]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LoaderProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), str(REPO_ROOT / "src"), env.get("PYTHONPATH")) if p)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT, env=env)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Until it exits by itself (its --seconds, its stock, its count); killed after
        `timeout_s` and AssertionError."""
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"loader {self.out.name} still ran after {timeout_s:g} s; "
                                 f"{self.log_tail()}") from None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (it writes its summary), kill -9 after `timeout_s`. Never raises."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.out)

    def acks(self) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["kind"] == "ack"]

    def summary(self) -> dict[str, Any] | None:
        return next((r for r in reversed(self.records()) if r["kind"] == "summary"), None)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of an output file (a torn last line, from a killed loader, is skipped)."""
    records = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as lines:
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
    return records


if __name__ == "__main__":
    sys.exit(main())
