"""Typed event payloads: every event type the ledger emits has its member of Event's `payload`
oneof, and Watch fills it with what `data` says, field by field.

The changes are driven through the real servicers (a writer over a memory store, the event
hub and EventsServicer.Watch, in-process); the expected values are read back from each
event's `data` Struct, so the typed payload is checked against what clients got until now.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from atp.engine.events import EventHub
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig, commands, day_of
from atp.ledger.model import EVENT_TYPES, Event
from atp.server import convert, event_payloads
from atp.server.allocations import AllocationsServicer
from atp.server.servicers import EventsServicer, InventoryServicer, ReservationsServicer
from atp.store import MemoryStore
from atp.v1 import allocation_pb2, common_pb2, events_pb2, inventory_pb2, reservations_pb2

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
Movement = inventory_pb2.StockMovement

# Journal keys whose payload field is named otherwise (after the resource messages).
RENAMED: dict[str, dict[str, str]] = {
    "STOCK_MOVED": {"movement": "type"},
    "SUPPLY_RECEIVED": {"received": "receipt_quantity"},
    "RESERVATION_REALLOCATED": {"unfilled": "unfilled_quantity"},
    "BACKORDER_FILLED": {"filled": "filled_quantity", "remaining": "backordered_quantity"},
    "LINE_AT_RISK": {"reason": "at_risk_reason"},
}
LINE_RENAMED = {"backordered": "backordered_quantity"}
# Journal keys the payload leaves out: LINE_RECOVERED's reason is always empty.
LEFT_OUT = {"LINE_RECOVERED": {"reason"}}


def date_after(days: int) -> Any:
    day = datetime.date.fromordinal(TODAY + days)
    return {"year": day.year, "month": day.month, "day": day.day}


class Scenario:
    """In-process servicers over one writer, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW
        self.store = MemoryStore()
        config = LedgerConfig(default_ttl_seconds=3600)
        self.writer = Writer(Ledger(config), self.store, clock=lambda: self.now)
        self.hub = EventHub(self.store)
        self.writer.on_durable_events = self.hub.publish
        self.inventory = InventoryServicer(self.writer)
        self.reservations = ReservationsServicer(self.writer)
        self.events = EventsServicer(self.hub)
        self.allocations = AllocationsServicer(self.writer)
        self._counter = 0

    def request_id(self) -> str:
        self._counter += 1
        return f"req-{self._counter}"

    async def node(self, node_id: str, transit_days: int, active: bool = True) -> None:
        node = common_pb2.Node(node_id=node_id, active=active)
        node.lanes.add(region="EU", transit_days=transit_days, cost=1)
        await self.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=node), None)

    async def move(self, *movements: Movement) -> None:
        await self.inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
            request_id=self.request_id(), movements=movements), None)

    async def reserve(self, reservation_id: str, sku: str, quantity: int, node_id: str = "",
                      **options: Any) -> None:
        request = reservations_pb2.ReserveRequest(reservation_id=reservation_id, **options)
        request.lines.add(line_id="l1", sku=sku, quantity=quantity, node_id=node_id)
        await self.reservations.Reserve(request, None)

    async def watch(self) -> list[events_pb2.Event]:
        request = events_pb2.WatchRequest(stop_at_head=True)
        return [event async for event in self.events.Watch(request, None)]


