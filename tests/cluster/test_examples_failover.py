"""The example services (examples/) across a failover: a 3-member cluster on a real etcd
(`--sync-replicas 1`, a 3 s lease), each example run as users run it, a subprocess with every
member in `--target` and a call timeout (10 s) longer than the lease, and the leader killed
(kill -9) in the middle of its run.

- capture_service.py over a file of orders: it exits 0; every order it reports committed or
  released is on the new leader in that state (GetReservation), no order was reserved twice,
  nothing is oversold (the stock is exactly the demand, so a double reservation would also
  fail a later order);
- routing_service.py following the journal while shrinkage puts reservations at risk, wave
  after wave, killed while it waits for events (its watch on a follower, or on the leader: the
  client watches again on another member) or with a batch of events in hand (its plan is
  applied on the new leader: the client retries an apply round the members, and the example
  settles an apply whose answer was lost): it exits 0, and its plans, notices (one per
  reservation) and state file agree with the new leader.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from atp.client import Client
from atp.v1 import common_pb2
from tests.support.cluster import Cluster, Member

pytestmark = [pytest.mark.integration, pytest.mark.crash]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LEASE_S = 3.0
CALL_TIMEOUT_S = 10.0  # the examples' per-call deadline: longer than the lease
SETTLE_S = 30.0  # the bound of every wait for the cluster or an example
CAPTURE_ORDERS = 360
CAPTURE_KILL_AFTER = 90  # results printed before the leader is killed
WAVES, PER_WAVE, KILL_BEFORE_WAVE = 5, 4, 3  # routing: at-risk reservations, wave by wave
COMMITTED, RELEASED = common_pb2.Reservation.COMMITTED, common_pb2.Reservation.RELEASED


class ExampleFailed(AssertionError):
    """The example exited non-zero."""


class ExampleLostTheCluster(ExampleFailed):
    """The example exited non-zero with `error: cannot reach atpd at ...`."""


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the module, with the examples' two nodes; stopped pass or fail."""
    with Cluster(tmp_path_factory.mktemp("examples-failover"), 3, sync_replicas=1,
                 lease_ttl=f"{LEASE_S:g}s") as running:
        running.wait_for_leader(SETTLE_S)
        with Client(running.members_target(), timeout_s=CALL_TIMEOUT_S) as client:
            # DC1 delivers to the EU in 2 days, DC2 in 4: sourcing prefers DC1.
            for node_id, transit_days in (("DC1", 2), ("DC2", 4)):
                lanes = [{"region": "EU", "transit_days": transit_days, "cost": 5}]
                client.upsert_node(node_id=node_id, region="EU", handling_days=1, lanes=lanes)
        yield running


@pytest.fixture
def full_cluster(cluster: Cluster) -> Cluster:
    """Every member running (one killed by an earlier test is restarted and caught up)."""
    for member in cluster.members:
        if not member.running:
            member.start()
            cluster.wait_caught_up(member, SETTLE_S)
    cluster.wait_for_leader(SETTLE_S)
    return cluster


@pytest.fixture
def examples(tmp_path: Path) -> Iterator[Callable[..., Example]]:
    """Starts example processes; each still running at the end is killed, pass or fail."""
    started: list[Example] = []

    def start(name: str, *arguments: str) -> Example:
        example = Example(name, tmp_path / Path(name).stem, list(arguments))
        started.append(example)
        return example

    try:
        yield start
    finally:
        for example in started:
            example.kill()


# -- helpers --------------------------------------------------------------------------------


