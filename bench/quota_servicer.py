"""Reserve through the servicer, writer, group commit and LMDB (no gRPC), with and without
the allocation rules of the `reserve_rules` workload: where a server's extra CPU per call
under rules goes.

    python -m bench.quota_servicer                       # 3 rounds x 10,000 reserves each
    python -m bench.quota_servicer --profile rules       # one configuration, cProfile top 30
    python -m bench.quota_servicer --instructions        # instructions per reservation

Configurations, each on a fresh stocked ledger (bench.micro.stocked_ledger, 10^9 units at
every position, synced LMDB in a temporary directory):
  plain  unary Reserve of 1-3 lines at explicit nodes, channel "bench" (bench.context)
  policy the same reserves, each line with a unit value, every reserved SKU with the
         allocation policy bench.rules installs (no channel allocations: the control)
  rules  as policy, and every reserved SKU with bench.rules' channel allocations too: a
         10 % SKU-wide share for "store" and 50 units at the first node for "marketplace"
Prints CPU microseconds per reservation of each run, and the cheapest of each against plain.
CPU time on a shared machine drifts by 10-20 %; --instructions counts instructions per
reservation with valgrind instead (as bench.instructions: two sizes, the difference over the
difference in reservations; the clock fixed, no fsync, the collector off), which do not.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from atp.engine.writer import Writer
from atp.ledger import Ledger, commands
from atp.server.servicers import ReservationsServicer
from atp.store import LmdbStore
from atp.v1 import reservations_pb2
from bench.instructions import callgrind_instructions
from bench.micro import NOW, stocked_ledger
from bench.rules import (
    BENCH_CHANNEL,
    MARKETPLACE_CHANNEL,
    MARKETPLACE_QUANTITY,
    STORE_CHANNEL,
    STORE_SHARE,
)
from bench.servicer import drive

CONFIGURATIONS = ("plain", "policy", "rules")
SKUS = 2000  # the SKUs the reserves draw from (each one ruled in `rules`)
NODES = 5
# Reservations in the small and the large counted run (--instructions).
INSTRUCTION_SIZES = (1_000, 3_000)


def requests(count: int, seed: int, valued: bool) -> list[reservations_pb2.ReserveRequest]:
    """1-3 lines of 1-5 units at explicit nodes, as bench.context.reserve_request."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        request = reservations_pb2.ReserveRequest(reservation_id=f"r{index}",
                                                  channel=BENCH_CHANNEL)
        for sku in rng.sample(range(SKUS), rng.randint(1, 3)):
            line = request.lines.add(line_id=f"l{len(request.lines)}", sku=f"S{sku}",
                                     node_id=f"N{rng.randrange(NODES)}",
                                     quantity=rng.randint(1, 5))
            if valued:
                line.unit_value = rng.randint(1, 500)
        made.append(request)
    return made


def install_rules(ledger: Ledger, now: float, allocations: bool = True) -> None:
    """What bench.rules.install_rules sets over gRPC, on every SKU the reserves use (without
    `allocations`, the policies only)."""
    for sku in range(SKUS):
        ledger.execute(commands.SetAllocationPolicy(
            f"S{sku}", criteria=("CHANNEL_RANK", "VALUE", "PRIORITY", "FIFO"),
            channel_ranks=(STORE_CHANNEL, MARKETPLACE_CHANNEL, BENCH_CHANNEL)), now)
        if not allocations:
            continue
        ledger.execute(commands.SetChannelAllocation(f"S{sku}", "", STORE_CHANNEL,
                                                     share=STORE_SHARE), now)
        ledger.execute(commands.SetChannelAllocation(f"S{sku}", "N0", MARKETPLACE_CHANNEL,
                                                     quantity=MARKETPLACE_QUANTITY), now)
    ledger.take_changes()


