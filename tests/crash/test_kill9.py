"""kill -9 in the middle of load: an acknowledged mutation survives, an unacknowledged one is
wholly absent (docs/architecture.md, invariants), and the counters still add up.

Several worker processes (tests/crash/loadgen.py), each with its own channel, issue Reserve,
Commit and Release and log every acknowledged outcome with fsync. The server is killed with
SIGKILL at a random moment, restarted on the same LMDB directory, and checked against the
logs; then more load, and again. The random seed is printed (set ATP_CRASH_SEED to replay
the same choices; timing still varies).
"""

from __future__ import annotations

import copy
import datetime
import json
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.type import date_pb2

from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from tests.crash.loadgen import State, open_units, run_worker, snapshot
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.crash

WORKERS = 4
CALLS_PER_WORKER = 400
SECONDS_PER_WORKER = 4.0
KILL_CYCLES = 3
SKUS = ("K1", "K2", "K3", "PROBE")
NODES = {"N1": 0, "N2": 1}  # node -> handling days
# (sku, node) -> units received; every position the load reserves against.
STOCK = {
    ("K1", "N1"): 300, ("K2", "N1"): 300, ("K3", "N2"): 250, ("K1", "N2"): 120, ("PROBE", "N1"): 50,
}
SAFETY_STOCK = {("K2", "N1"): 10}
HOLDS = {("K1", "N1"): 5}
SUPPLY = {("K3", "N2"): (60, 3)}  # units, days ahead
# The load also asks for a position that exists but has no stock (always refused); PROBE is
# kept for the "accepts new work" check after each restart.
LOAD_POSITIONS = [key for key in STOCK if key[0] != "PROBE"] + [("K2", "N2")]
Movement = inventory_pb2.StockMovement


class Api:
    def __init__(self, server: AtpdProcess) -> None:
        self.channel = server.channel()
        self.inventory = inventory_pb2_grpc.InventoryStub(self.channel)
        self.availability = availability_pb2_grpc.AvailabilityStub(self.channel)
        self.reservations = reservations_pb2_grpc.ReservationsStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AtpdProcess]:
    process = AtpdProcess(tmp_path / "data")
    try:
        yield process
    finally:
        if process.process is not None:
            process.kill()


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("ATP_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed: ATP_CRASH_SEED={value}")
    return value


def date_in(days: int) -> date_pb2.Date:
    value = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=days)
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def set_up_stock(api: Api) -> None:
    for node_id, handling_days in NODES.items():
        api.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
            node=common_pb2.Node(node_id=node_id, kind="DC", region="EU", handling_days=handling_days)
        ), timeout=10)
    api.inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
        request_id="stock-1",
        movements=[Movement(sku=sku, node_id=node_id, type=Movement.RECEIPT, quantity=units)
                   for (sku, node_id), units in STOCK.items()],
    ), timeout=10)
    for (sku, node_id), units in SAFETY_STOCK.items():
        api.inventory.SetSafetyStock(inventory_pb2.SetSafetyStockRequest(
            sku=sku, node_id=node_id, quantity=units), timeout=10)
    for (sku, node_id), units in HOLDS.items():
        api.inventory.PlaceHold(inventory_pb2.PlaceHoldRequest(hold=common_pb2.Hold(
            hold_id=f"hold-{sku}-{node_id}", sku=sku, node_id=node_id, quantity=units, reason="qa",
        )), timeout=10)
    for (sku, node_id), (units, days) in SUPPLY.items():
        api.inventory.UpsertSupply(inventory_pb2.UpsertSupplyRequest(supply=common_pb2.Supply(
            supply_id=f"po-{sku}-{node_id}", sku=sku, node_id=node_id, quantity=units,
            expected_date=date_in(days),
        )), timeout=10)


# ----- what the logs allow the server to hold --------------------------------------------------


def after(state: State | None, attempt: dict[str, Any]) -> State:
    """The reservation once `attempt` is applied to `state` (the acknowledged one before it)."""
    if attempt["op"] == "reserve":
        return {
            "state": "COMMITTED" if attempt["commit"] else "HELD",
            "lines": [[*line, 0, 0] for line in attempt["lines"]],
        }
    assert state is not None
    result = copy.deepcopy(state)
    if attempt["op"] == "commit":
        result["state"] = "COMMITTED"
        return result
    by_id = {line[0]: line for line in result["lines"]}
    if attempt["lines"]:
        for line_id, units in attempt["lines"]:
            by_id[line_id][4] += units
    else:
        for line in result["lines"]:
            line[4] = line[3] - line[5]
    if not open_units(result):
        result["state"] = "FULFILLED" if any(line[5] for line in result["lines"]) else "RELEASED"
    return result


