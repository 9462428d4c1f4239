"""A permanent hang while health says SERVING: the writer must answer, or fail visibly.

Found by a review: LMDB reader slots used up by killed offline readers made
`store.oldest_sequence()` in the journal trim raise MDB_READERS_FULL. The error escaped the
commit loop, which ended: the batch was on disk but never answered, every later call hung,
health still said SERVING and SIGTERM could not stop atpd. Now a trim failure is logged,
counted and retried after a later commit; any other death of a background task fails the
writer (waiters get Unavailable, on_fatal stops the server); stale reader slots are cleared
at open, periodically and when a read meets MDB_READERS_FULL; Watch answers a store error
with UNAVAILABLE.

Every wait is bounded: a regression fails on a timeout instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import gc
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.bootstrap import AtpServer, ServerConfig
from atp.engine import writer as writer_module
from atp.engine.events import EventHub
from atp.engine.writer import Writer
from atp.ledger import Ledger
from atp.ledger import commands
from atp.ledger.errors import Unavailable
from atp.ledger.model import Event
from atp.persistence import codec
from atp.server.servicers import EventsServicer
from atp.store import MemoryStore, StoreError, WriteBatch
from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from tests.support.atpd import AtpdProcess

NOW = 1_795_000_000.0
ANSWER_TIMEOUT_S = 3.0  # a healthy in-memory writer answers in milliseconds
READERS_FULL = "mdb_txn_begin: MDB_READERS_FULL: Environment maxreaders limit reached"


# ----- unit: a writer over an in-memory store with injected faults ---------------------------


class FaultyStore(MemoryStore):
    """A memory store whose journal trim bookkeeping, commits or reader checks can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.readers_full = False  # oldest_sequence raises, as LMDB did with no reader slot
        self.commit_fails = False
        self.commit_gate = threading.Event()
        self.commit_gate.set()
        self.reader_check_error: Exception | None = None
        self.reader_checks = 0

    def oldest_sequence(self) -> int:
        if self.readers_full:
            raise StoreError(f"reading the journal failed: {READERS_FULL}")
        return super().oldest_sequence()

    def commit(self, batch: WriteBatch) -> None:
        self.commit_gate.wait(10)
        if self.commit_fails:
            raise StoreError("disk on fire")
        super().commit(batch)

    def clear_stale_readers(self) -> int:
        self.reader_checks += 1
        if self.reader_check_error is not None:
            raise self.reader_check_error
        return 0

    def journal_sequences(self) -> list[int]:
        return [sequence for sequence, _ in super().read_journal(0, 1000)]


def receipt(request_id: str) -> commands.AdjustStock:
    """One unit received at A@DC1: a commit with journal events."""
    return commands.AdjustStock(request_id, (commands.Movement("A", "DC1", "RECEIPT", 1),))


async def answered(awaitable: Any) -> Any:
    """The awaitable's result, or a test failure (not a hang) when it never comes."""
    return await asyncio.wait_for(awaitable, ANSWER_TIMEOUT_S)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def started_writer(store: FaultyStore, **options: Any) -> Writer:
    writer = Writer(Ledger(), store, clock=lambda: NOW, **options)
    writer.start()
    await answered(writer.execute(commands.UpsertNode("DC1")))
    return writer


def test_a_failing_journal_trim_answers_every_command_and_is_retried_after_healing() -> None:
    async def scenario() -> None:
        store = FaultyStore()
        store.readers_full = True
        writer = await started_writer(store, journal_retention_events=5)
        await answered(writer.execute(receipt("broken-0")))
        # The trim runs after the commit is answered, on the commit thread: give it its turn
        # (a loaded machine may answer the caller first).
        await answered(until(lambda: writer.housekeeping_failures > 0))
        failed_at_first = writer.housekeeping_failures
        assert failed_at_first > 0, "the failed trim is counted"
        for index in range(1, 12):
            await answered(writer.execute(receipt(f"broken-{index}")))
        assert writer.failure is None
        assert writer.housekeeping_failures > failed_at_first, "and retried after later commits"
        everything = list(range(1, writer.ledger.sequence + 1))
        assert store.journal_sequences() == everything, "nothing could be trimmed meanwhile"

        store.readers_full = False
        await answered(writer.execute(receipt("healed-0")))
        failures = writer.housekeeping_failures  # a retry under way has ended by now
        for index in range(1, 3):
            await answered(writer.execute(receipt(f"healed-{index}")))
        await answered(until(lambda: len(store.journal_sequences()) <= 6))
        assert writer.housekeeping_failures == failures, "trims succeed again"
        retained = store.journal_sequences()
        assert retained == list(range(retained[0], writer.ledger.sequence + 1)), retained
        assert writer.ledger.positions[("A", "DC1")].on_hand == 15
        assert writer.failure is None
        await answered(writer.close())

    asyncio.run(scenario())


