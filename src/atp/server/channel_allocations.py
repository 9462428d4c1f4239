"""Allocations service, channel-allocation RPCs: SetChannelAllocation and
ListChannelAllocations (mixed into AllocationsServicer)."""

from __future__ import annotations

from typing import Any

from atp.ledger.quotas import ChannelAllocation, standing_of
from atp.ledger.validation import Violations
from atp.server import channel_views
from atp.server.servicers import LedgerServicer
from atp.v1 import allocation_pb2


class ChannelAllocationMethods(LedgerServicer):
    """The channel-allocation RPCs: a ledger command to set one, a read to list them."""

    async def SetChannelAllocation(
        self, request: allocation_pb2.SetChannelAllocationRequest, context: Any
    ) -> allocation_pb2.ChannelAllocation:
        def present(allocation: ChannelAllocation) -> allocation_pb2.ChannelAllocation:
            return channel_views.allocation_message(
                standing_of(self.ledger, allocation, self._today()))

        return await self._mutate(
            context, ChannelAllocation, lambda: channel_views.set_command(request), present)

    async def ListChannelAllocations(
        self, request: allocation_pb2.ListChannelAllocationsRequest, context: Any
    ) -> allocation_pb2.ListChannelAllocationsResponse:
        def read() -> allocation_pb2.ListChannelAllocationsResponse:
            v = Violations()
            v.identifier("sku", request.sku, required=False)
            v.identifier("node_id", request.node_id, required=False)
            v.identifier("channel", request.channel, required=False)
            v.raise_if_any()
            return allocation_pb2.ListChannelAllocationsResponse(allocations=[
                channel_views.allocation_message(standing)
                for standing in channel_views.list_standings(
                    self.ledger, request, self._today())
            ])

        return await self._read(context, read)
