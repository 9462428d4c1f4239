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

An apply can succeed without the service hearing of it (the leader dies before it answers;
the client sends it again and the engine refuses the repeat PLAN_STALE). So the plan is
written to the state file before it is sent, and when its outcome is unknown the service reads
its reservations: those now placed as the plan said were moved by it, and get their notice.

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
    """The last journal sequence handled, the reservations whose plans are held for review,
    and the plan being applied (None between applies). Written atomically (a crash leaves the
    old file or the new one), after each batch and around each apply."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[int, list[str], dict[str, Any] | None]:
        try:
            saved = json.loads(self.path.read_text())
            held = [str(item) for item in saved.get("held", [])]
            return int(saved["last_sequence"]), held, saved.get("applying")
        except FileNotFoundError:
            return 0, [], None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SystemExit(f"error: state file {self.path} is damaged ({error})") from None

    def save(self, last_sequence: int, held: set[str], applying: dict[str, Any] | None) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        saved = {"last_sequence": last_sequence, "held": sorted(held), "applying": applying}
        temporary.write_text(json.dumps({**saved, "updated": _now()}))
        os.replace(temporary, self.path)


def notices_written(path: Path) -> set[tuple[str, int]]:
    """(reservation, plan_sequence) of each notice in a notices file."""
    written: set[tuple[str, int]] = set()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return written
    for line in lines:
        try:
            notice = json.loads(line)
            written.add((notice["reservation_id"], notice["plan_sequence"]))
        except (ValueError, KeyError, TypeError):
            continue  # not one of ours (or cut short by a crash)
    return written


# ---------------------------------------------------------------------------------------------
# The watch, on its own thread and channel so that the main loop can wait with a timeout


def open_watch(
    client: Client, after_sequence: int, until_head: bool, sku: str = "", node_id: str = ""
) -> tuple[Iterator[Any], bool]:
    """client.watch from after_sequence; bounded at the journal head when the client can ask,
    else following atpd's restarts (follow=True: reopened after the last event received).

    Returns the stream and whether it ends by itself at the head.
    """
    filters: dict[str, Any] = {"types": WATCHED_TYPES, "sku": sku, "node_id": node_id}
    parameters = inspect.signature(client.watch).parameters
    if until_head and "stop_at_head" in parameters:
        filters["stop_at_head"] = True
        return client.watch(after_sequence, **filters), True
    if not until_head and "follow" in parameters:
        filters["follow"] = True
    return client.watch(after_sequence, **filters), False


class Watcher:
    def __init__(
        self,
        target: str,
        timeout_s: float,
        after_sequence: int,
        until_head: bool,
        sku: str,
        node_id: str,
    ) -> None:
        # Following (not --once), the client watches again after atpd restarts, or on another
        # member of several when its member dies, from the last event received, for as long
        # as the service runs; with --once, with several members, until none answers for
        # timeout_s.
        self.client = Client(target, timeout_s=timeout_s)
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
        state: StateFile,
        *,
        rule: str,
        notices: IO[str],
        log: IO[str] = sys.stderr,
    ) -> None:
        self.client = client
        self.state = state
        # held: reservations whose plans a rule held for review, planned again on the next
        # run (the journal will not bring their LINE_AT_RISK events back). applying: the plan
        # being applied, kept until its outcome is known (see settle).
        self.last_sequence, held, self.applying = state.load()
        self.held: set[str] = set(held)
        self.rule = rule
        self.notices = notices
        # (reservation, plan_sequence) of notices already written: see run().
        self.notices_written: set[tuple[str, int]] = set()
        self.log_stream = log
        self.applied_plans = 0
        self.notices_sent = 0

    def log(self, what: str, **fields: Any) -> None:
        print(json.dumps({"time": _now(), "log": what, **fields}), file=self.log_stream, flush=True)

    def save(self) -> None:
        self.state.save(self.last_sequence, self.held, self.applying)

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
            # Written down before it is sent: if the service dies before it hears the outcome,
            # the next run finds the plan here and settles it.
            self.applying = {
                "plan_sequence": plan.plan_sequence,
                "moves": [_move(p) for p in plan.plans],
            }
            self.save()
            try:
                applied = self.client.reallocate(
                    reservation_ids=reservation_ids, plan_sequence=plan.plan_sequence
                )
            except AtpError as error:
                # Any other error (UNAVAILABLE, DEADLINE_EXCEEDED: no member answered within
                # the call's deadline) stops the service with the plan still in the state file.
                if error.reason != "PLAN_STALE":
                    raise
                # The ledger moved since the plan: maybe by this very plan, applied by an
                # attempt whose answer was lost (the client sent it again, and a repeat is
                # refused PLAN_STALE). The refusal came from the leader, and the client reads
                # from the member it reached last, so the reads in settle() see that plan.
                if self.settle():
                    return
                self.log("plan_stale", plan_sequence=plan.plan_sequence, attempt=attempt)
                continue
            self.held.difference_update(reservation_ids)
            self._applied(applied.plan_sequence, [_move(p) for p in applied.plans])
            return
        self.log(
            "gave_up",
            reservations=reservation_ids,
            why=f"the ledger kept moving ({STALE_RETRIES} stale plans)",
        )

    def settle(self) -> bool:
        """Settles the plan being applied, whose outcome is unknown, from its reservations:
        those placed now as the plan would place them were moved by it (and get their notice),
        the others were not. True when every one was moved."""
        assert self.applying is not None
        plan_sequence, moves = self.applying["plan_sequence"], self.applying["moves"]
        moved = [
            move
            for move in moves
            if _placements(self.client.get_reservation(move["reservation_id"]).lines)
            == move["lines"]
        ]
        if not moved:
            self.applying = None
            self.save()
            return False
        self.held.difference_update(move["reservation_id"] for move in moved)
        self._applied(plan_sequence, moved, settled="its answer was lost: read back")
        return len(moved) == len(moves)

    def _applied(self, plan_sequence: int, moves: list[dict[str, Any]], **how: str) -> None:
        """Logs an applied plan, sends its notices, and marks it done in the state file."""
        self.applied_plans += len(moves)
        self.log(
            "applied",
            plan_sequence=plan_sequence,
            reservations=[move["reservation_id"] for move in moves],
            **how,
        )
        for move in moves:
            if move["slipped"]:
                self._notify(plan_sequence, move)
        # Done only once the notices are out: a crash before this save leaves the plan to
        # settle again on the next run, which skips the notices already in the --notices
        # file (a crash after it would lose them).
        self.applying = None
        self.save()

    def _notify(self, plan_sequence: int, move: dict[str, Any]) -> None:
        reservation_id = move["reservation_id"]
        if (reservation_id, plan_sequence) in self.notices_written:
            return
        old_date, new_date = move["old_promise_date"], move["new_promise_date"]
        unfilled = move["unfilled_quantity"]
        if new_date:
            message = f"Your order {reservation_id} is now expected by {new_date}"
            message += f" (it was {old_date})." if old_date else "."
        else:
            message = f"Your order {reservation_id} is delayed; we will send a new date."
        if unfilled:
            message += f" {unfilled} unit(s) are on backorder and will follow when stock arrives."
        notice = {
            "notice": "promise_slipped",
            "time": _now(),
            "reservation_id": reservation_id,
            "plan_sequence": plan_sequence,
            "old_promise_date": old_date,
            "new_promise_date": new_date,
            "unfilled_quantity": unfilled,
            "message": message,
        }
        print(json.dumps(notice), file=self.notices, flush=True)
        self.notices_sent += 1


def _placements(lines: Any) -> list[list[Any]]:
    """Where a reservation's lines are, as JSON (kept in the state file, compared in settle)."""
    return sorted(
        [line.line_id, line.sku, line.node_id, line.quantity, _date_text(line.ship_date)]
        for line in lines
    )


