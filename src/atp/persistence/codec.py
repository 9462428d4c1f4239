"""Records and journal events as compact JSON bytes (the store sees only bytes), one
encoding per stored record kind (the database names of atp.store)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, overload

import orjson

from atp.ledger.allocation_policy import AllocationPolicy, Criterion
from atp.ledger.model import (
    RESERVATION_STATES_BY_VALUE,
    Delivery,
    Event,
    Hold,
    Lane,
    Node,
    Position,
    RequestRecord,
    Reservation,
    ReservationLine,
    Supply,
    SupplyState,
    policy_of,
)
from atp.ledger.quotas import ChannelAllocation
from atp.store.base import (
    ALLOCATION_POLICIES,
    CHANNEL_ALLOCATIONS,
    CLOSED,
    CLOSED_BY_TIME,
    ENDED_HOLDS,
    ENDED_HOLDS_BY_TIME,
    HOLDS,
    NODES,
    POSITIONS,
    REQUESTS,
    REQUESTS_BY_TIME,
    RESERVATIONS,
    SUPPLY,
)


def encode_record(database: str, value: Any) -> bytes | None:
    """The stored bytes of a record; None means delete."""
    if value is None:
        return None
    encoder = _ENCODERS[database]
    if encoder is _key_of:
        return value.encode()  # type: ignore[no-any-return]
    return _kept(orjson.dumps(encoder(value)))


def _kept(encoded: bytes) -> bytes:
    """orjson's output copied into a bytes object of its own size, for output that is kept
    (a batch holds its records until the commit). orjson writes into a large buffer and then
    shrinks it in place: kept, every one leaves fresh heap behind and the next dumps touches
    new pages. Copied, the large buffer is freed at once and reused: encode_batch of 64
    reserves 9.1 -> 4.6 us each; batches of 16 or fewer pay ~0.5 us a reserve for the copy
    (bench/README.md, "Writer step")."""
    return bytes(memoryview(encoded))


def decode_record(database: str, data: bytes) -> Any:
    decoder = _DECODERS[database]
    if decoder is _key_of:
        return data.decode()
    return decoder(orjson.loads(data))


def position_key(sku: str, node_id: str) -> str:
    """Storage key of a position; ids are printable, so the unit separator cannot clash."""
    return f"{sku}\x1f{node_id}"


def encode_event(event: Event) -> bytes:
    raw = {"s": event.sequence, "t": event.time, "y": event.type, "d": event.data}
    if event.principal:  # absent for the engine's own events (and in older journals)
        raw["p"] = event.principal
    return _kept(orjson.dumps(raw))


def decode_event(data: bytes) -> Event:
    raw = orjson.loads(data)
    return Event(raw["s"], raw["t"], raw["y"], raw["d"], raw.get("p", ""))


class JournalEvents(Sequence[Event]):
    """A committed batch's journal entries as events, each decoded when it is read: a
    follower's copy hands every batch's events to its Watch streams, and with none open
    only the last one is read (decoding them all was ~13% of a gateway's copy's work)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Sequence[tuple[int, bytes]]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [decode_event(data) for _, data in self._entries[index]]
        return decode_event(self._entries[index][1])


def _node(node: Node) -> list[Any]:
    lanes = [[lane.region, lane.transit_days, lane.cost] for lane in node.lanes]
    return [node.node_id, node.kind, node.region, node.active, node.handling_days, lanes]


def _node_back(raw: list[Any]) -> Node:
    node_id, kind, region, active, handling_days, lanes = raw
    return Node(node_id, kind, region, active, handling_days, tuple(Lane(*lane) for lane in lanes))


def _position(position: Position) -> list[Any]:
    return [position.sku, position.node_id, position.on_hand, position.safety_stock]


def _position_back(raw: list[Any]) -> Position:
    sku, node_id, on_hand, safety_stock = raw
    return Position(sku, node_id, on_hand=on_hand, safety_stock=safety_stock)


def _supply(supply: Supply) -> list[Any]:
    return [
        supply.supply_id, supply.sku, supply.node_id, supply.quantity, supply.expected_day,
        supply.received_quantity, supply.state.value,
    ]


def _supply_back(raw: list[Any]) -> Supply:
    supply_id, sku, node_id, quantity, expected_day, received, state = raw
    return Supply(supply_id, sku, node_id, quantity, expected_day, received, SupplyState(state))


def _hold(hold: Hold) -> list[Any]:
    return [
        hold.hold_id, hold.sku, hold.node_id, hold.quantity, hold.reason, hold.expire_time,
        hold.force, hold.create_time, hold.active, hold.request_digest, hold.end_time,
    ]


