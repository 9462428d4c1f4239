"""Load for the kill -9 tests: one process per worker, each with its own grpc channel.

A worker issues Reserve (some with commit=true), Commit and Release calls against atpd and
appends to its own JSON-lines file, in order: an `attempt` record before each call (the full
request), then its outcome: `ack` (the reservation the server answered, after which the
mutation must be durable), `refused` (a status error: nothing may have changed), or `lost`
(the transport failed, e.g. the server was killed: the outcome is unknown). Outcomes are
flushed and fsynced before the next call. The first `lost` call ends the worker, so at most
one call per worker is in doubt when the server dies.

Kept apart from the test module so that spawned processes import only this and the stubs.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

# Codes after which the call certainly changed nothing (docs/contract.md, Errors: a failed
# call changes nothing; RESOURCE_EXHAUSTED is refused before it is applied).
REFUSED_CODES = (
    "FAILED_PRECONDITION", "ALREADY_EXISTS", "NOT_FOUND", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED",
)

State = dict[str, Any]  # {"state": name, "lines": [[line_id, sku, node_id, quantity, released, fulfilled]]}


def snapshot(reservation: Any) -> State:
    """The parts of a Reservation message the crash checks compare."""
    from atp.v1 import common_pb2

    return {
        "state": common_pb2.Reservation.State.Name(reservation.state),
        "lines": [
            [line.line_id, line.sku, line.node_id, line.quantity, line.released_quantity,
             line.fulfilled_quantity]
            for line in reservation.lines
        ],
    }


def open_units(state: State) -> list[tuple[str, int]]:
    return [(line[0], line[3] - line[4] - line[5]) for line in state["lines"] if line[3] - line[4] - line[5]]


def run_worker(
    target: str,
    worker: int,
    cycle: int,
    out_path: str,
    positions: list[tuple[str, str]],
    inherited: dict[str, State],
    max_calls: int,
    max_seconds: float,
    seed: int,
    acknowledged: Any,
) -> None:
    """Runs until max_calls, max_seconds or the first call whose outcome is unknown."""
    import grpc

    from atp.v1 import common_pb2, reservations_pb2, reservations_pb2_grpc

    rng = random.Random(seed)
    channel = grpc.insecure_channel(target)
    stub = reservations_pb2_grpc.ReservationsStub(channel)
    deadline = time.monotonic() + max_seconds
    # Reservations this worker may act on, with their last acknowledged state.
    mine: dict[str, State] = dict(inherited)
    with open(out_path, "a", encoding="utf-8") as out:

        def write(record: dict[str, Any], durable: bool) -> None:
            out.write(json.dumps(record) + "\n")
            out.flush()
            if durable:
                os.fsync(out.fileno())

        for number in range(max_calls):
            if time.monotonic() >= deadline:
                break
            open_ids = sorted(rid for rid, state in mine.items() if state["state"] in ("HELD", "COMMITTED"))
            held_ids = [rid for rid in open_ids if mine[rid]["state"] == "HELD"]
            roll = rng.random()
            if roll < 0.55 or not open_ids:
                rid = f"k{cycle}-w{worker}-{number}"
                lines = [
                    [f"L{index}", *rng.choice(positions), rng.randint(1, 5)]
                    for index in range(rng.randint(1, 3))
                ]
                commit = rng.random() < 0.3
                attempt = {"op": "reserve", "id": rid, "lines": lines, "commit": commit}
                request: Any = reservations_pb2.ReserveRequest(
                    reservation_id=rid,
                    lines=[
                        common_pb2.ReservationLine(line_id=line_id, sku=sku, node_id=node_id, quantity=quantity)
                        for line_id, sku, node_id, quantity in lines
                    ],
                    commit=commit,
                    ttl_seconds=3600,
                )
                method = stub.Reserve
            elif roll < 0.75 and held_ids:
                rid = rng.choice(held_ids)
                attempt = {"op": "commit", "id": rid}
                request = reservations_pb2.CommitRequest(reservation_id=rid, request_id=f"{rid}-c{cycle}-{number}")
                method = stub.Commit
            else:
                rid = rng.choice(open_ids)
                choices = open_units(mine[rid])
                if rng.random() < 0.5:
                    release_lines: list[list[Any]] = []
                else:
                    line_id, units = rng.choice(choices)
                    release_lines = [[line_id, rng.randint(1, units)]]
                attempt = {"op": "release", "id": rid, "lines": release_lines}
                request = reservations_pb2.ReleaseRequest(
                    reservation_id=rid,
                    request_id=f"{rid}-r{cycle}-{number}",
                    lines=[common_pb2.LineQuantity(line_id=line_id, quantity=quantity)
                           for line_id, quantity in release_lines],
                )
                method = stub.Release
            write({"t": "attempt", **attempt}, durable=False)
            try:
                reply = method(request, timeout=10)
            except grpc.RpcError as error:
                code = error.code().name
                if code in REFUSED_CODES:
                    write({"t": "refused", "id": rid, "code": code, "details": error.details()}, durable=True)
                    with acknowledged.get_lock():
                        acknowledged.value += 1
                    continue
                write({"t": "lost", "id": rid, "code": code}, durable=True)
                break
            state = snapshot(reply)
            mine[rid] = state
            write({"t": "ack", "id": rid, **state}, durable=True)
            with acknowledged.get_lock():
                acknowledged.value += 1
    channel.close()
