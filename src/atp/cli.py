"""atpctl: the ops command line of the ATP engine, speaking to atpd through atp.client."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_status import rpc_status

from atp import kpi, limits
from atp.client import CHANNEL_OPTIONS, DEFAULT_TARGET, AtpError, Client
from atp.v1 import (
    availability_pb2,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    reservations_pb2,
)

EXIT_OK = 0
EXIT_FAILURE = 1  # The server (or the store) said no, or could not be reached.
EXIT_USAGE = 2  # The command line itself is wrong (argparse uses 2 too).
EXIT_INTERRUPTED = 130

LINE_PATTERN = re.compile(
    r"^(?P<line_id>[^:]+):(?P<sku>.+):(?P<quantity>\d+)"
    r"(?:@(?P<node_id>[^@/]+))?(?:/(?P<ship_date>\d{4}-\d{2}-\d{2}))?$"
)
ORDER_LINE_PATTERN = re.compile(r"^(?P<line_id>[^:]+):(?P<sku>.+):(?P<quantity>\d+)$")
LINE_QUANTITY_PATTERN = re.compile(r"^(?P<line_id>.+)=(?P<quantity>\d+)$")
LANE_PATTERN = re.compile(r"^(?P<region>[^:]+):(?P<transit_days>\d+)(?::(?P<cost>\d+))?$")

MOVEMENT_TYPES_BY_HAND = ("RECEIPT", "RETURN", "SHRINKAGE", "DAMAGE")
RESERVATION_STATES = tuple(
    common_pb2.Reservation.State.Name(value)
    for value in common_pb2.Reservation.State.values()
    if value
)
RESERVATION_LIST_LIMIT_DEFAULT = 100
PAGE_SIZE_MAX = limits.page_size_max


@dataclass
class Outcome:
    """What a command produced: a JSON document for machines, text for people, an exit code."""

    document: Message | Mapping[str, Any]
    text: str
    exit_code: int = EXIT_OK
    # Said on stderr as "error: ..." after the output (e.g. a plan that could not be applied).
    error: str = ""
    # The command printed its output as it went (watch): nothing is left to print.
    streamed: bool = False


ClientCommand = Callable[[Client, argparse.Namespace], Outcome]
OfflineCommand = Callable[[argparse.Namespace], Outcome]


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    """Runs one atpctl command; returns the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse exits on --help (0) and on bad usage (2).
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    if getattr(arguments, "command", None) is None:
        usage_parser = getattr(arguments, "group_parser", parser)
        usage_parser.print_usage(sys.stderr)
        return _fail("a command is required (see --help)", EXIT_USAGE)
    try:
        outcome = _run(arguments)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except AtpError as error:
        return _fail(_describe_atp_error(error, arguments.target), EXIT_FAILURE)
    except OfflineStoreError as error:
        return _fail(str(error), EXIT_FAILURE)
    except grpc.RpcError as error:  # Only if something bypassed the client's translation.
        return _fail(f"{error}", EXIT_FAILURE)
    except ValueError as error:  # A value the request cannot carry, e.g. an int32 overflow.
        return _fail(str(error), EXIT_USAGE)
    try:
        _print_outcome(outcome, as_json=arguments.json)
    except BrokenPipeError:
        # The reader went away (`atpctl ... | head`): say nothing more, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    return outcome.exit_code


def _run(arguments: argparse.Namespace) -> Outcome:
    if arguments.offline:
        offline_command: OfflineCommand = arguments.command
        return offline_command(arguments)
    client_command: ClientCommand = arguments.command
    # The channel is ours, so that streaming commands (watch, kpi) can open Events.Watch with
    # every filter the server has on the same connection.
    channel = grpc.insecure_channel(arguments.target, CHANNEL_OPTIONS)
    try:
        with Client(arguments.target, timeout_s=arguments.timeout, channel=channel) as client:
            arguments.grpc_channel = channel
            return client_command(client, arguments)
    finally:
        channel.close()


