"""Channel allocations (quotas) against the ledger in-process: the fence on other channels'
demand, own consumption first, shares, end dates, Promise, reallocation and backorder fills,
validation, persistence and the per-channel availability numbers."""

from __future__ import annotations

import datetime
import random
from collections import Counter

import pytest

from atp.ledger import Ledger, LedgerConfig, commands, day_of, errors, timeline
from atp.ledger.model import Lane, Policy, ReservationState
from atp.ledger.promising import OrderLine
from atp.ledger.quotas import ChannelAllocation, standing_of, standings
from atp.persistence.rebuild import ledger_from_records
from atp.persistence.records import encode_batch
from atp.persistence.replica import apply_batch
from atp.store.base import CHANNEL_ALLOCATIONS

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
DAY = 86400.0
Line = commands.LineRequest


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


@pytest.fixture
def ledger() -> Ledger:
    ledger = seeded()
    ledger.take_changes()
    return ledger


def seeded() -> Ledger:
    """Two nodes with a lane to EU; A at both, B at DC1 (changes not yet taken)."""
    ledger = Ledger(LedgerConfig(default_ttl_seconds=600))
    ledger.execute(commands.UpsertNode("DC1", lanes=(Lane("EU", 1, 5),)), NOW)
    ledger.execute(commands.UpsertNode("DC2", lanes=(Lane("EU", 2, 5),)), NOW)
    ledger.execute(commands.AdjustStock("seed", (
        commands.Movement("A", "DC1", "RECEIPT", 100),
        commands.Movement("A", "DC2", "RECEIPT", 50),
        commands.Movement("B", "DC1", "RECEIPT", 10),
    )), NOW)
    return ledger


def allocate(ledger: Ledger, channel: str, sku: str = "A", node_id: str = "DC1",
             now: float = NOW, **fields: object) -> ChannelAllocation:
    result = ledger.execute(
        commands.SetChannelAllocation(sku, node_id, channel, **fields), now)  # type: ignore[arg-type]
    assert isinstance(result, ChannelAllocation)
    return result


def reserve(ledger: Ledger, reservation_id: str, channel: str, *lines: Line,
            now: float = NOW, **options: object) -> object:
    return ledger.execute(commands.Reserve(  # type: ignore[misc]
        reservation_id, tuple(lines), channel=channel, **options), now)


def standing(ledger: Ledger, channel: str, sku: str = "A", node_id: str = "DC1",
             today: int = TODAY) -> tuple[int, int, int]:
    for item in standings(ledger, sku, node_id, today):
        if item.allocation.channel == channel:
            return item.allocated, item.consumed, item.available
    raise AssertionError(f"no allocation for {channel}")


def held_units(ledger: Ledger, channel: str) -> int:
    return sum(line.open_quantity for r in ledger.reservations.values() if r.channel == channel
               for line in r.lines)


# ----- the fence at a position --------------------------------------------------------------

def test_other_channels_cannot_take_a_node_allocation(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=30)
    reserve(ledger, "s1", "store", Line("l1", "A", 70, "DC1"))
    with pytest.raises(errors.InsufficientAvailability) as refused:
        reserve(ledger, "s2", "store", Line("l1", "A", 1, "DC1"))
    assert "fenced for other channels" in refused.value.message
    assert refused.value.shortfalls[0].available == 0
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "n1", "", Line("l1", "A", 1, "DC1"))  # no channel: fenced too
    assert ledger.positions[("A", "DC1")].reserved == 70
    # The owner takes its whole allocation.
    reserve(ledger, "w1", "web", Line("l1", "A", 30, "DC1"))
    assert standing(ledger, "web") == (30, 30, 0)
    assert ledger.check_invariants() == []


def test_the_fence_leaves_no_trace_on_the_timeline(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=30, end_date=date_after(5))
    before = dict(ledger.positions[("A", "DC1")].deltas)
    reserve(ledger, "s1", "store", Line("l1", "A", 10, "DC1"))
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s2", "store", Line("l1", "A", 61, "DC1", date_after(0)))
    # Nor for a later day: the owner may take the units until its end date, and stock
    # promised for a later day is stock it could not take today.
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s3", "store", Line("l1", "A", 61, "DC1"))
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s4", "store", Line("l1", "A", 61, "DC1", date_after(6)))
    deltas = ledger.positions[("A", "DC1")].deltas
    assert deltas == {**before, TODAY: -10}
    assert ledger.check_invariants() == []


