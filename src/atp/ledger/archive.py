"""What the ledger no longer keeps in memory: closed reservations and idempotency records.

Memory holds live state only. A reservation that closes, a hold that ends, and every
idempotency record stay
in memory just until the batch that wrote them is durable; from then on the ledger asks its
archive, which the server backs with the store (point reads). A ledger without a store (unit
and property tests) keeps the default archive, which holds nothing, and so simply keeps
everything in memory, as nobody tells it that anything became durable.
"""

from __future__ import annotations

from typing import Protocol

from atp.ledger.model import Hold, RequestRecord, Reservation


class NotHeldHere(Exception):
    """What a read needs is not in this copy of the ledger: a gateway's copy keeps live state
    and a tail of the journal only, and the call is answered by the writer instead. Not a
    LedgerError: no caller is refused for it."""


class Archive(Protocol):
    def reservation(self, reservation_id: str) -> Reservation | None:
        """A closed reservation still retained, or None."""

    def request(self, request_id: str) -> RequestRecord | None:
        """An idempotency record still retained, or None."""

    def hold(self, hold_id: str) -> Hold | None:
        """An ended hold still retained, or None."""


class NoArchive:
    def reservation(self, reservation_id: str) -> Reservation | None:
        return None

    def request(self, request_id: str) -> RequestRecord | None:
        return None

    def hold(self, hold_id: str) -> Hold | None:
        return None
