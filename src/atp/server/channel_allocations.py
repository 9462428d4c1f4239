"""Allocations service, channel-allocation RPCs: SetChannelAllocation and
ListChannelAllocations (mixed into AllocationsServicer)."""

from __future__ import annotations

from atp.server.servicers import LedgerServicer


class ChannelAllocationMethods(LedgerServicer):
    """The channel-allocation RPCs (not yet served: UNIMPLEMENTED until they land)."""
