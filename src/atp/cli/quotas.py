"""Channel allocations (quotas): atpctl quota set / list / clear, and the per-channel lines
`atpctl stock get` shows."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from atp.cli.arguments import date, whole_count
from atp.cli.outcome import CommandTree, Outcome
from atp.cli.views import date_text, format_table
from atp.client import Client
from atp.v1 import allocation_pb2, availability_pb2, common_pb2

QUOTA_HEADERS = ("SKU", "NODE", "CHANNEL", "QUANTITY", "SHARE", "END_DATE", "ALLOCATED",
                 "CONSUMED", "AVAILABLE")
CHANNEL_HEADERS = ("SKU", "NODE", "CHANNEL", "ALLOCATED", "CONSUMED", "AVAILABLE", "END_DATE")


def add_quota_commands(tree: CommandTree) -> None:
    quota = tree.group("quota", "channel allocations: units fenced for one sales channel")
    set_command = quota.command(
        "set", "fence a quantity or a share of a SKU's supply for a channel", _quota_set)
    _add_scope_arguments(set_command)
    amount = set_command.add_mutually_exclusive_group(required=True)
    amount.add_argument("--quantity", type=whole_count, help="units fenced")
    amount.add_argument("--share", type=_share, help="share of the supply, in (0, 1]")
    set_command.add_argument("--end-date", type=date, metavar="YYYY-MM-DD",
                             help="the last day it is fenced (default: no end)")

    clear = quota.command("clear", "remove a channel's allocation", _quota_clear)
    _add_scope_arguments(clear)

    list_command = quota.command(
        "list", "channel allocations with what each has allocated, consumed and available",
        _quota_list)
    list_command.add_argument("--sku", default="")
    list_command.add_argument("--node", dest="node_id", default="")
    list_command.add_argument("--channel", default="")


def _add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sku", required=True)
    parser.add_argument("--node", dest="node_id", default="",
                        help="one node (default: across every node of the SKU)")
    parser.add_argument("--channel", required=True, help="sales channel, e.g. web")


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {text!r}")
    return value


def _quota_set(client: Client, arguments: argparse.Namespace) -> Outcome:
    allocation = client.set_channel_allocation(
        arguments.sku, arguments.channel, node_id=arguments.node_id,
        quantity=arguments.quantity or 0, share=arguments.share or 0.0,
        end_date=arguments.end_date,
    )
    return Outcome(allocation, quotas_table([allocation]))


def _quota_clear(client: Client, arguments: argparse.Namespace) -> Outcome:
    allocation = client.set_channel_allocation(
        arguments.sku, arguments.channel, node_id=arguments.node_id)
    where = f" at {arguments.node_id}" if arguments.node_id else ""
    return Outcome(allocation, f"cleared: {arguments.channel}'s allocation of "
                               f"{arguments.sku}{where}")


def _quota_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.list_channel_allocations(
        sku=arguments.sku, node_id=arguments.node_id, channel=arguments.channel)
    return Outcome(response, quotas_table(response.allocations))


def quotas_table(allocations: Iterable[allocation_pb2.ChannelAllocation]) -> str:
    rows: list[tuple[Any, ...]] = [
        (a.sku, a.node_id or "(network)", a.channel, a.quantity, f"{a.share:g}" if a.share
         else "", date_text(a.end_date), a.allocated, a.consumed, a.available)
        for a in allocations
    ]
    return format_table(QUOTA_HEADERS, rows)


def channels_table(
    positions: Iterable[common_pb2.Position],
    totals: Iterable[availability_pb2.NetworkAvailability],
) -> str:
    """Per-channel lines of a GetAvailability answer; "" when no SKU has an allocation."""
    rows: list[tuple[Any, ...]] = [
        (position.sku, position.node_id, c.channel, c.allocated, c.consumed, c.available,
         date_text(c.end_date))
        for position in positions for c in position.channels
    ]
    rows += [
        (total.sku, "(network)", c.channel, c.allocated, c.consumed, c.available,
         date_text(c.end_date))
        for total in totals for c in total.channels
    ]
    return format_table(CHANNEL_HEADERS, rows) if rows else ""