def test_a_failure_after_the_batch_is_durable_answers_it_then_fails_the_writer_visibly() -> None:
    """The batch's reporting (the event stream) raises: its callers are answered (it is on
    disk), those waiting on the next batch get Unavailable, the server is told to stop."""

    async def scenario() -> None:
        store = FaultyStore()
        fatal: list[BaseException] = []
        writer = await started_writer(store, on_fatal=fatal.append)
        writer.on_durable_events = publish_fails
        store.commit_gate.clear()
        durable = asyncio.create_task(writer.execute(receipt("durable")))
        await asyncio.sleep(0.05)  # its batch is committing, held at the gate
        pending = [asyncio.create_task(writer.execute(receipt(f"next-{i}"))) for i in range(5)]
        await asyncio.sleep(0.02)
        store.commit_gate.set()

        await answered(durable)
        outcomes = await answered(asyncio.gather(*pending, return_exceptions=True))
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
        assert_failed_visibly(writer, fatal, "publishing failed")
        await assert_refuses_and_closes(writer)

    asyncio.run(scenario())


def publish_fails(events: list[Event]) -> None:
    raise RuntimeError("publishing failed")


@pytest.mark.parametrize("fault", ["commit", "encoding"])
def test_a_batch_that_cannot_be_written_fails_its_waiters_and_the_writer(
    fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = FaultyStore()
        fatal: list[BaseException] = []
        writer = await started_writer(store, on_fatal=fatal.append)
        if fault == "commit":
            store.commit_fails = True
        else:
            monkeypatch.setattr(writer_module, "encode_batch", encoding_fails)
        calls = [asyncio.create_task(writer.execute(receipt(f"lost-{i}"))) for i in range(5)]
        outcomes = await answered(asyncio.gather(*calls, return_exceptions=True))
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes
        assert_failed_visibly(writer, fatal, "disk on fire" if fault == "commit" else "encoding")
        assert store.journal_sequences() == [1], "nothing after the node reached the disk"
        await assert_refuses_and_closes(writer)

    asyncio.run(scenario())


def encoding_fails(changes: object) -> WriteBatch:
    raise ValueError("encoding failed")


def test_a_background_task_that_dies_fails_the_writer_instead_of_leaving_it_half_alive() -> None:
    async def scenario() -> None:
        store = FaultyStore()
        store.reader_check_error = RuntimeError("reader check crashed")
        fatal: list[BaseException] = []
        writer = Writer(Ledger(), store, clock=lambda: NOW, on_fatal=fatal.append)
        writer.maintenance_interval_s = 0.01
        writer.start()
        await answered(until(lambda: writer.failure is not None))
        assert_failed_visibly(writer, fatal, "reader check crashed")
        await assert_refuses_and_closes(writer)

    asyncio.run(scenario())


def test_stale_reader_slots_are_cleared_periodically_and_a_failed_check_is_not_fatal() -> None:
    async def scenario() -> None:
        store = FaultyStore()
        store.reader_check_error = StoreError("checking reader slots failed")
        writer = Writer(Ledger(), store, clock=lambda: NOW)
        writer.maintenance_interval_s = 0.01
        writer.start()
        await answered(until(lambda: store.reader_checks >= 3))
        assert writer.failure is None
        await answered(writer.execute(commands.UpsertNode("DC1")))
        await answered(writer.close())

    asyncio.run(scenario())


def test_a_writer_that_fails_stops_the_server_as_a_fatal_error() -> None:
    """What atpd turns into health NOT_SERVING, a stop and exit code 1 (daemon.serve)."""

    async def scenario() -> AtpServer:
        config = ServerConfig(listen="127.0.0.1:0", data_dir=None, grace_seconds=1)
        server = AtpServer(config)
        await server.start()
        try:
            server.writer.on_durable_events = publish_fails
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                inventory = inventory_pb2_grpc.InventoryStub(channel)
                node = inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id="DC1"))
                await inventory.UpsertNode(node, timeout=ANSWER_TIMEOUT_S)  # it is durable
                await answered(server.stopped.wait())
        finally:
            await answered(server.stop())
            gc.unfreeze()
        return server

    server = asyncio.run(scenario())
    assert server.fatal_error is not None and "publishing failed" in str(server.fatal_error)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def assert_failed_visibly(writer: Writer, fatal: list[BaseException], cause: str) -> None:
    assert writer.failure is not None and cause in str(writer.failure), writer.failure
    assert len(fatal) == 1 and fatal[0] is writer.failure, "on_fatal stops the server, once"


