"""In-process micro-benchmark: what channel allocations cost a Reserve (no gRPC).

    python -m bench.quota_micro                  # 20,000 reserves, each variant
    python -m bench.quota_micro --reserves 5000 --hot-skus 10

Variants, each on a fresh ledger (SKUs x 5 nodes, 10^9 units each), the same reserves of
1-3 lines at explicit nodes from channels web/store/market in turn:
  none       no allocation anywhere (the dict lookup only)
  other-skus allocations set, but on SKUs the reserves never touch
  fenced     every reserved SKU has a node-scoped allocation for web at each node and a
             SKU-wide share for store: every reserve fences (phantoms, cap, consumption)
Prints the best of --rounds interleaved runs in reserves per second, and the ratio to
`none`. Compare runs made back to back.
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from atp.ledger import Ledger, commands
from bench.micro import NOW, stocked_ledger

CHANNELS = ("web", "store", "market")


def reserves(count: int, skus: int, seed: int) -> list[commands.Reserve]:
    rng = random.Random(seed)
    return [
        commands.Reserve(f"r{index}", tuple(
            commands.LineRequest(f"l{line}", f"S{rng.randrange(skus)}", 1, f"N{rng.randrange(5)}")
            for line in range(rng.randint(1, 3))
        ), channel=CHANNELS[index % 3])
        for index in range(count)
    ]


def allocate(ledger: Ledger, skus: range) -> None:
    for sku in skus:
        for node in range(5):
            ledger.execute(commands.SetChannelAllocation(f"S{sku}", f"N{node}", "web",
                                                         quantity=1000), NOW)
        ledger.execute(commands.SetChannelAllocation(f"S{sku}", "", "store", share=0.1), NOW)
    ledger.take_changes()


def run(variant: str, batch: list[commands.Reserve], skus: int) -> float:
    ledger = stocked_ledger(skus=max(skus, 200) if variant != "other-skus" else skus + 200)
    if variant == "other-skus":
        allocate(ledger, range(skus, skus + 200))
    elif variant == "fenced":
        allocate(ledger, range(skus))
    gc.collect()  # and frozen, as atpd's freezer does: no full collection of the set-up
    gc.freeze()  # ledger lands in one variant's time and not another's
    started = time.perf_counter()
    for index, command in enumerate(batch):
        ledger.execute(command, NOW)
        if index % 50 == 49:
            ledger.take_changes()
    elapsed = time.perf_counter() - started
    assert ledger.check_invariants() == []
    return len(batch) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reserves", type=int, default=20_000)
    parser.add_argument("--hot-skus", type=int, default=2000, help="SKUs the reserves draw from")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant (best)")
    arguments = parser.parse_args()
    batch = reserves(arguments.reserves, arguments.hot_skus, arguments.seed)
    variants = ("none", "other-skus", "fenced")
    best = dict.fromkeys(variants, 0.0)
    for _ in range(arguments.rounds):  # interleaved, best of each: less of the machine's noise
        for variant in variants:
            best[variant] = max(best[variant], run(variant, batch, arguments.hot_skus))
    for variant in variants:
        rate = best[variant]
        print(f"{variant:10s} {rate:10.0f} reserves/s  {rate / best['none']:5.2f} x none")


if __name__ == "__main__":
    main()
