"""Commands on the event stream and health: watch, kpi, health."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from atp import kpi
from atp.cli.arguments import event_types, instant, whole_count
from atp.cli.outcome import EXIT_FAILURE, EXIT_OK, CommandTree, Outcome, error_of_call
from atp.cli.views import format_table
from atp.client import AtpError, Client
from atp.v1 import events_pb2, events_pb2_grpc


def add_watch_command(tree: CommandTree) -> None:
    watch = tree.command(
        "watch",
        "stream journal events, one per line (--json: one JSON object per line); follows "
        "atpd's restarts (unless --until-head), Ctrl-C stops",
        _watch,
    )
    watch.add_argument(
        "--from",
        dest="from_sequence",
        type=whole_count,
        default=0,
        metavar="SEQ",
        help="first sequence to show; 0 (the default) or 1: the oldest retained event. A later "
        "sequence no longer retained is an error naming the oldest",
    )
    watch.add_argument(
        "--type",
        dest="types",
        action="append",
        type=event_types,
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
        "--principal", default="", metavar="WHO",
        help="only events of changes made by this principal (the audit trail)",
    )
    watch.add_argument(
        "--until-head",
        action="store_true",
        help="stop after the events recorded up to now instead of following live ones",
    )

def add_kpi_command(tree: CommandTree) -> None:
    kpi_command = tree.command(
        "kpi",
        "fill rate, promises kept, backorders, time at risk, outcomes and perfect orders, "
        "from the journal",
        _kpi,
    )
    kpi_command.add_argument(
        "--since",
        type=instant,
        metavar="ISO",
        help="reservations created at or after this date or date-time (UTC unless zoned)",
    )
    kpi_command.add_argument(
        "--until",
        type=instant,
        metavar="ISO",
        help="only what happened before this date or date-time (default: now)",
    )
    for group in kpi.PERFECT_ORDER_GROUPS:
        kpi_command.add_argument(
            f"--by-{group}", dest="perfect_order_by", action="append_const", const=group,
            help=f"also the perfect-order measures per {group}",
        )

def add_health_command(tree: CommandTree) -> None:
    tree.command("health", "the server's health status (exit 1 unless SERVING)", _health)

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
        raise error_of_call(error) from None
    finally:
        call.cancel()

def _watch(client: Client, arguments: argparse.Namespace) -> Outcome:
    # Following live events, the watch survives atpd restarts (and, with several members in
    # --target, a member's death): it is opened again after the last event shown.
    stream = client.watch(
        max(0, arguments.from_sequence - 1),
        types=sorted({item for group in arguments.types for item in group}),
        sku=arguments.sku,
        node_id=arguments.node_id,
        reservation_id=arguments.reservation_id,
        stop_at_head=arguments.until_head,
        principal=arguments.principal,
        follow=not arguments.until_head,
    )
    shown = 0
    try:
        for message in stream:
            event = kpi.decode_event(message)
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
            ("reservation", event.reservation_id), ("sku", event.sku), ("node", event.node_id),
            ("by", event.principal),
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
    groups = arguments.perfect_order_by or []
    text = format_table(("KPI", "VALUE"), kpi.report_rows(report))
    for group in groups:
        rows = kpi.perfect_order_table_rows(report.perfect_order_groups(group))
        text += f"\n\nperfect orders by {group}\n" + format_table(
            (group.upper(), "ORDERS", "ON_TIME", "IN_FULL", "DAMAGE_FREE", "DOCS_OK",
             "PERFECT_RATE", "ALL_FOUR"), rows)
    return Outcome(report.to_dict(by=groups), text)

def _health(client: Client, arguments: argparse.Namespace) -> Outcome:
    status = client.health()
    exit_code = EXIT_OK if status == "SERVING" else EXIT_FAILURE
    return Outcome({"status": status}, status, exit_code)
