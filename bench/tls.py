"""What TLS costs: the same load on a plaintext atpd and on a mutual-TLS atpd, in one run.

    python -m bench.tls                        # reserve and availability, 5 s each, 3 rounds
    python -m bench.tls --seconds 10 --rounds 2 --processes 2 --concurrency 32

Two atpds are started side by side on loopback (`--sync off`: the transport is what differs,
not the disk): one plaintext, one with `--tls-cert/--tls-key/--client-ca` (certificates made
for the run with `cryptography`, in a temporary directory; EC P-256 keys). Both are seeded the
same (one node, 200 SKUs). Then, for each round and each workload, the load runs against the
plaintext server and then the TLS one: `--processes` load processes, each an asyncio
AsyncClient (plaintext, or TLS with the CA and a client certificate) keeping `--concurrency`
calls in flight for `--seconds`. Connections are made once per process, before the clock
starts: the figures are the steady state (handshakes are not measured).

- `reserve`: Reserve of one line (1 unit of a random SKU at the node), held (not committed);
- `availability`: GetAvailability of one random SKU.

Prints calls/s and p50/p99 latency for each, and the TLS/plaintext ratios over the rounds'
sums; `--json FILE` writes them too.

`--gateways N` runs both atpds with `--gateways N` (the gateways terminate TLS); `--auth`
also gives the TLS one `--auth-policy` (the client certificate's principal has the ops
role): what serving securely costs, transport and authorization together.

    python -m bench.tls --gateways 1 --auth --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(REPO_ROOT))

from atp.client import AsyncClient, Client, TlsOptions
from tests.support.atpd import AtpdProcess
from tests.support.certs import CertificateAuthority

WORKLOADS = ("reserve", "availability")
NODE = "dc-1"
SKUS = [f"sku-{index:04d}" for index in range(200)]


def seed(target: str, tls: TlsOptions | None) -> None:
    with Client(target, tls=tls, timeout_s=30) as client:
        client.upsert_node(node_id=NODE, region="EU", handling_days=1,
                           lanes=[{"region": "EU", "transit_days": 1, "cost": 1}])
        client.adjust_stock([{"sku": sku, "node_id": NODE, "type": "RECEIPT",
                              "quantity": 10**9} for sku in SKUS])


async def _load(target: str, tls: TlsOptions | None, workload: str, seconds: float,
                concurrency: int, seed_value: int) -> tuple[int, list[float]]:
    chooser = random.Random(seed_value)
    latencies: list[float] = []
    async with AsyncClient(target, tls=tls, timeout_s=30, retries=0) as client:
        await client.health()  # connected (and the handshake done) before the clock starts
        deadline = time.perf_counter() + seconds

        async def one_caller() -> None:
            while (start := time.perf_counter()) < deadline:
                sku = chooser.choice(SKUS)
                if workload == "reserve":
                    await client.reserve(uuid.uuid4().hex, [
                        {"line_id": "l1", "sku": sku, "quantity": 1, "node_id": NODE}])
                else:
                    await client.get_availability([sku])
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one_caller() for _ in range(concurrency)))
    return len(latencies), latencies


def _worker(arguments: tuple[str, TlsOptions | None, str, float, int, int]
            ) -> tuple[int, list[float]]:
    return asyncio.run(_load(*arguments))


def measure(pool: Any, target: str, tls: TlsOptions | None, workload: str,
            options: argparse.Namespace, round_index: int) -> dict[str, float]:
    started = time.perf_counter()
    results = pool.map(_worker, [
        (target, tls, workload, options.seconds, options.concurrency,
         round_index * 1000 + process) for process in range(options.processes)])
    elapsed = time.perf_counter() - started
    calls = sum(count for count, _ in results)
    latencies = sorted(value for _, values in results for value in values)
    quantiles = statistics.quantiles(latencies, n=100)
    return {"calls": calls, "calls_per_s": calls / options.seconds,
            "p50_ms": quantiles[49] * 1000, "p99_ms": quantiles[98] * 1000,
            "wall_s": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.tls", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gateways", type=int, default=0,
                        help="run both atpds with --gateways N (0: one process)")
    parser.add_argument("--auth", action="store_true",
                        help="the TLS atpd also checks callers (--auth-policy)")
    parser.add_argument("--json", metavar="FILE")
    options = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="atp-bench-tls-"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH"))
        if part)
    ca = CertificateAuthority(work / "pki", "bench")
    server, client = ca.issue("server"), ca.issue("client")
    tls = TlsOptions(ca=str(ca.cert), cert=str(client.cert), key=str(client.key))
    common = ("--sync", "off", "--gateways", str(options.gateways))
    secure = ("--tls-cert", str(server.cert), "--tls-key", str(server.key), "--client-ca",
              str(ca.cert))
    if options.auth:  # the client certificate's principal (its DNS SAN) may seed and load
        policy = work / "policy.json"
        policy.write_text(json.dumps({"allow": [{"role": "ops", "principals": ["localhost"]}]}))
        secure += ("--auth-policy", str(policy))
    servers = {
        "plaintext": (AtpdProcess(work / "plain", *common), None),
        "tls": (AtpdProcess(work / "tls", *common, *secure, tls=tls), tls),
    }
    figures: dict[str, dict[str, list[dict[str, float]]]] = {
        workload: {mode: [] for mode in servers} for workload in WORKLOADS}
    try:
        for process, client_tls in servers.values():
            process.start()
            seed(process.target, client_tls)
        context = multiprocessing.get_context("spawn")
        with context.Pool(options.processes) as pool:
            for round_index in range(options.rounds):
                for workload in WORKLOADS:
                    for mode, (process, client_tls) in servers.items():
                        result = measure(pool, process.target, client_tls, workload, options,
                                         round_index)
                        figures[workload][mode].append(result)
                        print(f"round {round_index + 1} {workload:12} {mode:9} "
                              f"{result['calls_per_s']:8.0f} calls/s  p50 "
                              f"{result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
                              flush=True)
    finally:
        for process, _ in servers.values():
            if process.process is not None:
                process.stop()
    summary: dict[str, Any] = {"options": vars(options), "workloads": {}}
    print()
    print("| workload | plaintext calls/s | TLS calls/s | TLS/plain throughput | "
          "p50 plain/TLS ms | p99 plain/TLS ms |")
    print("|---|---|---|---|---|---|")
    for workload, by_mode in figures.items():
        def mean(mode: str, key: str, runs: dict[str, list[dict[str, float]]] = by_mode
                 ) -> float:
            return statistics.mean(run[key] for run in runs[mode])
        ratio = (sum(run["calls"] for run in by_mode["tls"])
                 / sum(run["calls"] for run in by_mode["plaintext"]))
        summary["workloads"][workload] = {"runs": by_mode, "throughput_ratio": ratio}
        print(f"| {workload} | {mean('plaintext', 'calls_per_s'):.0f} | "
              f"{mean('tls', 'calls_per_s'):.0f} | {ratio:.2f} | "
              f"{mean('plaintext', 'p50_ms'):.2f} / {mean('tls', 'p50_ms'):.2f} | "
              f"{mean('plaintext', 'p99_ms'):.2f} / {mean('tls', 'p99_ms'):.2f} |")
    if options.json:
        Path(options.json).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
