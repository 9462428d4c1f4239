"""The mapping from the ledger's changes to stored records: which database and key each
changed record goes to, and what else its change writes or deletes (the purge indexes by
time; the open record a closed reservation or an ended hold leaves)."""

from __future__ import annotations

from atp.ledger.state import Changes
from atp.persistence.codec import encode_event, encode_record, position_key, time_key
from atp.store.base import (
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
    for event in changes.events:
        batch.append(event.sequence, encode_event(event))
    return batch


def _closed(changes: Changes, batch: WriteBatch) -> None:
    """A closed reservation: its open record deleted (unless its id was reused since), its
    closed record written, and its purge index entry."""
    for reservation_id, reservation in changes.closed.items():
        key = reservation_id.encode()
        if reservation_id not in changes.reservations:
            batch.put(RESERVATIONS, key, None)
        batch.put(CLOSED, key, encode_record(CLOSED, reservation))
        if reservation.close_time is not None:
            index_key = time_key(reservation.close_time, reservation_id).encode()
            batch.put(CLOSED_BY_TIME, index_key, key)


def _ended_holds(changes: Changes, batch: WriteBatch) -> None:
    """An ended hold, as a closed reservation (see _closed)."""
    for hold_id, hold in changes.ended_holds.items():
        key = hold_id.encode()
        if hold_id not in changes.holds:
            batch.put(HOLDS, key, None)
        batch.put(ENDED_HOLDS, key, encode_record(ENDED_HOLDS, hold))
        if hold.end_time is not None:
            batch.put(ENDED_HOLDS_BY_TIME, time_key(hold.end_time, hold_id).encode(), key)
