"""The audit trail: every journal event of a change records who made it (the caller's
principal), through memory, the stored journal, a follower's copy, Watch and atpctl."""

from __future__ import annotations

import asyncio

from atp import kpi
from atp.cli.events import event_line
from atp.engine.events import EventFilter
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig, Refused, commands
from atp.ledger.model import Event
from atp.persistence import codec
from atp.server import convert
from atp.store import MemoryStore

NOW = 1_800_000_000.0


def receipt(request_id: str, sku: str = "A", quantity: int = 5) -> commands.AdjustStock:
    return commands.AdjustStock(request_id, (commands.Movement(sku, "DC1", "RECEIPT", quantity),))


def reserve(reservation_id: str, quantity: int, **options: object) -> commands.Reserve:
    line = commands.LineRequest("l1", "A", quantity, "DC1")
    return commands.Reserve(reservation_id, (line,), **options)  # type: ignore[arg-type]


def events_of(ledger: Ledger) -> list[Event]:
    return ledger.take_changes().events


def test_a_command_and_what_it_sets_off_record_its_principal_and_expiry_none() -> None:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=60))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(receipt("r0", quantity=2), NOW)
    events_of(ledger)
    # Reserving the last units sets off POSITION_OUT_OF_STOCK: the reserver's doing too.
    ledger.apply(reserve("o1", 2, ttl_seconds=60), NOW, "capture-svc")
    created = events_of(ledger)
    assert {event.type for event in created} >= {"RESERVATION_CREATED", "POSITION_OUT_OF_STOCK"}
    assert {event.principal for event in created} == {"capture-svc"}
    ledger.apply(receipt("r1"), NOW, "ops-alice")
    received = events_of(ledger)
    assert {event.type for event in received} >= {"STOCK_MOVED", "POSITION_BACK_IN_STOCK"}
    assert {event.principal for event in received} == {"ops-alice"}
    # Expiry is the engine's own doing.
    ledger.execute(commands.ExpireDue(limit=10), NOW + 61)
    expired = events_of(ledger)
    assert "RESERVATION_EXPIRED" in {event.type for event in expired}
    assert {event.principal for event in expired} == {""}
    # A refused command leaves no principal behind for the next one.
    refused = ledger.apply(reserve("o2", 10**6), NOW + 62, "capture-svc")
    assert isinstance(refused, Refused) and ledger.principal == ""


def test_the_principal_survives_the_journal_and_older_events_read_as_none() -> None:
    event = Event(7, NOW, "STOCK_MOVED", {"sku": "A", "node_id": "DC1"}, "ops-alice")
    assert codec.decode_event(codec.encode_event(event)) == event
    anonymous = Event(8, NOW, "STOCK_MOVED", {"sku": "A"})
    assert b'"p"' not in codec.encode_event(anonymous)  # no bytes spent without auth
    assert codec.decode_event(codec.encode_event(anonymous)).principal == ""


def test_watch_filters_by_principal_and_shows_it() -> None:
    by_alice = Event(1, NOW, "STOCK_MOVED", {"sku": "A", "node_id": "DC1"}, "ops-alice")
    by_engine = Event(2, NOW, "RESERVATION_EXPIRED", {"reservation_id": "o1"})
    only_alice = EventFilter(principal="ops-alice")
    assert only_alice.matches(by_alice) and not only_alice.matches(by_engine)
    assert EventFilter().matches(by_engine)
    message = convert.event_message(by_alice)
    assert message.principal == "ops-alice"
    decoded = kpi.decode_event(message)
    assert decoded.principal == "ops-alice" and decoded.to_dict()["principal"] == "ops-alice"
    assert "by=ops-alice" in event_line(decoded)
    assert "by=" not in event_line(kpi.decode_event(convert.event_message(by_engine)))


def test_the_writer_records_the_principal_of_each_call_in_the_durable_events() -> None:
    async def scenario() -> list[Event]:
        writer = Writer(Ledger(), MemoryStore(), clock=lambda: NOW)
        shown: list[Event] = []
        writer.on_durable_events = shown.extend
        writer.start()
        await writer.execute(commands.UpsertNode("DC1"), principal="admin-bob")
        await writer.execute_batch([receipt("r1"), receipt("r2", "B")], "ops-alice")
        _, durable = writer.apply_one(reserve("o1", 1), "capture-svc")
        await writer.until_durable(durable)
        await writer.close()
        stored = [codec.decode_event(data) for _, data in writer.store.read_journal(0, 100)]
        assert stored == shown
        return shown

    events = asyncio.run(scenario())
    main = {"NODE_UPSERTED", "STOCK_MOVED", "RESERVATION_CREATED"}
    assert [(event.type, event.principal) for event in events if event.type in main] == [
        ("NODE_UPSERTED", "admin-bob"),
        ("STOCK_MOVED", "ops-alice"),
        ("STOCK_MOVED", "ops-alice"),
        ("RESERVATION_CREATED", "capture-svc"),
    ]
    assert all(event.principal for event in events)  # every event of a call has its caller
