#!/usr/bin/env python3
"""A thin routing service on top of atp.client: repairs promises that go at risk.

It follows the journal (Events.Watch) for LINE_AT_RISK events, from the last sequence it
handled (kept in a state file, so a restart resumes where it stopped). For each batch of
events it asks for a reallocation plan scoped to those reservations (a dry run), decides by
rule whether to apply it, and applies exactly that plan (its plan_sequence; if the ledger
moved meanwhile the engine answers PLAN_STALE and the service plans again):

    --apply auto      apply every plan
    --apply no-slip   apply only when no reservation in the plan slips (else: held for review)
    --apply never     only log the plans

For every applied plan whose promise slipped it writes a customer notice (one JSON line, on
stdout or --notices FILE) with the new date. What it does goes to stderr as JSON lines.

It stops by itself with --once (after the events recorded up to its start), --max-events N
(after handling N at-risk events) or --timeout SECONDS; otherwise it runs until Ctrl-C.

    python examples/routing_service.py --target 127.0.0.1:50051 --state-file routing.state
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import grpc

from atp.client import AtpError, Client

APPLY_RULES = ("auto", "no-slip", "never")
WATCHED_TYPES = ("LINE_AT_RISK",)
STALE_RETRIES = 3
BATCH_MAX = 500
_END = object()  # The watch stream ended (at the journal head, with --once).


def _now() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _date_text(date: Any) -> str | None:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}" if date.year else None


# ---------------------------------------------------------------------------------------------
# Resumable position


class StateFile:
    """The last journal sequence handled and the reservations whose plans are held for
    review, written atomically after each batch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[int, list[str]]:
        try:
            saved = json.loads(self.path.read_text())
            return int(saved["last_sequence"]), [str(item) for item in saved.get("held", [])]
        except FileNotFoundError:
            return 0, []
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SystemExit(f"error: state file {self.path} is damaged ({error})") from None

    def save(self, last_sequence: int, held: set[str]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(
            {"last_sequence": last_sequence, "held": sorted(held), "updated": _now()}))
        os.replace(temporary, self.path)


# ---------------------------------------------------------------------------------------------
# The watch, on its own thread and channel so that the main loop can wait with a timeout


def open_watch(
    client: Client, after_sequence: int, until_head: bool, sku: str = "", node_id: str = ""
) -> tuple[Iterator[Any], bool]:
    """client.watch from after_sequence; bounded at the journal head when the client can ask.

    Returns the stream and whether it ends by itself at the head.
    """
    filters: dict[str, Any] = {"types": WATCHED_TYPES, "sku": sku, "node_id": node_id}
    if until_head and "stop_at_head" in inspect.signature(client.watch).parameters:
        filters["stop_at_head"] = True
        return client.watch(after_sequence, **filters), True
    return client.watch(after_sequence, **filters), False


