"""Review: idempotency records of a data directory written before retention are never purged.

Before this version every request_id was kept for ever in the `requests` database, with no
`requests_by_time` index entry. The first start moves old closed reservations and ended
holds out and gives them purge index entries (`_move_closed_out`, `_move_ended_holds_out` in
src/atp/ledger/rebuild.py), but nothing indexes the old request records: the purge
(Housekeeper._purge over `requests_by_time`, src/atp/engine/housekeeping.py) only walks the
index, so every request id of the data directory's history stays in LMDB for good (and in
`atp_idempotency_records`), whatever --idempotency-window says.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from atp.engine.housekeeping import Retention
from atp.engine.writer import Writer
from atp.ledger import LedgerConfig
from atp.ledger.model import RequestRecord
from atp.persistence import codec, ledger_from_records
from atp.persistence.archive import StoreArchive
from atp.store import LmdbStore, WriteBatch

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_request_records_of_an_old_data_dir_are_purged_after_the_window(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LmdbStore(tmp_path / "old", map_size=64 << 20, sync=False)
        old = WriteBatch()
        for i in range(10):
            old.put("requests", f"req-{i}".encode(),
                    codec.encode_record("requests", RequestRecord("digest", NOW - 3600)))
        store.commit(old)
        config = LedgerConfig(idempotency_window_s=50.0)
        clock = FakeClock(NOW)
        ledger = ledger_from_records(store.iter_records, store.last_sequence(), config, NOW)
        ledger.archive = StoreArchive(store)
        writer = Writer(ledger, store, clock=clock,
                        retention=Retention(closed_s=100.0, idempotency_s=50.0, journal_s=0.0))
        writer.housekeeping_interval_s = 3600.0
        writer.start()
        try:
            await asyncio.wait_for(writer.expire_backlog(), 5)  # start-up's first commit
            clock.now = NOW + 10_000  # long past the window
            for _ in range(100):
                if not await asyncio.wait_for(writer.housekeeper.tidy(), 5):
                    break
            left = sorted(key.decode() for key in store.load()["requests"])
            assert left == [], f"request records never purged: {left}"
        finally:
            await writer.close()
            store.close()

    asyncio.run(scenario())
