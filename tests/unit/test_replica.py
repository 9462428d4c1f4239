"""A follower's memory, kept by applying the leader's committed batches record by record,
equals the leader's live state and the ledger rebuilt from the same records, after every
batch of a long random run of every kind of command (issue 15's follower, in memory)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from atp.ledger import Ledger, LedgerConfig, Refused, commands
from atp.ledger.model import Lane, Policy
from atp.ledger.state import LedgerState
from atp.persistence import encode_batch, ledger_from_records
from atp.persistence.replica import apply_batch
from atp.store import MemoryStore

NOW = 1_790_000_000.0
NODES = ("N1", "N2", "N3")
SKUS = ("A", "B", "C")


def live_state(ledger: LedgerState) -> dict[str, Any]:
    """Everything live a reader or the next command depends on, comparably."""
    positions = {
        key: (p.on_hand, p.safety_stock, p.allocated, p.reserved, p.held, p.inbound,
              sorted(p.deltas.items()), sorted(p.supply_days.items()), sorted(p.lines),
              sorted(p.at_risk))
        for key, p in ledger.positions.items()
    }
    reservations = {
        rid: (r.state, [(ln.line_id, ln.node_id, ln.quantity, ln.ship_day, ln.fulfilled_quantity,
                         ln.released_quantity, ln.backordered_quantity, ln.at_risk)
                        for ln in r.lines], r.expire_time)
        for rid, r in ledger.reservations.items()
    }
    return {
        "nodes": {k: (n.active, n.handling_days, n.lanes) for k, n in ledger.nodes.items()},
        "positions": positions,
        "reservations": reservations,
        "holds": {k: (h.quantity, h.sku, h.node_id, h.expire_time) for k, h in ledger.holds.items()},
        "holds_by_position": {k: sorted(v) for k, v in ledger.holds_by_position.items() if v},
        "supplies": {k: (s.quantity, s.expected_day, s.state) for k, s in ledger.supplies.items()},
        "backorders": {k: sorted(v) for k, v in ledger.backorders.items() if v},
        "expiries": list(ledger.expiries),
        "held_ids": sorted(ledger.held_ids.after("")),
        "committed_ids": sorted(ledger.committed_ids.after("")),
        "state_counts": {k: n for k, n in ledger.state_counts.items() if n},
        "at_risk": (ledger.at_risk_count, sorted(ledger.positions_at_risk)),
        "sequence": ledger.sequence,
    }


class RandomClient:
    """Every kind of command, with ids that sometimes repeat and quantities that sometimes
    do not fit, so refusals, backorders, risk and expiry all happen."""

    def __init__(self, seed: int, leader: Ledger) -> None:
        self.rng = random.Random(seed)
        self.leader = leader
        self.count = 0
        self.reserved: list[str] = []
        self.holds: list[str] = []
        self.supplies: list[str] = []

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def command(self, today: tuple[int, int, int]) -> commands.Command:
        rng = self.rng
        kind = rng.choices(
            ["node", "stock", "safety", "supply", "receive", "hold", "release_hold", "reserve",
             "commit", "release", "fulfill", "reallocate"],
            weights=[1, 6, 1, 4, 2, 2, 2, 12, 4, 3, 3, 1])[0]
        sku, node = rng.choice(SKUS), rng.choice(NODES)
        if kind == "node":
            lanes = tuple(Lane(region, rng.randint(0, 3), rng.randint(0, 9)) for region in ("EU", "US"))
            return commands.UpsertNode(node, active=rng.random() > 0.2, lanes=lanes)
        if kind == "stock":
            movement = rng.choice(["RECEIPT", "SHRINKAGE", "CYCLE_COUNT", "TRANSFER"])
            to_node = rng.choice(NODES) if movement == "TRANSFER" else ""
            return commands.AdjustStock(self.fresh("q"), (
                commands.Movement(sku, node, movement, rng.randint(1, 25), to_node),))
        if kind == "safety":
            return commands.SetSafetyStock(sku, node, rng.randint(0, 3))
        if kind == "supply":
            supply_id = rng.choice(self.supplies) if self.supplies and rng.random() < 0.5 else (
                self.fresh("S"))
            self.supplies.append(supply_id)
            day = (today[0], today[1], min(28, today[2] + rng.randint(1, 5)))
            return commands.UpsertSupply(supply_id, sku, node, rng.randint(0, 10), day)
        if kind == "receive" and self.supplies:
            return commands.ReceiveSupply(self.fresh("q"), rng.choice(self.supplies), rng.randint(1, 4))
        if kind == "hold":
            hold_id = self.fresh("H")
            self.holds.append(hold_id)
            expire = NOW + rng.randint(10, 400) if rng.random() < 0.5 else None
            return commands.PlaceHold(hold_id, sku, node, rng.randint(1, 4), expire_time=expire,
                                      force=rng.random() < 0.5)
        if kind == "release_hold" and self.holds:
            active = sorted(self.leader.holds)  # mostly active ones; now and then any
            return commands.ReleaseHold(rng.choice(active if active and rng.random() < 0.8
                                                   else self.holds))
        if kind in ("commit", "release", "fulfill") and self.reserved:
            open_ids = sorted(self.leader.reservations)
            rid = rng.choice(open_ids if open_ids and rng.random() < 0.8 else self.reserved)
            if kind == "commit":
                return commands.Commit(rid, self.fresh("q"))
            if kind == "release":
                return commands.Release(rid, self.fresh("q"))
            return commands.Fulfill(rid, self.fresh("q"))
        if kind == "reallocate":
            return commands.Reallocate()
        return self.reserve()

    def reserve(self) -> commands.Reserve:
        rng = self.rng
        rid = self.fresh("R")
        self.reserved.append(rid)
        lines = tuple(
            commands.LineRequest(f"l{i}", rng.choice(SKUS), rng.randint(1, 6),
                                 rng.choice(NODES) if rng.random() < 0.6 else "")
            for i in range(rng.randint(1, 3))
        )
        policy = Policy(allow_partial=rng.random() < 0.5)
        return commands.Reserve(rid, lines, destination_region=rng.choice(["EU", "US"]),
                                policy=policy, ttl_seconds=rng.randint(30, 600),
                                commit=rng.random() < 0.3, priority=rng.randint(0, 150))


@pytest.mark.parametrize("seed", range(12))
def test_a_follower_applying_committed_batches_holds_the_leaders_live_state(seed: int) -> None:
    leader = Ledger(LedgerConfig(closed_retention_s=3600))
    follower = Ledger(LedgerConfig(closed_retention_s=3600))
    store = MemoryStore()
    client = RandomClient(seed, leader)
    for node in NODES:
        leader.execute(commands.UpsertNode(node, lanes=(Lane("EU", 1, 3), Lane("US", 2, 1))), NOW)
    now, refused, accepted = NOW, 0, set()
    for batch_number in range(60):
        for _ in range(client.rng.randint(1, 8)):
            now += client.rng.choice([0.0, 1.0, 30.0, 200.0])
            command = client.command((2026, 9, 10))
            outcome = leader.apply(command, now)
            refused += isinstance(outcome, Refused)
            if not isinstance(outcome, Refused):
                accepted.add(type(command).__name__)
            if client.rng.random() < 0.1:
                leader.apply(commands.ExpireDue(), now)
        changes = leader.take_changes()
        batch = encode_batch(changes)
        store.commit(batch)
        leader.forget_durable(changes)
        apply_batch(follower, batch)
        assert live_state(follower) == live_state(leader), f"batch {batch_number}"
        assert follower.check_invariants() == []
    rebuilt = ledger_from_records(store.load(), store.last_sequence(), None)
    assert live_state(rebuilt) == live_state(follower)
    assert 0 < refused < 60 * 8, "the run had both accepted and refused commands"
    assert {"Reserve", "Commit", "AdjustStock", "UpsertSupply"} <= accepted, accepted
    assert leader.expired_total > 0 or seed % 3, "expiry happened in most runs"
