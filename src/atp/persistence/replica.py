"""A follower's memory kept in step with the leader's committed batches.

A follower does not run commands: it receives the exact stored records each group commit of
the leader wrote (and the journal entries) and stores them as they are. This module applies
the same records to its in-memory ledger: each changed record replaces its previous version,
whose contributions to the derived quantities (a supply's inbound, a hold's held units, an
open reservation's lines on their positions' timelines and sums, the indexes) are taken off
before the new version's are added. The result is the ledger that rebuilding from the
follower's store would give (tests/unit/test_replica.py holds them equal).

Closed reservations, ended holds and idempotency records are not live state: the archive
reads them from the store, as on a leader. A follower purges by retention on its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from atp.ledger.model import (
    COMMITTED,
    HELD,
    OPEN_RESERVATION_STATES,
    Hold,
    Node,
    Position,
    Reservation,
    Supply,
    SupplyState,
)
from atp.ledger.quotas import ChannelAllocation
from atp.ledger.state import EXPIRING_HOLD, LedgerState
from atp.persistence import codec
from atp.store.base import (
    ALLOCATION_POLICIES,
    CHANNEL_ALLOCATIONS,
    CLOSED,
    HOLDS,
    NODES,
    POSITIONS,
    RESERVATIONS,
    SUPPLY,
    WriteBatch,
)

Records = Mapping[tuple[str, bytes], bytes | None]
# Live state, in the order its records are applied: positions before what refers to them.
_APPLIED = (NODES, POSITIONS, SUPPLY, HOLDS, RESERVATIONS, CLOSED, ALLOCATION_POLICIES,
            CHANNEL_ALLOCATIONS)


def apply_batch(state: LedgerState, batch: WriteBatch) -> None:
    """Applies one committed batch of the leader to the follower's memory."""
    apply_records(state, batch.records)
    if batch.journal:
        state.sequence = max(state.sequence, batch.journal[-1][0])


def apply_records(state: LedgerState, records: Records) -> None:
    """Each changed live record replaces its previous version in memory."""
    by_database: dict[str, list[tuple[bytes, bytes | None]]] = {name: [] for name in _APPLIED}
    for (database, key), value in records.items():
        if database in by_database:
            by_database[database].append((key, value))
    for key, value in by_database[NODES]:
        _apply_node(state, key, value)
    for key, value in by_database[POSITIONS]:
        _apply_position(state, value)
    for key, value in by_database[SUPPLY]:
        _apply_supply(state, key, value)
    for key, value in by_database[HOLDS]:
        _apply_hold(state, key, value)
    for key, value in by_database[RESERVATIONS]:
        _apply_reservation(state, key, value)
    for key, value in by_database[ALLOCATION_POLICIES]:
        _apply_allocation_policy(state, key, value)
    for _, value in by_database[CLOSED]:
        if value is None:
            continue
        closed: Reservation = codec.decode_record(CLOSED, value)
        if not _rewritten(closed):  # counted for metrics, as the leader counts what closes
            state.closed_counts[closed.state] += 1
    for key, value in by_database[CHANNEL_ALLOCATIONS]:
        _apply_channel_allocation(state, key, value)
    state.forget_supply_bases()  # positions changed here without save_position
    state.touched.clear()  # a follower announces nothing: the leader's journal did


def _apply_allocation_policy(state: LedgerState, key: bytes, value: bytes | None) -> None:
    """A policy set, changed or removed (its key is the position key of its scope)."""
    sku, _, node_id = key.decode().partition("\x1f")
    if value is None:
        state.allocation_policies.pop((sku, node_id), None)
        return
    _, _, policy = codec.decode_record(ALLOCATION_POLICIES, value)
    state.allocation_policies[(sku, node_id)] = policy


def _rewritten(closed: Reservation) -> bool:
    """Whether a closed record is one written again after it closed (RecordDelivery on a
    FULFILLED reservation): its delivery was recorded after it closed, so it closes nothing
    now."""
    delivery, close_time = closed.delivery, closed.close_time
    return delivery is not None and close_time is not None and delivery.record_time > close_time