async def assert_refuses_and_closes(writer: Writer) -> None:
    with pytest.raises(Unavailable):
        await answered(writer.execute(receipt("after-the-failure")))
    with pytest.raises(Unavailable):
        await answered(writer.until_applied_durable())
    started = time.monotonic()
    await answered(writer.close())
    assert time.monotonic() - started < 1.0


# ----- Watch: a store error is UNAVAILABLE, not UNKNOWN --------------------------------------


class UnreadableJournal(MemoryStore):
    """Ten events committed; then reading the journal (or its oldest sequence) fails."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        batch = WriteBatch()
        for sequence in range(1, 11):
            event = Event(sequence, NOW, "NODE_UPSERTED", {"node_id": f"DC{sequence}"})
            batch.append(sequence, codec.encode_event(event))
        self.commit(batch)
        self.failing = failing

    def read_journal(self, after_sequence: int, limit: int) -> list[tuple[int, bytes]]:
        if self.failing == "read_journal":
            raise StoreError(f"reading the journal failed: {READERS_FULL}")
        return super().read_journal(after_sequence, limit)

    def oldest_sequence(self) -> int:
        if self.failing == "oldest_sequence":
            raise StoreError(f"reading the journal failed: {READERS_FULL}")
        return super().oldest_sequence()


@pytest.mark.parametrize("failing", ["read_journal", "oldest_sequence"])
def test_watch_answers_an_unreadable_journal_with_unavailable(failing: str) -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        server = grpc.aio.server()
        hub = EventHub(UnreadableJournal(failing))
        events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(hub), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = events_pb2.WatchRequest(stop_at_head=True)
                call = events_pb2_grpc.EventsStub(channel).Watch(request, timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await answered(drain(call))
                return raised.value
        finally:
            await server.stop(None)

    error = asyncio.run(scenario())
    assert error.code() is grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    assert "MDB_READERS_FULL" in (error.details() or "")


async def drain(call: Any) -> list[Any]:
    return [event async for event in call]


# ----- integration: LMDB reader slots used up by killed readers ------------------------------

RETENTION_EVENTS = "50"
DEADLINE_S = 5.0  # every call against atpd; a healthy one answers in milliseconds
STOP_WITHIN_S = 5.0
READER_SLOTS_MAX = 126  # py-lmdb's default max_readers, which atpd keeps
# Opens the data directory read-only with the lock file, as `atpctl db` does, and takes a
# reader slot per open read transaction (py-lmdb uses MDB_NOTLS) until none is left.
SLOT_FILLER = """
import sys, time, lmdb
environment = lmdb.open(sys.argv[1], readonly=True, lock=True, max_dbs=16)
held = []
try:
    for _ in range(130):
        held.append(environment.begin())
except lmdb.ReadersFullError:
    pass
