"""kill -9 while retention purges: the data directory stays sound and nothing live is lost.

Thousands of closed reservations (expired and released) and their idempotency records are
built under long windows; then atpd is restarted with a closed retention and idempotency
window of 1 s, so that it purges them in slices (one LMDB transaction each, with fsync) as
soon as it starts, while a client reserves and releases. atpd is killed with SIGKILL at a
different moment of the purge in each round: early in the backlog, late in it, and during the
steady purge of what the client closed. After each kill `atpctl db verify` passes, every purge
index entry and the record it indexes went together, and a restarted atpd serves every open
reservation acknowledged before the kill with its quantities, its counters add up to them and
nothing is oversold. At the end the purge has finished what the kills interrupted.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from atp.persistence import codec
from atp.store import LmdbStore
from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from tests.support.atpd import AtpdProcess

pytestmark = [pytest.mark.crash, pytest.mark.integration]

ATPCTL = Path(sys.executable).with_name("atpctl")
NODE = "N1"
BACKLOG_SKU, LOAD_SKU = "K", "P"
STOCK = {BACKLOG_SKU: 1_000_000, LOAD_SKU: 5_000}
EXPIRED_BATCHES = 6  # x 1,000 reservations that expire: the closed backlog
RELEASED = 300  # reserved and released with a request id: closed and idempotency records
OPEN = 200  # open reservations made before any kill (half committed)
LONG = ("--closed-retention", "1h", "--idempotency-window", "1h", "--sync", "off")
SHORT = ("--closed-retention", "1s", "--idempotency-window", "1s", "--journal-retention", "1s")
CALL_TIMEOUT = 10.0
OPEN_STATES = ("HELD", "COMMITTED")
State = common_pb2.Reservation.State


class Api:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.inventory = inventory_pb2_grpc.InventoryStub(self.channel)
        self.availability = availability_pb2_grpc.AvailabilityStub(self.channel)
        self.reservations = reservations_pb2_grpc.ReservationsStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def reserve_request(rid: str, sku: str, quantity: int, **fields: object) -> reservations_pb2.ReserveRequest:
    return reservations_pb2.ReserveRequest(
        reservation_id=rid,
        lines=[common_pb2.ReservationLine(line_id="L1", sku=sku, node_id=NODE, quantity=quantity)],
        **fields,  # type: ignore[arg-type]
    )


# ----- what the client was told --------------------------------------------------------------


@dataclass
class Acknowledged:
    """Acknowledged reservations (state name, quantity), and the one call per load run that
    was in flight when atpd died (its outcome unknown)."""

    acked: dict[str, tuple[str, int]] = field(default_factory=dict)
    in_doubt: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> state if applied

    def allowed(self, rid: str) -> list[tuple[str, int] | None]:
        """What the server may hold for `rid`: the acknowledged state, or the one in doubt."""
        options: list[tuple[str, int] | None] = [self.acked.get(rid)]
        if rid in self.in_doubt:
            options.append(self.in_doubt[rid])
        return options

    def settle(self, rid: str, found: tuple[str, int] | None) -> None:
        """After a check: what the server holds is what was acknowledged from now on."""
        self.in_doubt.pop(rid, None)
        if found is None:
            self.acked.pop(rid, None)
        else:
            self.acked[rid] = found


class Load(threading.Thread):
    """Reserves (half committed) and releases some of its own reservations until atpd dies
    (or it is told to stop): every acknowledged outcome goes into the ledger."""

    def __init__(self, process: subprocess.Popen[str], ledger: Acknowledged, label: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.process, self.ledger, self.label = process, ledger, label
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.listening = threading.Event()
        self.calls = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            target = self._read_target()
            if target:
                self.listening.set()
                self._load(target)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def _read_target(self) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends at EOF: killed before it listened
            if line.startswith("atpd listening on "):
                return line.split()[-1]
        return ""

    def _load(self, target: str) -> None:
        api = Api(target)
        mine: list[str] = []
        try:
            for number in range(100_000):
                if self.stop.is_set():
                    return
                if mine and self.rng.random() < 0.4:
                    rid = mine.pop(self.rng.randrange(len(mine)))
                    outcome = ("RELEASED", self.ledger.acked[rid][1])
                    request: object = reservations_pb2.ReleaseRequest(
                        reservation_id=rid, request_id=f"{rid}-rel")
                    method = api.reservations.Release
                else:
                    rid, quantity = f"load-{self.label}-{number:05}", self.rng.randint(1, 3)
                    commit = self.rng.random() < 0.5
                    outcome = ("COMMITTED" if commit else "HELD", quantity)
                    request = reserve_request(rid, LOAD_SKU, quantity, commit=commit,
                                              ttl_seconds=3600)
                    method = api.reservations.Reserve
                self.ledger.in_doubt[rid] = outcome
                try:
                    reply = method(request, timeout=CALL_TIMEOUT)
                except grpc.RpcError as error:
                    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                        grpc.StatusCode.DEADLINE_EXCEEDED):
                        return  # atpd died: this call stays in doubt
                    raise
                del self.ledger.in_doubt[rid]
                got = (State.Name(reply.state), reply.lines[0].quantity)
                assert got == outcome, f"{rid}: answered {got}, expected {outcome}"
                self.ledger.acked[rid] = got
                if got[0] in OPEN_STATES:
                    mine.append(rid)
                self.calls += 1
        finally:
            api.close()


# ----- the data directory after a kill --------------------------------------------------------


def entries(data_dir: Path) -> dict[str, int]:
    with LmdbStore(data_dir, readonly=True) as store:
        counts: dict[str, int] = store.environment_info()["entries"]
        return counts


def check_purge_indexes(data_dir: Path) -> None:
    """Every closed record and idempotency record has the index entry made for it (so a later
    purge finds it), and no closed reservation is among the open records."""
    with LmdbStore(data_dir, readonly=True) as store:
        records = store.load()
    closed_index = set(records["closed_by_time"])
    for key, data in records["closed"].items():
        reservation = codec.decode_record("closed", data)
        assert reservation.close_time is not None, key
        index_key = codec.time_key(reservation.close_time, reservation.reservation_id).encode()
        assert index_key in closed_index, f"closed {key!r} has no purge index entry"
    request_index = set(records["requests_by_time"])
    for key, data in records["requests"].items():
        record = codec.decode_record("requests", data)
        assert codec.time_key(record.time, key.decode()).encode() in request_index, (
            f"request record {key!r} has no purge index entry")
    for key, data in records["reservations"].items():
        assert codec.decode_record("reservations", data).state.value in OPEN_STATES, key


def atpctl_verify(data_dir: Path) -> None:
    result = subprocess.run(
        [str(ATPCTL), "db", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, f"atpctl db verify failed:\n{result.stdout}{result.stderr}"
    assert "no problems" in result.stdout


# ----- a restarted atpd against what was acknowledged ----------------------------------------


def listed_open(api: Api) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for state in (State.HELD, State.COMMITTED):
        request = reservations_pb2.ListReservationsRequest(state=state, page_size=500)
        for _ in range(1000):
            page = api.reservations.ListReservations(request, timeout=CALL_TIMEOUT)
            for reservation in page.reservations:
                assert reservation.reservation_id not in found, "listed twice"
                found[reservation.reservation_id] = (
                    State.Name(reservation.state), reservation.lines[0].quantity)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    return found


def check_served(api: Api, ledger: Acknowledged) -> None:
    """Every acknowledged open reservation is there as acknowledged; nothing else is open but
    a call in doubt; the counters are the sums of the open reservations; no oversell."""
    open_now = listed_open(api)
    for rid in sorted(set(ledger.acked) | set(ledger.in_doubt)):
        state = open_now.get(rid)
        if state is None:
            try:
                reply = api.reservations.GetReservation(
                    reservations_pb2.GetReservationRequest(reservation_id=rid), timeout=CALL_TIMEOUT)
                state = (State.Name(reply.state), reply.lines[0].quantity)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND, error
        allowed = ledger.allowed(rid)
        closed_and_purged = state is None and any(
            option is not None and option[0] not in OPEN_STATES for option in allowed)
        assert state in allowed or closed_and_purged, (
            f"{rid}: the server has {state}; acknowledged {allowed[0]}, in doubt {allowed[1:]}")
        ledger.settle(rid, state)
    strangers = set(open_now) - set(ledger.acked)
    assert not strangers, f"open reservations nobody made: {sorted(strangers)[:5]}"

    reply = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=list(STOCK), node_ids=[NODE]),
        timeout=CALL_TIMEOUT)
    assert {p.sku for p in reply.positions} == set(STOCK)
    for position in reply.positions:
        # Every open reservation is of the load SKU (the backlog's are all closed).
        mine = list(open_now.values()) if position.sku == LOAD_SKU else []
        held = sum(quantity for name, quantity in mine if name == "HELD")
        committed = sum(quantity for name, quantity in mine if name == "COMMITTED")
        assert (position.on_hand, position.reserved, position.allocated) == (
            STOCK[position.sku], held, committed), position
        assert position.reserved + position.allocated <= position.on_hand, position
        assert position.available >= 0 and not position.short, position


# ----- the test ------------------------------------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(20)
        if process.stdout is not None:
            process.stdout.close()


def build(data_dir: Path, ledger: Acknowledged) -> None:
    """The closed backlog and the open reservations, under windows too long to purge any."""
    with AtpdProcess(data_dir, *LONG) as server:
        api = Api(server.target)
        try:
            api.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
                node=common_pb2.Node(node_id=NODE, kind="DC")), timeout=CALL_TIMEOUT)
            Movement = inventory_pb2.StockMovement
            api.inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
                request_id="stock", movements=[
                    Movement(sku=sku, node_id=NODE, type=Movement.RECEIPT, quantity=units)
                    for sku, units in STOCK.items()]), timeout=CALL_TIMEOUT)
            for batch in range(EXPIRED_BATCHES):
                reply = api.reservations.ReserveBatch(reservations_pb2.ReserveBatchRequest(
                    requests=[reserve_request(f"gone-x{batch}-{index:04}", BACKLOG_SKU, 1,
                                              ttl_seconds=1) for index in range(1000)]),
                    timeout=CALL_TIMEOUT)
                assert all(result.HasField("reservation") for result in reply.results)
            for index in range(RELEASED):
                rid = f"gone-r{index:04}"
                api.reservations.Reserve(reserve_request(rid, BACKLOG_SKU, 1), timeout=CALL_TIMEOUT)
                api.reservations.Release(reservations_pb2.ReleaseRequest(
                    reservation_id=rid, request_id=f"{rid}-rel"), timeout=CALL_TIMEOUT)
            reply = api.reservations.ReserveBatch(reservations_pb2.ReserveBatchRequest(
                requests=[reserve_request(f"open-{index:03}", LOAD_SKU, 1 + index % 3,
                                          commit=index % 2 == 0, ttl_seconds=3600)
                          for index in range(OPEN)]), timeout=CALL_TIMEOUT)
            for result in reply.results:
                reservation = result.reservation
                ledger.acked[reservation.reservation_id] = (
                    State.Name(reservation.state), reservation.lines[0].quantity)
            backlog = EXPIRED_BATCHES * 1000 + RELEASED
            deadline = time.monotonic() + 10
            while entries(data_dir)["closed"] < backlog:  # the ttl=1 ones expire
                assert time.monotonic() < deadline, "the backlog never expired"
                time.sleep(0.05)
        finally:
            api.close()


def spawn(data_dir: Path, log_path: Path) -> subprocess.Popen[str]:
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0", "--data-dir",
             str(data_dir), "--log-level", "WARNING", *SHORT],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )


def test_kill9_during_retention_purges_keeps_the_store_sound_and_every_live_reservation(
    tmp_path: Path, processes: list[subprocess.Popen[str]],
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    ledger = Acknowledged()
    build(data_dir, ledger)
    backlog = entries(data_dir)["closed"]
    assert backlog >= EXPIRED_BATCHES * 1000 + RELEASED
    assert entries(data_dir)["requests"] >= RELEASED
    check_purge_indexes(data_dir)

    # When to kill, by round: once the backlog purge is a quarter done, three quarters done,
    # then during the steady purge of what the load closed (due 1 s after closing).
    moments = ["backlog 75%", "backlog 25%", "steady"]
    interrupted = []
    for round_number, moment in enumerate(moments):
        before = entries(data_dir)["closed"]
        process = spawn(data_dir, tmp_path / "atpd-killed.log")
        processes.append(process)
        load = Load(process, ledger, str(round_number), rng.randrange(2**32))
        load.start()
        started = time.monotonic()
        if moment.startswith("backlog"):
            left = backlog * int(moment.split()[1].rstrip("%")) // 100
            while time.monotonic() - started < 10 and process.poll() is None:
                if entries(data_dir)["closed"] <= left:
                    break
                time.sleep(0.002)
        else:
            assert load.listening.wait(10), "atpd never listened"
            time.sleep(1.2 + rng.uniform(0.0, 0.6))  # what it closed first is due by now
        process.kill()
        process.wait(20)
        load.stop.set()
        load.join(20)
        assert not load.is_alive() and load.error is None, load.error
        after = entries(data_dir)
        interrupted.append((moment, before, after["closed"], load.calls))
        print(f"round {round_number} ({moment}): closed {before} -> {after['closed']} at the "
              f"kill, {load.calls} calls acknowledged, {len(ledger.in_doubt)} in doubt")

        atpctl_verify(data_dir)
        check_purge_indexes(data_dir)
        server = AtpdProcess(data_dir, *SHORT, "--sync", "off").start()
        api = Api(server.target)
        try:
            check_served(api, ledger)
        finally:
            api.close()
            assert server.stop() == 0

    # At least one kill fell inside the backlog purge: some purged, some not yet.
    assert any(0 < left < before for moment, before, left, _ in interrupted
               if moment.startswith("backlog")), interrupted
    assert sum(calls for *_, calls in interrupted) > 0, "the load never got an answer"

    # The purge finishes what the kills interrupted: the whole backlog goes.
    with AtpdProcess(data_dir, *SHORT, "--sync", "off") as server:
        deadline = time.monotonic() + 10
        while any(entries(data_dir)[name] for name in (
                "closed", "closed_by_time", "requests", "requests_by_time")):
            assert time.monotonic() < deadline, f"purge did not finish: {entries(data_dir)}"
            time.sleep(0.1)
        api = Api(server.target)
        try:
            for rid in ("gone-x0-0000", f"gone-x{EXPIRED_BATCHES - 1}-0999", "gone-r0000"):
                with pytest.raises(grpc.RpcError) as missing:
                    api.reservations.GetReservation(
                        reservations_pb2.GetReservationRequest(reservation_id=rid),
                        timeout=CALL_TIMEOUT)
                assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            check_served(api, ledger)
        finally:
            api.close()
    atpctl_verify(data_dir)
    assert entries(data_dir)["requests"] == 0