def _fail(message: str, exit_code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return exit_code


def _describe_atp_error(error: AtpError, target: str) -> str:
    # A connection failure is raised by the channel itself, without any detail from a server.
    if error.code is grpc.StatusCode.UNAVAILABLE and not error.details:
        return f"cannot reach atpd at {target} (UNAVAILABLE)"
    return str(error)


def _print_outcome(outcome: Outcome, *, as_json: bool) -> None:
    if outcome.streamed:
        pass
    elif as_json:
        print(json.dumps(_json_document(outcome.document), indent=2, sort_keys=False))
    elif outcome.text:
        print(outcome.text)
    if outcome.error:
        sys.stdout.flush()
        _fail(outcome.error, outcome.exit_code)


def _json_document(document: Message | Mapping[str, Any]) -> Any:
    if isinstance(document, Message):
        # Zero values are printed too, so that a script reads 0 rather than a missing key.
        return json_format.MessageToDict(
            document,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    return dict(document)


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    """The whole atpctl command tree."""
    parser = argparse.ArgumentParser(
        prog="atpctl", description="Operate an ATP engine (atpd): stock, holds, reservations."
    )
    _add_global_options(parser, defaults=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    global_options = argparse.ArgumentParser(add_help=False)
    _add_global_options(global_options, defaults=False)
    tree = _CommandTree(commands, global_options)
    _add_node_commands(tree)
    _add_stock_commands(tree)
    _add_safety_stock_commands(tree)
    _add_supply_commands(tree)
    _add_hold_commands(tree)
    _add_reservation_commands(tree)
    _add_reserve_command(tree)
    _add_promise_command(tree)
    _add_at_risk_command(tree)
    _add_reallocate_command(tree)
    _add_watch_command(tree)
    _add_kpi_command(tree)
    _add_health_command(tree)
    _add_database_commands(tree)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # The subcommands repeat the global options without defaults, so that they may be given
    # after the subcommand too (`atpctl stock get A --json`) without resetting earlier ones.
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(os.environ.get("ATP_TARGET", DEFAULT_TARGET)),
        help=f"atpd address host:port (default: $ATP_TARGET, else {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (protobuf field names) instead of tables",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(5.0),
        metavar="SECONDS",
        help="deadline of each call (default: 5)",
    )


class _CommandTree:
    """Adds commands and command groups, each with a one-line help and the global options."""

    def __init__(self, commands: Any, global_options: argparse.ArgumentParser) -> None:
        self._commands = commands
        self._global_options = global_options

    def group(self, name: str, help_text: str) -> _CommandTree:
        parser = self._commands.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(command=None, group_parser=parser)
        return _CommandTree(
            parser.add_subparsers(title="commands", metavar="COMMAND"), self._global_options
        )

    def command(
        self,
        name: str,
        help_text: str,
        run: ClientCommand | OfflineCommand,
        *,
        offline: bool = False,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._commands.add_parser(
            name, help=help_text, description=help_text, parents=[self._global_options]
        )
        parser.set_defaults(command=run, offline=offline)
        return parser


def _add_node_commands(tree: _CommandTree) -> None:
    nodes = tree.group("nodes", "list and define fulfillment nodes")
    nodes.command("list", "list every node with its lanes", _nodes_list)
    upsert = nodes.command(
        "upsert", "create or replace a node (fields not given are reset)", _nodes_upsert
    )
    upsert.add_argument("node_id", help="node id")
    upsert.add_argument("--kind", default="", help="DC, STORE, 3PL, ... (default: DC)")
    upsert.add_argument("--region", default="", help="region the node sits in")
    upsert.add_argument("--handling-days", type=_count, default=0, help="days from order to ship")
    upsert.add_argument("--inactive", action="store_true", help="take no new reservations")
    upsert.add_argument(
        "--lane",
        dest="lanes",
        action="append",
        type=_lane,
        default=[],
        metavar="REGION:TRANSIT_DAYS[:COST]",
        help="a delivery lane (repeatable)",
    )


def _add_stock_commands(tree: _CommandTree) -> None:
    stock = tree.group("stock", "inspect and move physical stock")
    get = stock.command("get", "positions of SKUs and their network totals", _stock_get)
    get.add_argument("skus", nargs="+", metavar="SKU", help="SKU to show")
    get.add_argument(
        "--node", dest="node_ids", action="append", default=[], help="node (repeatable)"
    )
    get.add_argument("--timeline", action="store_true", help="show the ATP timeline")
    get.add_argument("--priority", type=int, default=0, help="demand priority to compute for")

    adjust = stock.command("adjust", "book a receipt, return, shrinkage or damage", _stock_adjust)
    _add_position_arguments(adjust)
    adjust.add_argument("--type", required=True, type=str.upper, choices=MOVEMENT_TYPES_BY_HAND)
    adjust.add_argument("--quantity", required=True, type=_positive_int, help="units moved")
    _add_movement_options(adjust)

    count = stock.command(
        "count", "book a cycle count: on_hand becomes the counted units", _stock_count
    )
    _add_position_arguments(count)
    count.add_argument("--quantity", required=True, type=_count, help="units counted")
    _add_movement_options(count)

    transfer = stock.command(
        "transfer", "move available units from one node to another", _stock_transfer
    )
    transfer.add_argument("--sku", required=True)
    transfer.add_argument("--from", dest="from_node_id", required=True, metavar="NODE")
    transfer.add_argument("--to", dest="to_node_id", required=True, metavar="NODE")
    transfer.add_argument("--quantity", required=True, type=_positive_int, help="units moved")
    _add_movement_options(transfer)


def _add_position_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sku", required=True)
    parser.add_argument("--node", dest="node_id", required=True)


def _add_movement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="free text written to the journal")
    _add_request_id_option(parser)


def _add_request_id_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--request-id", help="idempotency key: repeat it to retry safely (default: a new one)"
    )


def _add_safety_stock_commands(tree: _CommandTree) -> None:
    safety_stock = tree.group("safety-stock", "set the buffer normal demand may not use")
    set_command = safety_stock.command(
        "set", "set the safety stock of a position", _safety_stock_set
    )
    _add_position_arguments(set_command)
    set_command.add_argument("--quantity", required=True, type=_count)


def _add_supply_commands(tree: _CommandTree) -> None:
    supply = tree.group("supply", "inbound supply: purchase orders, ASNs, transfers")
    upsert = supply.command(
        "upsert", "create or update inbound supply (quantity 0 cancels)", _supply_upsert
    )
    upsert.add_argument("--id", dest="supply_id", required=True)
    _add_position_arguments(upsert)
    upsert.add_argument("--quantity", required=True, type=_count)
    upsert.add_argument("--expected", required=True, type=_date, metavar="YYYY-MM-DD")

    receive = supply.command("receive", "move received units into on_hand", _supply_receive)
    receive.add_argument("--id", dest="supply_id", required=True)
    receive.add_argument("--quantity", required=True, type=_positive_int)
    _add_request_id_option(receive)

    list_command = supply.command("list", "list open inbound supply", _supply_list)
    list_command.add_argument("--sku", default="")
    list_command.add_argument("--node", dest="node_id", default="")
    list_command.add_argument("--all", action="store_true", help="include received and cancelled")


def _add_hold_commands(tree: _CommandTree) -> None:
    hold = tree.group("hold", "manual holds on stock (quality, damage, events)")
    place = hold.command("place", "hold units of a position", _hold_place)
    place.add_argument("--id", dest="hold_id", required=True)
    _add_position_arguments(place)
    place.add_argument("--quantity", required=True, type=_positive_int)
    place.add_argument("--reason", default="")
    place.add_argument("--expires-in", type=_positive_int, metavar="SECONDS", help="release then")
    place.add_argument(
        "--force", action="store_true", help="hold even units that are not available"
    )

    release = hold.command("release", "release a hold", _hold_release)
    release.add_argument("hold_id", metavar="ID")

    list_command = hold.command("list", "list active holds", _hold_list)
    list_command.add_argument("--sku", default="")
    list_command.add_argument("--node", dest="node_id", default="")


def _add_reservation_commands(tree: _CommandTree) -> None:
    reservation = tree.group("reservation", "inspect and move reservations through their states")
    get = reservation.command("get", "show one reservation", _reservation_get)
    get.add_argument("reservation_id", metavar="ID")

    list_command = reservation.command("list", "list reservations", _reservation_list)
    list_command.add_argument("--state", type=str.upper, choices=RESERVATION_STATES)
    list_command.add_argument("--sku", default="")
    list_command.add_argument("--node", dest="node_id", default="")
    list_command.add_argument(
        "--at-risk", action="store_true", help="only those with an at-risk line"
    )
    list_command.add_argument(
        "--limit",
        type=_count,
        default=RESERVATION_LIST_LIMIT_DEFAULT,
        help=f"most reservations to show, 0 for all (default: {RESERVATION_LIST_LIMIT_DEFAULT})",
    )

    commit = reservation.command(
        "commit", "make a HELD reservation firm (COMMITTED)", _reservation_commit
    )
    commit.add_argument("reservation_id", metavar="ID")
    _add_request_id_option(commit)
    for name, help_text, run in (
        ("release", "release a reservation, or some units of its lines", _reservation_release),
        ("fulfill", "ship a reservation, or some units of its lines", _reservation_fulfill),
    ):
        command = reservation.command(name, help_text, run)
        command.add_argument("reservation_id", metavar="ID")
        command.add_argument(
            "--line",
            dest="lines",
            action="append",
            type=_line_quantity,
            default=[],
            metavar="LINE_ID=QTY",
            help="only this many units of this line (repeatable)",
        )
        _add_request_id_option(command)


def _add_reserve_command(tree: _CommandTree) -> None:
    reserve = tree.command("reserve", "reserve order lines atomically (all or none)", _reserve)
    reserve.add_argument(
        "reservation_id", metavar="ID", help="reservation id (usually the order id)"
    )
    reserve.add_argument(
        "--line",
        dest="lines",
        action="append",
        type=_reservation_line,
        required=True,
        metavar="LINE_ID:SKU:QTY[@NODE][/YYYY-MM-DD]",
        help="a line; without @NODE the server sources it (repeatable)",
    )
    reserve.add_argument("--region", default="", help="destination region")
    reserve.add_argument(
        "--ttl", type=_count, default=0, metavar="SECONDS", help="life of a HELD reservation"
    )
    reserve.add_argument("--commit", action="store_true", help="firm at once (COMMITTED)")
    reserve.add_argument("--channel", default="", help="sales channel")
    reserve.add_argument("--customer", dest="customer_id", default="", help="customer id")
    _add_policy_options(reserve)


def _add_promise_command(tree: _CommandTree) -> None:
    promise = tree.command(
        "promise", "quote where and when order lines can ship (read-only)", _promise
    )
    promise.add_argument(
        "--line",
        dest="lines",
        action="append",
        type=_order_line,
        required=True,
        metavar="LINE_ID:SKU:QTY",
        help="an order line (repeatable)",
    )
    promise.add_argument("--region", required=True, help="destination region")
    promise.add_argument("--explain", action="store_true", help="show why each node won or lost")
    _add_policy_options(promise)


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ship-complete", action="store_true", help="one delivery date for all lines"
    )
    parser.add_argument(
        "--max-nodes", type=_count, default=0, help="most nodes to split over (0: any)"
    )
    parser.add_argument("--partial", action="store_true", help="backorder what cannot be placed")
    parser.add_argument("--cheapest", action="store_true", help="cheapest rather than earliest")
    parser.add_argument("--priority", type=int, default=0, help="demand priority")


