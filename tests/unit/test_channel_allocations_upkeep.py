"""What keeps the Reserve fence cheap (docs/channel-allocations.md, *Cost*): a SKU-wide cap is
computed only where the Reserve could reach it, and the per-SKU sums the fence reads (open
units by channel, the supply base) follow every change."""

from __future__ import annotations

import datetime

import pytest

from atp.ledger import Ledger, commands, day_of, errors, quotas
from atp.ledger.model import Policy
from atp.persistence.records import encode_batch
from atp.persistence.replica import apply_batch

NOW = datetime.datetime(2026, 12, 4, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
Line = commands.LineRequest


@pytest.fixture
def ledger() -> Ledger:
    """A at N1 (100) and N2 (50); 30 units of A across the network allocated to web."""
    ledger = Ledger()
    for node_id in ("N1", "N2"):
        ledger.execute(commands.UpsertNode(node_id), NOW)
    ledger.execute(commands.AdjustStock("seed", (
        commands.Movement("A", "N1", "RECEIPT", 100),
        commands.Movement("A", "N2", "RECEIPT", 50),
    )), NOW)
    ledger.execute(commands.SetChannelAllocation("A", "", "web", quantity=30), NOW)
    return ledger


def store_reserve(reservation_id: str, *lines: Line, partial: bool = False) -> commands.Reserve:
    return commands.Reserve(reservation_id, tuple(lines), channel="store",
                            policy=Policy(allow_partial=partial))


def test_a_cap_the_reserve_cannot_reach_is_left_off(ledger: Ledger) -> None:
    command = store_reserve("s1", Line("l1", "A", 5, "N2"))  # 5 <= 50 at N2 - 30 fenced
    fence = quotas.fence_for_reserve(ledger, command, TODAY, False)
    assert fence is not None and fence.caps == {} and fence.fenced == {"A": 30}
    fence.undo()
    full = quotas.fence_for(ledger, [("A", "N2")], "store", TODAY, False)
    assert full is not None and full.caps == {"A": 120} and full.fenced == {"A": 30}
    full.undo()
    ledger.execute(command, NOW)
    assert ledger.check_invariants() == []


def test_a_cap_the_reserve_could_reach_is_computed_and_holds(ledger: Ledger) -> None:
    ledger.execute(store_reserve("s0", Line("l1", "A", 95, "N1")), NOW)  # 120 - 95: 25 left
    command = store_reserve("s1", Line("l1", "A", 26, "N2"))  # 26 > 50 - 30 at N2
    fence = quotas.fence_for_reserve(ledger, command, TODAY, False)
    assert fence is not None and fence.caps == {"A": 25}
    fence.undo()
    with pytest.raises(errors.InsufficientAvailability) as refused:
        ledger.execute(command, NOW)
    assert "A across the network: requested 26, available 25" in refused.value.message
    partial = ledger.execute(store_reserve("s2", Line("l1", "A", 26, "N2"), partial=True), NOW)
    assert [line.quantity for line in partial.lines] == [25]  # type: ignore[attr-defined]
    assert ledger.check_invariants() == []


def test_the_kept_supply_base_follows_every_change_of_its_inputs(ledger: Ledger) -> None:
    ledger.execute(commands.SetChannelAllocation("A", "", "web", share=0.2), NOW)
    assert ledger.supply_base_of("A") == 150 and ledger.supply_bases == {"A": 150}
    changes: list[commands.Command] = [
        commands.AdjustStock("more", (commands.Movement("A", "N2", "RECEIPT", 10),)),
        commands.PlaceHold("h1", "A", "N1", 20),
        commands.UpsertSupply("po1", "A", "N2", 40, (2026, 12, 9)),
        commands.SetSafetyStock("A", "N1", 5),
        commands.ReceiveSupply("rc1", "po1", 15),
        commands.ReleaseHold("h1"),
    ]
    expected = [160, 140, 180, 175, 175, 195]
    for command, base in zip(changes, expected, strict=True):
        ledger.execute(command, NOW)
        assert "A" not in ledger.supply_bases  # dropped by the save
        assert ledger.supply_base_of("A") == base, command
        assert ledger.check_invariants() == []
    reservation = ledger.execute(store_reserve("s1", Line("l1", "A", 10, "N1")), NOW)
    ledger.execute(commands.Commit("s1", "c1"), NOW)
    ledger.execute(commands.Fulfill("s1", "f1"), NOW)  # on hand down by 10
    assert reservation is not None and ledger.supply_base_of("A") == 185
    ledger.execute(commands.SetChannelAllocation("A", "", "web"), NOW)  # the last one goes
    assert ledger.supply_bases == {} and ledger.sku_channel_units == {}
    assert ledger.check_invariants() == []


def test_a_follower_drops_its_kept_bases_with_each_batch(ledger: Ledger) -> None:
    follower = Ledger()
    apply_batch(follower, encode_batch(ledger.take_changes()))
    assert follower.supply_base_of("A") == 150
    ledger.execute(commands.AdjustStock("more", (commands.Movement("A", "N1", "RECEIPT", 7),)),
                   NOW)
    ledger.execute(store_reserve("s1", Line("l1", "A", 4, "N1")), NOW)
    apply_batch(follower, encode_batch(ledger.take_changes()))
    assert follower.supply_base_of("A") == 157
    assert follower.sku_channel_units == ledger.sku_channel_units == {"A": {"store": 4}}
    assert follower.check_invariants() == []
