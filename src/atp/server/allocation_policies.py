"""Allocations service, allocation-policy RPCs: SetAllocationPolicy, GetAllocationPolicy,
ListAllocationPolicies and ExplainAllocation (mixed into AllocationsServicer)."""

from __future__ import annotations

from atp.server.servicers import LedgerServicer


class PolicyMethods(LedgerServicer):
    """The allocation-policy RPCs (not yet served: UNIMPLEMENTED until they land)."""