def _add_at_risk_command(tree: _CommandTree) -> None:
    at_risk = tree.command(
        "at-risk", "list the reservation lines whose promise is at risk", _at_risk
    )
    at_risk.add_argument("--sku", default="", help="only lines of this SKU")
    at_risk.add_argument(
        "--node", dest="node_id", default="", metavar="NODE", help="only lines at this node"
    )


def _add_reallocate_command(tree: _CommandTree) -> None:
    reallocate = tree.command(
        "reallocate",
        "plan (default: a dry run) or apply re-sourcing of at-risk reservations",
        _reallocate,
    )
    reallocate.add_argument(
        "--node", dest="node_id", default="", metavar="NODE", help="only demand at this node"
    )
    reallocate.add_argument("--sku", default="", help="only demand for this SKU")
    reallocate.add_argument(
        "--ids",
        dest="reservation_ids",
        nargs="+",
        action="extend",
        default=[],
        metavar="ID",
        help="only these reservations",
    )
    reallocate.add_argument(
        "--reservation",
        dest="reservation_ids",
        action="append",
        metavar="ID",
        help="only this reservation (repeatable; same as --ids)",
    )
    reallocate.add_argument(
        "--apply",
        action="store_true",
        help="apply the plan shown (refused if the ledger moved since: PLAN_STALE)",
    )
    reallocate.add_argument(
        "--plan-sequence",
        type=_count,
        default=0,
        metavar="N",
        help="with --apply: apply the plan of an earlier dry run, only if the ledger is still at N",
    )


def _add_watch_command(tree: _CommandTree) -> None:
    watch = tree.command(
        "watch",
        "stream journal events, one per line (--json: one JSON object per line); Ctrl-C stops",
        _watch,
    )
    watch.add_argument(
        "--from",
        dest="from_sequence",
        type=_count,
        default=0,
        metavar="SEQ",
        help="first sequence to show; 0 (the default) or 1: the oldest retained event. A later "
        "sequence no longer retained is an error naming the oldest",
    )
    watch.add_argument(
        "--type",
        dest="types",
        action="append",
        type=_event_types,
        default=[],
        metavar="TYPE",
        help="only events of this type, e.g. LINE_AT_RISK (repeatable, or comma separated)",
    )
    watch.add_argument("--sku", default="", help="only events about this SKU")
    watch.add_argument(
        "--node", dest="node_id", default="", metavar="NODE", help="only events about this node"
    )
    watch.add_argument(
        "--reservation",
        dest="reservation_id",
        default="",
        metavar="ID",
        help="only events of this reservation",
    )
    watch.add_argument(
        "--until-head",
        action="store_true",
        help="stop after the events recorded up to now instead of following live ones",
    )


def _add_kpi_command(tree: _CommandTree) -> None:
    kpi_command = tree.command(
        "kpi",
        "fill rate, promises kept, backorders, time at risk and outcomes, from the journal",
        _kpi,
    )
    kpi_command.add_argument(
        "--since",
        type=_instant,
        metavar="ISO",
        help="reservations created at or after this date or date-time (UTC unless zoned)",
    )
    kpi_command.add_argument(
        "--until",
        type=_instant,
        metavar="ISO",
        help="only what happened before this date or date-time (default: now)",
    )


def _add_health_command(tree: _CommandTree) -> None:
    tree.command("health", "the server's health status (exit 1 unless SERVING)", _health)