def test_own_demand_consumes_the_allocation_first(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=30)
    reserve(ledger, "w1", "web", Line("l1", "A", 20, "DC1"))
    assert standing(ledger, "web") == (30, 20, 10)
    # The other channel may take all but the 10 still fenced.
    reserve(ledger, "s1", "store", Line("l1", "A", 70, "DC1"))
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s2", "store", Line("l1", "A", 1, "DC1"))
    # Demand of the owner beyond its allocation competes for the pool like any other.
    reserve(ledger, "w2", "web", Line("l1", "A", 10, "DC1"))
    assert standing(ledger, "web") == (30, 30, 0)
    assert ledger.positions[("A", "DC1")].reserved == 100
    # A release gives the owner's allocation back to it, not to the pool.
    ledger.execute(commands.Release("w1", "r1"), NOW)
    assert standing(ledger, "web") == (30, 10, 20)
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s3", "store", Line("l1", "A", 1, "DC1"))


def test_two_channels_fence_each_other(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=30)
    allocate(ledger, "store", quantity=50)
    reserve(ledger, "m1", "market", Line("l1", "A", 20, "DC1"))
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "m2", "market", Line("l1", "A", 1, "DC1"))
    reserve(ledger, "w1", "web", Line("l1", "A", 30, "DC1"))
    reserve(ledger, "s1", "store", Line("l1", "A", 50, "DC1"))
    assert ledger.positions[("A", "DC1")].reserved == 100


def test_allow_partial_takes_only_the_unfenced_units(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=30)
    reservation = reserve(ledger, "s1", "store", Line("l1", "A", 90, "DC1"),
                          policy=Policy(allow_partial=True))
    line = reservation.lines[0]  # type: ignore[attr-defined]
    assert (line.quantity, line.backordered_quantity) == (70, 20)


def test_other_positions_are_not_fenced(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=100)
    reserve(ledger, "s1", "store", Line("l1", "A", 50, "DC2"))
    reserve(ledger, "s2", "store", Line("l1", "B", 10, "DC1"))


def test_sourced_lines_obey_the_node_fence(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=100)  # all of DC1
    reservation = reserve(ledger, "s1", "store", Line("l1", "A", 50), destination_region="EU")
    assert [(ln.node_id, ln.quantity) for ln in reservation.lines] == [("DC2", 50)]  # type: ignore[attr-defined]
    with pytest.raises(errors.InsufficientAvailability) as refused:
        reserve(ledger, "s2", "store", Line("l1", "A", 1), destination_region="EU")
    assert "fenced for other channels" in refused.value.message


# ----- SKU-wide allocations -------------------------------------------------------------------

def test_a_sku_wide_allocation_caps_other_channels_across_the_network(ledger: Ledger) -> None:
    allocate(ledger, "web", node_id="", quantity=120)  # of 150 across DC1 and DC2
    reserve(ledger, "s1", "store", Line("l1", "A", 20, "DC2"))
    with pytest.raises(errors.InsufficientAvailability) as refused:
        reserve(ledger, "s2", "store", Line("l1", "A", 11), destination_region="EU")
    assert "fenced for other channels" in refused.value.message
    partial = reserve(ledger, "s3", "store", Line("l1", "A", 40), destination_region="EU",
                      policy=Policy(allow_partial=True))
    assert sum(ln.quantity for ln in partial.lines) == 10  # type: ignore[attr-defined]
    assert sum(ln.backordered_quantity for ln in partial.lines) == 30  # type: ignore[attr-defined]
    reserve(ledger, "w1", "web", Line("l1", "A", 120), destination_region="EU")
    assert standing(ledger, "web", node_id="") == (120, 120, 0)
    assert ledger.check_invariants() == []


def test_sku_wide_cap_applies_to_lines_naming_a_node(ledger: Ledger) -> None:
    allocate(ledger, "web", node_id="", quantity=140)
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s1", "store", Line("l1", "A", 6, "DC1"), Line("l2", "A", 5, "DC2"))
    assert ledger.positions[("A", "DC1")].deltas == {}
    assert ledger.positions[("A", "DC2")].deltas == {}
    reserve(ledger, "s1", "store", Line("l1", "A", 5, "DC1"), Line("l2", "A", 5, "DC2"))