def read_log(
    path: Path, acknowledged: dict[str, State | None], in_doubt: dict[str, dict[str, Any]]
) -> int:
    """Folds one worker's log into the acknowledged states; returns how many acks it holds."""
    attempt: dict[str, Any] | None = None
    acks = 0
    for raw in path.read_text().splitlines():
        record = json.loads(raw)
        kind = record.pop("t")
        if kind == "attempt":
            assert attempt is None, f"{path}: two attempts without an outcome"
            attempt = record
            continue
        assert attempt is not None and attempt["id"] == record["id"], f"{path}: {record}"
        rid = record["id"]
        if kind == "ack":
            acks += 1
            state = {"state": record["state"], "lines": record["lines"]}
            expected = after(acknowledged.get(rid), attempt)
            assert state == expected, f"{rid}: acknowledged {state} for {attempt}, expected {expected}"
            acknowledged[rid] = state
        elif kind == "refused":
            acks += 1
            acknowledged.setdefault(rid, None)
        else:
            in_doubt[rid] = attempt
        attempt = None
    if attempt is not None:  # the worker died between writing the attempt and its outcome
        in_doubt[attempt["id"]] = attempt
    return acks


def list_reservations(api: Api) -> dict[str, State]:
    """Every reservation, by paging ListReservations."""
    found: dict[str, State] = {}
    token = ""
    while True:
        page = api.reservations.ListReservations(
            reservations_pb2.ListReservationsRequest(page_size=37, page_token=token), timeout=10
        )
        for reservation in page.reservations:
            assert reservation.reservation_id not in found, "a reservation listed twice"
            found[reservation.reservation_id] = snapshot(reservation)
        token = page.next_page_token
        if not token:
            return found


def check_against_logs(
    listed: dict[str, State],
    acknowledged: dict[str, State | None],
    in_doubt: dict[str, dict[str, Any]],
) -> None:
    """Each reservation is what was acknowledged, or that plus the one call in doubt; an
    unacknowledged Reserve is absent or present whole (all its lines, nothing released)."""
    for rid in sorted(set(listed) | set(acknowledged) | set(in_doubt)):
        assert rid in acknowledged or rid in in_doubt, f"{rid} exists but was never requested"
        base = acknowledged.get(rid)
        allowed = [base]
        if rid in in_doubt:
            allowed.append(after(base, in_doubt[rid]))
        actual = listed.get(rid)
        assert actual in allowed, (
            f"{rid}: after kill -9 the server has {actual}; acknowledged {base}, "
            f"in doubt {in_doubt.get(rid)}"
        )


def check_positions(api: Api, listed: dict[str, State]) -> None:
    """Counters equal the sums over the listed reservations; nothing is oversold."""
    demand: dict[tuple[str, str], dict[str, int]] = {}
    for state in listed.values():
        if state["state"] not in ("HELD", "COMMITTED"):
            continue
        for _, sku, node_id, quantity, released, fulfilled in state["lines"]:
            sums = demand.setdefault((sku, node_id), {"HELD": 0, "COMMITTED": 0})
            sums[state["state"]] += quantity - released - fulfilled
    reply = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=list(SKUS)), timeout=10
    )
    seen = set()
    for p in reply.positions:
        key = (p.sku, p.node_id)
        seen.add(key)
        sums = demand.get(key, {"HELD": 0, "COMMITTED": 0})
        counters = (p.on_hand, p.reserved, p.allocated, p.held, p.safety_stock, p.inbound)
        expected = (
            STOCK.get(key, 0), sums["HELD"], sums["COMMITTED"], HOLDS.get(key, 0),
            SAFETY_STOCK.get(key, 0), SUPPLY.get(key, (0, 0))[0],
        )
        assert counters == expected, (
            f"{key}: (on_hand, reserved, allocated, held, safety_stock, inbound) = {counters}, "
            f"the reservations and the stock given say {expected}"
        )
        # Normal-priority demand may use neither safety stock nor more than there is.
        assert p.reserved + p.allocated + p.held + p.safety_stock <= p.on_hand + p.inbound, key
        assert p.available >= 0 and not p.short, key
    assert set(demand) <= seen, f"demand at positions the server does not report: {set(demand) - seen}"


def accepts_new_work(api: Api, label: str) -> tuple[str, State]:
    rid = f"probe-{label}"
    stub = api.reservations
    stub.Reserve(reservations_pb2.ReserveRequest(
        reservation_id=rid,
        lines=[common_pb2.ReservationLine(line_id="L0", sku="PROBE", node_id="N1", quantity=1)],
    ), timeout=10)
    stub.Commit(reservations_pb2.CommitRequest(reservation_id=rid, request_id=f"{rid}-c"), timeout=10)
    released = stub.Release(
        reservations_pb2.ReleaseRequest(reservation_id=rid, request_id=f"{rid}-r"), timeout=10
    )
    state = snapshot(released)
    assert state["state"] == "RELEASED"
    return rid, state


