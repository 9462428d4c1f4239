"""Reserve through the servicer, writer, group commit and LMDB (no gRPC), with and without
the allocation rules of the `reserve_rules` workload: where a server's extra CPU per call
under rules goes.

    python -m bench.quota_servicer                       # 3 rounds x 10,000 reserves each
    python -m bench.quota_servicer --profile rules       # one configuration, cProfile top 30

Configurations, each on a fresh stocked ledger (bench.micro.stocked_ledger, 10^9 units at
every position, synced LMDB in a temporary directory):
  plain  unary Reserve of 1-3 lines at explicit nodes, channel "bench" (bench.context)
  policy the same reserves, each line with a unit value, every reserved SKU with the
         allocation policy bench.rules installs (no channel allocations: the control)
  rules  as policy, and every reserved SKU with bench.rules' channel allocations too: a
         10 % SKU-wide share for "store" and 50 units at the first node for "marketplace"
Prints CPU microseconds per reservation of each run, and the cheapest of each against plain.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import random
import tempfile
import time

from atp.engine.writer import Writer
from atp.ledger import Ledger, commands
from atp.server.servicers import ReservationsServicer
from atp.store import LmdbStore
from atp.v1 import reservations_pb2
from bench.micro import stocked_ledger
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
                  profiler: cProfile.Profile | None) -> float:
    """CPU microseconds per reservation."""
    now = time.time()
    ledger = stocked_ledger(now)
    if configuration != "plain":
        install_rules(ledger, now, allocations=configuration == "rules")
    batch = requests(count, seed, valued=configuration != "plain")
    gc.collect()  # and frozen, as atpd's freezer does: no full collection of the set-up
    gc.freeze()  # ledger lands in one configuration's time and not another's
    with tempfile.TemporaryDirectory() as data_dir:
        store = LmdbStore(data_dir, sync=True)
        writer = Writer(ledger, store)
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
        assert ledger.check_invariants() == []
    return cpu / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quota_servicer", description=__doc__)
    parser.add_argument("--reservations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=CONFIGURATIONS,
                        help="one run of this configuration under cProfile")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        cpu_us = asyncio.run(measure(args.profile, args.reservations, args.seed, profiler))
        print(f"{args.profile:6s} {cpu_us:7.1f} us CPU per reservation (under cProfile)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    cheapest = dict.fromkeys(CONFIGURATIONS, float("inf"))
    for _ in range(args.rounds):  # interleaved, cheapest of each: less of the machine's noise
        for configuration in CONFIGURATIONS:
            cpu_us = asyncio.run(measure(configuration, args.reservations, args.seed, None))
            print(f"{configuration:6s} {cpu_us:7.1f} us CPU per reservation", flush=True)
            cheapest[configuration] = min(cheapest[configuration], cpu_us)
    plain = cheapest["plain"]
    print("cheapest: " + ", ".join(
        f"{name} {cpu_us:.1f} us ({cpu_us / plain:.3f} x plain)"
        for name, cpu_us in cheapest.items()))


if __name__ == "__main__":
    main()