async def every_kind_of_change() -> list[events_pb2.Event]:
    s = Scenario()
    s.writer.start()
    try:
        await s.node("DC1", 1)
        await s.node("DC2", 2)
        await s.move(Movement(sku="A", node_id="DC1", type=Movement.RECEIPT, quantity=10),
                     Movement(sku="A", node_id="DC2", type=Movement.RECEIPT, quantity=10,
                              reason="po 7"))
        await s.move(Movement(sku="A", node_id="DC1", type=Movement.TRANSFER, quantity=2,
                              to_node_id="DC2"),
                     Movement(sku="A", node_id="DC2", type=Movement.CYCLE_COUNT, quantity=11))
        # A new empty position with a safety stock is below it.
        await s.inventory.SetSafetyStock(inventory_pb2.SetSafetyStockRequest(
            sku="S", node_id="DC1", quantity=5), None)
        # Supply: created, slipped, partly received.
        supply = common_pb2.Supply(supply_id="po-1", sku="A", node_id="DC1", quantity=5,
                                   expected_date=date_after(3))
        await s.inventory.UpsertSupply(inventory_pb2.UpsertSupplyRequest(supply=supply), None)
        supply.expected_date.CopyFrom(common_pb2.Supply(expected_date=date_after(5)).expected_date)
        await s.inventory.UpsertSupply(inventory_pb2.UpsertSupplyRequest(supply=supply), None)
        await s.inventory.ReceiveSupply(inventory_pb2.ReceiveSupplyRequest(
            request_id=s.request_id(), supply_id="po-1", quantity=2), None)
        # Holds: placed and released; placed and expired.
        await s.inventory.PlaceHold(inventory_pb2.PlaceHoldRequest(hold=common_pb2.Hold(
            hold_id="h1", sku="A", node_id="DC1", quantity=1, reason="audit")), None)
        await s.inventory.ReleaseHold(inventory_pb2.ReleaseHoldRequest(hold_id="h1"), None)
        hold = common_pb2.Hold(hold_id="h2", sku="A", node_id="DC1", quantity=1, force=True)
        hold.expire_time.FromSeconds(int(NOW) + 60)
        await s.inventory.PlaceHold(inventory_pb2.PlaceHoldRequest(hold=hold), None)
        # A reservation committed, shipped in part, the rest released.
        await s.reserve("r1", "A", 4, "DC1")
        await s.reservations.Commit(reservations_pb2.CommitRequest(
            reservation_id="r1", request_id=s.request_id()), None)
        fulfill = reservations_pb2.FulfillRequest(reservation_id="r1", request_id=s.request_id())
        fulfill.lines.add(line_id="l1", quantity=1)
        await s.reservations.Fulfill(fulfill, None)
        # What reached the customer of the unit shipped so far: the paperwork was wrong.
        await s.reservations.RecordDelivery(reservations_pb2.RecordDeliveryRequest(
            reservation_id="r1", request_id=s.request_id(), delivery=common_pb2.Delivery(
                delivered_date=date_after(0), units_delivered=1,
                documentation_correct=False)), None)
        await s.reservations.Release(reservations_pb2.ReleaseRequest(
            reservation_id="r1", request_id=s.request_id()), None)
        # A reservation left to expire (with hold h2).
        await s.reserve("r2", "A", 1, "DC1", ttl_seconds=120)
        await s.reservations.Extend(reservations_pb2.ExtendRequest(
            reservation_id="r2", request_id=s.request_id(), ttl_seconds=300), None)
        s.now = NOW + 600
        await s.writer.execute(commands.ExpireDue())
        # Sourced reservations: at risk when DC1 goes down, recovered, then reallocated.
        await s.reserve("r3", "A", 3, destination_region="EU")
        await s.node("DC1", 1, active=False)
        await s.node("DC1", 1, active=True)
        await s.node("DC1", 1, active=False)
        await s.reservations.Reallocate(reservations_pb2.ReallocateRequest(node_id="DC1"), None)
        # DC2 sold out (POSITION_OUT_OF_STOCK), then a backorder filled by a receipt.
        await s.move(Movement(sku="B", node_id="DC2", type=Movement.CYCLE_COUNT, quantity=0))
        await s.reserve("r4", "B", 3, destination_region="EU",
                        policy=common_pb2.FulfillmentPolicy(allow_partial=True))
        await s.move(Movement(sku="B", node_id="DC2", type=Movement.RECEIPT, quantity=2))
        # An allocation policy for A: value first, then priority (the shrinkage after it puts
        # lines at risk by it).
        criterion = allocation_pb2.AllocationPolicy.Criterion
        await s.allocations.SetAllocationPolicy(allocation_pb2.SetAllocationPolicyRequest(
            policy=allocation_pb2.AllocationPolicy(
                sku="A", criteria=[criterion.VALUE, criterion.PRIORITY])), None)
        await s.move(Movement(sku="A", node_id="DC2", type=Movement.SHRINKAGE, quantity=8))
        # Channel allocations: a node-scoped quantity until a date, a SKU-wide share.
        await s.allocations.SetChannelAllocation(allocation_pb2.SetChannelAllocationRequest(
            allocation=allocation_pb2.ChannelAllocation(
                sku="A", node_id="DC2", channel="web", quantity=2,
                end_date=date_after(30))), None)
        await s.allocations.SetChannelAllocation(allocation_pb2.SetChannelAllocationRequest(
            allocation=allocation_pb2.ChannelAllocation(sku="A", channel="store", share=0.25)),
            None)
        return await s.watch()
    finally:
        await s.writer.close()


@pytest.fixture(scope="module")
def watched() -> list[events_pb2.Event]:
    return asyncio.run(every_kind_of_change())


def test_the_scenario_sets_off_every_event_type(watched: list[events_pb2.Event]) -> None:
    assert {event.type for event in watched} == EVENT_TYPES


def test_every_event_carries_its_own_payload_member(watched: list[events_pb2.Event]) -> None:
    for event in watched:
        assert event.WhichOneof("payload") == event.type.lower(), event


def _by_type() -> Iterator[str]:
    return iter(sorted(EVENT_TYPES))