# ----- the tests -------------------------------------------------------------------------------


def test_kill9_mid_load_keeps_every_acknowledged_call_and_no_partial_one(
    server: AtpdProcess, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    context = multiprocessing.get_context("spawn")
    server.start()
    api = Api(server)
    set_up_stock(api)
    api.close()
    # Reservations as verified after the last restart; None: refused, so absent.
    verified: dict[str, State | None] = {}
    cycles = 0
    for cycle in range(KILL_CYCLES):
        open_ids = sorted(rid for rid, s in verified.items() if s and s["state"] in ("HELD", "COMMITTED"))
        acknowledged_count = context.Value("i", 0)
        logs = [tmp_path / f"cycle{cycle}-worker{worker}.jsonl" for worker in range(WORKERS)]
        workers = [
            context.Process(
                target=run_worker,
                args=(
                    server.target, worker, cycle, str(logs[worker]), LOAD_POSITIONS,
                    {rid: verified[rid] for rid in open_ids[worker::WORKERS]},
                    CALLS_PER_WORKER, SECONDS_PER_WORKER, rng.randrange(2**32), acknowledged_count,
                ),
                daemon=True,
            )
            for worker in range(WORKERS)
        ]
        for process in workers:
            process.start()
        # Kill once the load is flowing, at a random moment within it.
        threshold = rng.randint(20, 700)
        started = time.monotonic()
        while acknowledged_count.value < threshold and time.monotonic() - started < 20:
            if not any(process.is_alive() for process in workers):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        killed_with_workers_running = sum(process.is_alive() for process in workers)
        server.kill()
        for process in workers:
            process.join(30)
            assert process.exitcode == 0, f"load worker failed (exit {process.exitcode}); seed {seed}"
        cycles += 1

        acknowledged = dict(verified)
        in_doubt: dict[str, dict[str, Any]] = {}
        acks = sum(read_log(path, acknowledged, in_doubt) for path in logs if path.exists())
        print(f"cycle {cycle}: {acks} acknowledged outcomes, {len(in_doubt)} in doubt, "
              f"{killed_with_workers_running} workers running at the kill", end="")
        assert acks > 0, "no call was acknowledged before the kill"

        server.start()
        api = Api(server)
        try:
            listed = list_reservations(api)
            check_against_logs(listed, acknowledged, in_doubt)
            applied = sum(listed.get(rid) != acknowledged.get(rid) for rid in in_doubt)
            print(f" ({applied} of them applied)")
            check_positions(api, listed)
            probe_id, probe_state = accepts_new_work(api, str(cycle))
        finally:
            api.close()
        verified = {rid: listed.get(rid) for rid in set(acknowledged) | set(in_doubt)}
        verified[probe_id] = probe_state
    assert cycles == KILL_CYCLES


def test_held_reservation_expires_while_the_server_is_down(server: AtpdProcess) -> None:
    server.start()
    api = Api(server)
    try:
        set_up_stock(api)
        before = api.availability.GetAvailability(
            availability_pb2.GetAvailabilityRequest(skus=["K1"], node_ids=["N1"]), timeout=10
        ).positions[0]
        reply = api.reservations.Reserve(reservations_pb2.ReserveRequest(
            reservation_id="short-lived", ttl_seconds=2,
            lines=[common_pb2.ReservationLine(line_id="L0", sku="K1", node_id="N1", quantity=7)],
        ), timeout=10)
        acknowledged_at = time.monotonic()
        assert reply.state == common_pb2.Reservation.HELD
        server.kill()
        assert time.monotonic() - acknowledged_at < 2, "killed too late to test expiry while down"
    finally:
        api.close()
    time.sleep(max(0.0, acknowledged_at + 3 - time.monotonic()))
    server.start()
    api = Api(server)
    try:
        expired = api.reservations.GetReservation(
            reservations_pb2.GetReservationRequest(reservation_id="short-lived"), timeout=10
        )
        assert expired.state == common_pb2.Reservation.EXPIRED
        assert [(line.quantity, line.released_quantity) for line in expired.lines] == [(7, 7)]
        position = api.availability.GetAvailability(
            availability_pb2.GetAvailabilityRequest(skus=["K1"], node_ids=["N1"]), timeout=10
        ).positions[0]
        assert (position.reserved, position.available) == (before.reserved, before.available)
        assert position.available == STOCK[("K1", "N1")] - HOLDS[("K1", "N1")]
    finally:
        api.close()