# ----- shares and end dates --------------------------------------------------------------------

def test_a_share_is_of_supply_less_holds_and_safety_stock(ledger: Ledger) -> None:
    allocate(ledger, "web", share=0.25)
    assert standing(ledger, "web") == (25, 0, 25)
    ledger.execute(commands.UpsertSupply("po1", "A", "DC1", 40, date_after(3)), NOW)
    ledger.execute(commands.PlaceHold("h1", "A", "DC1", 9), NOW)
    ledger.execute(commands.SetSafetyStock("A", "DC1", 1), NOW)
    assert standing(ledger, "web") == (32, 0, 32)  # floor(0.25 x 130)
    allocate(ledger, "web", node_id="", share=0.5)
    assert standing(ledger, "web", node_id="") == (90, 0, 90)  # 0.5 x (130 + 50)


def test_after_its_end_date_the_allocation_returns_to_the_pool(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=100, end_date=date_after(2))
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s1", "store", Line("l1", "A", 1, "DC1", date_after(2)))
    # Not even for after the end date: the owner may take them until then.
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, "s1", "store", Line("l1", "A", 1, "DC1", date_after(3)))
    assert standing(ledger, "web", today=TODAY + 2) == (100, 0, 100)
    # The day after the end date the allocation is gone: its units are the pool's again.
    assert standing(ledger, "web", today=TODAY + 3) == (0, 0, 0)
    reserve(ledger, "s2", "store", Line("l1", "A", 100, "DC1"), now=NOW + 3 * DAY)


# ----- Promise, reallocation, backorders ---------------------------------------------------

def test_promise_respects_the_fence(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=100)
    lines = [OrderLine("l1", "A", 60)]
    for_store = ledger.promise(lines, "EU", Policy(), 0, NOW, channel="store")
    assert not for_store.complete
    for_web = ledger.promise(lines, "EU", Policy(), 0, NOW, channel="web")
    assert for_web.complete and for_web.node_ids == ("DC1",)
    assert ledger.positions[("A", "DC1")].deltas == {}
    allocate(ledger, "web", quantity=0)  # node- and SKU-wide allocations would add up
    allocate(ledger, "web", node_id="", quantity=120)
    partial = ledger.promise([OrderLine("l1", "A", 50)], "EU", Policy(allow_partial=True), 0,
                             NOW, channel="store")
    assert sum(a.quantity for a in partial.lines[0].allocations) == 30


def test_backorder_fills_obey_the_fence(ledger: Ledger) -> None:
    reserve(ledger, "s1", "store", Line("l1", "B", 15, "DC1"), policy=Policy(allow_partial=True))
    allocate(ledger, "web", sku="B", quantity=8)
    ledger.execute(commands.AdjustStock("more", (commands.Movement("B", "DC1", "RECEIPT", 10),)),
                   NOW)
    lines = ledger.reservations["s1"].lines
    # 10 arrived; 8 of them are web's, so the store line gets 2 of its 5 backordered.
    assert [(ln.quantity, ln.backordered_quantity) for ln in lines] == [(10, 3), (2, 0)]
    assert standing(ledger, "web", sku="B") == (8, 0, 8)


def test_setting_again_announces_nothing_and_zero_removes(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=10)
    changes = ledger.take_changes()
    assert [e.type for e in changes.events] == ["CHANNEL_ALLOCATION_SET"]
    assert changes.events[0].data == {"sku": "A", "node_id": "DC1", "channel": "web",
                                      "quantity": 10, "share": 0.0, "end_date": None}
    allocate(ledger, "web", quantity=10)
    assert not ledger.has_changes
    removed = allocate(ledger, "web")
    assert removed.removed and ledger.channel_allocations == {}
    changes = ledger.take_changes()
    assert changes.channel_allocations == {("A", "DC1", "web"): None}
    reserve(ledger, "s1", "store", Line("l1", "A", 100, "DC1"))


