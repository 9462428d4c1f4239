"""The ledger's archive backed by the store: closed reservations and idempotency records
are read from LMDB on demand (point reads on the event loop: microseconds, memory-mapped)."""

from __future__ import annotations

from atp.ledger import codec
from atp.ledger.errors import Unavailable
from atp.ledger.model import Hold, RequestRecord, Reservation
from atp.store import KEY_BYTES_MAX, Store, StoreError


class StoreArchive:
    def __init__(self, store: Store) -> None:
        self.store = store

    def reservation(self, reservation_id: str) -> Reservation | None:
        data = self._get("closed", reservation_id)
        return None if data is None else codec.decode_record("closed", data)

    def request(self, request_id: str) -> RequestRecord | None:
        data = self._get("requests", request_id)
        return None if data is None else codec.decode_record("requests", data)

    def hold(self, hold_id: str) -> Hold | None:
        data = self._get("ended_holds", hold_id)
        return None if data is None else codec.decode_record("ended_holds", data)

    def closed_after(self, after_id: str, limit: int) -> list[Reservation]:
        """Up to `limit` closed reservations with ids after `after_id`, in id order."""
        try:
            found = self.store.scan("closed", after_id.encode(), limit)
        except StoreError as error:
            raise Unavailable(f"reading closed reservations failed: {error}") from error
        return [codec.decode_record("closed", data) for _, data in found]

    def _get(self, database: str, key: str) -> bytes | None:
        encoded = key.encode()
        if not 0 < len(encoded) <= KEY_BYTES_MAX:
            return None  # an id no record can have (refused by validation afterwards)
        try:
            return self.store.get(database, encoded)
        except StoreError as error:
            raise Unavailable(f"reading {database} failed: {error}") from error
