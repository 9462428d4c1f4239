"""Rebuilding a ledger from its stored records, and checking derived quantities against them.

Only on_hand and safety stock are stored per position; allocated, reserved, held, inbound,
the dated deltas and the line index are sums over reservations, holds and supply. Rebuilding
computes them; checking recomputes them and compares.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from atp.ledger import codec
from atp.ledger.errors import DECODE_FAILURES, DamagedRecordError
from atp.ledger.model import OPEN_RESERVATION_STATES, Position, ReservationState, SupplyState

if TYPE_CHECKING:
    from atp.ledger.ledger import Ledger, LedgerConfig


def ledger_from_records(
    records: Mapping[str, Mapping[bytes, bytes]] | Callable[[str], Iterable[tuple[bytes, bytes]]],
    last_sequence: int,
    config: LedgerConfig | None,
    now: float | None = None,
) -> Ledger:
    """A ledger holding exactly the stored state; derived quantities recomputed.

    With `now`, each position's stock level is known at once, so the first change after a
    restart announces only real transitions.
    """
    # Millions of new objects and no garbage: the cyclic collector would rescan the growing
    # heap again and again (most of a restart's time), so it waits until the ledger is built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _rebuild(records, last_sequence, config, now)
    finally:
        if collecting:
            gc.enable()


def _rebuild(
    records: Mapping[str, Mapping[bytes, bytes]] | Callable[[str], Iterable[tuple[bytes, bytes]]],
    last_sequence: int,
    config: LedgerConfig | None,
    now: float | None,
) -> Ledger:
    from atp.ledger.ledger import Ledger

    ledger = Ledger(config)
    read = _reader(records)
    decoded = {
        database: _decoded(database, read(database))
        for database in codec.LIVE_DATABASES
    }
    for node in decoded["nodes"]:
        ledger.nodes[node.node_id] = node
    for position in decoded["positions"]:
        ledger._register_position(position)
    for supply in decoded["supply"]:
        ledger.supplies[supply.supply_id] = supply
    for hold in decoded["holds"]:
        ledger.holds[hold.hold_id] = hold
    for reservation in decoded["reservations"]:
        ledger.reservations[reservation.reservation_id] = reservation
        ledger.state_counts[reservation.state] += 1
        if reservation.is_open:
            ledger.open_ids(reservation.state).add(reservation.reservation_id)
            for line in reservation.lines:
                if line.backordered_quantity:  # receipts fill these: index them again
                    ledger._note_backorder(reservation.reservation_id, line)
    _move_closed_out(ledger, now)
    _move_ended_holds_out(ledger, now)
    _derive(ledger, ledger.positions)
    ledger.sequence = last_sequence
    _index_expiries(ledger)
    _index_risk_and_stock_levels(ledger, now)
    return ledger


def _move_closed_out(ledger: Ledger, now: float | None) -> None:
    """Data written before closed reservations left live state keeps them among the open
    ones: retire them now (their retention counts from here), so that the first commit
    moves them to the closed records and restarts load live state only."""
    closed = [r for r in ledger.reservations.values() if not r.is_open]
    if not closed:
        return
    ledger._now = now if now is not None else max(r.create_time for r in closed)
    for reservation in closed:
        ledger.state_counts[reservation.state] -= 1
        ledger._retire(reservation)
        ledger._record_reservation(reservation)


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
        ledger._retire_hold(hold, now if now is not None else hold.create_time)


def _reader(
    records: Mapping[str, Mapping[bytes, bytes]] | Callable[[str], Iterable[tuple[bytes, bytes]]],
) -> Callable[[str], Iterable[tuple[bytes, bytes]]]:
    """Records as a function of the database name: a loaded mapping, or a store's stream."""
    if callable(records):
        return records
    loaded = records
    return lambda database: loaded.get(database, {}).items()


def _index_risk_and_stock_levels(ledger: Ledger, now: float | None) -> None:
    from atp.ledger.ledger import day_of, stock_flags

    today = day_of(now) if now is not None else None
    for position in ledger.positions.values():
        marked = frozenset(key for key, line in position.lines.items() if line.at_risk)
        if marked:
            position.at_risk = marked
            ledger.positions_at_risk.add(position.key)
        ledger.at_risk_count += len(position.at_risk)
        if today is not None:
            position.stock_flags = stock_flags(position, today)