async def measure(configuration: str, count: int, seed: int,
                  profiler: cProfile.Profile | None = None, counted: bool = False) -> float:
    """CPU microseconds per reservation. `counted` (the run callgrind counts): the clock
    fixed, 2,000 SKUs stocked (the reserves' own), no fsync, the collector off."""
    now = NOW if counted else time.time()
    ledger = stocked_ledger(now, skus=SKUS) if counted else stocked_ledger(now)
    if configuration != "plain":
        install_rules(ledger, now, allocations=configuration == "rules")
    batch = requests(count, seed, valued=configuration != "plain")
    gc.collect()  # and frozen, as atpd's freezer does: no full collection of the set-up
    gc.freeze()  # ledger lands in one configuration's time and not another's
    if counted:
        gc.disable()
    with tempfile.TemporaryDirectory() as data_dir:
        store = LmdbStore(data_dir, sync=not counted)
        writer = Writer(ledger, store, clock=(lambda: NOW) if counted else time.time)
        writer.start()
        servicer = ReservationsServicer(writer)
        if profiler:
            profiler.enable()
        cpu = time.process_time()
        await drive("unary", servicer, batch)
        cpu = time.process_time() - cpu
        if profiler:
            profiler.disable()
        await writer.close()
        store.close()
    assert len(ledger.reservations) == count and ledger.check_invariants() == []
    return cpu / count * 1e6


def count_instructions(configuration: str, calls: int) -> int:
    """Instructions of a whole counted run (`--workload`) under callgrind."""
    return callgrind_instructions(
        ["bench.quota_servicer", "--workload", configuration, str(calls)], 1800)


def instructions() -> None:
    """Instructions per reservation of each configuration: two runs of different sizes under
    callgrind, their difference over the difference in reservations (set-up cancels out)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: install it (Debian: apt-get install valgrind)")
    small, large = INSTRUCTION_SIZES
    per_call = {}
    for configuration in CONFIGURATIONS:
        with ThreadPoolExecutor(2) as pool:  # the two runs are independent: one per core
            counts = list(pool.map(count_instructions, (configuration,) * 2, (small, large)))
        per_call[configuration] = (counts[1] - counts[0]) / (large - small)
        print(f"{configuration:6s} {per_call[configuration]:10,.0f} instructions per "
              f"reservation ({per_call[configuration] / per_call['plain']:.3f} x plain)",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quota_servicer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reservations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=CONFIGURATIONS,
                        help="one run of this configuration under cProfile")
    parser.add_argument("--instructions", action="store_true",
                        help="instructions per reservation of each configuration (valgrind)")
    parser.add_argument("--workload", nargs=2, metavar=("CONFIGURATION", "CALLS"),
                        help="one counted run, uncounted here (what valgrind runs)")
    args = parser.parse_args()
    if args.workload:
        configuration, calls = args.workload
        asyncio.run(measure(configuration, int(calls), args.seed, counted=True))
        return
    if args.instructions:
        instructions()
        return
    if args.profile:
        profiler = cProfile.Profile()
        cpu_us = asyncio.run(measure(args.profile, args.reservations, args.seed, profiler))
        print(f"{args.profile:6s} {cpu_us:7.1f} us CPU per reservation (under cProfile)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    cheapest = dict.fromkeys(CONFIGURATIONS, float("inf"))
    for _ in range(args.rounds):  # interleaved, cheapest of each: less of the machine's noise
        for configuration in CONFIGURATIONS:
            cpu_us = asyncio.run(measure(configuration, args.reservations, args.seed))
            print(f"{configuration:6s} {cpu_us:7.1f} us CPU per reservation", flush=True)
            cheapest[configuration] = min(cheapest[configuration], cpu_us)
    plain = cheapest["plain"]
    print("cheapest: " + ", ".join(
        f"{name} {cpu_us:.1f} us ({cpu_us / plain:.3f} x plain)"
        for name, cpu_us in cheapest.items()))


if __name__ == "__main__":
    main()