class Example:
    """`python examples/NAME ARGS`, stdout and stderr to files (read while it runs)."""

    def __init__(self, name: str, out: Path, arguments: list[str]) -> None:
        self.stdout_path = out.with_suffix(".stdout")
        self.stderr_path = out.with_suffix(".stderr")
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(EXAMPLES / name), *arguments],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=True)

    def lines(self, path: Path | None = None) -> list[dict[str, Any]]:
        """The complete JSON lines written so far (stdout unless told); others skipped (the
        `error: ...` line an example ends with)."""
        text = (path or self.stdout_path).read_text()
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n") and line.startswith("{")]

    def logs(self) -> list[dict[str, Any]]:
        return [entry for entry in self.lines(self.stderr_path) if "log" in entry]

    def tail(self) -> str:
        return "\n".join(self.stderr_path.read_text().splitlines()[-8:])

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            self.failed(code, "early")

    def failed(self, code: int, when: str = "") -> NoReturn:
        tail = self.tail()
        last = (tail.splitlines() or [""])[-1]
        lost = last.startswith("error: cannot reach atpd at ")
        raise (ExampleLostTheCluster if lost else ExampleFailed)(
            f"the example exited {code} {when}:\n{tail}")

    def finish(self, timeout_s: float = SETTLE_S + CALL_TIMEOUT_S) -> None:
        """Waits for it; ExampleFailed unless it exits 0."""
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the example still runs after {timeout_s:g} s:\n"
                                 f"{self.tail()}") from None
        if code != 0:
            self.failed(code)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def wait_until(what: str, predicate: Callable[[], Any], example: Example,
               timeout_s: float = SETTLE_S) -> Any:
    """Polls `predicate` every 20 ms; ExampleFailed as soon as the example exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        example.check_running()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s\n{example.tail()}")
        time.sleep(0.02)


def kill_the_leader(cluster: Cluster) -> tuple[Member, Member, float]:
    """kill -9 of the leader; (the killed member, the new leader, seconds to it)."""
    killed = cluster.kill_leader(SETTLE_S)
    assert killed.killed_at is not None
    new = cluster.wait_for_leader(SETTLE_S, exclude=[killed])
    elected_s = time.time() - killed.killed_at
    print(f"killed {killed.name}; {new.name} leads after {elected_s:.2f} s")
    return killed, new, elected_s


def target_with_first(cluster: Cluster, first: Member | None, last: Member | None = None) -> str:
    """Every member, comma separated, `first` first or `last` last."""
    members = [m for m in cluster.members if m is not first and m is not last]
    return cluster.members_target([*([first] if first else []), *members,
                                   *([last] if last else [])])


def holds_commit(member: Member, commit: int) -> Callable[[], bool]:
    def holds() -> bool:
        status = member.try_status()
        return status is not None and status.commit >= commit
    return holds


def date_text(date: Any) -> str:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}"


def log_time(entry: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(entry["time"]).timestamp()


def all_reservations(client: Client, sku: str) -> dict[str, common_pb2.Reservation]:
    found: dict[str, common_pb2.Reservation] = {}
    for reservation in client.iter_reservations(sku=sku, page_size=500):
        assert reservation.reservation_id not in found, f"listed twice: {reservation}"
        found[reservation.reservation_id] = reservation
    return found


def positions(client: Client, sku: str) -> dict[str, Any]:
    reply = client.get_availability([sku], node_ids=["DC1", "DC2"])
    return {position.node_id: position for position in reply.positions}


def assert_not_oversold(found: dict[str, Any]) -> None:
    for position in found.values():
        demand = position.reserved + position.allocated + position.held
        assert demand <= position.on_hand, f"oversold: {position}"
        assert position.available == position.on_hand - demand, position


# -- capture --------------------------------------------------------------------------------


def capture_orders(count: int) -> tuple[list[str], dict[str, int]]:
    """Orders of 1 to 3 units of SKU-C1 (every third with a line of SKU-C2 too), some
    declined or cancelled; the orders as JSON lines, and the units asked of each SKU."""
    orders, demand = [], collections.Counter[str]()
    for index in range(count):
        lines: list[dict[str, Any]] = [
            {"line_id": "l1", "sku": "SKU-C1", "quantity": 1 + index % 3}]
        if index % 3 == 0:
            lines.append({"line_id": "l2", "sku": "SKU-C2", "quantity": 1})
        for line in lines:
            demand[line["sku"]] += line["quantity"]
        orders.append(json.dumps({
            "order_id": f"fo-{index}", "region": "EU", "lines": lines,
            "payment": "declined" if index % 7 == 3 else "ok", "cancel": index % 11 == 5,
        }))
    return orders, dict(demand)


@pytest.mark.timeout(120)
def test_capture_example_finishes_across_a_kill_of_the_leader(
    full_cluster: Cluster, examples: Callable[..., Example], tmp_path: Path
) -> None:
    cluster = full_cluster
    leader = cluster.wait_for_leader(SETTLE_S)
    orders, demand = capture_orders(CAPTURE_ORDERS)
    with Client(cluster.members_target(), timeout_s=CALL_TIMEOUT_S) as client:
        # Exactly the demand, half at each node: every order fits once, none twice.
        client.adjust_stock([
            {"sku": sku, "node_id": node_id, "type": "RECEIPT", "quantity": share}
            for sku, units in demand.items()
            for node_id, share in (("DC1", units // 2), ("DC2", units - units // 2))
        ], request_id="capture-stock")  # fmt: skip
    orders_path = tmp_path / "orders.jsonl"
    orders_path.write_text("\n".join(orders) + "\n")

    # The member killed is the first in --target: the one its client starts on.
    capture = examples("capture_service.py", "--target", target_with_first(cluster, leader),
                       "--timeout", f"{CALL_TIMEOUT_S:g}", str(orders_path))
    started = time.monotonic()
    wait_until(f"{CAPTURE_KILL_AFTER} results",
               lambda: len(capture.lines()) >= CAPTURE_KILL_AFTER, capture)
    killed, new, elected_s = kill_the_leader(cluster)
    assert killed is leader
    done_at_kill = len(capture.lines())
    capture.finish()
    print(f"capture: {CAPTURE_ORDERS} orders in {time.monotonic() - started:.1f} s, "
          f"{done_at_kill} done at the kill; new leader after {elected_s:.2f} s")
    assert done_at_kill < CAPTURE_ORDERS - 100, "the kill was not in the middle of the run"

    results = capture.lines()
    assert [result["order_id"] for result in results] == [f"fo-{i}" for i in range(len(orders))]
    expected = {f"fo-{index}": "released" if (index % 7 == 3 or index % 11 == 5) else "committed"
                for index in range(len(orders))}
    assert {r["order_id"]: r["status"] for r in results} == expected, [
        r for r in results if r["status"] != expected[r["order_id"]]][:3]

    # Every order reported is on the new leader, in the state and at the nodes reported.
    with Client(new.address, timeout_s=CALL_TIMEOUT_S) as on_new:
        wrong = []
        for result in results:
            held = on_new.get_reservation(result["order_id"])
            state = common_pb2.Reservation.State.Name(held.state)
            nodes = sorted({line.node_id for line in held.lines if line.node_id})
            promise = date_text(held.promise_date) if result["status"] == "committed" else None
            if (state, nodes, promise) != (result["reservation_state"], result["nodes"],
                                           result["promise_date"]):
                wrong.append((result, state, nodes, promise))
        assert not wrong, f"{len(wrong)} orders differ on the new leader: {wrong[:3]}"
        # Nothing else was reserved, nothing twice, nothing oversold.
        committed = collections.Counter[str]()
        for sku, units in demand.items():
            found = all_reservations(on_new, sku)
            asked = {r["order_id"] for r in results
                     if any(line["sku"] == sku for line in json.loads(
                         orders[r["input_line"] - 1])["lines"])}
            assert set(found) == asked, f"{sku}: reservations not reported: " \
                f"{sorted(set(found) - asked)[:5]}, missing: {sorted(asked - set(found))[:5]}"
            for reservation in found.values():
                assert reservation.state in (COMMITTED, RELEASED), reservation
                if reservation.state == COMMITTED:
                    committed[sku] += sum(line.quantity for line in reservation.lines
                                          if line.sku == sku)
            found_positions = positions(on_new, sku)
            assert_not_oversold(found_positions)
            assert sum(p.on_hand for p in found_positions.values()) == units
            assert sum(p.reserved + p.held for p in found_positions.values()) == 0
            assert sum(p.allocated for p in found_positions.values()) == committed[sku], (
                sku, committed[sku], found_positions)
        asked_units = collections.Counter[str]()
        for result in results:
            if result["status"] == "committed":
                for line in json.loads(orders[result["input_line"] - 1])["lines"]:
                    asked_units[line["sku"]] += line["quantity"]
        assert committed == asked_units


# -- routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingCase:
    watch_on_leader: bool  # the leader first in --target: the watch stream is on it
    kill_with_batch_in_hand: bool  # killed while it gathers events, not while it waits


# make test runs one routing case; `make failover` (ATP_FAILOVER_LONG=1) runs them all.
LONG_ONLY = pytest.mark.skipif(not os.environ.get("ATP_FAILOVER_LONG"),
                               reason="the long failover run (make failover) takes this case")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", [
    pytest.param(RoutingCase(False, False), id="waiting-watch-on-a-follower", marks=LONG_ONLY),
    pytest.param(RoutingCase(False, True), id="batch-in-hand", marks=LONG_ONLY),
    pytest.param(RoutingCase(True, False), id="watch-on-the-leader"),
])  # fmt: skip
def test_routing_example_repairs_across_a_kill_of_the_leader(
    full_cluster: Cluster, examples: Callable[..., Example], tmp_path: Path, case: RoutingCase,
    request: pytest.FixtureRequest,
) -> None:
    cluster = full_cluster
    leader = cluster.wait_for_leader(SETTLE_S)
    sku = f"SKU-R-{request.node.callspec.id}"
    count = WAVES * PER_WAVE
    ids = [f"{sku}-r{index}" for index in range(count)]
    with Client(cluster.members_target(), timeout_s=CALL_TIMEOUT_S) as driver:
        driver.adjust_stock([
            {"sku": sku, "node_id": "DC1", "type": "RECEIPT", "quantity": count},
            {"sku": sku, "node_id": "DC2", "type": "RECEIPT", "quantity": 2 * count},
        ], request_id=f"{sku}-stock")  # fmt: skip
        for reservation_id in ids:  # all at DC1; shrinkage there puts the youngest at risk
            driver.reserve(reservation_id, [{"line_id": "l1", "sku": sku, "node_id": "DC1",
                                             "quantity": 1}], destination_region="EU")
        promised = {rid: date_text(driver.get_reservation(rid).promise_date) for rid in ids}

        if case.watch_on_leader:
            target = target_with_first(cluster, leader)
        else:
            target = target_with_first(cluster, None, last=leader)
        state_file, notices_file = tmp_path / "routing.state", tmp_path / "notices.jsonl"
        routing = examples(
            "routing_service.py", "--target", target, "--call-timeout", f"{CALL_TIMEOUT_S:g}",
            "--state-file", str(state_file), "--notices", str(notices_file), "--sku", sku,
            "--apply", "auto", "--max-events", str(count), "--timeout", "60",
            # Killed with a batch in hand: a second to gather it leaves room to kill in.
            "--batch-wait", "1" if case.kill_with_batch_in_hand else "0.2")
        started = time.monotonic()

        def applied() -> set[str]:
            return {rid for entry in routing.logs() if entry["log"] == "applied"
                    for rid in entry["reservations"]}

        def applied_all(wanted: set[str]) -> Callable[[], bool]:
            return lambda: wanted <= applied()

        killed = new = None
        for wave in range(WAVES):
            if wave == KILL_BEFORE_WAVE and not case.kill_with_batch_in_hand:
                killed, new, _ = kill_the_leader(cluster)  # it waits for events
            driver.adjust_stock([{"sku": sku, "node_id": "DC1", "type": "SHRINKAGE",
                                  "quantity": PER_WAVE}], request_id=f"{sku}-shrink-{wave}")
            if wave == KILL_BEFORE_WAVE and case.kill_with_batch_in_hand:
                # Once the member it watches holds the shrinkage: it has the events and
                # gathers more for --batch-wait before it plans.
                holds_it = holds_commit(cluster.member(target.split(",")[0]),
                                        cluster.wait_for_leader(SETTLE_S).status().commit)
                wait_until("the watched member holding the shrinkage", holds_it, routing)
                killed, new, _ = kill_the_leader(cluster)
            # One wave at a time: the plans never race the next shrinkage (no PLAN_STALE).
            youngest = set(ids[count - PER_WAVE * (wave + 1):])
            wait_until(f"wave {wave} applied", applied_all(youngest), routing)
        routing.finish()
    logs = routing.logs()
    settled = [entry for entry in logs if entry["log"] == "applied" and "settled" in entry]
    print(f"routing: {count} at-risk reservations in {time.monotonic() - started:.1f} s, "
          f"{len(settled)} apply(s) whose answer was lost, settled by reading")
    assert killed is leader and new is not None and killed.killed_at is not None

    stopped = logs[-1]
    assert stopped["log"] == "stopped", logs[-3:]
    assert (stopped["events"], stopped["applied"], stopped["notices"]) == (count,) * 3, stopped
    assert not [entry for entry in logs if entry["log"] in ("gave_up", "held_for_review")]
    applied_entries = [entry for entry in logs if entry["log"] == "applied"]
    applied_ids = [rid for entry in applied_entries for rid in entry["reservations"]]
    assert sorted(applied_ids) == sorted(ids), "a reservation applied twice or never"
    after_kill = [entry for entry in applied_entries if log_time(entry) > killed.killed_at]
    assert after_kill and len(after_kill) < len(applied_entries), "not killed in the middle"
    saved = json.loads(state_file.read_text())
    assert (saved["last_sequence"], saved["held"], saved["applying"]) == (
        stopped["last_sequence"], [], None)

    # The new leader holds what the service says it did: every reservation moved to DC2,
    # none at risk, one notice each with the leader's new promise date.
    notices = routing.lines(notices_file)
    assert sorted(notice["reservation_id"] for notice in notices) == sorted(ids)
    with Client(new.address, timeout_s=CALL_TIMEOUT_S) as on_new:
        found = all_reservations(on_new, sku)
        assert sorted(found) == sorted(ids)
        for notice in notices:
            reservation = found[notice["reservation_id"]]
            assert [(line.node_id, line.quantity, line.at_risk)
                    for line in reservation.lines] == [("DC2", 1, False)], reservation
            assert notice["new_promise_date"] == date_text(reservation.promise_date)
            assert notice["old_promise_date"] == promised[reservation.reservation_id]
            assert notice["new_promise_date"] > notice["old_promise_date"]
        assert not list(on_new.iter_reservations(sku=sku, at_risk=True))
        found_positions = positions(on_new, sku)
        assert_not_oversold(found_positions)
        dc1, dc2 = found_positions["DC1"], found_positions["DC2"]
        assert (dc1.on_hand, dc1.reserved, dc1.allocated) == (0, 0, 0), dc1
        assert (dc2.on_hand, dc2.reserved, dc2.allocated) == (2 * count, count, 0), dc2
