"""Instructions per ReserveBatch item, Reserve call, ReserveStream message and Promise,
counted by valgrind.

    python -m bench.instructions                          # every path, ~80 s; needs valgrind
    python -m bench.instructions promise                  # one path
    python -m bench.instructions reserve --workload 500   # the workload once, no valgrind

Timings on a shared 2-CPU VM drift by 10-20% between runs, more than most single changes
to the reserve path are worth. Instruction counts do not: the same code gives the same count
to within ~0.2%, whatever else the machine is doing. This runs the workload under
`valgrind --tool=callgrind` twice, with two sizes, and reports the difference divided by the
difference in calls, so set-up (imports, the stocked ledger) cancels out.

`reserve` is what atpd does per ReserveBatch item, without gRPC or asyncio: parse the batch,
build each command, apply it to the ledger, encode the changes, put them in LMDB (unsynced: an
fsync's instructions are the kernel's), fill and serialise the results. `unary` makes the same
reservations one Reserve call each through the servicer, the writer and its group commits on
an event loop (no gRPC): the difference is our per-call overhead. `stream` sends them as
ReserveStream messages (16 streams), for our per-message overhead. `promise` is a
Promise's server side: parse the request, plan 5 lines over bench.micro's 50-node network,
build and serialise the response. The collector is frozen and off, as atpd's periodic freeze
makes it nearly so; GC costs are measured by the gRPC bench instead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from atp.engine.writer import Writer
from atp.ledger import Ledger, Refused
from atp.persistence import encode_batch
from atp.server import convert
from atp.server.servicers import ReservationsServicer, fill_reserve_result, reserve_command
from atp.store import LmdbStore
from atp.v1 import availability_pb2, reservations_pb2
from bench.micro import NOW, promise_network, promise_payloads, stocked_ledger
from bench.servicer import drive, reserve_requests

# Calls in the small and the large run of each path.
SIZES = {"reserve": (1_000, 3_000), "unary": (1_000, 3_000), "stream": (1_000, 3_000),
         "promise": (300, 900)}
BATCH = 500
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def run_reserves(reservations: int) -> int:
    """2,000 SKUs x 5 nodes stocked, then `reservations` 1-3 line reserves in batches of 500;
    returns how many were placed."""
    ledger = stocked_ledger(NOW, skus=2_000)  # the requests use S0..S1999
    requests = reserve_requests(reservations, seed=1)
    batches = [
        reservations_pb2.ReserveBatchRequest(
            requests=requests[start:start + BATCH]
        ).SerializeToString()
        for start in range(0, reservations, BATCH)
    ]
    gc.collect()
    gc.freeze()
    gc.disable()
    placed = 0
    with tempfile.TemporaryDirectory() as data_dir:
        store = LmdbStore(data_dir, sync=False)
        for wire in batches:
            request = reservations_pb2.ReserveBatchRequest.FromString(wire)
            built = [reserve_command(item) for item in request.requests]
            outcomes = ledger.apply_batch(
                [command for command in built if not isinstance(command, Refused)], NOW
            )
            store.commit(encode_batch(ledger.take_changes()))
            response = reservations_pb2.ReserveBatchResponse()
            for item, outcome in zip(request.requests, outcomes):
                fill_reserve_result(response.results.add(), item.reservation_id, outcome)
            response.SerializeToString()
            placed += sum(1 for outcome in outcomes if not isinstance(outcome, Refused))
        store.close()
    return placed


def run_promises(promises: int) -> int:
    """bench.micro's promise network, then `promises` 5-line Promise requests; returns how
    many were answered complete."""
    ledger, orders = promise_network(promises, seed=1)
    payloads = promise_payloads(orders)
    gc.collect()
    gc.freeze()
    gc.disable()
    complete = 0
    for payload in payloads:
        request = availability_pb2.PromiseRequest.FromString(payload)
        plan = ledger.promise(convert.order_lines(request.lines), request.destination_region,
                              convert.policy(request.policy), request.priority, NOW)
        convert.promise_response(plan).SerializeToString()
        complete += plan.complete
    return complete


def run_unary(reservations: int) -> int:
    """The same reserves as `reserve`, one Reserve call each through the servicer and the
    writer (bench.servicer's 64 callers, group commits in the writer's thread); returns how
    many were placed. Its count less `reserve`'s is what a call costs our code beyond the item."""
    return _through_servicer("unary", reservations)


def run_stream(reservations: int) -> int:
    """The same reserves as ReserveStream messages (bench.servicer's 16 streams, fed as fast as
    they are read); its count less `reserve`'s is what a message costs our code beyond the item."""
    return _through_servicer("stream", reservations)


def _through_servicer(mode: str, reservations: int) -> int:
    ledger = stocked_ledger(NOW, skus=2_000)
    requests = reserve_requests(reservations, seed=1)
    gc.collect()
    gc.freeze()
    gc.disable()
    asyncio.run(_drive_servicer(mode, ledger, requests))
    return len(ledger.reservations)


async def _drive_servicer(mode: str, ledger: Ledger,
                          requests: list[reservations_pb2.ReserveRequest]) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        store = LmdbStore(data_dir, sync=False)
        writer = Writer(ledger, store, clock=lambda: NOW)
        writer.start()
        await drive(mode, ReservationsServicer(writer), requests)
        await writer.close()
        store.close()


WORKLOADS = {"reserve": run_reserves, "unary": run_unary, "stream": run_stream,
             "promise": run_promises}


def count_instructions(path: str, calls: int) -> int:
    """Instructions of a whole `--workload` run under callgrind."""
    return callgrind_instructions(["bench.instructions", path, "--workload", str(calls)], 900)


def callgrind_instructions(module_args: list[str], timeout_s: float) -> int:
    """Instructions of `python -m MODULE ARGS...` under callgrind (what every bench that
    counts instructions runs: its own module with its `--workload` arguments)."""
    with tempfile.TemporaryDirectory() as out_dir:
        completed = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out",
             sys.executable, "-m", *module_args],
            capture_output=True, text=True, check=False, timeout=timeout_s,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # same hashing, same instructions
        )
    match = _COLLECTED.search(completed.stderr)
    if completed.returncode != 0 or match is None:
        raise SystemExit(f"valgrind run failed:\n{completed.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help=f"any of {', '.join(WORKLOADS)} (default both)")
    parser.add_argument("--workload", type=int, metavar="CALLS",
                        help="run one path's workload once, uncounted (what valgrind runs)")
    args = parser.parse_args()
    unknown = set(args.paths) - set(WORKLOADS)
    if unknown:
        parser.error(
            f"unknown path {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}"
        )
    paths = args.paths or list(WORKLOADS)
    if args.workload is not None:
        for path in paths:
            print(
                f"{path}: {WORKLOADS[path](args.workload):,} of {args.workload:,} "
                "answered in full"
            )
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: install it (Debian: apt-get install valgrind)")
    for path in paths:
        small, large = SIZES[path]
        with ThreadPoolExecutor(2) as pool:  # the two runs are independent: one per core
            counts = list(pool.map(count_instructions, (path, path), (small, large)))
        per_call = (counts[1] - counts[0]) / (large - small)
        print(f"{path:8s} {per_call:10,.0f} instructions per call  "
              f"({counts[0]:,} for {small:,}, {counts[1]:,} for {large:,})")


if __name__ == "__main__":
    main()