def _add_database_commands(tree: _CommandTree) -> None:
    database = tree.group("db", "offline tools on an LMDB data directory (no server needed)")
    for name, help_text, run in (
        ("stat", "show the size and record counts of a data directory", _database_stat),
        ("verify", "check a data directory's invariants (exit 1 on problems)", _database_verify),
        ("backup", "write a compacted copy of a data directory", _database_backup),
        ("compact", "shrink a data directory and report the space saved", _database_compact),
    ):
        command = database.command(name, help_text, run, offline=True)
        command.add_argument(
            "--data-dir",
            default=os.environ.get("ATP_DATA_DIR"),
            required="ATP_DATA_DIR" not in os.environ,
            metavar="DIR",
            help="the data directory (default: $ATP_DATA_DIR)",
        )
        if name == "backup":
            command.add_argument("destination", metavar="DEST", help="directory for the copy")
        if name == "compact":
            _add_compact_arguments(command)


def _add_compact_arguments(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to",
        dest="destination",
        metavar="NEWDIR",
        help="new or empty directory for the compacted copy (may run beside atpd, but only a "
        "copy taken with atpd stopped may replace the data directory: follow the printed steps)",
    )
    where.add_argument(
        "--in-place",
        action="store_true",
        help="compact beside the data directory and swap the two (refused while atpd runs); "
        "the old one is kept as DIR.before-compact",
    )
    command.add_argument(
        "--discard-old", action="store_true", help="with --in-place: delete the old directory"
    )


# ---------------------------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError, which argparse reports as a usage error.


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if not value:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _count(text: str) -> int:
    value = _whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _instant(text: str) -> datetime.datetime:
    try:
        return kpi.parse_instant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _event_types(text: str) -> list[str]:
    types = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not types or not all(re.fullmatch(r"[A-Z0-9_]+", item) for item in types):
        raise argparse.ArgumentTypeError(f"expected event types like LINE_AT_RISK, got {text!r}")
    return types


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _matched(pattern: re.Pattern[str], text: str, shape: str) -> dict[str, str]:
    match = pattern.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected {shape}, got {text!r}")
    return {name: value for name, value in match.groupdict().items() if value is not None}