@pytest.mark.parametrize("event_type", list(_by_type()))
def test_the_typed_payload_says_what_data_says(
    watched: list[events_pb2.Event], event_type: str
) -> None:
    events = [event for event in watched if event.type == event_type]
    assert events, f"no {event_type} watched"
    for event in events:
        data = json_format.MessageToDict(event.data)
        payload = getattr(event, event.type.lower())
        assert_same(payload, data, RENAMED.get(event_type, {}), LEFT_OUT.get(event_type, set()))


def assert_same(
    payload: Message, data: dict[str, Any], renamed: dict[str, str], left_out: set[str]
) -> None:
    """Every key of data is the same value in its payload field, and every field set in the
    payload comes from a key of data."""
    fields = payload.DESCRIPTOR.fields_by_name
    expected_fields = set()
    for key, value in data.items():
        if key in left_out:
            assert not value, (key, value)
            continue
        name = renamed.get(key, key)
        assert name in fields, f"{payload.DESCRIPTOR.name} has no field for data key {key!r}"
        expected_fields.add(name)
        field = fields[name]
        actual = getattr(payload, name)
        where = f"{payload.DESCRIPTOR.name}.{name}"
        if field.is_repeated and field.message_type is None:  # names: criteria, channels
            assert list(actual) == value, where
        elif field.is_repeated:
            assert len(actual) == len(value), where
            for item, item_data in zip(actual, value, strict=True):
                assert_same(item, item_data, LINE_RENAMED, set())
        elif field.message_type is not None and field.message_type.full_name.endswith("Timestamp"):
            expected = Timestamp()
            expected.FromJsonString(value)
            assert actual == expected, where
        elif field.message_type is not None:  # google.type.Date
            assert field.message_type.full_name == "google.type.Date", where
            if value is None:
                assert not payload.HasField(name), where
            else:
                assert f"{actual.year:04d}-{actual.month:02d}-{actual.day:02d}" == value, where
        elif field.enum_type is not None:
            assert field.enum_type.values_by_number[actual].name == value, where
        elif field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_INT32):
            assert isinstance(actual, int) and actual == value, (where, actual, value)
        else:
            assert actual == value, (where, actual, value)
    for field, _ in payload.ListFields():
        assert field.name in expected_fields, f"{field.full_name} is set but not in data"


def test_every_event_type_the_ledger_emits_has_a_payload_member() -> None:
    """A new event type needs its message in events.proto and its builder in
    server/event_payloads.py (this fails until both exist, named alike)."""
    oneof = events_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"]
    members = {field.name: field for field in oneof.fields}
    assert set(members) == {event_type.lower() for event_type in EVENT_TYPES}
    assert set(event_payloads.PAYLOADS) == EVENT_TYPES
    for event_type, (member, _) in event_payloads.PAYLOADS.items():
        assert member == event_type.lower()
    # Members number from 20 up; the fields before the oneof keep theirs.
    assert all(field.number >= 20 for field in oneof.fields)
    assert {f.name: f.number for f in events_pb2.Event.DESCRIPTOR.fields if f.number < 20} == {
        "sequence": 1, "time": 2, "type": 3, "reservation_id": 4, "sku": 5, "node_id": 6,
        "data": 7, "principal": 8}


def test_older_or_odd_data_leaves_fields_unset_and_data_as_it_was() -> None:
    # An older record lacking keys: the fields it has, the others unset.
    sparse = convert.event_message(Event(3, NOW, "RESERVATION_CREATED", {
        "reservation_id": "r1", "lines": [{"line_id": "l1", "quantity": 2}]}))
    created = sparse.reservation_created
    assert created.reservation_id == "r1" and created.state == 0
    assert created.lines[0].quantity == 2 and not created.lines[0].HasField("ship_date")
    # A type this version does not know (journaled by a newer one): data only.
    unknown = convert.event_message(Event(4, NOW, "SOMETHING_NEW", {"sku": "A", "n": 1}))
    assert unknown.WhichOneof("payload") is None and unknown.sku == "A"
    assert json_format.MessageToDict(unknown.data) == {"sku": "A", "n": 1.0}
    # A value the payload cannot take does not end the stream: data only.
    odd = convert.event_message(Event(5, NOW, "SAFETY_STOCK_SET", {"sku": "A", "quantity": "x"}))
    assert odd.WhichOneof("payload") is None
    assert json_format.MessageToDict(odd.data) == {"sku": "A", "quantity": "x"}
    # An unknown enum name reads as unspecified.
    moved = convert.event_message(Event(6, NOW, "STOCK_MOVED", {"movement": "TELEPORT"}))
    assert moved.WhichOneof("payload") == "stock_moved" and moved.stock_moved.type == 0
