"""Seeds a fresh server: nodes of both networks, then stock with AdjustStock in chunks of 500."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import grpc

from atp.v1 import common_pb2, inventory_pb2, inventory_pb2_grpc
from bench.catalog import SEED_CHUNK, SEED_QUANTITY, Catalog

# AdjustStock calls in flight while seeding (each one group commit on the server).
_WINDOW = 8


def seed(target: str, catalog: Catalog, tag: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Creates every node and stocks every position; returns what was stocked and how fast."""
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryStub(channel)
        nodes = [
            common_pb2.Node(node_id=catalog.node(i), kind="DC", region=catalog.region(0))
            for i in range(catalog.nodes)
        ]
        for plan in catalog.promise_node_plan():
            nodes.append(common_pb2.Node(
                node_id=str(plan["node_id"]),
                kind="DC",
                region=str(plan["region"]),
                handling_days=int(plan["handling_days"]),  # type: ignore[call-overload]
                lanes=[
                    common_pb2.Lane(region=region, transit_days=transit, cost=cost)
                    for region, transit, cost in plan["lanes"]  # type: ignore[attr-defined]
                ],
            ))
        pipelined(
            stub.UpsertNode,
            (inventory_pb2.UpsertNodeRequest(node=node) for node in nodes),
            timeout_s,
        )
        pairs = catalog.reservation_stocking() + catalog.promise_stocking()
        requests = (
            inventory_pb2.AdjustStockRequest(
                request_id=f"{tag}-seed-{index // SEED_CHUNK}",
                movements=[
                    inventory_pb2.StockMovement(
                        sku=sku, node_id=node, type=inventory_pb2.StockMovement.RECEIPT,
                        quantity=SEED_QUANTITY, reason="bench seed",
                    )
                    for sku, node in pairs[index:index + SEED_CHUNK]
                ],
            )
            for index in range(0, len(pairs), SEED_CHUNK)
        )
        calls = pipelined(stub.AdjustStock, requests, timeout_s)
    return {
        "nodes": len(nodes),
        "positions": len(pairs),
        "adjust_stock_calls": calls,
        "seconds": round(time.monotonic() - started, 3),
        "stocked": {pair: SEED_QUANTITY for pair in pairs},
    }


def pipelined(method: Any, requests: Iterable[Any], timeout_s: float) -> int:
    """Sends requests with up to _WINDOW in flight; raises the first failure."""
    inflight: deque[Any] = deque()
    count = 0
    for request in requests:
        if len(inflight) >= _WINDOW:
            inflight.popleft().result()
        inflight.append(method.future(request, timeout=timeout_s))
        count += 1
    while inflight:
        inflight.popleft().result()
    return count
