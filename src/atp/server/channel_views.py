"""Channel allocations as clients read them: ChannelAllocation and ChannelAvailability
messages, and GetAvailability's per-channel view (atp.ledger.quotas holds the semantics)."""

from __future__ import annotations

from collections.abc import Callable

from atp.ledger import commands, quotas
from atp.ledger.model import Day, Position
from atp.ledger.view import LedgerView
from atp.server import convert
from atp.v1 import allocation_pb2, availability_pb2, common_pb2


def set_command(request: allocation_pb2.SetChannelAllocationRequest) -> (
        commands.SetChannelAllocation):
    allocation = request.allocation
    return commands.SetChannelAllocation(
        allocation.sku, allocation.node_id, allocation.channel, allocation.quantity,
        allocation.share,
        convert.date_tuple(allocation.end_date) if allocation.HasField("end_date") else None,
    )


def allocation_message(standing: quotas.Standing) -> allocation_pb2.ChannelAllocation:
    allocation = standing.allocation
    return allocation_pb2.ChannelAllocation(
        sku=allocation.sku, node_id=allocation.node_id, channel=allocation.channel,
        quantity=allocation.quantity, share=allocation.share,
        end_date=convert.date_message(allocation.end_day),
        allocated=standing.allocated, consumed=standing.consumed,
        available=standing.available,
    )


def availability_message(standing: quotas.Standing) -> common_pb2.ChannelAvailability:
    return common_pb2.ChannelAvailability(
        channel=standing.allocation.channel, allocated=standing.allocated,
        consumed=standing.consumed, available=standing.available,
        end_date=convert.date_message(standing.allocation.end_day),
    )


def list_standings(
    view: LedgerView, request: allocation_pb2.ListChannelAllocationsRequest, today: Day
) -> list[quotas.Standing]:
    """The allocations the filters select, by sku, node_id, channel."""
    skus = [request.sku] if request.sku else sorted(view.channel_allocations)
    chosen: list[quotas.Standing] = []
    for sku in skus:
        node_ids = sorted({node for node, _ in view.channel_allocations.get(sku, {})})
        for node_id in node_ids:
            if request.node_id and node_id != request.node_id:
                continue
            chosen += [s for s in quotas.standings(view, sku, node_id, today)
                       if not request.channel or s.allocation.channel == request.channel]
    return chosen


def sku_availability(
    view: LedgerView, sku: str, positions: list[Position], channel: str, today: Day,
    include_safety: bool,
    position_message: Callable[[Position], common_pb2.Position],
) -> tuple[list[common_pb2.Position], availability_pb2.NetworkAvailability]:
    """The SKU's position messages and its network total as `channel` sees them: the other
    channels' unconsumed node-scoped allocations off each position's available, their
    SKU-wide ones off the total's; each with the per-channel standings."""
    messages = [position_message(p) for p in positions]
    if sku not in view.channel_allocations:
        return messages, convert.network_total(sku, messages)
    fence = quotas.fence_for(view, [(sku, "")], channel, today, include_safety)
    if fence is not None:
        # Only `available` and the timeline are as the channel sees them: the phantom
        # demand is not demand, so it makes no position short.
        try:
            fenced = [position_message(p) for p in positions]
        finally:
            fence.undo()
        for message, seen in zip(messages, fenced, strict=True):
            message.available = seen.available
            del message.timeline[:]
            message.timeline.extend(seen.timeline)
    for message in messages:
        message.channels.extend(availability_message(s) for s in quotas.standings(
            view, sku, message.node_id, today))
    total = convert.network_total(sku, messages)
    wide = quotas.standings(view, sku, "", today)
    total.channels.extend(availability_message(s) for s in wide)
    total.available = max(0, total.available - quotas.others_available(wide, channel))
    return messages, total
