"""Commands on reservations: reserve, promise, commit/release/fulfil, at risk, reallocate."""

from __future__ import annotations

import argparse
from typing import Any

from atp.cli.arguments import (
    PAGE_SIZE_MAX,
    RESERVATION_LIST_LIMIT_DEFAULT,
    RESERVATION_STATES,
    date,
    line_quantity,
    order_line,
    reservation_line,
    whole_count,
)
from atp.cli.inventory import add_request_id_option
from atp.cli.outcome import EXIT_FAILURE, CommandTree, Outcome, json_document
from atp.cli.substitutes import (
    add_substitute_options,
    promise_substitutes_view,
    with_substitutes,
)
from atp.cli.views import (
    date_text,
    format_table,
    plain_text,
    plural,
    reallocation_view,
    reservation_state_name,
    reservation_view,
    reservations_table,
    scope_arguments,
)
from atp.client import AtpError, Client
from atp.v1 import availability_pb2, common_pb2, reservations_pb2


def add_reservation_commands(tree: CommandTree) -> None:
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
        type=whole_count,
        default=RESERVATION_LIST_LIMIT_DEFAULT,
        help=f"most reservations to show, 0 for all (default: {RESERVATION_LIST_LIMIT_DEFAULT})",
    )

    commit = reservation.command(
        "commit", "make a HELD reservation firm (COMMITTED)", _reservation_commit
    )
    commit.add_argument("reservation_id", metavar="ID")
    add_request_id_option(commit)
    _add_expected_version_option(commit)
    extend = reservation.command(
        "extend", "push a HELD reservation's expiry forward (it never moves earlier)",
        _reservation_extend,
    )
    extend.add_argument("reservation_id", metavar="ID")
    extend.add_argument(
        "--ttl", type=whole_count, default=0, metavar="SECONDS",
        help="expire this many seconds from now, up to 604800 (default: 0, the server's "
        "default TTL, atpd --default-ttl)",
    )
    add_request_id_option(extend)
    _add_expected_version_option(extend)
    _add_record_delivery_command(reservation)
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
            type=line_quantity,
            default=[],
            metavar="LINE_ID=QTY",
            help="only this many units of this line (repeatable)",
        )
        add_request_id_option(command)
        _add_expected_version_option(command)


def _add_expected_version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expected-version", type=whole_count, default=0, metavar="N",
        help="only if the reservation is still at version N, as last read (`reservation get` "
        "shows it); else refused VERSION_MISMATCH (default: 0, no check)",
    )

def add_reserve_command(tree: CommandTree) -> None:
    reserve = tree.command("reserve", "reserve order lines atomically (all or none)", _reserve)
    reserve.add_argument(
        "reservation_id", metavar="ID", help="reservation id (usually the order id)"
    )
    reserve.add_argument(
        "--line",
        dest="lines",
        action="append",
        type=reservation_line,
        required=True,
        metavar="LINE_ID:SKU:QTY[@NODE][/YYYY-MM-DD]",
        help="a line; without @NODE the server sources it (repeatable)",
    )
    reserve.add_argument("--region", default="", help="destination region")
    reserve.add_argument(
        "--ttl",
        type=whole_count,
        default=0,
        metavar="SECONDS",
        help="life of a HELD reservation, up to 604800; 0 (the default) means the server's "
        "default TTL (atpd --default-ttl, 900 s unless set); no effect with --commit",
    )
    reserve.add_argument("--commit", action="store_true", help="firm at once (COMMITTED)")
    reserve.add_argument("--channel", default="", help="sales channel")
    reserve.add_argument("--customer", dest="customer_id", default="", help="customer id")
    _add_policy_options(reserve)
    add_substitute_options(reserve, reserve=True)

def add_promise_command(tree: CommandTree) -> None:
    promise = tree.command(
        "promise", "quote where and when order lines can ship (read-only)", _promise
    )
    promise.add_argument(
        "--line",
        dest="lines",
        action="append",
        type=order_line,
        required=True,
        metavar="LINE_ID:SKU:QTY",
        help="an order line (repeatable)",
    )
    promise.add_argument("--region", required=True, help="destination region")
    promise.add_argument("--explain", action="store_true", help="show why each node won or lost")
    promise.add_argument("--channel", default="", help="sales channel of the order: other "
                         "channels' unconsumed allocations are not promised to it")
    _add_policy_options(promise)
    add_substitute_options(promise, reserve=False)