print("ready", len(held), flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_reader_slots_left_by_killed_readers_never_hang_atpd(tmp_path: Path) -> None:
    server = AtpdProcess(
        tmp_path / "data", "--journal-retention-events", RETENTION_EVENTS
    ).start()
    try:
        with server.channel() as channel:
            stubs = Stubs(channel)
            stubs.stock("A", "DC1", 1000)
            for drive in (writes_then_reads, reads_then_writes):
                held = fill_reader_slots_and_get_killed(server.data_dir)
                assert held >= READER_SLOTS_MAX - 5, f"the filler held only {held} slots"
                drive(stubs)
                assert stubs.health() == health_pb2.HealthCheckResponse.SERVING
        assert_stops_cleanly(server)
    finally:
        if server.process is not None:
            server.kill()
    assert "CRITICAL" not in server.log_path.read_text(), server.log_path.read_text()
    assert_verify_passes(server.data_dir)


def fill_reader_slots_and_get_killed(data_dir: Path) -> int:
    """Runs the filler until it holds every free slot, then kills it with SIGKILL: its slots
    stay taken in lock.mdb. Returns how many it held."""
    filler = subprocess.Popen(
        [sys.executable, "-c", SLOT_FILLER, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        ready, _, _ = select.select([filler.stdout], [], [], 30)
        assert ready and filler.stdout is not None, "the slot filler never got ready"
        line = filler.stdout.readline().split()
        assert line[:1] == ["ready"], line
        return int(line[1])
    finally:
        filler.send_signal(signal.SIGKILL)
        filler.wait(10)
        if filler.stdout is not None:
            filler.stdout.close()


class Stubs:
    """Every call has a short deadline: a hung atpd fails the test with DEADLINE_EXCEEDED."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.inventory = inventory_pb2_grpc.InventoryStub(channel)
        self.availability = availability_pb2_grpc.AvailabilityStub(channel)
        self.reservations = reservations_pb2_grpc.ReservationsStub(channel)
        self.events = events_pb2_grpc.EventsStub(channel)
        self.health_stub = health_pb2_grpc.HealthStub(channel)
        self.calls = 0

    def next_id(self, prefix: str) -> str:
        self.calls += 1
        return f"{prefix}-{self.calls}"

    def stock(self, sku: str, node_id: str, quantity: int) -> None:
        node = common_pb2.Node(node_id=node_id)
        self.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=node), timeout=DEADLINE_S)
        self.receive(sku, node_id, quantity)

    def receive(self, sku: str, node_id: str, quantity: int) -> None:
        movement = inventory_pb2.StockMovement(
            sku=sku, node_id=node_id, type=inventory_pb2.StockMovement.RECEIPT, quantity=quantity
        )
        request = inventory_pb2.AdjustStockRequest(
            request_id=self.next_id("adjust"), movements=[movement]
        )
        self.inventory.AdjustStock(request, timeout=DEADLINE_S)

    def reserve(self, sku: str, node_id: str) -> None:
        line = common_pb2.ReservationLine(line_id="l1", sku=sku, node_id=node_id, quantity=1)
        request = reservations_pb2.ReserveRequest(
            reservation_id=self.next_id("reservation"), lines=[line]
        )
        self.reservations.Reserve(request, timeout=DEADLINE_S)

    def available(self, sku: str, node_id: str) -> int:
        request = availability_pb2.GetAvailabilityRequest(skus=[sku], node_ids=[node_id])
        reply = self.availability.GetAvailability(request, timeout=DEADLINE_S)
        return int(reply.positions[0].available)

    def replay(self) -> list[int]:
        request = events_pb2.WatchRequest(stop_at_head=True)
        return [event.sequence for event in self.events.Watch(request, timeout=DEADLINE_S)]

    def health(self) -> int:
        request = health_pb2.HealthCheckRequest()
        return int(self.health_stub.Check(request, timeout=DEADLINE_S).status)


def writes_then_reads(stubs: Stubs) -> None:
    """Each commit's journal trim meets the full reader table first."""
    for _ in range(3):
        stubs.receive("A", "DC1", 1)
        stubs.reserve("A", "DC1")
    assert stubs.available("A", "DC1") > 0
    assert_contiguous(stubs.replay())


def reads_then_writes(stubs: Stubs) -> None:
    """Watch's journal read meets the full reader table first."""
    assert_contiguous(stubs.replay())
    before = stubs.available("A", "DC1")
    stubs.reserve("A", "DC1")
    stubs.receive("A", "DC1", 2)
    assert stubs.available("A", "DC1") == before + 1


def assert_contiguous(sequences: list[int]) -> None:
    assert sequences, "the retained journal is empty"
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), sequences


def assert_stops_cleanly(server: AtpdProcess) -> None:
    started = time.monotonic()
    code = server.stop(timeout_s=STOP_WITHIN_S)
    assert code == 0, f"atpd exited {code}; see {server.log_path}"
    assert time.monotonic() - started < STOP_WITHIN_S


def assert_verify_passes(data_dir: Path) -> None:
    script = Path(sys.executable).with_name("atpctl")
    atpctl = [str(script)] if script.exists() else [sys.executable, "-m", "atp.cli"]
    verified = subprocess.run(
        [*atpctl, "db", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "no problems" in verified.stdout