def _move(plan: Any) -> dict[str, Any]:
    """What a reservation's plan does: where it leaves the lines, and what its notice says."""
    return {
        "reservation_id": plan.reservation_id,
        "lines": _placements(plan.new_lines),
        "slipped": plan.slipped,
        "old_promise_date": _date_text(plan.old_promise_date),
        "new_promise_date": _date_text(plan.new_promise_date),
        "unfilled_quantity": plan.unfilled_quantity,
    }


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
    deadline = time.monotonic() + arguments.timeout if arguments.timeout else None
    handled = 0
    with Client(arguments.target, timeout_s=arguments.call_timeout) as client:
        state = StateFile(Path(arguments.state_file))
        service = RoutingService(client, state, rule=arguments.apply, notices=notices)
        service.log("started", after_sequence=service.last_sequence, rule=arguments.apply)
        if service.applying:
            # The last run stopped while applying a plan (a crash, or no member answering).
            # It may have written some of its notices before it stopped: not twice (a
            # notice on stdout is gone, and may be written again).
            if arguments.notices:
                service.notices_written = notices_written(Path(arguments.notices))
            service.log("settling", plan_sequence=service.applying["plan_sequence"])
            service.settle()
        if service.held:
            service.review_held()
            service.save()
        watcher = Watcher(
            arguments.target, arguments.call_timeout, service.last_sequence, arguments.once,
            arguments.sku, arguments.node,
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
                service.last_sequence = batch[-1].sequence
                service.save()
        finally:
            watcher.close()
        service.log(
            "stopped",
            last_sequence=service.last_sequence,
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