def _apply_channel_allocation(state: LedgerState, key: bytes, value: bytes | None) -> None:
    if value is not None:
        state.load_channel_allocation(codec.decode_record(CHANNEL_ALLOCATIONS, value))
        return
    sku, node_id, channel = key.decode().split("\x1f")
    state.load_channel_allocation(ChannelAllocation(sku, node_id, channel))  # removed


def _apply_node(state: LedgerState, key: bytes, value: bytes | None) -> None:
    if value is None:
        state.nodes.pop(key.decode(), None)  # nodes are never deleted today; be exact anyway
        return
    node: Node = codec.decode_record(NODES, value)
    state.load_node(node)


def _apply_position(state: LedgerState, value: bytes | None) -> None:
    if value is None:
        return  # positions are never deleted
    stored: Position = codec.decode_record(POSITIONS, value)
    position = state.positions.get((stored.sku, stored.node_id))
    if position is None:
        state.index_position(stored)
    else:  # only these are stored; the rest is derived from supply, holds and lines
        position.on_hand, position.safety_stock = stored.on_hand, stored.safety_stock


def _position(state: LedgerState, sku: str, node_id: str) -> Position:
    position = state.positions.get((sku, node_id))
    return position if position is not None else state.add_position(sku, node_id)


def _apply_supply(state: LedgerState, key: bytes, value: bytes | None) -> None:
    previous = state.supplies.get(key.decode())
    if previous is not None and previous.state is SupplyState.OPEN:
        _position(state, previous.sku, previous.node_id).add_supply(
            previous.expected_day, -previous.quantity)
    if value is None:
        state.supplies.pop(key.decode(), None)
        return
    supply: Supply = codec.decode_record(SUPPLY, value)
    if supply.state is SupplyState.OPEN:
        _position(state, supply.sku, supply.node_id).add_supply(
            supply.expected_day, supply.quantity)
    state.supplies[supply.supply_id] = supply


def _apply_hold(state: LedgerState, key: bytes, value: bytes | None) -> None:
    previous = state.holds.get(key.decode())
    if previous is not None:
        _position(state, previous.sku, previous.node_id).held -= previous.quantity
        state.unindex_hold(previous)
    if value is None:
        return  # ended: its record moved to the ended holds
    hold: Hold = codec.decode_record(HOLDS, value)
    if not hold.active:
        return
    state.index_hold(hold)
    if hold.expire_time is not None:
        state.expiries.add((hold.expire_time, EXPIRING_HOLD, hold.hold_id))
    _position(state, hold.sku, hold.node_id).held += hold.quantity


def _apply_reservation(state: LedgerState, key: bytes, value: bytes | None) -> None:
    previous = state.reservations.get(key.decode())
    if previous is not None:
        _take_off(state, previous)
    if value is None:
        return  # closed: its record moved to the closed ones
    reservation: Reservation = codec.decode_record(RESERVATIONS, value)
    if reservation.state in OPEN_RESERVATION_STATES:
        _put_on(state, reservation)


def _take_off(state: LedgerState, reservation: Reservation) -> None:
    """An open reservation's lines off their positions, and it out of the indexes."""
    for line in reservation.lines:
        if line.node_id and line.open_quantity:
            state.reduce_line(reservation, line, line.open_quantity)
    state.unindex_open(reservation)


def _put_on(state: LedgerState, reservation: Reservation) -> None:
    """An open reservation's lines onto their positions (timeline, sums, line and at-risk
    indexes, backorders), and it into the open indexes."""
    held = reservation.state is HELD
    assert held or reservation.state is COMMITTED
    for line in reservation.lines:
        state.note_backorder(reservation.reservation_id, line)
        if not line.node_id or not line.open_quantity:
            continue
        position = _position(state, line.sku, line.node_id)
        position.add_delta(line.ship_day, -line.open_quantity)
        state.count_line(reservation.reservation_id, held, position, line, reservation.channel)
        if line.at_risk:
            state.index_at_risk(position, (reservation.reservation_id, line.line_id))
    state.index_open(reservation)
