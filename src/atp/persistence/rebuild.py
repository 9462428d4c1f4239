"""Rebuilding a ledger from its stored records, through the ledger's public API only.

Only on_hand and safety stock are stored per position; allocated, reserved, held, inbound,
the dated deltas and the line index are sums over reservations, holds and supply. Rebuilding
computes them; checking recomputes them and compares.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from atp.ledger.errors import DECODE_FAILURES, DamagedRecordError
from atp.ledger.invariants import derive_from_records, index_expiries
from atp.ledger.ledger import Ledger
from atp.ledger.model import Reservation, day_of
from atp.ledger.state import LedgerConfig, NoExpiryQueue
from atp.ledger.timeline import stock_flags
from atp.persistence import codec
from atp.store.base import ALLOCATION_POLICIES, CHANNEL_ALLOCATIONS, REQUESTS, REQUESTS_BY_TIME


def ledger_from_records(
    records: Mapping[str, Mapping[bytes, bytes]] | Callable[[str], Iterable[tuple[bytes, bytes]]],
    last_sequence: int,
    config: LedgerConfig | None,
    now: float | None = None,
    expires: bool = True,
) -> Ledger:
    """A ledger holding exactly the stored state; derived quantities recomputed.

    With `now`, each position's stock level is known at once, so the first change after a
    restart announces only real transitions. `expires` False: a ledger that never expires
    anything (a gateway's copy) gets no expiry queue (state.NoExpiryQueue), rather than one
    built and thrown away.
    """
    # Millions of new objects and no garbage: the cyclic collector would rescan the growing
    # heap again and again (most of a restart's time), so it waits until the ledger is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _rebuild(records, last_sequence, config, now, expires)
    finally:
        if collecting:
            gc.enable()


def _rebuild(
    records: Mapping[str, Mapping[bytes, bytes]] | Callable[[str], Iterable[tuple[bytes, bytes]]],
    last_sequence: int,
    config: LedgerConfig | None,
    now: float | None,
    expires: bool,
) -> Ledger:
    ledger = Ledger(config)
    if not expires:
        ledger.expiries = NoExpiryQueue()
    read = _reader(records)
    decoded = {
        database: _decoded(database, read(database))
        for database in codec.LIVE_DATABASES
    }
    nodes, positions, supplies, holds, reservations = (
        decoded[database] for database in codec.LIVE_DATABASES
    )
    for node in nodes:
        ledger.nodes[node.node_id] = node
    for position in positions:
        ledger.index_position(position)
    for supply in supplies:
        ledger.supplies[supply.supply_id] = supply
    for hold in holds:
        ledger.index_hold(hold)
    for reservation in reservations:
        _load_reservation(ledger, reservation)
    for sku, node_id, policy in _decoded(ALLOCATION_POLICIES, read(ALLOCATION_POLICIES)):
        ledger.allocation_policies[(sku, node_id)] = policy
    _move_closed_out(ledger, now)
    _move_ended_holds_out(ledger, now)
    _index_old_requests(ledger, read)
    derive_from_records(ledger, ledger.positions)
    # After the lines are on their positions: a SKU's first allocation counts them by channel.
    for allocation in _decoded(CHANNEL_ALLOCATIONS, read(CHANNEL_ALLOCATIONS)):
        ledger.load_channel_allocation(allocation)
    ledger.sequence = last_sequence
    if expires:
        index_expiries(ledger)
    _index_risk_and_stock_levels(ledger, now)
    return ledger


def _load_reservation(ledger: Ledger, reservation: Reservation) -> None:
    """An open reservation's record into the indexes (a closed one, in data written before
    closed ones left live state, is moved out afterwards)."""
    ledger.reservations[reservation.reservation_id] = reservation
    ledger.state_counts[reservation.state] += 1
    if reservation.is_open:
        ledger.open_ids(reservation.state).add(reservation.reservation_id)
        for line in reservation.lines:
            if line.backordered_quantity:  # receipts fill these: index them again
                ledger.note_backorder(reservation.reservation_id, line)


def _move_closed_out(ledger: Ledger, now: float | None) -> None:
    """Data written before closed reservations left live state keeps them among the open
    ones: retire them now (their retention counts from here), so that the first commit
    moves them to the closed records and restarts load live state only."""
    closed = [r for r in ledger.reservations.values() if not r.is_open]
    if not closed:
        return
    ledger.now = now if now is not None else max(r.create_time for r in closed)
    for reservation in closed:
        ledger.state_counts[reservation.state] -= 1
        ledger.retire(reservation)
        ledger.save_reservation(reservation)


def _decoded(database: str, records: Iterable[tuple[bytes, bytes]]) -> list[Any]:
    """The records of `database` decoded; DamagedRecordError names the first that is not."""
    decoded: list[Any] = []
    key = b""
    # One try around the loop, not a call per record: a restart decodes millions of them.
    try:
        for key, value in records:
            decoded.append(codec.decode_record(database, value))
    except DECODE_FAILURES as error:
        raise DamagedRecordError(database, key, error) from error
    return decoded


def _move_ended_holds_out(ledger: Ledger, now: float | None) -> None:
    """Ended holds written before they left live state: retire them now (see above)."""
    ended = [hold for hold in ledger.holds.values() if not hold.active]
    for hold in ended:
        ledger.retire_hold(hold, now if now is not None else hold.create_time)


def _index_old_requests(
    ledger: Ledger, read: Callable[[str], Iterable[tuple[bytes, bytes]]]
) -> None:
    """Idempotency records written before they had a purge index get their entry now (from
    their own time), so that the idempotency window purges them too."""
    if next(iter(read(REQUESTS_BY_TIME)), None) is not None:
        return
    for raw_key, value in read(REQUESTS):
        # Written again with its index entry (the record stays in the archive, not memory).
        ledger.changes.requests[raw_key.decode()] = codec.decode_record(REQUESTS, value)


def _reader(
    records: Mapping[str, Mapping[bytes, bytes]] | Callable[[str], Iterable[tuple[bytes, bytes]]],
) -> Callable[[str], Iterable[tuple[bytes, bytes]]]:
    """Records as a function of the database name: a loaded mapping, or a store's stream."""
    if callable(records):
        return records
    loaded = records
    return lambda database: loaded.get(database, {}).items()


def _index_risk_and_stock_levels(ledger: Ledger, now: float | None) -> None:
    today = day_of(now) if now is not None else None
    for position in ledger.positions.values():
        marked = frozenset(key for key, line in position.lines.items() if line.at_risk)
        if marked:
            position.at_risk = marked
            ledger.positions_at_risk.add(position.key)
        ledger.at_risk_count += len(position.at_risk)
        if today is not None:
            position.stock_flags = stock_flags(position, today)


__all__ = ["ledger_from_records"]
