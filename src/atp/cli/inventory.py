"""Commands on nodes, stock, safety stock, supply and holds."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Iterable
from typing import Any

from atp.cli.arguments import (
    MOVEMENT_TYPES_BY_HAND,
    PAGE_SIZE_MAX,
    date,
    lane,
    node_kind,
    positive_int,
    whole_count,
)
from atp.cli.outcome import CommandTree, Outcome, json_document
from atp.cli.quotas import channels_table
from atp.cli.views import (
    date_text,
    format_table,
    holds_table,
    lane_text,
    positions_table,
    timeline_table,
)
from atp.client import AtpError, Client
from atp.v1 import common_pb2, inventory_pb2


def add_node_commands(tree: CommandTree) -> None:
    nodes = tree.group("nodes", "list and define fulfillment nodes")
    nodes.command("list", "list every node with its lanes", _nodes_list)
    upsert = nodes.command(
        "upsert", "create or replace a node (fields not given are reset)", _nodes_upsert
    )
    upsert.add_argument("node_id", help="node id")
    upsert.add_argument(
        "--kind",
        type=node_kind,
        help="DC, STORE, 3PL, ...: 1..32 characters of A-Z, 0-9 and _, folded to upper case "
        "(default: DC)",
    )
    upsert.add_argument("--region", default="", help="region the node sits in")
    upsert.add_argument(
        "--handling-days", type=whole_count, default=0, help="days from order to ship"
    )
    upsert.add_argument("--inactive", action="store_true", help="take no new reservations")
    upsert.add_argument(
        "--lane",
        dest="lanes",
        action="append",
        type=lane,
        default=[],
        metavar="REGION:TRANSIT_DAYS[:COST]",
        help="a delivery lane to REGION, TRANSIT_DAYS 0..365 days after shipping, COST the "
        "relative cost per shipment CHEAPEST compares (default: 0) (repeatable)",
    )

def add_stock_commands(tree: CommandTree) -> None:
    stock = tree.group("stock", "inspect and move physical stock")
    get = stock.command("get", "positions of SKUs and their network totals", _stock_get)
    get.add_argument("skus", nargs="+", metavar="SKU", help="SKU to show")
    get.add_argument(
        "--node", dest="node_ids", action="append", default=[], help="node (repeatable)"
    )
    get.add_argument("--timeline", action="store_true", help="show the ATP timeline")
    get.add_argument(
        "--priority", type=int, default=0, help="demand priority to compute for (default: 0)"
    )
    get.add_argument("--channel", default="", help="sales channel to compute available for: "
                     "other channels' unconsumed allocations are not available to it")

    adjust = stock.command("adjust", "book a receipt, return, shrinkage or damage", _stock_adjust)
    _add_position_arguments(adjust)
    adjust.add_argument("--type", required=True, type=str.upper, choices=MOVEMENT_TYPES_BY_HAND)
    adjust.add_argument("--quantity", required=True, type=positive_int, help="units moved")
    _add_movement_options(adjust)

    count = stock.command(
        "count", "book a cycle count: on_hand becomes the counted units", _stock_count
    )
    _add_position_arguments(count)
    count.add_argument("--quantity", required=True, type=whole_count, help="units counted")
    _add_movement_options(count)

    transfer = stock.command(
        "transfer", "move available units from one node to another", _stock_transfer
    )
    transfer.add_argument("--sku", required=True)
    transfer.add_argument("--from", dest="from_node_id", required=True, metavar="NODE")
    transfer.add_argument("--to", dest="to_node_id", required=True, metavar="NODE")
    transfer.add_argument("--quantity", required=True, type=positive_int, help="units moved")
    _add_movement_options(transfer)

def _add_position_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sku", required=True)
    parser.add_argument("--node", dest="node_id", required=True)

def _add_movement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="free text written to the journal")
    add_request_id_option(parser)

def add_request_id_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--request-id", help="idempotency key: repeat it to retry safely (default: a new one)"
    )

def add_safety_stock_commands(tree: CommandTree) -> None:
    safety_stock = tree.group("safety-stock", "set the buffer normal demand may not use")
    set_command = safety_stock.command(
        "set", "set the safety stock of a position", _safety_stock_set
    )
    _add_position_arguments(set_command)
    set_command.add_argument("--quantity", required=True, type=whole_count)

def add_supply_commands(tree: CommandTree) -> None:
    supply = tree.group("supply", "inbound supply: purchase orders, ASNs, transfers")
    upsert = supply.command(
        "upsert", "create or update inbound supply (quantity 0 cancels)", _supply_upsert
    )
    upsert.add_argument("--id", dest="supply_id", required=True)
    _add_position_arguments(upsert)
    upsert.add_argument("--quantity", required=True, type=whole_count)
    upsert.add_argument("--expected", required=True, type=date, metavar="YYYY-MM-DD")

    receive = supply.command("receive", "move received units into on_hand", _supply_receive)
    receive.add_argument("--id", dest="supply_id", required=True)
    receive.add_argument("--quantity", required=True, type=positive_int)
    add_request_id_option(receive)

    list_command = supply.command("list", "list open inbound supply", _supply_list)
    list_command.add_argument("--sku", default="")
    list_command.add_argument("--node", dest="node_id", default="")
    list_command.add_argument("--all", action="store_true", help="include received and cancelled")

def add_hold_commands(tree: CommandTree) -> None:
    hold = tree.group("hold", "manual holds on stock (quality, damage, events)")
    place = hold.command("place", "hold units of a position", _hold_place)
    place.add_argument("--id", dest="hold_id", required=True)
    _add_position_arguments(place)
    place.add_argument("--quantity", required=True, type=positive_int)
    place.add_argument("--reason", default="")
    place.add_argument("--expires-in", type=positive_int, metavar="SECONDS", help="release then")
    place.add_argument(
        "--force", action="store_true", help="hold even units that are not available"
    )

    release = hold.command(
        "release", "release a hold: shown as RELEASED with the units it held", _hold_release
    )
    release.add_argument("hold_id", metavar="ID")

    list_command = hold.command("list", "list active holds", _hold_list)
    list_command.add_argument("--sku", default="")
    list_command.add_argument("--node", dest="node_id", default="")

def _nodes_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.list_nodes()
    return Outcome(response, _nodes_table(response.nodes))

def _nodes_upsert(client: Client, arguments: argparse.Namespace) -> Outcome:
    node = client.upsert_node(
        node_id=arguments.node_id,
        kind=arguments.kind or "",
        region=arguments.region,
        active=not arguments.inactive,
        handling_days=arguments.handling_days,
        lanes=arguments.lanes,
    )
    return Outcome(node, _nodes_table([node]))

def _stock_get(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.get_availability(
        arguments.skus,
        node_ids=arguments.node_ids,
        include_timeline=arguments.timeline,
        priority=arguments.priority,
        channel=arguments.channel,
    )
    text = positions_table(response.positions, response.totals)
    channels = channels_table(response.positions, response.totals)
    if channels:
        text += "\n\n" + channels
    if arguments.timeline:
        text += "\n\n" + timeline_table(response.positions)
    return Outcome(response, text)

def _stock_adjust(client: Client, arguments: argparse.Namespace) -> Outcome:
    movement = _movement(arguments, arguments.type, arguments.quantity)
    return _adjust(client, arguments, movement)

def _stock_count(client: Client, arguments: argparse.Namespace) -> Outcome:
    movement = _movement(arguments, "CYCLE_COUNT", arguments.quantity)
    return _adjust(client, arguments, movement)

def _stock_transfer(client: Client, arguments: argparse.Namespace) -> Outcome:
    movement = {
        "sku": arguments.sku,
        "node_id": arguments.from_node_id,
        "to_node_id": arguments.to_node_id,
        "type": "TRANSFER",
        "quantity": arguments.quantity,
        "reason": arguments.reason,
    }
    return _adjust(client, arguments, movement)

def _movement(arguments: argparse.Namespace, movement_type: str, quantity: int) -> dict[str, Any]:
    return {
        "sku": arguments.sku,
        "node_id": arguments.node_id,
        "type": movement_type,
        "quantity": quantity,
        "reason": arguments.reason,
    }

def _adjust(client: Client, arguments: argparse.Namespace, movement: dict[str, Any]) -> Outcome:
    response = client.adjust_stock([movement], request_id=arguments.request_id)
    return Outcome(response, positions_table(response.positions))

def _safety_stock_set(client: Client, arguments: argparse.Namespace) -> Outcome:
    position = client.set_safety_stock(arguments.sku, arguments.node_id, arguments.quantity)
    return Outcome(position, positions_table([position]))

def _supply_upsert(client: Client, arguments: argparse.Namespace) -> Outcome:
    supply = client.upsert_supply(
        arguments.supply_id,
        arguments.sku,
        arguments.node_id,
        arguments.quantity,
        arguments.expected,
    )
    return Outcome(supply, _supply_table([supply]))

def _supply_receive(client: Client, arguments: argparse.Namespace) -> Outcome:
    supply = client.receive_supply(
        arguments.supply_id, arguments.quantity, request_id=arguments.request_id
    )
    return Outcome(supply, _supply_table([supply]))

def _supply_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    supplies = list(
        client.iter_supply(
            sku=arguments.sku,
            node_id=arguments.node_id,
            include_closed=arguments.all,
            page_size=PAGE_SIZE_MAX,
        )
    )
    response = inventory_pb2.ListSupplyResponse(supplies=supplies)
    return Outcome(response, _supply_table(supplies))

def _hold_place(client: Client, arguments: argparse.Namespace) -> Outcome:
    expire_time = None
    if arguments.expires_in is not None:
        now = datetime.datetime.now(datetime.UTC)
        expire_time = now + datetime.timedelta(seconds=arguments.expires_in)
    hold = client.place_hold(
        arguments.hold_id,
        arguments.sku,
        arguments.node_id,
        arguments.quantity,
        reason=arguments.reason,
        expire_time=expire_time,
        force=arguments.force,
    )
    return Outcome(hold, holds_table([hold]))

def _hold_release(client: Client, arguments: argparse.Namespace) -> Outcome:
    # The server answers a released hold with quantity 0: what it held is read first, while
    # it is still active (a hold released before shows no quantity).
    try:
        held = next(
            (
                hold.quantity
                for hold in client.iter_holds(page_size=PAGE_SIZE_MAX)
                if hold.hold_id == arguments.hold_id
            ),
            None,
        )
    except AtpError:  # e.g. a caller who may release but not list: the quantity stays unknown
        held = None
    hold = client.release_hold(arguments.hold_id)
    document = json_document(hold)
    document["state"] = "RELEASED"
    if held is not None:
        document["released_quantity"] = held
    return Outcome(document, holds_table([hold], state="RELEASED", held=held))


def _hold_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    holds = list(
        client.iter_holds(sku=arguments.sku, node_id=arguments.node_id, page_size=PAGE_SIZE_MAX)
    )
    return Outcome(inventory_pb2.ListHoldsResponse(holds=holds), holds_table(holds))

def _nodes_table(nodes: Iterable[common_pb2.Node]) -> str:
    rows = [
        (
            node.node_id,
            node.kind,
            node.region,
            node.active,
            node.handling_days,
            ", ".join(lane_text(lane) for lane in node.lanes),
        )
        for node in nodes
    ]
    return format_table(("NODE", "KIND", "REGION", "ACTIVE", "HANDLING_DAYS", "LANES"), rows)

def _supply_table(supplies: Iterable[common_pb2.Supply]) -> str:
    rows = [
        (
            supply.supply_id, supply.sku, supply.node_id, supply.quantity,
            supply.received_quantity, date_text(supply.expected_date),
            common_pb2.Supply.State.Name(supply.state),
        )
        for supply in supplies
    ]  # fmt: skip
    headers = ("SUPPLY", "SKU", "NODE", "OPEN", "RECEIVED", "EXPECTED", "STATE")
    return format_table(headers, rows)