# ----- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "path"), [
    ({"sku": ""}, "allocation.sku"),
    ({"channel": ""}, "allocation.channel"),
    ({"channel": "x" * 200}, "allocation.channel"),
    ({"quantity": -1}, "allocation.quantity"),
    ({"quantity": 10**12 + 1}, "allocation.quantity"),
    ({"share": 1.5}, "allocation.share"),
    ({"share": -0.1}, "allocation.share"),
    ({"share": float("nan")}, "allocation.share"),
    ({"quantity": 5, "share": 0.5}, "allocation.share"),
    ({"quantity": 5, "end_date": date_after(-1)}, "allocation.end_date"),
    ({"quantity": 5, "end_date": (2026, 2, 30)}, "allocation.end_date"),
])
def test_bad_allocations_are_refused_naming_the_field(
    ledger: Ledger, fields: dict[str, object], path: str
) -> None:
    values: dict[str, object] = {"sku": "A", "node_id": "DC1", "channel": "web", "quantity": 1,
                                 **fields}
    if "share" in fields and "quantity" not in fields:
        values["quantity"] = 0
    with pytest.raises(errors.InvalidArgument) as refused:
        ledger.execute(commands.SetChannelAllocation(**values), NOW)  # type: ignore[arg-type]
    assert path in [v.field for v in refused.value.violations]
    assert not ledger.has_changes and not ledger.channel_allocations


def test_an_unknown_node_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(errors.NotFound):
        allocate(ledger, "web", node_id="DC9", quantity=1)
    assert not ledger.channel_allocations


# ----- persistence ----------------------------------------------------------------------------

def test_allocations_survive_a_rebuild_and_replicate() -> None:
    ledger = seeded()
    follower = Ledger()
    records: dict[str, dict[bytes, bytes]] = {}

    def commit() -> None:
        batch = encode_batch(ledger.take_changes())
        apply_batch(follower, batch)
        for (database, key), value in batch.records.items():
            if value is None:
                records.setdefault(database, {}).pop(key, None)
            else:
                records.setdefault(database, {})[key] = value

    reserve(ledger, "w0", "web", Line("l1", "A", 4, "DC1"))
    commit()
    allocate(ledger, "web", quantity=10, end_date=date_after(30))
    allocate(ledger, "store", node_id="", share=0.2)
    allocate(ledger, "market", quantity=3)
    reserve(ledger, "s0", "store", Line("l1", "A", 5, "DC2"))
    commit()
    allocate(ledger, "market")
    ledger.execute(commands.Release("w0", "rel-w0"), NOW)
    reserve(ledger, "w1", "web", Line("l1", "A", 2, "DC1"), commit=True)
    commit()
    assert ledger.channel_units == {("A", "DC1"): {"web": 2}, ("A", "DC2"): {"store": 5}}
    assert len(records[CHANNEL_ALLOCATIONS]) == 2
    rebuilt = ledger_from_records(records, ledger.sequence, None, NOW)
    assert rebuilt.channel_allocations == ledger.channel_allocations
    assert follower.channel_allocations == ledger.channel_allocations
    assert rebuilt.channel_units == follower.channel_units == ledger.channel_units
    assert rebuilt.check_invariants() == follower.check_invariants() == []
    assert standing_of(rebuilt, rebuilt.channel_allocations["A"][("DC1", "web")], TODAY
                       ).allocated == 10


def test_reservation_state_counts_for_consumption(ledger: Ledger) -> None:
    allocate(ledger, "web", quantity=30)
    reserve(ledger, "w1", "web", Line("l1", "A", 10, "DC1"), commit=True)
    reserve(ledger, "w2", "web", Line("l1", "A", 5, "DC1"))
    assert ledger.reservations["w1"].state is ReservationState.COMMITTED
    assert standing(ledger, "web") == (30, 15, 15)
    ledger.execute(commands.Fulfill("w1", "f1", ()), NOW)
    assert standing(ledger, "web") == (30, 5, 25)


