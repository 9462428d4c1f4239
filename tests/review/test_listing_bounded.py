"""Review: ListReservations with a SKU (or at-risk) filter is not bounded work.

`_open` (src/atp/engine/listing.py) answers a `sku` filter with
`_ids_after(_ids_with_sku(...), after)`: it builds the set of *every* open reservation id
with a line of that SKU (all the positions' line keys, plus backorders) and sorts all of
those after the token, on every page, before the SCAN_BUDGET check applies. The `at_risk`
filter does the same over every at-risk line. With 300,000 open reservations on one SKU a
page of 10 took ~520 ms of the event loop on the review machine (the unfiltered listing,
~0.05 ms per page once sorted), and a client paging through makes it 30,000 such pages:
every other call and the writer stall meanwhile, which the module's "bounded work ... no
single call stalls the writer, however large the ledger" promises against.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from atp.engine import listing
from atp.engine.listing import SCAN_BUDGET, ReservationFilter, list_reservations
from atp.ledger import Ledger, LedgerConfig
from atp.ledger import commands

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
OPEN = 4 * SCAN_BUDGET


def test_a_sku_filtered_page_examines_a_bounded_number_of_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = Ledger(LedgerConfig())
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("s", (commands.Movement("A", "DC1", "RECEIPT", 10**9),)), NOW)
    for i in range(OPEN):
        ledger.execute(commands.Reserve(f"o{i:07d}", (commands.LineRequest("l1", "A", 1, "DC1"),),
                                 commit=True), NOW)
    examined: list[int] = []
    original = listing._ids_after

    def counting(ids: set[str], after: str) -> Any:
        examined.append(len(ids))
        return original(ids, after)

    monkeypatch.setattr(listing, "_ids_after", counting)
    page, token = list_reservations(ledger, None, ReservationFilter(sku="A"), "", 10)
    assert len(page) == 10 and token == "o0000009"
    assert max(examined, default=0) <= SCAN_BUDGET, (
        f"one page of 10 collected and sorted {max(examined)} ids (budget {SCAN_BUDGET})")
