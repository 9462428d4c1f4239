"""SetChannelAllocation: a channel's allocation (quota) of a SKU set, changed or removed
(atp.ledger.quotas holds what it means for demand)."""

from __future__ import annotations

import math

from atp import limits
from atp.ledger import commands
from atp.ledger.event_data import iso_or_none
from atp.ledger.model import day_of
from atp.ledger.quotas import ChannelAllocation
from atp.ledger.state import LedgerState
from atp.ledger.validation import Violations

PATH = "allocation"  # the request's message, which every field path starts with


def set_channel_allocation(
    state: LedgerState, command: commands.SetChannelAllocation, now: float
) -> ChannelAllocation:
    """The allocation as set (quantity and share 0 when removed). Setting what is already
    set changes nothing and announces nothing."""
    allocation = check_channel_allocation(command, now)
    if command.node_id:
        state.node(command.node_id)  # NOT_FOUND
    current = state.channel_allocations.get(command.sku, {}).get(allocation.key)
    if current == allocation or (current is None and allocation.removed):
        return allocation
    state.save_channel_allocation(allocation)
    state.emit(
        now, "CHANNEL_ALLOCATION_SET", sku=allocation.sku, node_id=allocation.node_id,
        channel=allocation.channel, quantity=allocation.quantity, share=allocation.share,
        end_date=iso_or_none(allocation.end_day),
    )
    return allocation


def check_channel_allocation(
    command: commands.SetChannelAllocation, now: float
) -> ChannelAllocation:
    """The allocation the command sets, or InvalidArgument naming every bad field."""
    v = Violations()
    v.identifier(f"{PATH}.sku", command.sku)
    v.identifier(f"{PATH}.node_id", command.node_id, required=False)
    v.identifier(f"{PATH}.channel", command.channel)
    if not 0 <= command.quantity <= limits.quantity_max:
        v.add(f"{PATH}.quantity", f"must be 0..{limits.quantity_max}, got {command.quantity}")
    share = command.share
    if not math.isfinite(share) or not 0 <= share <= 1:
        v.add(f"{PATH}.share", f"must be in (0, 1], got {share}")
    elif share and command.quantity:
        v.add(f"{PATH}.share", "set either quantity or share, not both")
    end_day = v.date(f"{PATH}.end_date", command.end_date, required=False)
    removed = not command.quantity and not share
    if end_day is not None and end_day < day_of(now):
        v.add(f"{PATH}.end_date", "is in the past")
    v.raise_if_any()
    return ChannelAllocation(
        command.sku, command.node_id, command.channel, command.quantity, float(share),
        None if removed else end_day,
    )