def derived_problems(ledger: Ledger) -> list[str]:
    """Every disagreement between the live derived quantities and a recomputation."""
    fresh = {key: Position(pos.sku, pos.node_id, pos.on_hand, pos.safety_stock)
             for key, pos in ledger.positions.items()}
    problems = _derive(ledger, fresh)
    for key, expected in fresh.items():
        actual = ledger.positions[key]
        for name in ("allocated", "reserved", "held", "inbound"):
            if getattr(actual, name) != getattr(expected, name):
                problems.append(
                    f"{name} of {key[0]} at {key[1]} is {getattr(actual, name)}, "
                    f"records say {getattr(expected, name)}"
                )
        if actual.deltas != expected.deltas or actual.supply_days != expected.supply_days:
            problems.append(f"timeline of {key[0]} at {key[1]} disagrees with its records")
        if set(actual.lines) != set(expected.lines):
            problems.append(f"line index of {key[0]} at {key[1]} disagrees with its records")
        marked = {k for k, line in actual.lines.items() if line.at_risk}
        if actual.at_risk != marked:
            problems.append(f"at-risk set of {key[0]} at {key[1]} disagrees with its lines")
        for name in ("on_hand", "allocated", "reserved", "held", "inbound", "safety_stock"):
            if getattr(actual, name) < 0:
                problems.append(f"{name} of {key[0]} at {key[1]} is negative")
    problems += _expiry_problems(ledger)
    problems += _index_problems(ledger)
    return problems


def _index_problems(ledger: Ledger) -> list[str]:
    """The listing indexes against what they index."""
    problems = []
    for state in OPEN_RESERVATION_STATES:
        ids = ledger.open_ids(state)
        expected = {r.reservation_id for r in ledger.reservations.values() if r.state is state}
        if set(ids.after("")) != expected or len(ids) != len(expected):
            problems.append(f"index of {state.value} reservations disagrees with them")
    at_risk = {key for key, position in ledger.positions.items() if position.at_risk}
    if ledger.positions_at_risk != at_risk:
        problems.append("index of positions at risk disagrees with them")
    if any(not r.is_open for r in ledger.reservations.values()):
        problems.append("a closed reservation is among the open ones")
    backordered = {
        (line.sku, r.reservation_id, line.line_id)
        for r in ledger.reservations.values() for line in r.lines if line.backordered_quantity
    }
    indexed = {(sku, *key) for sku, keys in ledger.backorders.items() for key in keys}
    if backordered != indexed:
        problems.append("backorder index disagrees with the backordered lines")
    return problems


def _derive(ledger: Ledger, positions: dict[tuple[str, str], Position]) -> list[str]:
    """Adds every record's contribution to `positions`; returns references to missing ones."""
    problems: list[str] = []

    def position_of(sku: str, node_id: str, what: str) -> Position | None:
        position = positions.get((sku, node_id))
        if position is None:
            problems.append(f"{what} refers to missing position {sku} at {node_id}")
        return position

    for supply in ledger.supplies.values():
        position = position_of(supply.sku, supply.node_id, f"supply {supply.supply_id}")
        if position is not None and supply.state is SupplyState.OPEN:
            position.add_supply(supply.expected_day, supply.quantity)
    for hold in ledger.holds.values():
        position = position_of(hold.sku, hold.node_id, f"hold {hold.hold_id}")
        if position is not None and hold.active:
            position.held += hold.quantity
    for reservation in ledger.reservations.values():
        if reservation.is_open:
            _derive_reservation(reservation, position_of)
    return problems


def _derive_reservation(reservation: Any, position_of: Any) -> None:
    held = reservation.state is ReservationState.HELD
    for line in reservation.lines:
        if not line.open_quantity:
            continue
        position = position_of(line.sku, line.node_id, f"reservation {reservation.reservation_id}")
        if position is None:
            continue
        if held:
            position.reserved += line.open_quantity
        else:
            position.allocated += line.open_quantity
        position.add_delta(line.ship_day, -line.open_quantity)
        position.lines[(reservation.reservation_id, line.line_id)] = line


def _expected_expiries(ledger: Ledger) -> Iterable[tuple[float, str, str]]:
    for reservation in ledger.reservations.values():
        if reservation.state is ReservationState.HELD and reservation.expire_time is not None:
            yield (reservation.expire_time, "reservation", reservation.reservation_id)
    for hold in ledger.holds.values():
        if hold.active and hold.expire_time is not None:
            yield (hold.expire_time, "hold", hold.hold_id)


def _index_expiries(ledger: Ledger) -> None:
    ledger.expiries.update(_expected_expiries(ledger))


def _expiry_problems(ledger: Ledger) -> list[str]:
    if sorted(_expected_expiries(ledger)) != list(ledger.expiries):
        return ["expiry queue disagrees with HELD reservations and holds"]
    return []


__all__ = ["derived_problems", "ledger_from_records"]
