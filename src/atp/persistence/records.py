"""The mapping from the ledger's changes to stored records: which database and key each
changed record goes to, and what else its change writes or deletes (the purge indexes by
time; the open record a closed reservation or an ended hold leaves)."""

from __future__ import annotations

from atp.ledger.state import Changes
from atp.persistence.codec import (
    channel_allocation_key,
    encode_event,
    encode_record,
    position_key,
    time_key,
)
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
    WriteBatch,
)


def encode_batch(changes: Changes) -> WriteBatch:
    """The store batch of a ledger change set, encoded now (on the loop) as a consistent
    snapshot."""
    batch = WriteBatch()
    put = batch.put
    for node_id, node in changes.nodes.items():
        put(NODES, node_id.encode(), encode_record(NODES, node))
    for (sku, node_id), position in changes.positions.items():
        put(POSITIONS, position_key(sku, node_id).encode(), encode_record(POSITIONS, position))
    for supply_id, supply in changes.supplies.items():
        put(SUPPLY, supply_id.encode(), encode_record(SUPPLY, supply))
    for reservation_id, reservation in changes.reservations.items():
        put(RESERVATIONS, reservation_id.encode(), encode_record(RESERVATIONS, reservation))
    _closed(changes, batch)
    for hold_id, hold in changes.holds.items():
        put(HOLDS, hold_id.encode(), encode_record(HOLDS, hold))
    _ended_holds(changes, batch)
    for request_id, record in changes.requests.items():
        put(REQUESTS, request_id.encode(), encode_record(REQUESTS, record))
        put(REQUESTS_BY_TIME, time_key(record.time, request_id).encode(), request_id.encode())
    for (sku, node_id), policy in changes.allocation_policies.items():
        put(ALLOCATION_POLICIES, position_key(sku, node_id).encode(),
            None if policy is None else encode_record(ALLOCATION_POLICIES, (sku, node_id, policy)))
    for (sku, node_id, channel), allocation in changes.channel_allocations.items():
        put(CHANNEL_ALLOCATIONS, channel_allocation_key(sku, node_id, channel).encode(),
            encode_record(CHANNEL_ALLOCATIONS, allocation))
    for event in changes.events:
        batch.append(event.sequence, encode_event(event))
    return batch


def _closed(changes: Changes, batch: WriteBatch) -> None:
    """Closed reservations: each out of the open records, into the closed ones."""
    for reservation_id, reservation in changes.closed.items():
        _move_out(batch, reservation_id, reservation_id in changes.reservations,
                  (RESERVATIONS, CLOSED, CLOSED_BY_TIME), encode_record(CLOSED, reservation),
                  reservation.close_time)


def _ended_holds(changes: Changes, batch: WriteBatch) -> None:
    """Ended holds: each out of the active ones, into the ended ones."""
    for hold_id, hold in changes.ended_holds.items():
        _move_out(batch, hold_id, hold_id in changes.holds,
                  (HOLDS, ENDED_HOLDS, ENDED_HOLDS_BY_TIME), encode_record(ENDED_HOLDS, hold),
                  hold.end_time)


def _move_out(
    batch: WriteBatch, item_id: str, reused: bool, databases: tuple[str, str, str],
    data: bytes | None, end_time: float | None,
) -> None:
    """What ending an item writes: its live record deleted (unless its id was reused since),
    its ended record, and its purge index entry by end time."""
    live, ended, index = databases
    key = item_id.encode()
    if not reused:
        batch.put(live, key, None)
    batch.put(ended, key, data)
    if end_time is not None:
        batch.put(index, time_key(end_time, item_id).encode(), key)
