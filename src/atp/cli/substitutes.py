"""Substitute SKUs on `atpctl promise` and `atpctl reserve` (README "Substitutes"):
`--substitute LINE_ID=SKU[,SKU...]` lists a line's substitutes in preference order,
`--need-by LINE_ID=YYYY-MM-DD` its latest acceptable delivery date, and (reserve)
`--allow-substitution` lets the reservation hold them."""

from __future__ import annotations

import argparse
import datetime
import re
from typing import Any

from atp.cli.arguments import date
from atp.cli.views import date_text, format_table
from atp.v1 import availability_pb2

SUBSTITUTE_PATTERN = re.compile(r"^(?P<line_id>[^=]+)=(?P<skus>[^,]+(?:,[^,]+)*)$")
NEED_BY_PATTERN = re.compile(r"^(?P<line_id>[^=]+)=(?P<date>\d{4}-\d{2}-\d{2})$")


def substitute_list(text: str) -> tuple[str, list[str]]:
    """LINE_ID=SKU[,SKU...] -> (line id, substitute SKUs in order)."""
    match = SUBSTITUTE_PATTERN.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected LINE_ID=SKU[,SKU...], got {text!r}")
    return match["line_id"], match["skus"].split(",")


def need_by(text: str) -> tuple[str, datetime.date]:
    """LINE_ID=YYYY-MM-DD -> (line id, date)."""
    match = NEED_BY_PATTERN.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected LINE_ID=YYYY-MM-DD, got {text!r}")
    return match["line_id"], date(match["date"])


def add_substitute_options(parser: argparse.ArgumentParser, *, reserve: bool) -> None:
    parser.add_argument(
        "--substitute", dest="substitutes", action="append", type=substitute_list, default=[],
        metavar="LINE_ID=SKU[,SKU...]",
        help="substitute SKUs of a line, in preference order (repeatable, one per line): "
        + ("held instead of the line's SKU with --allow-substitution when it cannot be held "
           "in full or by --need-by" if reserve else
           "the first that can be promised in full (and by --need-by) is offered when the "
           "line's own SKU cannot"),
    )
    parser.add_argument(
        "--need-by", dest="need_by", action="append", type=need_by, default=[],
        metavar="LINE_ID=YYYY-MM-DD",
        help="latest acceptable delivery date of a line (ship date without a lane): a later "
        "promise makes its substitutes count (repeatable)",
    )
    if reserve:
        parser.add_argument(
            "--allow-substitution", action="store_true",
            help="lines with --substitute may hold a substitute (else substitutes are ignored)",
        )


def with_substitutes(lines: list[dict[str, Any]], arguments: argparse.Namespace
                     ) -> list[dict[str, Any]]:
    """The --line dicts with their --substitute and --need-by fields added."""
    by_id = {line["line_id"]: line for line in lines}
    for option, values in (("--substitute", arguments.substitutes),
                           ("--need-by", arguments.need_by)):
        seen: set[str] = set()
        for line_id, _ in values:
            if line_id not in by_id:
                raise ValueError(f"{option} names line {line_id!r}, which no --line has")
            if line_id in seen:
                raise ValueError(f"{option} names line {line_id!r} twice")
            seen.add(line_id)
    for line_id, skus in arguments.substitutes:
        by_id[line_id]["substitute_skus"] = skus
    for line_id, day in arguments.need_by:
        by_id[line_id]["need_by_date"] = day
    return lines


def promise_substitutes_view(response: availability_pb2.PromiseResponse,
                             lines: list[dict[str, Any]], *, explain: bool) -> str:
    """The substitutes offered (and with explain, each one's outcome); "" when none.
    lines: the --line dicts (each offer names the SKU it is a substitute for)."""
    skus = {line["line_id"]: line["sku"] for line in lines}
    parts: list[str] = []
    offers = [
        (line.line_id, f"{line.substitute.sku} (substitute for {skus.get(line.line_id, '?')})",
         allocation.node_id,
         allocation.quantity, date_text(allocation.ship_date),
         date_text(allocation.delivery_date), line.substitute.reason)
        for line in response.lines if line.HasField("substitute")
        for allocation in line.substitute.allocations
    ]  # fmt: skip
    if offers:
        parts.append(format_table(
            ("LINE", "OFFERED", "NODE", "QUANTITY", "SHIP_DATE", "DELIVERY_DATE", "BECAUSE"),
            offers))
    if explain:
        outcomes = [
            (line.line_id, check.sku, check.outcome, check.detail)
            for line in response.lines for check in line.substitutes
        ]
        if outcomes:
            parts.append(format_table(("LINE", "SUBSTITUTE", "OUTCOME", "WHY"), outcomes))
    return "\n\n".join(parts)
