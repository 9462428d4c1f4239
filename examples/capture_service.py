#!/usr/bin/env python3
"""A thin order-capture service on top of atp.client: promise, reserve, then commit or release.

Reads orders as JSON lines (from a file, or stdin with `-` or no file), one order per line:

    {"order_id": "o-1", "region": "EU", "priority": 0, "payment": "ok", "cancel": false,
     "lines": [{"line_id": "l1", "sku": "SKU-1", "quantity": 2}]}

For each order, in input order, it:

1. validates it, with a clear error per problem: malformed JSON, missing or duplicate
   order_id (the first occurrence wins), missing region, bad lines (line ids, quantities
   1..10^12), a payment that is neither "ok" nor "declined", and SKUs the engine has never
   seen (GetAvailability answers NOT_FOUND);
2. asks for a promise (Promise) and stops if the engine cannot promise every unit;
3. reserves the lines, letting the engine source them (Reserve without nodes; idempotent on
   the order id, so running the same file twice reserves nothing twice);
4. commits on a payment "ok", or releases on "declined" or when the order says "cancel".

and prints one JSON result per order on stdout:

    {"order_id": "o-1", "status": "committed", "promise_date": "2026-01-05", "error": null, ...}

status is committed, released, rejected (the input was wrong: nothing was asked of the
engine) or failed (the engine said no, e.g. not enough stock). The exit code is 0 when every
order was committed or released, 1 otherwise (or when the engine cannot be reached), 2 on a
bad command line.

    python examples/capture_service.py --target 127.0.0.1:50051 examples/orders.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import grpc

from atp.client import AtpError, Client

ID_MAX_BYTES = 128
LINES_MAX = 500
QUANTITY_MAX = 10**12
PRIORITY_RANGE = (-(2**31), 2**31 - 1)
PAYMENTS = ("ok", "declined")


@dataclass
class Order:
    order_id: str
    region: str
    lines: list[dict[str, Any]]
    payment: str
    cancel: bool = False
    priority: int = 0


@dataclass
class Result:
    order_id: str | None
    status: str  # committed | released | rejected | failed
    input_line: int
    promise_date: str | None = None
    error: str | None = None
    reason: str | None = None  # why a reservation was released: declined or cancelled
    reservation_state: str | None = None
    nodes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "order_id": self.order_id,
                "status": self.status,
                "promise_date": self.promise_date,
                "error": self.error,
                "reason": self.reason,
                "reservation_state": self.reservation_state,
                "nodes": self.nodes,
                "input_line": self.input_line,
            },
            separators=(",", ":"),
        )


class Unreachable(Exception):
    """The engine cannot be reached: no point going on with the other orders."""


# ---------------------------------------------------------------------------------------------
# Validation


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != "" and len(value.encode()) <= ID_MAX_BYTES


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(document: Any) -> tuple[Order | None, list[str]]:
    """The order, or the list of everything wrong with it (the SKU check comes later)."""
    if not isinstance(document, dict):
        return None, ["an order must be a JSON object"]
    errors: list[str] = []
    order_id = document.get("order_id")
    if not _is_id(order_id):
        errors.append(f"order_id: required, a non-empty string of at most {ID_MAX_BYTES} bytes")
    region = document.get("region")
    if not (isinstance(region, str) and region.strip()):
        errors.append("region: missing (the region the order is delivered to)")
    payment = document.get("payment")
    if payment not in PAYMENTS:
        errors.append(f"payment: must be one of {', '.join(PAYMENTS)}, got {payment!r}")
    cancel = document.get("cancel", False)
    if not isinstance(cancel, bool):
        errors.append(f"cancel: must be true or false, got {cancel!r}")
    priority = document.get("priority", 0)
    if not (_is_int(priority) and PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]):
        errors.append(f"priority: must be a whole number, got {priority!r}")
    lines = document.get("lines")
    clean_lines = _validate_lines(lines, errors)
    if errors:
        return None, errors
    return Order(str(order_id), str(region), clean_lines, str(payment), cancel, priority), []


def _validate_lines(lines: Any, errors: list[str]) -> list[dict[str, Any]]:
    if not isinstance(lines, list) or not lines:
        errors.append("lines: at least one line is required")
        return []
    if len(lines) > LINES_MAX:
        errors.append(f"lines: at most {LINES_MAX} lines, got {len(lines)}")
        return []
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        if not isinstance(line, dict):
            errors.append(f"{where}: must be an object with line_id, sku and quantity")
            continue
        line_id, sku, quantity = line.get("line_id"), line.get("sku"), line.get("quantity")
        if not _is_id(line_id):
            errors.append(f"{where}.line_id: required, a non-empty string")
        elif line_id in seen:
            errors.append(f"{where}.line_id: {line_id!r} appears twice in the order")
        else:
            seen.add(str(line_id))
        if not _is_id(sku):
            errors.append(f"{where}.sku: required, a non-empty string")
        if not (isinstance(quantity, int) and _is_int(quantity) and 1 <= quantity <= QUANTITY_MAX):
            errors.append(
                f"{where}.quantity: must be a whole number from 1 to {QUANTITY_MAX}, "
                f"got {quantity!r}"
            )
        clean.append({"line_id": line_id, "sku": sku, "quantity": quantity})
    return clean


# ---------------------------------------------------------------------------------------------
# The service


class CaptureService:
    def __init__(self, client: Client, *, ttl_seconds: int = 0, channel: str = "") -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.channel = channel
        self._known_skus: dict[str, bool] = {}
        self._first_line_of: dict[str, int] = {}

    def run(self, lines: Iterable[str]) -> Iterator[Result]:
        for number, text in enumerate(lines, start=1):
            if text.strip():
                yield self.handle(number, text)

    def handle(self, number: int, text: str) -> Result:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            return Result(None, "rejected", number, error=f"not valid JSON: {error.msg}")
        order, errors = validate(document)
        order_id = document.get("order_id") if isinstance(document, dict) else None
        order_id = order_id if isinstance(order_id, str) else None
        if order_id is not None:
            first = self._first_line_of.setdefault(order_id, number)
            if first != number:
                errors.insert(0, f"duplicate order_id: already on input line {first}")
        if order is None or errors:
            return Result(order_id, "rejected", number, error="; ".join(errors))
        try:
            unknown = [
                f"lines[{index}].sku: unknown SKU {line['sku']!r}"
                for index, line in enumerate(order.lines)
                if not self._sku_known(line["sku"])
            ]
            if unknown:
                return Result(order.order_id, "rejected", number, error="; ".join(unknown))
            return self._capture(order, number)
        except AtpError as error:
            if error.code is grpc.StatusCode.UNAVAILABLE and not error.details:
                raise Unreachable(f"cannot reach atpd at {self.client.target}") from None
            return Result(order.order_id, "failed", number, error=str(error))

    def _sku_known(self, sku: str) -> bool:
        if sku not in self._known_skus:
            try:
                self.client.get_availability([sku])
                self._known_skus[sku] = True
            except AtpError as error:
                if error.code is not grpc.StatusCode.NOT_FOUND:
                    raise
                self._known_skus[sku] = False
        return self._known_skus[sku]

    def _capture(self, order: Order, number: int) -> Result:
        promise = self.client.promise(order.lines, order.region, priority=order.priority)
        if not promise.complete:
            short = _short_lines(order.lines, promise)
            return Result(
                order.order_id,
                "failed",
                number,
                promise_date=_date_text(promise.promise_date),
                error=f"cannot promise every unit to {order.region}: {short}",
            )
        reservation = self.client.reserve(
            order.order_id,
            order.lines,  # No node: the engine sources them, as it just promised.
            destination_region=order.region,
            priority=order.priority,
            ttl_seconds=self.ttl_seconds,
            channel=self.channel,
        )
        # Request ids derived from the order id: a rerun of the same input changes nothing.
        if order.cancel or order.payment == "declined":
            reservation = self.client.release(
                order.order_id, request_id=f"{order.order_id}/release"
            )
            status = "released"
        else:
            reservation = self.client.commit(order.order_id, request_id=f"{order.order_id}/commit")
            status = "committed"
        state_name = type(reservation).State.Name(reservation.state)
        return Result(
            order.order_id,
            status,
            number,
            promise_date=_date_text(reservation.promise_date) if status == "committed" else None,
            reason=None
            if status == "committed"
            else ("cancelled by the customer" if order.cancel else "payment declined"),
            reservation_state=state_name,
            nodes=sorted({line.node_id for line in reservation.lines if line.node_id}),
        )


def _short_lines(lines: list[dict[str, Any]], promise: Any) -> str:
    promised = {
        line.line_id: sum(allocation.quantity for allocation in line.allocations)
        for line in promise.lines
    }
    parts = [
        f"{line['line_id']} ({line['sku']}) {promised.get(line['line_id'], 0)} of "
        f"{line['quantity']}"
        for line in lines
        if promised.get(line["line_id"], 0) < line["quantity"]
    ]
    return ", ".join(parts) or "incomplete"


def _date_text(date: Any) -> str | None:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}" if date.year else None


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Capture orders (JSON lines): promise, reserve, commit or release."
    )
    parser.add_argument(
        "orders", nargs="?", default="-", help="orders file, JSON lines (default: stdin, or -)"
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("ATP_TARGET", "127.0.0.1:50051"),
        help="atpd address host:port (default: $ATP_TARGET, else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--ttl", type=int, default=0, help="seconds a reservation is held before payment"
    )
    parser.add_argument("--channel", default="capture-example", help="sales channel recorded")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline of each call")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    source: IO[str]
    try:
        source = sys.stdin if arguments.orders == "-" else open(arguments.orders)  # noqa: SIM115
    except OSError as error:
        print(f"error: cannot read {arguments.orders}: {error.strerror}", file=sys.stderr)
        return 2
    all_settled = True
    try:
        with source, Client(arguments.target, timeout_s=arguments.timeout) as client:
            service = CaptureService(client, ttl_seconds=arguments.ttl, channel=arguments.channel)
            for result in service.run(source):
                print(result.to_json(), flush=True)
                all_settled = all_settled and result.status in ("committed", "released")
    except Unreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # The reader went away (| head): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0 if all_settled else 1


if __name__ == "__main__":
    sys.exit(main())