def test_open_units_by_channel_are_kept_through_every_change(ledger: Ledger) -> None:
    reserve(ledger, "w0", "web", Line("l1", "A", 3, "DC1"))  # before any allocation
    allocate(ledger, "web", quantity=50)
    assert ledger.channel_units == {("A", "DC1"): {"web": 3}}
    reserve(ledger, "w1", "web", Line("l1", "A", 5, "DC1"), Line("l2", "A", 2, "DC2"),
            commit=True)
    reserve(ledger, "s1", "store", Line("l1", "A", 4), destination_region="EU")
    reserve(ledger, "b1", "store", Line("l1", "B", 4, "DC1"))  # a SKU without one
    ledger.execute(commands.Fulfill("w1", "f1", (commands.LineQuantity("l1", 2),)), NOW)
    ledger.execute(commands.Release("w0", "r1", (commands.LineQuantity("l1", 1),)), NOW)
    ledger.execute(commands.ExpireDue(), NOW + 3600)  # w0 and s1 expire
    assert ledger.check_invariants() == []
    assert ledger.channel_units == {("A", "DC1"): {"web": 3}, ("A", "DC2"): {"web": 2}}
    assert standing(ledger, "web") == (50, 3, 47)
    allocate(ledger, "web")  # the last allocation of A: its counts go
    assert ledger.channel_units == {}
    assert ledger.check_invariants() == []


@pytest.mark.parametrize("seed", range(4))
def test_random_demand_never_takes_another_channels_allocation(seed: int) -> None:
    """Random reserves (named nodes and sourced, whole and partial, from three channels and
    none) and releases against node-scoped and SKU-wide allocations set up front: after every
    step each position can still give its allocations' available units, and the network the
    SKU-wide ones' (the fence is the only thing that keeps this true)."""
    rng = random.Random(seed)
    ledger = seeded()
    allocate(ledger, "web", quantity=25)
    allocate(ledger, "store", node_id="DC2", share=0.3)
    allocate(ledger, "market", node_id="", quantity=20)
    channels = ("web", "store", "market", "")
    outcomes: Counter[str] = Counter()
    for step in range(300):  # bounded
        open_ids = sorted(ledger.reservations)
        if open_ids and rng.random() < 0.3:
            ledger.execute(commands.Release(rng.choice(open_ids), f"rel-{step}"), NOW)
        else:
            node_id = rng.choice(("DC1", "DC2", ""))
            line = Line("l1", "A", rng.randint(1, 15), node_id)
            outcome = ledger.apply(commands.Reserve(
                f"r{step}", (line,), destination_region="" if node_id else "EU",
                channel=rng.choice(channels),
                policy=Policy(allow_partial=rng.random() < 0.5)), NOW)
            outcomes[type(outcome).__name__] += 1
        assert ledger.check_invariants() == []
        node_fenced = {}
        for node_id in ("DC1", "DC2"):
            position = ledger.positions[("A", node_id)]
            fenced = sum(s.available for s in standings(ledger, "A", node_id, TODAY))
            atp = timeline.atp_today(position, TODAY, include_safety_stock=False)
            assert atp >= fenced, (step, node_id, atp, fenced)
            node_fenced[node_id] = fenced
        wide = sum(s.available for s in standings(ledger, "A", "", TODAY))
        network = sum(
            max(0, timeline.max_promisable(ledger.positions[("A", n)], TODAY, False) - fenced)
            for n, fenced in node_fenced.items())
        assert network >= wide, (step, network, wide)
    assert outcomes["Reservation"] > 50 and outcomes["Refused"] > 10, outcomes


def test_reallocation_moves_lines_only_where_their_channel_may_take_units(
    ledger: Ledger
) -> None:
    reservation = reserve(ledger, "s1", "store", Line("l1", "A", 20), destination_region="EU")
    assert [ln.node_id for ln in reservation.lines] == ["DC1"]  # type: ignore[attr-defined]
    allocate(ledger, "web", node_id="DC2", quantity=40)  # of DC2's 50
    ledger.execute(commands.AdjustStock("count", (
        commands.Movement("A", "DC1", "CYCLE_COUNT", 0),)), NOW)
    assert ledger.reservations["s1"].lines[0].at_risk
    result = ledger.execute(commands.Reallocate(sku="A"), NOW)
    (plan,) = result.plans  # type: ignore[union-attr]
    assert plan.unfilled_quantity == 10
    lines = ledger.reservations["s1"].lines
    assert [(ln.node_id, ln.quantity) for ln in lines if ln.quantity] == [("DC2", 10)]
    assert standing(ledger, "web", node_id="DC2") == (40, 0, 40)
    assert ledger.check_invariants() == []
