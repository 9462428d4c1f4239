"""Invariants of the ledger, checked against its records: every derived quantity (allocated,
reserved, held, inbound, the timelines, the line and at-risk indexes, the expiry queue, the
listing indexes) recomputed from the reservations, holds and supply, and compared.

A restart derives the same quantities (derive_from_records) when it rebuilds a ledger; the
checks read the ledger through its read-only view only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from atp import limits
from atp.ledger.model import (
    HELD,
    OPEN_RESERVATION_STATES,
    Position,
    Reservation,
    ReservationLine,
    SupplyState,
)
from atp.ledger.state import NoExpiryQueue
from atp.ledger.view import LedgerView

NO_PROBLEMS: list[str] = []


def position_problems(ledger: LedgerView, position: Position) -> list[str]:
    """The audit after every command, of each position it touched: no quantity negative;
    inbound, held, reserved and allocated equal to the supply, holds and lines they sum;
    the timeline's net equal to supply less demand. Lines are recounted on the budget of
    limits.audit_lines_per_touch (every touch for positions with at most that many lines,
    every few touches for larger ones; the full check, derived_problems, covers all).

    One expression on the common path, without calls but the sums: it runs after every
    command for every position the command touched."""
    reserved, allocated, inbound = position.reserved, position.allocated, position.inbound
    deltas, supply_days, lines = position.deltas, position.supply_days, position.lines
    if (
        position.on_hand < 0 or reserved < 0 or allocated < 0 or position.held < 0
        or inbound < 0 or position.safety_stock < 0
        or (sum(deltas.values()) if deltas else 0) != inbound - reserved - allocated
        or (sum(supply_days.values()) if supply_days else 0) != inbound
        or (not lines and (reserved or allocated))
        or ((position.held or ledger.holds_by_position) and not _held_agrees(ledger, position))
    ):
        return _described_problems(ledger, position)
    if lines:
        budget = position.audit_budget + limits.audit_lines_per_touch
        if budget < len(lines):
            position.audit_budget = budget  # recounted once the budget covers the lines
        else:
            position.audit_budget = 0
            if _line_sums(ledger, lines) != (reserved, allocated):
                return _described_problems(ledger, position)
    return NO_PROBLEMS


def _held_agrees(ledger: LedgerView, position: Position) -> bool:
    holds = ledger.holds_by_position.get((position.sku, position.node_id))
    return position.held == (sum(hold.quantity for hold in holds.values()) if holds else 0)


def _line_sums(
    ledger: LedgerView, lines: dict[tuple[str, str], ReservationLine]
) -> tuple[int, int]:
    """(units of HELD lines, units of COMMITTED lines) among a position's open lines."""
    reserved = allocated = 0
    reservations = ledger.reservations
    held = HELD
    for (reservation_id, _), line in lines.items():
        # open_quantity, without the property's call: this runs after every command.
        units = line.quantity - line.fulfilled_quantity - line.released_quantity
        if reservations[reservation_id].state is held:
            reserved += units
        else:
            allocated += units
    return reserved, allocated


def _described_problems(ledger: LedgerView, position: Position) -> list[str]:
    where = f"{position.sku} at {position.node_id}"
    problems = [
        f"{name} of {where} went negative: {getattr(position, name)}"
        for name in ("on_hand", "allocated", "reserved", "held", "inbound", "safety_stock")
        if getattr(position, name) < 0
    ]
    if sum(position.supply_days.values()) != position.inbound:
        problems.append(f"inbound of {where} is {position.inbound}, its supply days say "
                        f"{sum(position.supply_days.values())}")
    net = position.inbound - position.reserved - position.allocated
    if sum(position.deltas.values()) != net:
        problems.append(f"timeline of {where} nets {sum(position.deltas.values())}, "
                        f"inbound less demand is {net}")
    if not _held_agrees(ledger, position):
        problems.append(f"held of {where} is {position.held}, its holds disagree")
    sums = _line_sums(ledger, position.lines)  # on a failure, whatever their number
    if sums != (position.reserved, position.allocated):
        problems.append(f"(reserved, allocated) of {where} are "
                        f"{(position.reserved, position.allocated)}, its lines say {sums}")
    return problems or [f"{where} failed its audit"]


def derived_problems(ledger: LedgerView) -> list[str]:
    """Every disagreement between the live derived quantities and a recomputation."""
    fresh = {key: Position(pos.sku, pos.node_id, pos.on_hand, pos.safety_stock)
             for key, pos in ledger.positions.items()}
    problems = derive_from_records(ledger, fresh)
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


def _index_problems(ledger: LedgerView) -> list[str]:
    """The listing indexes against what they index."""
    problems = []
    for state in OPEN_RESERVATION_STATES:
        ids = ledger.held_ids if state is HELD else ledger.committed_ids
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


def derive_from_records(
    ledger: LedgerView, positions: dict[tuple[str, str], Position]
) -> list[str]:
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


def _derive_reservation(
    reservation: Reservation, position_of: Callable[[str, str, str], Position | None]
) -> None:
    held = reservation.state is HELD
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


def _expected_expiries(ledger: LedgerView) -> Iterable[tuple[float, str, str]]:
    for reservation in ledger.reservations.values():
        if reservation.state is HELD and reservation.expire_time is not None:
            yield (reservation.expire_time, "reservation", reservation.reservation_id)
    for hold in ledger.holds.values():
        if hold.active and hold.expire_time is not None:
            yield (hold.expire_time, "hold", hold.hold_id)


def index_expiries(ledger: LedgerView) -> None:
    ledger.expiries.update(_expected_expiries(ledger))


def _expiry_problems(ledger: LedgerView) -> list[str]:
    if isinstance(ledger.expiries, NoExpiryQueue):
        return []  # a gateway's copy: the writer expires, and keeps the queue
    if sorted(_expected_expiries(ledger)) != list(ledger.expiries):
        return ["expiry queue disagrees with HELD reservations and holds"]
    return []
