"""ListReservations: a page of reservations in id order, from indexes, in bounded work.

Open reservations are in memory, with indexes by state, by position (a SKU's lines) and of
the positions at risk; closed ones are read from the store. A call examines at most a
budget of candidates: a listing whose filters match little returns a short (even empty)
page with a next_page_token to continue from, rather than holding the event loop while it
scans (AIP-158 allows both). So no single call stalls the writer, however large the ledger.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from atp.ledger import Ledger
from atp.ledger.model import OPEN_RESERVATION_STATES, Position, Reservation, ReservationState
from atp.persistence.archive import ServerArchive

# Work units one call may spend: examining an open reservation costs 1, decoding a closed
# one from the store costs CLOSED_COST (~10 µs against ~0.4 µs): a few milliseconds a call.
SCAN_BUDGET = 5000
CLOSED_COST = 10
CLOSED_CHUNK = 256


@dataclass(frozen=True)
class ReservationFilter:
    state: ReservationState | None = None
    sku: str = ""
    node_id: str = ""
    at_risk: bool | None = None

    def matches(self, reservation: Reservation) -> bool:
        if self.state is not None and reservation.state is not self.state:
            return False
        lines = reservation.lines
        if self.sku or self.node_id:
            lines = [
                line for line in lines
                if (not self.sku or line.sku == self.sku)
                and (not self.node_id or line.node_id == self.node_id)
            ]
            if not lines:
                return False
        return self.at_risk is None or any(line.at_risk for line in lines) == self.at_risk


def list_reservations(
    ledger: Ledger, archive: ServerArchive | None, wanted: ReservationFilter, after: str,
    size: int,
) -> tuple[list[Reservation], str | None]:
    """Up to `size` matching reservations with ids after `after`, and the id to continue
    after (None: the listing is complete)."""
    page: list[Reservation] = []
    spent = 0
    last = after
    for reservation, cost in _candidates(ledger, archive, wanted, after):
        if len(page) == size or spent >= SCAN_BUDGET:
            return page, last
        spent += cost
        if wanted.matches(reservation):
            page.append(reservation)
        last = reservation.reservation_id
    return page, None


def _candidates(
    ledger: Ledger, archive: ServerArchive | None, wanted: ReservationFilter, after: str,
) -> Iterator[tuple[Reservation, int]]:
    """(reservation, cost) in id order after `after`, each id once, open ones first on a tie
    (a reservation closing right now may be in memory and already in the store)."""
    sources: list[Iterable[tuple[Reservation, int]]] = []
    if wanted.state is None or wanted.state in OPEN_RESERVATION_STATES:
        sources.append((r, 1) for r in _open(ledger, wanted, after))
    closed_may_match = not wanted.at_risk  # a closed reservation has no line at risk
    if closed_may_match and (wanted.state is None or wanted.state not in OPEN_RESERVATION_STATES):
        sources.append((r, 1) for r in _sorted_after(ledger.closed, after))
        if archive is not None:
            sources.append((r, CLOSED_COST) for r in _archived(archive, after))
    previous = None
    for reservation, cost in heapq.merge(*sources, key=lambda item: item[0].reservation_id):
        if reservation.reservation_id != previous:
            previous = reservation.reservation_id
            yield reservation, cost


def _open(ledger: Ledger, wanted: ReservationFilter, after: str) -> Iterator[Reservation]:
    """Open reservations after `after` from the narrowest index the filter allows. The
    at-risk and SKU indexes are unordered: they are gathered and sorted only while small
    (SCAN_BUDGET lines at most); a large one falls back to the ordered walk, which the
    budget bounds."""
    ids: Iterable[str]
    if wanted.at_risk and ledger.at_risk_count <= SCAN_BUDGET:
        ids = _ids_after({key[0] for key in _at_risk_lines(ledger)}, after)
    elif wanted.sku and _lines_with_sku(ledger, wanted.sku, wanted.node_id) <= SCAN_BUDGET:
        ids = _ids_after(_ids_with_sku(ledger, wanted.sku, wanted.node_id), after)
    elif wanted.state is not None:
        ids = ledger.open_ids(wanted.state).after(after)
    else:
        reservations = ledger.reservations
        ids = reservations.islice(reservations.bisect_right(after))  # type: ignore[attr-defined]
    reservations = ledger.reservations
    return (reservations[rid] for rid in ids if rid in reservations)


def _positions_with_sku(ledger: Ledger, sku: str, node_id: str) -> Iterable[Position]:
    by_node = ledger.positions_by_sku.get(sku, {})
    if node_id:
        return [by_node[node_id]] if node_id in by_node else []
    return by_node.values()


def _lines_with_sku(ledger: Ledger, sku: str, node_id: str) -> int:
    """How many entries gathering the SKU index would read (a count per position: cheap)."""
    lines = sum(len(position.lines) for position in _positions_with_sku(ledger, sku, node_id))
    return lines + (0 if node_id else len(ledger.backorders.get(sku, ())))


def _at_risk_lines(ledger: Ledger) -> Iterator[tuple[str, str]]:
    for key in ledger.positions_at_risk:
        yield from ledger.positions[key].at_risk


def _ids_with_sku(ledger: Ledger, sku: str, node_id: str) -> set[str]:
    """Open reservations with a line of the SKU (at the node): the positions' line index,
    and the backorder index for lines that no node holds yet."""
    positions = _positions_with_sku(ledger, sku, node_id)
    ids = {key[0] for position in positions for key in position.lines}
    if not node_id:
        ids.update(key[0] for key in ledger.backorders.get(sku, ()))
    return ids


def _ids_after(ids: set[str], after: str) -> list[str]:
    return sorted(rid for rid in ids if rid > after)


def _sorted_after(reservations: dict[str, Reservation], after: str) -> list[Reservation]:
    return [reservations[rid] for rid in sorted(rid for rid in reservations if rid > after)]


def _archived(archive: ServerArchive, after: str) -> Iterator[Reservation]:
    """Closed reservations from the store in id order, fetched a chunk at a time."""
    while True:
        chunk = archive.closed_after(after, CLOSED_CHUNK)
        yield from chunk
        if len(chunk) < CLOSED_CHUNK:
            return
        after = chunk[-1].reservation_id