def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ship-complete", action="store_true", help="one delivery date for all lines"
    )
    parser.add_argument(
        "--max-nodes", type=whole_count, default=0, help="most nodes to split over (0: any)"
    )
    parser.add_argument("--partial", action="store_true", help="backorder what cannot be placed")
    parser.add_argument("--cheapest", action="store_true", help="cheapest rather than earliest")
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="demand priority, higher is more important (default: 0); at or above the "
        "server's protection threshold (atpd --safety-stock-priority, 100 unless set) the "
        "demand may use safety stock",
    )

def add_at_risk_command(tree: CommandTree) -> None:
    at_risk = tree.command(
        "at-risk", "list the reservation lines whose promise is at risk", _at_risk
    )
    at_risk.add_argument("--sku", default="", help="only lines of this SKU")
    at_risk.add_argument(
        "--node", dest="node_id", default="", metavar="NODE", help="only lines at this node"
    )

def add_reallocate_command(tree: CommandTree) -> None:
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
        type=whole_count,
        default=0,
        metavar="N",
        help="with --apply: apply the plan of an earlier dry run, only if the ledger is still at N",
    )

def _reservation_get(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.get_reservation(arguments.reservation_id)
    return Outcome(reservation, reservation_view(reservation))

def _reservation_list(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = _list_reservations_up_to(client, arguments, arguments.limit)
    text = reservations_table(response.reservations)
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
    reservation = client.commit(arguments.reservation_id, request_id=arguments.request_id,
                                expected_version=arguments.expected_version)
    return Outcome(reservation, reservation_view(reservation))

def _reservation_extend(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.extend(
        arguments.reservation_id, ttl_seconds=arguments.ttl, request_id=arguments.request_id,
        expected_version=arguments.expected_version,
    )
    return Outcome(reservation, reservation_view(reservation))

def _add_record_delivery_command(reservation: CommandTree) -> None:
    record = reservation.command(
        "record-delivery",
        "record what reached the customer for a reservation that shipped (the perfect-order "
        "KPIs of `atpctl kpi`); recording again with a new request id corrects it",
        _reservation_record_delivery,
    )
    record.add_argument("reservation_id", metavar="ID")
    record.add_argument("--delivered-date", type=date, required=True, metavar="YYYY-MM-DD",
                        help="the day the order reached the customer")
    record.add_argument("--units", type=whole_count, required=True, metavar="N",
                        help="units the customer received")
    record.add_argument("--damaged", type=whole_count, default=0, metavar="N",
                        help="of those, units that arrived damaged (default: 0)")
    record.add_argument("--documentation-wrong", action="store_true",
                        help="the paperwork (invoice, packing list, labels) was wrong")
    add_request_id_option(record)

def _reservation_record_delivery(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.record_delivery(
        arguments.reservation_id, arguments.delivered_date, arguments.units,
        damaged_units=arguments.damaged,
        documentation_correct=not arguments.documentation_wrong,
        request_id=arguments.request_id,
    )
    return Outcome(reservation, reservation_view(reservation))

def _reservation_release(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.release(
        arguments.reservation_id, lines=arguments.lines, request_id=arguments.request_id,
        expected_version=arguments.expected_version,
    )
    return Outcome(reservation, reservation_view(reservation))

def _reservation_fulfill(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.fulfill(
        arguments.reservation_id, lines=arguments.lines, request_id=arguments.request_id,
        expected_version=arguments.expected_version,
    )
    return Outcome(reservation, reservation_view(reservation))

def _reserve(client: Client, arguments: argparse.Namespace) -> Outcome:
    reservation = client.reserve(
        arguments.reservation_id,
        with_substitutes(arguments.lines, arguments),
        destination_region=arguments.region,
        policy=_policy(arguments),
        ttl_seconds=arguments.ttl,
        commit=arguments.commit,
        priority=arguments.priority,
        channel=arguments.channel,
        customer_id=arguments.customer_id,
        allow_substitution=arguments.allow_substitution,
    )
    return Outcome(reservation, reservation_view(reservation))

def _promise(client: Client, arguments: argparse.Namespace) -> Outcome:
    response = client.promise(
        with_substitutes(arguments.lines, arguments),
        arguments.region,
        policy=_policy(arguments),
        priority=arguments.priority,
        explain=arguments.explain,
        channel=arguments.channel,
    )
    text = _promise_view(response, explain=arguments.explain)
    substitutes = promise_substitutes_view(response, arguments.lines, explain=arguments.explain)
    if substitutes:
        text += "\n\n" + substitutes
    if not response.complete and not arguments.explain:
        text += "\n\n" + _why_not_promised(client, arguments.region)
    return Outcome(response, text)


def _why_not_promised(client: Client, region: str) -> str:
    """One line on why a promise is incomplete, without --explain: no node serves the region,
    or where to look."""
    try:
        nodes = client.list_nodes().nodes
    except AtpError:  # the nodes cannot be read (e.g. not allowed): no guess
        return "why: --explain shows each node's reason"
    lanes_to_region = [
        node for node in nodes if any(lane.region == region for lane in node.lanes)
    ]
    serving = [node.node_id for node in lanes_to_region if node.active]
    if not serving:
        inactive = [node.node_id for node in lanes_to_region]
        because = f" ({', '.join(inactive)} inactive)" if inactive else ""
        return (
            f"why: no active node has a lane to region {region}{because}; "
            "atpctl nodes list shows every node's lanes"
        )
    return (
        f"why: the {plural(len(serving), 'node')} serving {region} ({', '.join(serving)}) "
        "cannot place every unit in time under this policy; --explain shows each node's reason"
    )


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
                    "state": reservation_state_name(reservation),
                    "line_id": line.line_id,
                    "sku": line.sku,
                    "node_id": line.node_id,
                    "quantity": _open_quantity(line),
                    "reason": line.at_risk_reason,
                    "ship_date": date_text(line.ship_date),
                    "delivery_date": date_text(line.delivery_date),
                    "promise_date": date_text(reservation.promise_date),
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
            f"\n\n{plural(len(lines), 'line')} at risk in "
            f"{plural(reservation_count, 'reservation')} ({plural(units, 'unit')}); "
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
        return Outcome(plan, reallocation_view(plan, scope))
    if not plan.plans:
        return Outcome(plan, reallocation_view(plan, scope))
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
        document = json_document(stale)
        document["error"] = {
            "code": error.code.name,
            "reason": error.reason,
            "message": error.message,
        }
        text = reallocation_view(stale, scope, stale=True) if shown is not None else ""
        message = (
            f"PLAN_STALE: the ledger moved since the plan at sequence {plan_sequence}; nothing "
            "was applied. Review the new plan with: atpctl reallocate" + scope_arguments(scope)
        )
        return Outcome(document, text, EXIT_FAILURE, error=message)
    return Outcome(applied, reallocation_view(applied, scope))

def _promise_view(response: availability_pb2.PromiseResponse, *, explain: bool) -> str:
    promise_date = date_text(response.promise_date) or "none"
    summary = f"promise date: {promise_date}    complete: {plain_text(response.complete)}"
    allocations = [
        (
            line.line_id, allocation.node_id, allocation.quantity,
            date_text(allocation.ship_date), date_text(allocation.delivery_date),
            allocation.from_inbound,
        )
        for line in response.lines
        for allocation in line.allocations
    ]  # fmt: skip
    headers = ("LINE", "NODE", "QUANTITY", "SHIP_DATE", "DELIVERY_DATE", "INBOUND")
    parts = [summary, format_table(headers, allocations)]
    backorders = [
        (line.line_id, line.backordered_quantity, date_text(line.backorder_date) or "no date")
        for line in response.lines
        if line.backordered_quantity
    ]
    if backorders:
        parts.append(format_table(("LINE", "BACKORDERED", "SUPPLY_DATE"), backorders))
    if explain:
        candidates = [
            (line.line_id, candidate.node_id, candidate.outcome, candidate.detail)
            for line in response.lines
            for candidate in line.candidates
        ]
        parts.append(format_table(("LINE", "NODE", "OUTCOME", "WHY"), candidates))
    return "\n\n".join(parts)