def _hold_back(raw: list[Any]) -> Hold:
    return Hold(*raw)


def _line(line: ReservationLine) -> list[Any]:
    encoded = [
        line.line_id, line.sku, line.node_id, line.quantity, line.ship_day, line.delivery_day,
        line.fulfilled_quantity, line.released_quantity, line.backordered_quantity,
        line.from_inbound, line.at_risk, line.at_risk_reason,
    ]
    # The fields added later are encoded only when set (a trailing run of defaults is left
    # off): most lines are encoded as before the fields existed, and a record written before
    # them decodes with the defaults.
    tail = (line.request_line_id, line.unit_value, line.substitute_for)
    if line.unit_value or line.substitute_for:
        encoded += tail if line.substitute_for else tail[:2]
    elif line.request_line_id:
        encoded.append(line.request_line_id)
    return encoded


def _line_back(raw: list[Any]) -> ReservationLine:
    # Interned: a restarted ledger shares line ids, SKUs and node ids across its lines.
    raw[0], raw[1], raw[2] = sys.intern(raw[0]), sys.intern(raw[1]), sys.intern(raw[2])
    if len(raw) > 12:
        raw[12] = sys.intern(raw[12])
    return ReservationLine(*raw)


def _reservation(reservation: Reservation) -> dict[str, Any]:
    policy = reservation.policy
    encoded: dict[str, Any] = {
        "id": reservation.reservation_id,
        # _value_ is enum's documented sunder name for the value; .value is a property:
        # 290 ns against 20 ns a read on Python 3.11 (timeit), on every reserve.
        "state": reservation.state._value_,
        "lines": [_line(line) for line in reservation.lines],
        "created": reservation.create_time,
        "expires": reservation.expire_time,
        "priority": reservation.priority,
        "channel": reservation.channel,
        "customer": reservation.customer_id,
        "region": reservation.destination_region,
        "policy": [policy.ship_complete, policy.max_nodes, policy.allow_partial,
                   policy.objective._value_],  # _value_: as "state" above
        "digest": reservation.request_digest,
        "seq": reservation.create_sequence,
        "closed": reservation.close_time,
        "v": reservation.version,
    }
    # Written only when set: a record's size is paid by every reservation.
    if reservation.first_promise_day is not None:
        encoded["fp"] = reservation.first_promise_day
    if reservation.delivery is not None:
        encoded["dl"] = _delivery(reservation.delivery)
    return encoded


def _delivery(delivery: Delivery | None) -> list[Any] | None:
    if delivery is None:
        return None
    return [delivery.delivered_day, delivery.units_delivered, delivery.damaged_units,
            delivery.documentation_correct, delivery.record_time]


def _delivery_back(raw: list[Any] | None) -> Delivery | None:
    return None if raw is None else Delivery(*raw)


def _reservation_back(raw: dict[str, Any]) -> Reservation:
    ship_complete, max_nodes, allow_partial, objective = raw["policy"]
    get = raw.get
    # Positional, in field order: keywords make the slots dataclass match each by name, a
    # sixth of decoding a reservation (every record a gateway's copy applies, every one a
    # restart loads).
    return Reservation(
        raw["id"],  # reservation_id
        RESERVATION_STATES_BY_VALUE[raw["state"]],  # state
        [_line_back(line) for line in raw["lines"]],  # lines
        raw["created"],  # create_time
        raw["expires"],  # expire_time
        raw["priority"],  # priority
        raw["channel"],  # channel
        raw["customer"],  # customer_id
        raw["region"],  # destination_region
        policy_of(ship_complete, max_nodes, allow_partial, objective),  # policy
        raw["digest"],  # request_digest
        raw["seq"],  # create_sequence
        get("closed"),  # close_time: absent in records written before retention existed
        get("v", 1),  # version: absent in records written before versions, saved once
        get("fp"),  # first_promise_day: absent in records written before it, unknown
        _delivery_back(get("dl")),  # delivery
    )


def _request(record: RequestRecord) -> list[Any]:
    return [record.digest, record.time]


def _request_back(raw: list[Any]) -> RequestRecord:
    return RequestRecord(*raw)


def _allocation_policy(scoped: tuple[str, str, AllocationPolicy]) -> list[Any]:
    sku, node_id, policy = scoped
    return [sku, node_id, policy.criterion_names, list(policy.channel_ranks)]


