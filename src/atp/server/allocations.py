"""The Allocations service: who gets scarce stock. Its RPCs live in two modules, one per
concern: allocation policies (atp.server.allocation_policies) and channel allocations
(atp.server.channel_allocations)."""

from __future__ import annotations

from atp.server.allocation_policies import PolicyMethods
from atp.server.channel_allocations import ChannelAllocationMethods
from atp.v1 import allocation_pb2_grpc


class AllocationsServicer(
    PolicyMethods, ChannelAllocationMethods, allocation_pb2_grpc.AllocationsServicer
):
    pass