class Watcher:
    def __init__(
        self, target: str, after_sequence: int, until_head: bool, sku: str, node_id: str
    ) -> None:
        self.client = Client(target)
        self.items: queue.Queue[Any] = queue.Queue()
        self.stream, self.ends_at_head = open_watch(
            self.client, after_sequence, until_head, sku, node_id
        )
        self.thread = threading.Thread(target=self._pump, name="watch", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for event in self.stream:
                self.items.put(event)
            self.items.put(_END)
        except AtpError as error:
            self.items.put(error)  # Unread when it is the CANCELLED of close().
        except Exception as error:  # noqa: BLE001 - reported by the main loop, not the thread
            self.items.put(AtpError(grpc.StatusCode.UNKNOWN, f"watch failed: {error}"))

    def close(self) -> None:
        self.client.close()  # Cancels the stream; the pump ends with CANCELLED, unread.
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# The service


class RoutingService:
    def __init__(
        self,
        client: Client,
        *,
        rule: str,
        notices: IO[str],
        log: IO[str] = sys.stderr,
        held: list[str] | None = None,
    ) -> None:
        self.client = client
        # Reservations whose plans a rule held for review: planned again on the next run,
        # because the journal will not bring their LINE_AT_RISK events back.
        self.held: set[str] = set(held or ())
        self.rule = rule
        self.notices = notices
        self.log_stream = log
        self.applied_plans = 0
        self.notices_sent = 0

    def log(self, what: str, **fields: Any) -> None:
        print(json.dumps({"time": _now(), "log": what, **fields}), file=self.log_stream, flush=True)

    def handle(self, events: list[Any]) -> None:
        """Plans (and by rule applies) a reallocation for the reservations of these events."""
        self.repair(list(dict.fromkeys(event.reservation_id for event in events)))

    def review_held(self) -> None:
        """Plans held for review by an earlier run, planned again under this run's rule."""
        reservation_ids = sorted(self.held)
        self.log("reviewing_held", reservations=reservation_ids)
        self.repair(reservation_ids)

    def repair(self, reservation_ids: list[str]) -> None:
        """Plans (and by rule applies) a reallocation scoped to these reservations."""
        for attempt in range(1, STALE_RETRIES + 1):
            plan = self.client.reallocate(reservation_ids=reservation_ids, dry_run=True)
            if not plan.plans:
                self.log(
                    "nothing_to_do",
                    reservations=reservation_ids,
                    why="no line of these reservations is at risk any more",
                )
                self.held.difference_update(reservation_ids)
                return
            slipped = [p.reservation_id for p in plan.plans if p.slipped]
            self.log(
                "plan",
                plan_sequence=plan.plan_sequence,
                reservations=[_plan_summary(p) for p in plan.plans],
            )
            if self.rule == "never" or (self.rule == "no-slip" and slipped):
                self.log(
                    "held_for_review",
                    rule=self.rule,
                    plan_sequence=plan.plan_sequence,
                    slipped=slipped,
                )
                self.held.update(p.reservation_id for p in plan.plans)
                return
            try:
                applied = self.client.reallocate(
                    reservation_ids=reservation_ids, plan_sequence=plan.plan_sequence
                )
            except AtpError as error:
                if error.reason != "PLAN_STALE":
                    raise
                self.log("plan_stale", plan_sequence=plan.plan_sequence, attempt=attempt)
                continue
            self.applied_plans += len(applied.plans)
            self.held.difference_update(reservation_ids)
            self.log(
                "applied",
                plan_sequence=applied.plan_sequence,
                reservations=[p.reservation_id for p in applied.plans],
            )
            for reservation_plan in applied.plans:
                if reservation_plan.slipped:
                    self._notify(reservation_plan)
            return
        self.log(
            "gave_up",
            reservations=reservation_ids,
            why=f"the ledger kept moving ({STALE_RETRIES} stale plans)",
        )

    def _notify(self, plan: Any) -> None:
        old_date = _date_text(plan.old_promise_date)
        new_date = _date_text(plan.new_promise_date)
        if new_date:
            message = f"Your order {plan.reservation_id} is now expected by {new_date}"
            message += f" (it was {old_date})." if old_date else "."
        else:
            message = f"Your order {plan.reservation_id} is delayed; we will send a new date."
        if plan.unfilled_quantity:
            message += (
                f" {plan.unfilled_quantity} unit(s) are on backorder and will follow when stock"
                " arrives."
            )
        notice = {
            "notice": "promise_slipped",
            "time": _now(),
            "reservation_id": plan.reservation_id,
            "old_promise_date": old_date,
            "new_promise_date": new_date,
            "unfilled_quantity": plan.unfilled_quantity,
            "message": message,
        }
        print(json.dumps(notice), file=self.notices, flush=True)
        self.notices_sent += 1


def _plan_summary(plan: Any) -> dict[str, Any]:
    def placement(line: Any) -> tuple[Any, ...]:
        return (line.line_id, line.node_id, line.quantity, _date_text(line.ship_date))

    unchanged = {placement(line) for line in plan.old_lines}
    old_nodes = sorted({line.node_id for line in plan.old_lines if line.at_risk})
    new_nodes = sorted(
        {
            line.node_id
            for line in plan.new_lines
            if line.node_id and placement(line) not in unchanged
        }
    )
    return {
        "reservation_id": plan.reservation_id,
        "old_promise_date": _date_text(plan.old_promise_date),
        "new_promise_date": _date_text(plan.new_promise_date),
        "slipped": plan.slipped,
        "unfilled": plan.unfilled_quantity,
        "from_nodes": old_nodes,
        "to_nodes": new_nodes,
    }


# ---------------------------------------------------------------------------------------------
# The loop


def run(arguments: argparse.Namespace, notices: IO[str]) -> int:
    state = StateFile(Path(arguments.state_file))
    last_sequence, held = state.load()
    deadline = time.monotonic() + arguments.timeout if arguments.timeout else None
    handled = 0
    with Client(arguments.target, timeout_s=arguments.call_timeout) as client:
        service = RoutingService(client, rule=arguments.apply, notices=notices, held=held)
        service.log("started", after_sequence=last_sequence, rule=arguments.apply)
        if service.held:
            service.review_held()
            state.save(last_sequence, service.held)
        watcher = Watcher(
            arguments.target, last_sequence, arguments.once, arguments.sku, arguments.node
        )
        try:
            while True:
                if arguments.max_events and handled >= arguments.max_events:
                    break
                wait = None if deadline is None else deadline - time.monotonic()
                if arguments.once and not watcher.ends_at_head:
                    wait = arguments.idle if wait is None else min(wait, arguments.idle)
                if wait is not None and wait <= 0:
                    break
                try:
                    item = watcher.items.get(timeout=wait)
                except queue.Empty:
                    break  # Timed out, or (--once) the backlog is drained.
                if item is _END:
                    break
                if isinstance(item, AtpError):
                    raise item
                batch = [item]
                room = (
                    BATCH_MAX
                    if not arguments.max_events
                    else min(BATCH_MAX, arguments.max_events - handled)
                )
                batch += _more(watcher.items, room - 1, arguments.batch_wait)
                if batch[-1] is _END or isinstance(batch[-1], AtpError):
                    pending = batch.pop()
                    watcher.items.put(pending)  # Dealt with on the next turn.
                service.handle(batch)
                handled += len(batch)
                last_sequence = batch[-1].sequence
                state.save(last_sequence, service.held)
        finally:
            watcher.close()
        service.log(
            "stopped",
            last_sequence=last_sequence,
            events=handled,
            applied=service.applied_plans,
            notices=service.notices_sent,
        )
    return 0


def _more(items: queue.Queue[Any], room: int, wait_s: float) -> list[Any]:
    """Whatever else arrives within wait_s (a burst of at-risk lines is planned at once)."""
    more: list[Any] = []
    deadline = time.monotonic() + wait_s
    while len(more) < room:
        try:
            item = items.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        more.append(item)
        if item is _END or isinstance(item, AtpError):
            break
    return more


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Watch for at-risk promises and re-source them (Reallocate)."
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("ATP_TARGET", "127.0.0.1:50051"),
        help="atpd address host:port (default: $ATP_TARGET, else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--state-file", default="routing.state", help="where the last handled sequence is kept"
    )
    parser.add_argument("--sku", default="", help="only at-risk lines of this SKU")
    parser.add_argument("--node", default="", help="only at-risk lines at this node")
    parser.add_argument("--apply", choices=APPLY_RULES, default="auto", help="when to apply")
    parser.add_argument("--notices", help="append customer notices to this file (default: stdout)")
    parser.add_argument(
        "--once", action="store_true", help="handle the events recorded so far, then stop"
    )
    parser.add_argument("--max-events", type=int, default=0, help="stop after N at-risk events")
    parser.add_argument("--timeout", type=float, default=0.0, help="stop after SECONDS")
    parser.add_argument(
        "--idle",
        type=float,
        default=1.0,
        help="with --once, on a client that cannot stop at the head: stop after SECONDS quiet",
    )
    parser.add_argument(
        "--batch-wait", type=float, default=0.2, help="seconds to gather a burst of events"
    )
    parser.add_argument("--call-timeout", type=float, default=5.0, help="deadline of each call")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    notices: IO[str] = open(arguments.notices, "a") if arguments.notices else sys.stdout  # noqa: SIM115
    try:
        return run(arguments, notices)
    except AtpError as error:
        if error.code is grpc.StatusCode.UNAVAILABLE and not error.details:
            print(f"error: cannot reach atpd at {arguments.target}", file=sys.stderr)
        else:
            print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if notices is not sys.stdout:
            notices.close()


if __name__ == "__main__":
    sys.exit(main())