def _reservation_line(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = _matched(LINE_PATTERN, text, "LINE_ID:SKU:QTY[@NODE][/YYYY-MM-DD]")
    fields["quantity"] = _positive_int(fields["quantity"])
    if "ship_date" in fields:
        fields["ship_date"] = _date(fields["ship_date"])
    return fields


def _order_line(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = _matched(ORDER_LINE_PATTERN, text, "LINE_ID:SKU:QTY")
    fields["quantity"] = _positive_int(fields["quantity"])
    return fields


def _line_quantity(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = _matched(LINE_QUANTITY_PATTERN, text, "LINE_ID=QTY")
    fields["quantity"] = _positive_int(fields["quantity"])
    return fields


def _lane(text: str) -> dict[str, Any]:
    fields = _matched(LANE_PATTERN, text, "REGION:TRANSIT_DAYS[:COST]")
    return {
        "region": fields["region"],
        "transit_days": int(fields["transit_days"]),
        "cost": int(fields.get("cost", "0")),
    }


# ---------------------------------------------------------------------------------------------
# Commands that call the server


def _nodes_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.list_nodes()
    return Outcome(response, _nodes_table(response.nodes))


def _nodes_upsert(client: Client, arguments: argparse.Namespace) -> Outcome:
    node = client.upsert_node(
        node_id=arguments.node_id,
        kind=arguments.kind,
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
    )
    text = _positions_table(response.positions, response.totals)
    if arguments.timeline:
        text += "\n\n" + _timeline_table(response.positions)
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
    return Outcome(response, _positions_table(response.positions))


def _safety_stock_set(client: Client, arguments: argparse.Namespace) -> Outcome:
    position = client.set_safety_stock(arguments.sku, arguments.node_id, arguments.quantity)
    return Outcome(position, _positions_table([position]))


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
    return Outcome(hold, _holds_table([hold]))


def _hold_release(client: Client, arguments: argparse.Namespace) -> Outcome:
    hold = client.release_hold(arguments.hold_id)
    return Outcome(hold, _holds_table([hold]))


def _hold_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    holds = list(
        client.iter_holds(sku=arguments.sku, node_id=arguments.node_id, page_size=PAGE_SIZE_MAX)
    )
    return Outcome(inventory_pb2.ListHoldsResponse(holds=holds), _holds_table(holds))


def _reservation_get(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.get_reservation(arguments.reservation_id)
    return Outcome(reservation, _reservation_view(reservation))


def _reservation_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = _list_reservations_up_to(client, arguments, arguments.limit)
    text = _reservations_table(response.reservations)
    if response.next_page_token:
        text += f"\n(first {len(response.reservations)} shown; raise --limit to see more)"
    return Outcome(response, text)


def _list_reservations_up_to(
    client: Client, arguments: argparse.Namespace, limit: int
) -> reservations_pb2.ListReservationsResponse:
    """Pages through ListReservations until `limit` reservations (0: all) are gathered."""
    gathered = reservations_pb2.ListReservationsResponse()
    page_token = ""
    while True:
        remaining = limit - len(gathered.reservations) if limit else PAGE_SIZE_MAX
        page = client.list_reservations(
            state=arguments.state,
            sku=arguments.sku,
            node_id=arguments.node_id,
            at_risk=True if arguments.at_risk else None,
            page_size=min(remaining, PAGE_SIZE_MAX),
            page_token=page_token,
        )
        gathered.reservations.extend(page.reservations)
        page_token = gathered.next_page_token = page.next_page_token
        if not page_token or (limit and len(gathered.reservations) >= limit):
            return gathered


def _reservation_commit(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.commit(arguments.reservation_id, request_id=arguments.request_id)
    return Outcome(reservation, _reservation_view(reservation))


def _reservation_release(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.release(
        arguments.reservation_id, lines=arguments.lines, request_id=arguments.request_id
    )
    return Outcome(reservation, _reservation_view(reservation))


def _reservation_fulfill(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.fulfill(
        arguments.reservation_id, lines=arguments.lines, request_id=arguments.request_id
    )
    return Outcome(reservation, _reservation_view(reservation))


def _reserve(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.reserve(
        arguments.reservation_id,
        arguments.lines,
        destination_region=arguments.region,
        policy=_policy(arguments),
        ttl_seconds=arguments.ttl,
        commit=arguments.commit,
        priority=arguments.priority,
        channel=arguments.channel,
        customer_id=arguments.customer_id,
    )
    return Outcome(reservation, _reservation_view(reservation))


def _promise(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.promise(
        arguments.lines,
        arguments.region,
        policy=_policy(arguments),
        priority=arguments.priority,
        explain=arguments.explain,
    )
    return Outcome(response, _promise_view(response, explain=arguments.explain))


def _policy(arguments: argparse.Namespace) -> dict[str, Any]:
    return {
        "ship_complete": arguments.ship_complete,
        "max_nodes": arguments.max_nodes,
        "allow_partial": arguments.partial,
        "objective": "CHEAPEST" if arguments.cheapest else "EARLIEST",
    }


def _at_risk(client: Client, arguments: argparse.Namespace) -> Outcome:
    lines: list[dict[str, Any]] = []
    reservations = client.iter_reservations(
        at_risk=True, sku=arguments.sku, node_id=arguments.node_id, page_size=PAGE_SIZE_MAX
    )
    for reservation in reservations:
        for line in reservation.lines:
            if not line.at_risk:
                continue
            if (arguments.sku and line.sku != arguments.sku) or (
                arguments.node_id and line.node_id != arguments.node_id
            ):
                continue
            lines.append(
                {
                    "reservation_id": reservation.reservation_id,
                    "state": _reservation_state_name(reservation),
                    "line_id": line.line_id,
                    "sku": line.sku,
                    "node_id": line.node_id,
                    "quantity": _open_quantity(line),
                    "reason": line.at_risk_reason,
                    "ship_date": _date_text(line.ship_date),
                    "delivery_date": _date_text(line.delivery_date),
                    "promise_date": _date_text(reservation.promise_date),
                    "priority": reservation.priority,
                }
            )
    rows = [
        (
            item["reservation_id"], item["state"], item["line_id"], item["sku"], item["node_id"],
            item["quantity"], item["reason"], item["ship_date"], item["promise_date"],
        )
        for item in lines
    ]  # fmt: skip
    headers = (
        "RESERVATION", "STATE", "LINE", "SKU", "NODE", "QUANTITY", "REASON", "SHIP_DATE",
        "PROMISE_DATE",
    )  # fmt: skip
    text = format_table(headers, rows)
    if lines:
        reservation_count = len({item["reservation_id"] for item in lines})
        units = sum(item["quantity"] for item in lines)
        text += (
            f"\n\n{_plural(len(lines), 'line')} at risk in "
            f"{_plural(reservation_count, 'reservation')} ({_plural(units, 'unit')}); "
            "plan a repair with: atpctl reallocate"
        )
    return Outcome({"lines": lines, "count": len(lines)}, text)


def _open_quantity(line: common_pb2.ReservationLine) -> int:
    return max(0, line.quantity - line.fulfilled_quantity - line.released_quantity)


def _reallocate(client: Client, arguments: argparse.Namespace) -> Outcome:
    scope = {
        "node_id": arguments.node_id,
        "sku": arguments.sku,
        "reservation_ids": list(dict.fromkeys(arguments.reservation_ids or ())),
    }
    if arguments.plan_sequence and not arguments.apply:
        raise ValueError("--plan-sequence is for --apply (a dry run always plans afresh)")
    if arguments.apply and arguments.plan_sequence:
        # The plan an operator reviewed earlier: applied only if the ledger has not moved.
        return _apply_plan(client, scope, arguments.plan_sequence, shown=None)
    plan = client.reallocate(**scope, dry_run=True)
    if not arguments.apply:
        return Outcome(plan, _reallocation_view(plan, scope))
    if not plan.plans:
        return Outcome(plan, _reallocation_view(plan, scope))
    return _apply_plan(client, scope, plan.plan_sequence, shown=plan)


def _apply_plan(
    client: Client,
    scope: dict[str, Any],
    plan_sequence: int,
    shown: reservations_pb2.ReallocateResponse | None,
) -> Outcome:
    """Applies exactly the plan made at plan_sequence; says so plainly when it is stale."""
    try:
        applied = client.reallocate(**scope, dry_run=False, plan_sequence=plan_sequence)
    except AtpError as error:
        if error.reason != "PLAN_STALE":
            raise
        stale = shown or reservations_pb2.ReallocateResponse(plan_sequence=plan_sequence)
        document = _json_document(stale)
        document["error"] = {
            "code": error.code.name,
            "reason": error.reason,
            "message": error.message,
        }
        text = _reallocation_view(stale, scope, stale=True) if shown is not None else ""
        message = (
            f"PLAN_STALE: the ledger moved since the plan at sequence {plan_sequence}; nothing "
            "was applied. Review the new plan with: atpctl reallocate" + _scope_arguments(scope)
        )
        return Outcome(document, text, EXIT_FAILURE, error=message)
    return Outcome(applied, _reallocation_view(applied, scope))


def _watch_stream(
    arguments: argparse.Namespace, request: events_pb2.WatchRequest
) -> Iterable[kpi.JournalEvent]:
    """Events.Watch on the command's channel, decoded; no deadline (it may follow forever)."""
    stub: Any = events_pb2_grpc.EventsStub(arguments.grpc_channel)  # type: ignore[no-untyped-call]
    call = stub.Watch(request)
    try:
        for message in call:
            yield kpi.decode_event(message)
    except grpc.RpcError as error:
        raise _stream_error(error) from None
    finally:
        call.cancel()


def _stream_error(error: grpc.RpcError) -> AtpError:
    """The AtpError of a failed stream, with the details the server sent."""
    call: Any = error
    if not hasattr(call, "code"):
        return AtpError(grpc.StatusCode.UNKNOWN, str(error))
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        status = None
    if status is None:
        return AtpError(call.code(), call.details() or "")
    return AtpError.from_status(status)


def _watch(client: Client, arguments: argparse.Namespace) -> Outcome:
    request = events_pb2.WatchRequest(
        after_sequence=max(0, arguments.from_sequence - 1),
        types=sorted({item for group in arguments.types for item in group}),
        sku=arguments.sku,
        node_id=arguments.node_id,
        reservation_id=arguments.reservation_id,
        stop_at_head=arguments.until_head,
    )
    shown = 0
    try:
        for event in _watch_stream(arguments, request):
            if arguments.json:
                print(json.dumps(event.to_dict(), separators=(",", ":")), flush=True)
            else:
                print(event_line(event), flush=True)
            shown += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends: quietly, with success.
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except AtpError as error:
        raise _in_from_terms(error, arguments.from_sequence) from None
    return Outcome({"events": shown}, "", streamed=True)


def _in_from_terms(error: AtpError, from_sequence: int) -> AtpError:
    """OUT_OF_RANGE says "after N" (the API's after_sequence); --from counts from N."""
    oldest = error.metadata.get("oldest_sequence")
    if error.code != grpc.StatusCode.OUT_OF_RANGE or oldest is None:
        return error
    message = (f"events from {from_sequence} are no longer retained; the oldest is {oldest} "
               f"(--from {oldest}, or --from 0 for the oldest)")
    return AtpError(error.code, message, error.details)


def event_line(event: kpi.JournalEvent) -> str:
    """One event for people: sequence, time, type, the ids it concerns, its other data."""
    ids = [
        f"{name}={value}"
        for name, value in (
            ("reservation", event.reservation_id), ("sku", event.sku), ("node", event.node_id)
        )
        if value
    ]  # fmt: skip
    shown_keys = {"reservation_id", "sku", "node_id"}
    # Struct keeps no order: line_id first, then the rest by name, the same every time.
    keys = sorted(event.data, key=lambda key: (key != "line_id", key))
    data = [
        f"{key}={_compact_value(key, event.data[key])}"
        for key in keys
        if key not in shown_keys and event.data[key] not in ("", None)
    ]
    parts = [str(event.sequence), kpi.format_instant(event.time), event.type, *ids, *data]
    return "  ".join(parts[:3]) + ("  " + " ".join(parts[3:]) if parts[3:] else "")


def _compact_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "lines" and isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return ",".join(_compact_line(line) for line in value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    text = str(value)
    return json.dumps(text) if not text or any(char.isspace() for char in text) else text


def _compact_line(line: Mapping[str, Any]) -> str:
    """A line as atpctl writes one: l1:SKU:4@NODE/2026-01-02 (+2 backordered), or l1=4."""
    line_id, quantity = line.get("line_id", "?"), line.get("quantity", "?")
    if "sku" not in line:
        return f"{line_id}={quantity}"
    text = f"{line_id}:{line['sku']}:{quantity}"
    if line.get("node_id"):
        text += f"@{line['node_id']}"
    if line.get("ship_date"):
        text += f"/{line['ship_date']}"
    if line.get("backordered"):
        text += f"(+{line['backordered']}bo)"
    return text


def _kpi(client: Client, arguments: argparse.Namespace) -> Outcome:
    since, until = arguments.since, arguments.until
    if since is not None and until is not None and until <= since:
        raise ValueError("--until must be later than --since")
    request = events_pb2.WatchRequest(
        after_sequence=0, types=list(kpi.KPI_EVENT_TYPES), stop_at_head=True
    )
    events = list(_watch_stream(arguments, request))
    now = datetime.datetime.now(datetime.UTC)
    report = kpi.compute_kpis(events, since=since, until=until, now=now)
    return Outcome(report.to_dict(), format_table(("KPI", "VALUE"), kpi.report_rows(report)))


def _health(client: Client, arguments: argparse.Namespace) -> Outcome:
    status = client.health()
    exit_code = EXIT_OK if status == "SERVING" else EXIT_FAILURE
    return Outcome({"status": status}, status, exit_code)


# ---------------------------------------------------------------------------------------------
# Offline commands: atp.store.offline is imported only when asked for, so that every other
# command works without the store package.


def _database_stat(arguments: argparse.Namespace) -> Outcome:
    statistics = _offline_store_call("stat", arguments.data_dir)
    document = dict(statistics) if isinstance(statistics, Mapping) else {"stat": statistics}
    rows = list(_flattened(document))
    return Outcome(_jsonable(document), format_table(("FIELD", "VALUE"), rows))


def _flattened(document: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested mappings as dotted keys (entries.reservations), for a two-column table."""
    for key, value in document.items():
        if isinstance(value, Mapping):
            yield from _flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _database_verify(arguments: argparse.Namespace) -> Outcome:
    problems = [str(problem) for problem in _offline_store_call("verify", arguments.data_dir)]
    if not problems:
        return Outcome({"ok": True, "problems": []}, "ok: no problems found")
    text = "\n".join(f"problem: {problem}" for problem in problems)
    return Outcome({"ok": False, "problems": problems}, text, EXIT_FAILURE)


def _database_backup(arguments: argparse.Namespace) -> Outcome:
    result = _offline_store_call("backup", arguments.data_dir, arguments.destination)
    document = {"destination": arguments.destination, "result": _jsonable(result)}
    size_bytes = result.get("backup_file_bytes") if isinstance(result, Mapping) else None
    size_text = f" ({size_bytes} bytes)" if size_bytes is not None else ""
    return Outcome(document, f"backup written to {arguments.destination}{size_text}")


def _database_compact(arguments: argparse.Namespace) -> Outcome:
    if arguments.discard_old and not arguments.in_place:
        raise ValueError("--discard-old goes with --in-place")
    if arguments.in_place:
        report = _offline_store_call(
            "compact_in_place", arguments.data_dir, discard_old=arguments.discard_old
        )
        old_copy = report["old_copy"]
        heading = f"compacted {report['data_dir']} in place; " + (
            f"the old directory is {old_copy}" if old_copy else "the old directory was deleted"
        )
        notes = []
        if report["not_carried_over"]:
            others = ", ".join(report["not_carried_over"])
            notes.append(f"not carried over (still in {old_copy}): {others}")
        notes.append("then:")
    else:
        report = _offline_store_call("compact", arguments.data_dir, arguments.destination)
        heading = f"compacted copy of {report['data_dir']} written to {report['compacted_dir']}"
        notes = []
        if report["atpd_running"]:
            notes.append(
                f"warning: atpd was running during the copy ({report['writer_lock']}): the copy "
                "lacks what atpd commits after it, so do not swap it in as it is. To compact "
                "for service:"
            )
        else:
            notes.append("to put it in service:")
    notes += [f"  {number}. {step}" for number, step in enumerate(report["next_steps"], 1)]
    parts = [heading, _compaction_table(report), "\n".join(notes)]
    return Outcome(_jsonable(report), "\n\n".join(part for part in parts if part))


def _compaction_table(report: Mapping[str, Any]) -> str:
    """data.mdb before and after, its length and the disk space it takes, and the saving."""
    before, after, saved = report["before"], report["after"], report["saved"]
    rows = [
        (f"data.mdb {label}", before[key], after[key], saved[key])
        for label, key in (("file bytes", "file_bytes"), ("allocated bytes", "allocated_bytes"))
    ]
    table = format_table(("SIZE", "BEFORE", "AFTER", "SAVED"), rows)
    return f"{table}\nsaved {saved['percent']}% of the file"


class OfflineStoreError(Exception):
    """An expected failure of an offline store tool (missing, locked or damaged data)."""


def _offline_store_call(function_name: str, *arguments: str, **options: Any) -> Any:
    try:
        from atp.store import offline
    except ImportError as error:
        raise OfflineStoreError(f"offline store tools are not available ({error})") from None
    try:
        return getattr(offline, function_name)(*arguments, **options)
    except Exception as error:
        if _is_expected_store_failure(error):
            raise OfflineStoreError(f"{type(error).__name__}: {error}") from None
        raise


def _is_expected_store_failure(error: Exception) -> bool:
    # StoreError lives in the store package (not imported here); LMDB and the file system
    # raise their own errors for a missing, locked or damaged directory.
    module = type(error).__module__ or ""
    return (
        isinstance(error, OSError)
        or module.startswith(("atp.store", "lmdb"))
        or type(error).__name__ == "StoreError"
    )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------------------------
# Rendering for people


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns separated by two spaces; integer columns right-aligned."""
    data = [list(row) for row in rows]
    if not data:
        return "  ".join(headers) + "\n(none)"
    numeric = [
        all(isinstance(row[index], int) and not isinstance(row[index], bool) for row in data)
        for index in range(len(headers))
    ]
    cells = [list(headers)] + [[_plain_text(value) for value in row] for row in data]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = []
    for row in cells:
        aligned = [
            cell.rjust(width) if is_numeric else cell.ljust(width)
            for cell, width, is_numeric in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(aligned).rstrip())
    return "\n".join(lines)


def _plain_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())


def _date_text(date: Any) -> str:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}" if date.year else ""


def _time_text(message: Message, field: str) -> str:
    if not message.HasField(field):
        return ""
    moment = getattr(message, field).ToDatetime(tzinfo=datetime.UTC)
    return str(moment.strftime("%Y-%m-%d %H:%M:%SZ"))


def _nodes_table(nodes: Iterable[common_pb2.Node]) -> str:
    rows = [
        (
            node.node_id,
            node.kind,
            node.region,
            node.active,
            node.handling_days,
            ", ".join(_lane_text(lane) for lane in node.lanes),
        )
        for node in nodes
    ]
    return format_table(("NODE", "KIND", "REGION", "ACTIVE", "HANDLING_DAYS", "LANES"), rows)


def _lane_text(lane: common_pb2.Lane) -> str:
    return f"{lane.region}:{lane.transit_days}" + (f":{lane.cost}" if lane.cost else "")


POSITION_HEADERS = (
    "SKU", "NODE", "ON_HAND", "ALLOCATED", "RESERVED", "HELD", "SAFETY_STOCK", "INBOUND",
    "AVAILABLE", "SHORT",
)  # fmt: skip


def _positions_table(
    positions: Iterable[common_pb2.Position],
    totals: Iterable[availability_pb2.NetworkAvailability] = (),
) -> str:
    rows: list[tuple[Any, ...]] = [
        (
            position.sku, position.node_id, position.on_hand, position.allocated,
            position.reserved, position.held, position.safety_stock, position.inbound,
            position.available, position.short,
        )
        for position in positions
    ]  # fmt: skip
    rows += [
        (
            total.sku, "(network)", total.on_hand, total.allocated, total.reserved, total.held,
            total.safety_stock, total.inbound, total.available, "",
        )
        for total in totals
    ]  # fmt: skip
    return format_table(POSITION_HEADERS, rows)


def _timeline_table(positions: Iterable[common_pb2.Position]) -> str:
    rows = [
        (position.sku, position.node_id, _date_text(bucket.date), bucket.available)
        for position in positions
        for bucket in position.timeline
    ]
    return format_table(("SKU", "NODE", "FROM", "AVAILABLE"), rows)


def _supply_table(supplies: Iterable[common_pb2.Supply]) -> str:
    rows = [
        (
            supply.supply_id, supply.sku, supply.node_id, supply.quantity,
            supply.received_quantity, _date_text(supply.expected_date),
            common_pb2.Supply.State.Name(supply.state),
        )
        for supply in supplies
    ]  # fmt: skip
    headers = ("SUPPLY", "SKU", "NODE", "OPEN", "RECEIVED", "EXPECTED", "STATE")
    return format_table(headers, rows)


def _holds_table(holds: Iterable[common_pb2.Hold]) -> str:
    rows = [
        (
            hold.hold_id, hold.sku, hold.node_id, hold.quantity, hold.force,
            _time_text(hold, "expire_time"), hold.reason,
        )
        for hold in holds
    ]  # fmt: skip
    return format_table(("HOLD", "SKU", "NODE", "QUANTITY", "FORCED", "EXPIRES", "REASON"), rows)


def _reservation_state_name(reservation: common_pb2.Reservation) -> str:
    return str(common_pb2.Reservation.State.Name(reservation.state))


def _reservations_table(reservations: Iterable[common_pb2.Reservation]) -> str:
    rows = [
        (
            reservation.reservation_id,
            _reservation_state_name(reservation),
            len(reservation.lines),
            sum(line.quantity for line in reservation.lines),
            _date_text(reservation.promise_date),
            any(line.at_risk for line in reservation.lines),
            _time_text(reservation, "expire_time"),
        )
        for reservation in reservations
    ]
    headers = ("RESERVATION", "STATE", "LINES", "UNITS", "PROMISE_DATE", "AT_RISK", "EXPIRES")
    return format_table(headers, rows)


def _reservation_view(reservation: common_pb2.Reservation) -> str:
    fields = [
        ("reservation", reservation.reservation_id),
        ("state", _reservation_state_name(reservation)),
        ("promise date", _date_text(reservation.promise_date)),
        ("destination", reservation.destination_region),
        ("priority", str(reservation.priority)),
        ("channel", reservation.channel),
        ("customer", reservation.customer_id),
        ("created", _time_text(reservation, "create_time")),
        ("expires", _time_text(reservation, "expire_time")),
    ]
    heading = format_table(("FIELD", "VALUE"), [(name, value) for name, value in fields if value])
    return heading.split("\n", 1)[1] + "\n\n" + _reservation_lines_table(reservation.lines)


def _reservation_lines_table(lines: Iterable[common_pb2.ReservationLine]) -> str:
    rows = [
        (
            line.line_id, line.sku, line.node_id, line.quantity, line.fulfilled_quantity,
            line.released_quantity, line.backordered_quantity, _date_text(line.ship_date),
            _date_text(line.delivery_date), line.from_inbound, line.at_risk,
        )
        for line in lines
    ]  # fmt: skip
    headers = (
        "LINE", "SKU", "NODE", "QUANTITY", "FULFILLED", "RELEASED", "BACKORDERED", "SHIP_DATE",
        "DELIVERY_DATE", "INBOUND", "AT_RISK",
    )  # fmt: skip
    return format_table(headers, rows)


def _promise_view(response: availability_pb2.PromiseResponse, *, explain: bool) -> str:
    promise_date = _date_text(response.promise_date) or "none"
    summary = f"promise date: {promise_date}    complete: {_plain_text(response.complete)}"
    allocations = [
        (
            line.line_id, allocation.node_id, allocation.quantity,
            _date_text(allocation.ship_date), _date_text(allocation.delivery_date),
            allocation.from_inbound,
        )
        for line in response.lines
        for allocation in line.allocations
    ]  # fmt: skip
    headers = ("LINE", "NODE", "QUANTITY", "SHIP_DATE", "DELIVERY_DATE", "INBOUND")
    parts = [summary, format_table(headers, allocations)]
    backorders = [
        (line.line_id, line.backordered_quantity, _date_text(line.backorder_date) or "no date")
        for line in response.lines
        if line.backordered_quantity
    ]
    if backorders:
        parts.append(format_table(("LINE", "BACKORDERED", "SUPPLY_DATE"), backorders))
    if explain:
        candidates = [
            (line.line_id, candidate.node_id, candidate.outcome)
            for line in response.lines
            for candidate in line.candidates
        ]
        parts.append(format_table(("LINE", "NODE", "OUTCOME"), candidates))
    return "\n\n".join(parts)


def _reallocation_view(
    response: reservations_pb2.ReallocateResponse,
    scope: Mapping[str, Any] | None = None,
    *,
    stale: bool = False,
) -> str:
    """The plan per reservation: promise dates, slip, unfilled units, each move old -> new."""
    if not response.plans:
        return "nothing to reallocate: no at-risk line in scope"
    blocks = [_plan_block(plan) for plan in response.plans]
    slipped = sum(1 for plan in response.plans if plan.slipped)
    unfilled = sum(plan.unfilled_quantity for plan in response.plans)
    summary = (
        f"{_plural(len(response.plans), 'reservation')}, {slipped} slipped, "
        f"{_plural(unfilled, 'unit')} unfilled (plan sequence {response.plan_sequence})"
    )
    if response.applied:
        footer = f"applied: {summary}"
    elif stale:
        footer = f"NOT applied: {summary}"
    else:
        footer = (
            f"dry run: {summary}\nto apply exactly this plan: atpctl reallocate --apply "
            f"--plan-sequence {response.plan_sequence}{_scope_arguments(scope or {})}"
        )
    return "\n\n".join([*blocks, footer])


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _scope_arguments(scope: Mapping[str, Any]) -> str:
    parts = []
    if scope.get("node_id"):
        parts.append(f" --node {scope['node_id']}")
    if scope.get("sku"):
        parts.append(f" --sku {scope['sku']}")
    if scope.get("reservation_ids"):
        parts.append(" --ids " + " ".join(scope["reservation_ids"]))
    return "".join(parts)


def _plan_block(plan: reservations_pb2.ReallocationPlan) -> str:
    old_promise = _date_text(plan.old_promise_date) or "none"
    new_promise = _date_text(plan.new_promise_date) or "none"
    heading = (
        f"reservation {plan.reservation_id}: promise {old_promise} -> {new_promise}, "
        f"slipped: {_plain_text(plan.slipped)}, unfilled: {plan.unfilled_quantity}"
    )
    moves = [
        (old.line_id, old.sku, _line_place(old), "->", " + ".join(_line_place(n) for n in new))
        for old, new in _line_moves(plan)
    ]
    if not moves:
        return heading + "\n  (no line moves)"
    table = format_table(("LINE", "SKU", "NOW", "", "AFTER"), moves)
    return heading + "\n" + "\n".join("  " + row for row in table.split("\n"))


def _line_moves(
    plan: reservations_pb2.ReallocationPlan,
) -> list[tuple[common_pb2.ReservationLine, list[common_pb2.ReservationLine]]]:
    """Each old line that changes, with the new lines that carry its units (l1, l1/2, ...)."""
    old_ids = {line.line_id for line in plan.old_lines}
    new_by_id = {line.line_id: line for line in plan.new_lines}
    moves = []
    for old in plan.old_lines:
        same = new_by_id.get(old.line_id)
        parts = [
            line for line in plan.new_lines
            if line.line_id.startswith(old.line_id + "/") and line.line_id not in old_ids
        ]  # fmt: skip
        unchanged = same is not None and not parts and _placement(same) == _placement(old)
        if unchanged:
            continue
        moves.append((old, ([same] if same is not None else []) + parts))
    return moves


def _placement(line: common_pb2.ReservationLine) -> tuple[Any, ...]:
    return (
        line.node_id, line.quantity, _date_text(line.ship_date), _date_text(line.delivery_date),
        line.backordered_quantity,
    )  # fmt: skip


def _line_place(line: common_pb2.ReservationLine) -> str:
    """4 @ DC2 ship 2026-01-02 deliver 2026-01-04 (+2 backordered)."""
    if line.node_id:
        text = f"{line.quantity} @ {line.node_id}"
        if line.ship_date.year:
            text += f" ship {_date_text(line.ship_date)}"
        if line.delivery_date.year:
            text += f" deliver {_date_text(line.delivery_date)}"
    else:
        text = "no node"
    if line.backordered_quantity:
        text += f" (+{line.backordered_quantity} backordered)"
    return text


if __name__ == "__main__":
    sys.exit(main())
