"""Names and shape of the data set the bench seeds; shared by the runner and the workers.

Two networks live on one server and never share a SKU:
- the *reservation* network: `nodes` DCs x `skus` SKUs, every position stocked, used by
  availability / reserve / lifecycle / mixed / stream / batch;
- the *promise* network: `promise_nodes` nodes in `regions` regions, each node with a lane
  to every region, `promise_skus` SKUs each stocked at a random subset of the nodes.
Everything is derived from the seed, so a worker process can rebuild the names it needs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Units received per stocked position: never exhausted by a bench run.
SEED_QUANTITY = 10**9
# Movements per AdjustStock call when seeding (the server's limit is 500).
SEED_CHUNK = 500


@dataclass(frozen=True)
class Catalog:
    skus: int
    nodes: int
    hot_skus: int
    promise_nodes: int
    promise_skus: int
    regions: int
    seed: int

    # -- reservation network -------------------------------------------------------------
    @staticmethod
    def sku(index: int) -> str:
        """SKU `index`; the first `hot_skus` ones are the hot SKUs."""
        return f"sku-{index:06d}"

    @staticmethod
    def node(index: int) -> str:
        return f"dc-{index:02d}"

    # -- promise network -----------------------------------------------------------------
    @staticmethod
    def promise_sku(index: int) -> str:
        return f"psku-{index:06d}"

    @staticmethod
    def promise_node(index: int) -> str:
        return f"pn-{index:03d}"

    @staticmethod
    def region(index: int) -> str:
        return f"region-{index:02d}"

    def promise_node_plan(self) -> list[dict[str, object]]:
        """Per promise node: region, handling days and one lane per region (transit, cost)."""
        rng = random.Random(f"{self.seed}/promise-nodes")
        plan: list[dict[str, object]] = []
        for index in range(self.promise_nodes):
            home = index % self.regions
            lanes = []
            for region in range(self.regions):
                distance = min(abs(region - home), self.regions - abs(region - home))
                lanes.append(
                    (self.region(region), 1 + distance + rng.randint(0, 2),
                     10 + 5 * distance + rng.randint(0, 20))
                )
            plan.append({
                "node_id": self.promise_node(index),
                "region": self.region(home),
                "handling_days": rng.randint(0, 2),
                "lanes": lanes,
            })
        return plan

    def promise_stocking(self) -> list[tuple[str, str]]:
        """(sku, node) pairs stocked in the promise network: each SKU at 2..10 random nodes."""
        rng = random.Random(f"{self.seed}/promise-stock")
        pairs: list[tuple[str, str]] = []
        most = min(10, self.promise_nodes)
        for index in range(self.promise_skus):
            count = rng.randint(min(2, most), most)
            for node in sorted(rng.sample(range(self.promise_nodes), count)):
                pairs.append((self.promise_sku(index), self.promise_node(node)))
        return pairs

    def reservation_stocking(self) -> list[tuple[str, str]]:
        return [(self.sku(s), self.node(n)) for s in range(self.skus) for n in range(self.nodes)]
