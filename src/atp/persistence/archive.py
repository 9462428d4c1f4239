"""The ledger's archive backed by the store: closed reservations and idempotency records
are read from LMDB on demand (point reads on the event loop: microseconds, memory-mapped)."""

from __future__ import annotations

from atp.ledger.archive import NotHeldHere
from atp.ledger.errors import Unavailable
from atp.ledger.model import Hold, RequestRecord, Reservation
from atp.persistence import codec
from atp.store import KEY_BYTES_MAX, Store, StoreError
from atp.store.base import CLOSED, ENDED_HOLDS, REQUESTS


class StoreArchive:
    def __init__(self, store: Store) -> None:
        self.store = store

    def reservation(self, reservation_id: str) -> Reservation | None:
        data = self._get(CLOSED, reservation_id)
        return None if data is None else codec.decode_record(CLOSED, data)

    def request(self, request_id: str) -> RequestRecord | None:
        data = self._get(REQUESTS, request_id)
        return None if data is None else codec.decode_record(REQUESTS, data)

    def hold(self, hold_id: str) -> Hold | None:
        data = self._get(ENDED_HOLDS, hold_id)
        return None if data is None else codec.decode_record(ENDED_HOLDS, data)

    def closed_after(self, after_id: str, limit: int) -> list[Reservation]:
        """Up to `limit` closed reservations with ids after `after_id`, in id order."""
        try:
            found = self.store.scan(CLOSED, after_id.encode(), limit)
        except StoreError as error:
            raise Unavailable(f"reading closed reservations failed: {error}") from error
        return [codec.decode_record(CLOSED, data) for _, data in found]

    def _get(self, database: str, key: str) -> bytes | None:
        encoded = key.encode()
        if not 0 < len(encoded) <= KEY_BYTES_MAX:
            return None  # an id no record can have (refused by validation afterwards)
        try:
            return self.store.get(database, encoded)
        except StoreError as error:
            raise Unavailable(f"reading {database} failed: {error}") from error


class WritersArchive:
    """A gateway's archive: its copy keeps no closed reservations, ended holds or idempotency
    records (MemoryStore.live_copy), so a read that would look one up goes to the writer."""

    def reservation(self, reservation_id: str) -> Reservation | None:
        raise NotHeldHere("closed reservations are the writer's")

    def request(self, request_id: str) -> RequestRecord | None:
        raise NotHeldHere("idempotency records are the writer's")

    def hold(self, hold_id: str) -> Hold | None:
        raise NotHeldHere("ended holds are the writer's")

    def closed_after(self, after_id: str, limit: int) -> list[Reservation]:
        raise NotHeldHere("closed reservations are the writer's")


# What a server's ledger reads closed reservations through (listings included).
ServerArchive = StoreArchive | WritersArchive


def archive_of(store: Store) -> ServerArchive:
    """The archive a ledger loaded from `store` reads: the store's, or the writer's."""
    return StoreArchive(store) if store.keeps_archive else WritersArchive()