def _allocation_policy_back(raw: list[Any]) -> tuple[str, str, AllocationPolicy]:
    sku, node_id, criteria, channel_ranks = raw
    return sku, node_id, AllocationPolicy(tuple(Criterion(name) for name in criteria),
                                          tuple(channel_ranks))


def channel_allocation_key(sku: str, node_id: str, channel: str) -> str:
    return f"{sku}\x1f{node_id}\x1f{channel}"


def _channel_allocation(allocation: ChannelAllocation) -> list[Any]:
    return [allocation.sku, allocation.node_id, allocation.channel, allocation.quantity,
            allocation.share, allocation.end_day]


def _channel_allocation_back(raw: list[Any]) -> ChannelAllocation:
    sku, node_id, channel, quantity, share, end_day = raw
    return ChannelAllocation(sku, node_id, channel, quantity, float(share), end_day)


def _key_of(value: Any) -> Any:
    """The purge indexes' values: the key of the record they index, stored as it is (the
    store deletes that key), not as JSON."""
    return value


_ENCODERS: dict[str, Any] = {
    NODES: _node,
    POSITIONS: _position,
    SUPPLY: _supply,
    HOLDS: _hold,
    RESERVATIONS: _reservation,
    REQUESTS: _request,
    CLOSED: _reservation,
    ENDED_HOLDS: _hold,
    ALLOCATION_POLICIES: _allocation_policy,
    CHANNEL_ALLOCATIONS: _channel_allocation,
    # Purge indexes: key "<time in ms, 15 digits>\x1f<id>", value the id.
    CLOSED_BY_TIME: _key_of,
    REQUESTS_BY_TIME: _key_of,
    ENDED_HOLDS_BY_TIME: _key_of,
}
_DECODERS: dict[str, Any] = {
    NODES: _node_back,
    POSITIONS: _position_back,
    SUPPLY: _supply_back,
    HOLDS: _hold_back,
    RESERVATIONS: _reservation_back,
    REQUESTS: _request_back,
    CLOSED: _reservation_back,
    ENDED_HOLDS: _hold_back,
    ALLOCATION_POLICIES: _allocation_policy_back,
    CHANNEL_ALLOCATIONS: _channel_allocation_back,
    CLOSED_BY_TIME: _key_of,
    REQUESTS_BY_TIME: _key_of,
    ENDED_HOLDS_BY_TIME: _key_of,
}
RECORD_DATABASES = tuple(_ENCODERS)
# What a restart loads into memory: live state. The rest is read from the store on demand
# (closed reservations, idempotency records) or only by the purge (its indexes).
LIVE_DATABASES = (NODES, POSITIONS, SUPPLY, HOLDS, RESERVATIONS)


def time_key(instant: float, item_id: str) -> str:
    """A purge index key: ordered by time (to the millisecond), then id."""
    return f"{int(instant * 1000):015d}\x1f{item_id}"


def time_of_key(key: bytes) -> float:
    """The instant a purge index key was made for (time_key), to the millisecond below."""
    return int(key[:15]) / 1000


def time_key_bound(instant: float) -> str:
    """The first key of any item at or after `instant`: purge keys below it."""
    return f"{int(instant * 1000):015d}"


def indexes_closed_record(index_key: bytes, data: bytes) -> bool:
    """Whether a closed-reservation record is the one this purge index entry was made for
    (an id reused since closed again later, under a newer entry)."""
    # "closed" is the record's last field: read it from the tail rather than decode the whole
    # reservation (the purge checks hundreds per slice on the commit thread).
    _, marker, tail = data.rpartition(b'"closed":')
    try:
        close_time = orjson.loads(tail[:-1]) if marker else None
    except orjson.JSONDecodeError:  # not the last field after all: decode the whole record
        close_time = orjson.loads(data).get("closed")
    return _made_for(index_key, close_time)


def indexes_ended_hold_record(index_key: bytes, data: bytes) -> bool:
    """Whether an ended hold's record is the one this purge index entry was made for."""
    raw = orjson.loads(data)
    return _made_for(index_key, raw[10] if len(raw) > 10 else None)


def indexes_request_record(index_key: bytes, data: bytes) -> bool:
    """Whether an idempotency record is the one this purge index entry was made for."""
    return _made_for(index_key, orjson.loads(data)[1])


def _made_for(index_key: bytes, end_time: float | None) -> bool:
    """Whether a purge index entry is the one made for a record that ended at `end_time`
    (the entry's key is the time_key of that instant and the record's id)."""
    item_id = index_key.split(b"\x1f", 1)[1].decode()
    return end_time is not None and time_key(end_time, item_id).encode() == index_key
