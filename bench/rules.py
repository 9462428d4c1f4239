"""The allocation rules the `reserve_rules` workload runs under: every SKU of the reservation
network gets an allocation policy and two channel allocations, so that every Reserve of that
workload pays for resolving a policy and for fencing other channels' units.

Set just before the workload (and left in place: it is the last workload), so every other
workload runs on a server without rules, and `reserve` against `reserve_rules` is the
with/without comparison of issue 18 (reserve throughput within 10%).
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from atp.v1 import allocation_pb2, allocation_pb2_grpc
from bench.catalog import Catalog
from bench.seed import pipelined

# The channels: the workload reserves as BENCH_CHANNEL; the others hold fenced units.
BENCH_CHANNEL = "bench"
STORE_CHANNEL = "store"
MARKETPLACE_CHANNEL = "marketplace"
# What is fenced: a share of each SKU across its nodes for stores, and a quantity at the
# first node for the marketplace (small beside the seeded stock: the bench never runs short).
STORE_SHARE = 0.1
MARKETPLACE_QUANTITY = 50
POLICY = allocation_pb2.AllocationPolicy


def install_rules(target: str, catalog: Catalog, timeout_s: float = 120.0) -> dict[str, Any]:
    """Sets the policy and both channel allocations on every SKU of the reservation network."""
    started = time.monotonic()
    skus = [catalog.sku(index) for index in range(catalog.skus)]
    with grpc.insecure_channel(target) as channel:
        stub = allocation_pb2_grpc.AllocationsStub(channel)
        policies = pipelined(stub.SetAllocationPolicy, (
            allocation_pb2.SetAllocationPolicyRequest(policy=POLICY(
                sku=sku, criteria=[POLICY.CHANNEL_RANK, POLICY.VALUE, POLICY.PRIORITY,
                                   POLICY.FIFO],
                channel_ranks=[STORE_CHANNEL, MARKETPLACE_CHANNEL, BENCH_CHANNEL]))
            for sku in skus), timeout_s)
        shares = pipelined(stub.SetChannelAllocation, (
            allocation_pb2.SetChannelAllocationRequest(allocation=allocation_pb2.ChannelAllocation(
                sku=sku, channel=STORE_CHANNEL, share=STORE_SHARE))
            for sku in skus), timeout_s)
        quantities = pipelined(stub.SetChannelAllocation, (
            allocation_pb2.SetChannelAllocationRequest(allocation=allocation_pb2.ChannelAllocation(
                sku=sku, node_id=catalog.node(0), channel=MARKETPLACE_CHANNEL,
                quantity=MARKETPLACE_QUANTITY))
            for sku in skus), timeout_s)
    return {"policies": policies, "channel_allocations": shares + quantities,
            "seconds": round(time.monotonic() - started, 3)}
