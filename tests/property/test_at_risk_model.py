"""At-risk marks against a naive whole-ledger recomputation (docs/architecture.md), with hypothesis.

A RuleBasedStateMachine drives random commands over a small universe (3 nodes, 2 SKUs, small
quantities, so that shortages are frequent): receipts, shrinkage, cycle counts, holds
(forced or not) and their release or expiry, supply created / slipped / shrunk / cancelled /
received, reservations with priorities, ship dates, sourced lines and allow_partial, commit,
release, fulfill (whole or partial), node deactivation / reactivation, reallocation (with and
without a plan sequence), dry runs and the clock.

After every step the set of at-risk lines (reasons ignored) must equal what `naive_at_risk`
computes from the ledger's records alone -- the reservations, supply, holds, nodes and
on_hand -- by the rule of §4: for each position, sort its open lines by priority
descending, then creation order (then ids); walk them against day-by-day net supply (on_hand
today plus open inbound supply on its date, less active holds; safety stock does not count);
a line fits when the lowest net on every day from its ship date on covers its open units,
and then consumes them from that day on; a line that does not fit is at risk. Every open line
at an inactive node is at risk. And check_invariants() must stay empty.

The clock moves within one calendar day here (expiries of holds and reservations); a day
rollover is exercised by a separate, explicit test at the end.
"""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from atp.ledger import Ledger, LedgerConfig, day_of
from atp.ledger import commands
from atp.ledger.errors import LedgerError
from atp.ledger.model import Lane, Policy, ReservationState, SupplyState
from atp.ledger.reallocation import Scope

SKUS = ("A", "B")
NODES = {
    # node_id -> (handling_days, lanes)
    "N1": (0, (Lane("EU", 1, 3),)),
    "N2": (0, (Lane("EU", 2, 1),)),
    "N3": (1, (Lane("EU", 1, 2), Lane("US", 3, 1))),
}
# Windows far longer than any run: the reference model keeps every reservation and request
# id for good (the windows have unit tests of their own).
FOREVER_S = 100 * 365 * 86400.0
CONFIG = LedgerConfig(default_ttl_seconds=1800, safety_stock_priority_min=100,
                      closed_retention_s=FOREVER_S, idempotency_window_s=FOREVER_S)
# 2025-06-10 08:00 UTC: 16 hours of clock to spend before midnight.
START = datetime.datetime(2025, 6, 10, 8, tzinfo=datetime.UTC).timestamp()
END_OF_DAY = START + 16 * 3600 - 1

skus = st.sampled_from(SKUS)
nodes = st.sampled_from(sorted(NODES))
priorities = st.sampled_from([0, 0, 1, 5, 100])

LineKey = tuple[str, str]


def date_of(day: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(day)
    return (value.year, value.month, value.day)


def naive_at_risk(ledger: Ledger, today: int, created: dict[str, int]) -> set[LineKey]:
    """Which open lines are at risk, recomputed from scratch over the whole ledger."""
    lines: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for reservation in ledger.known_reservations().values():
        if reservation.state not in (ReservationState.HELD, ReservationState.COMMITTED):
            continue
        for line in reservation.lines:
            open_units = line.quantity - line.fulfilled_quantity - line.released_quantity
            if open_units > 0 and line.node_id:
                order = (-reservation.priority, created[reservation.reservation_id],
                         reservation.reservation_id, line.line_id)
                lines.setdefault((line.sku, line.node_id), []).append(
                    (order, (reservation.reservation_id, line.line_id), max(line.ship_day, today),
                     open_units))
    supply: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for item in ledger.supplies.values():
        if item.state is SupplyState.OPEN and item.quantity:
            supply.setdefault((item.sku, item.node_id), []).append(
                (max(item.expected_day, today), item.quantity))
    held: dict[tuple[str, str], int] = {}
    for hold in ledger.holds.values():
        if hold.active:
            held[(hold.sku, hold.node_id)] = held.get((hold.sku, hold.node_id), 0) + hold.quantity

    at_risk: set[LineKey] = set()
    for (sku, node_id), demand in lines.items():
        if not ledger.nodes[node_id].active:
            at_risk.update(key for _, key, _, _ in demand)
            continue
        inbound = supply.get((sku, node_id), [])
        days = sorted({today, *(day for day, _ in inbound), *(day for _, _, day, _ in demand)})
        base = ledger.positions[(sku, node_id)].on_hand - held.get((sku, node_id), 0)
        net = {day: base + sum(q for arrival, q in inbound if arrival <= day) for day in days}
        for _, key, ship_day, units in sorted(demand):
            later = [day for day in days if day >= ship_day]
            if min(net[day] for day in later) >= units:
                for day in later:
                    net[day] -= units
            else:
                at_risk.add(key)
    return at_risk


def marked_at_risk(ledger: Ledger) -> set[LineKey]:
    return {
        (reservation.reservation_id, line.line_id)
        for reservation in ledger.known_reservations().values()
        for line in reservation.lines
        if line.at_risk
    }


def snapshot(ledger: Ledger) -> Any:
    return (
        {key: (p.on_hand, p.allocated, p.reserved, p.held, p.inbound, tuple(sorted(p.deltas.items())),
               tuple(sorted(p.lines)), tuple(sorted(p.at_risk)))
         for key, p in ledger.positions.items()},
        {key: repr(r) for key, r in ledger.known_reservations().items()},
        ledger.sequence,
        ledger.at_risk_count,
    )


class AtRiskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(CONFIG)
        self.now = START
        self.counter = 0
        self.created: dict[str, int] = {}  # reservation id -> creation order

    # ----- plumbing -------------------------------------------------------------------------

    @property
    def today(self) -> int:
        return day_of(self.now)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def run(self, command: Any) -> Any:
        """Executes a command (a refusal is fine and must leave no changes behind)."""
        try:
            result = self.ledger.execute(command, self.now)
        except LedgerError as error:
            assert not self.ledger.has_changes, f"refused {command!r} left changes behind"
            return error
        self.ledger.take_changes()
        return result

    def pick(self, data: st.DataObject, items: Any, label: str) -> Any:
        return data.draw(st.sampled_from(sorted(items)), label=label)

    # ----- setup ----------------------------------------------------------------------------

    @initialize(stock=st.lists(st.integers(0, 10), min_size=len(SKUS) * len(NODES),
                               max_size=len(SKUS) * len(NODES)))
    def setup(self, stock: list[int]) -> None:
        for node_id, (handling, lanes) in NODES.items():
            self.run(commands.UpsertNode(node_id, handling_days=handling, lanes=lanes))
        positions = [(sku, node) for sku in SKUS for node in sorted(NODES)]
        movements = tuple(
            commands.Movement(sku, node, "CYCLE_COUNT", units) for (sku, node), units in zip(positions, stock)
        )
        assert not isinstance(self.run(commands.AdjustStock(self.fresh("q"), movements)), LedgerError)

    # ----- stock ----------------------------------------------------------------------------

    @rule(sku=skus, node=nodes, kind=st.sampled_from(["RECEIPT", "RETURN", "SHRINKAGE", "DAMAGE"]),
          quantity=st.integers(1, 6))
    def move_stock(self, sku: str, node: str, kind: str, quantity: int) -> None:
        self.run(commands.AdjustStock(self.fresh("q"), (commands.Movement(sku, node, kind, quantity),)))

    @rule(sku=skus, node=nodes, quantity=st.integers(0, 10))
    def cycle_count(self, sku: str, node: str, quantity: int) -> None:
        self.run(commands.AdjustStock(self.fresh("q"), (commands.Movement(sku, node, "CYCLE_COUNT", quantity),)))

    @precondition(lambda self: any(p.on_hand for p in self.ledger.positions.values()))
    @rule(data=st.data())
    def count_finds_less(self, data: st.DataObject) -> None:
        """A cycle count below on_hand: the usual way a position goes short."""
        stocked = [key for key, p in self.ledger.positions.items() if p.on_hand]
        sku, node = self.pick(data, stocked, "position")
        found = data.draw(st.integers(0, self.ledger.positions[(sku, node)].on_hand - 1), label="found")
        self.cycle_count(sku, node, found)

    @rule(sku=skus, node=nodes, quantity=st.integers(0, 3))
    def safety_stock(self, sku: str, node: str, quantity: int) -> None:
        self.run(commands.SetSafetyStock(sku, node, quantity))

    @rule(sku=skus, node=nodes, quantity=st.integers(1, 5), force=st.booleans(),
          expires_in=st.sampled_from([None, 600, 3600]))
    def place_hold(self, sku: str, node: str, quantity: int, force: bool, expires_in: int | None) -> None:
        expire = self.now + expires_in if expires_in else None
        self.run(commands.PlaceHold(self.fresh("h"), sku, node, quantity, "model", expire, force))

    @precondition(lambda self: any(h.active for h in self.ledger.holds.values()))
    @rule(data=st.data())
    def release_hold(self, data: st.DataObject) -> None:
        active = [hold_id for hold_id, hold in self.ledger.holds.items() if hold.active]
        self.run(commands.ReleaseHold(self.pick(data, active, "hold")))

    # ----- supply ---------------------------------------------------------------------------

    @rule(sku=skus, node=nodes, quantity=st.integers(1, 8), offset=st.integers(0, 6))
    def create_supply(self, sku: str, node: str, quantity: int, offset: int) -> None:
        self.run(commands.UpsertSupply(self.fresh("s"), sku, node, quantity, date_of(self.today + offset)))

    @precondition(lambda self: bool(self.ledger.supplies))
    @rule(data=st.data(), change=st.sampled_from(["slip", "earlier", "shrink", "grow", "cancel"]),
          amount=st.integers(1, 4))
    def update_supply(self, data: st.DataObject, change: str, amount: int) -> None:
        supply = self.ledger.supplies[self.pick(data, self.ledger.supplies, "supply")]
        quantity, day = supply.quantity, supply.expected_day
        if change == "slip":
            day += amount
        elif change == "earlier":
            day = max(self.today, day - amount)
        elif change == "shrink":
            quantity = max(0, quantity - amount)
        elif change == "grow":
            quantity += amount
        else:
            quantity = 0
        self.run(commands.UpsertSupply(supply.supply_id, "", "", quantity, date_of(day)))

    @precondition(lambda self: any(s.quantity for s in self.ledger.supplies.values()))
    @rule(data=st.data(), quantity=st.integers(1, 8))
    def receive_supply(self, data: st.DataObject, quantity: int) -> None:
        open_ids = [sid for sid, s in self.ledger.supplies.items() if s.quantity]
        supply = self.ledger.supplies[self.pick(data, open_ids, "supply")]
        self.run(commands.ReceiveSupply(self.fresh("r"), supply.supply_id, min(quantity, supply.quantity)))

    # ----- reservations ---------------------------------------------------------------------

    @rule(
        lines=st.lists(
            st.tuples(skus, st.one_of(st.none(), nodes), st.integers(1, 6),
                      st.one_of(st.none(), st.integers(0, 5))),
            min_size=1, max_size=2,
        ),
        priority=priorities,
        allow_partial=st.booleans(),
        commit=st.booleans(),
        ttl=st.sampled_from([0, 600, 5400]),
        region=st.sampled_from(["EU", "EU", "US", ""]),
    )
    def reserve(self, lines: list[tuple[str, str | None, int, int | None]], priority: int,
                allow_partial: bool, commit: bool, ttl: int, region: str) -> None:
        requests = []
        if not region and any(node is None for _, node, _, _ in lines):
            region = "EU"  # lines without a node need a destination to be sourced
        for index, (sku, node, quantity, ship_in) in enumerate(lines, start=1):
            ship = None
            if node is not None and ship_in is not None:
                ship = date_of(self.today + NODES[node][0] + ship_in)
            requests.append(commands.LineRequest(f"l{index}", sku, quantity, node or "", ship))
        reservation_id = self.fresh("o")
        outcome = self.run(commands.Reserve(
            reservation_id, tuple(requests), destination_region=region,
            policy=Policy(allow_partial=allow_partial), ttl_seconds=ttl, commit=commit,
            priority=priority,
        ))
        event(f"reserve: {type(outcome).__name__}")
        if not isinstance(outcome, LedgerError):
            self.created[reservation_id] = len(self.created)

    @rule(sku=skus, node=nodes, quantity=st.integers(1, 5), ship_in=st.one_of(st.none(), st.integers(0, 4)),
          priority=priorities, allow_partial=st.booleans(), commit=st.booleans())
    def reserve_at_node(self, sku: str, node: str, quantity: int, ship_in: int | None,
                        priority: int, allow_partial: bool, commit: bool) -> None:
        self.reserve([(sku, node, quantity, ship_in)], priority, allow_partial, commit, 0, "")

    @rule(sku=skus, quantity=st.integers(1, 5), priority=priorities, allow_partial=st.booleans(),
          commit=st.booleans())
    def reserve_sourced(self, sku: str, quantity: int, priority: int, allow_partial: bool,
                        commit: bool) -> None:
        self.reserve([(sku, None, quantity, None)], priority, allow_partial, commit, 0, "EU")

    def open_reservations(self, *states: ReservationState) -> list[str]:
        wanted = states or (ReservationState.HELD, ReservationState.COMMITTED)
        return [rid for rid, r in self.ledger.known_reservations().items() if r.state in wanted]

    @precondition(lambda self: bool(self.open_reservations(ReservationState.HELD)))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        reservation_id = self.pick(data, self.open_reservations(ReservationState.HELD), "held")
        self.run(commands.Commit(reservation_id, self.fresh("c")))

    def line_quantities(self, data: st.DataObject, reservation_id: str) -> tuple[commands.LineQuantity, ...]:
        """Every open unit (empty), or some units of one open line."""
        reservation = self.ledger.reservation(reservation_id)
        open_lines = [line for line in reservation.lines if line.open_quantity]
        if not open_lines or data.draw(st.booleans(), label="whole"):
            return ()
        line = data.draw(st.sampled_from(open_lines), label="line")
        units = data.draw(st.integers(1, line.open_quantity), label="units")
        return (commands.LineQuantity(line.line_id, units),)

    @precondition(lambda self: bool(self.open_reservations()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        reservation_id = self.pick(data, self.open_reservations(), "open")
        self.run(commands.Release(reservation_id, self.fresh("x"), self.line_quantities(data, reservation_id)))

    @precondition(lambda self: bool(self.open_reservations(ReservationState.COMMITTED)))
    @rule(data=st.data())
    def fulfill(self, data: st.DataObject) -> None:
        reservation_id = self.pick(data, self.open_reservations(ReservationState.COMMITTED), "firm")
        self.run(commands.Fulfill(reservation_id, self.fresh("f"), self.line_quantities(data, reservation_id)))

    # ----- nodes, reallocation, clock -------------------------------------------------------

    @rule(node=nodes, active=st.booleans())
    def set_node_active(self, node: str, active: bool) -> None:
        handling, lanes = NODES[node]
        self.run(commands.UpsertNode(node, handling_days=handling, lanes=lanes, active=active))

    def scope(self, data: st.DataObject) -> Scope:
        kind = data.draw(st.sampled_from(["all", "node", "sku", "both", "ids"]), label="scope")
        if kind == "ids" and self.ledger.reservations:
            chosen = data.draw(st.lists(st.sampled_from(sorted(self.ledger.reservations)),
                                        min_size=1, max_size=3, unique=True), label="ids")
            return Scope(reservation_ids=tuple(chosen))
        node = data.draw(nodes, label="node") if kind in ("node", "both") else ""
        sku = data.draw(skus, label="sku") if kind in ("sku", "both") else ""
        return Scope(node, sku)

    @rule(data=st.data(), planned=st.sampled_from(["fresh", "current", "stale"]))
    def reallocate(self, data: st.DataObject, planned: str) -> None:
        scope = self.scope(data)
        sequence = {"fresh": 0, "current": self.ledger.sequence,
                    "stale": max(1, self.ledger.sequence - 1)}[planned]
        outcome = self.run(commands.Reallocate(scope.node_id, scope.sku, scope.reservation_ids, sequence))
        event(f"reallocate: {'refused' if isinstance(outcome, LedgerError) else len(outcome.plans)}")
        if planned == "stale" and sequence != self.ledger.sequence:
            assert isinstance(outcome, LedgerError) and outcome.reason == "PLAN_STALE"

    @rule(data=st.data())
    def dry_run_changes_nothing(self, data: st.DataObject) -> None:
        scope = self.scope(data)
        before = snapshot(self.ledger)
        try:
            result = self.ledger.plan_reallocation(scope, self.now)
        except LedgerError:
            result = None
        assert snapshot(self.ledger) == before
        assert not self.ledger.has_changes
        if result is not None:
            assert result.plan_sequence == self.ledger.sequence and not result.applied

    @precondition(lambda self: self.now < END_OF_DAY)
    @rule(seconds=st.sampled_from([60, 600, 1800, 3600]))
    def advance_clock(self, seconds: int) -> None:
        """Time passes (within the day); the writer expires what fell due before anything else."""
        self.now = min(END_OF_DAY, self.now + seconds)
        self.run(commands.ExpireDue())

    # ----- the property ---------------------------------------------------------------------

    @invariant()
    def at_risk_marks_match_a_naive_recomputation(self) -> None:
        ledger = self.ledger
        expected = naive_at_risk(ledger, self.today, self.created)
        event(f"lines at risk: {min(len(expected), 3)}{'+' if len(expected) >= 3 else ''}")
        assert marked_at_risk(ledger) == expected
        indexed = {key for position in ledger.positions.values() for key in position.at_risk}
        assert indexed == expected
        assert ledger.at_risk_count == len(expected)
        assert ledger.check_invariants() == []


TestAtRiskModel = AtRiskMachine.TestCase
TestAtRiskModel.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ----- explicit cases the machine found or that it does not reach -------------------------------


def _ledger() -> Ledger:
    ledger = Ledger(CONFIG)
    for node_id, (handling, lanes) in NODES.items():
        ledger.execute(commands.UpsertNode(node_id, handling_days=handling, lanes=lanes), START)
    return ledger


def test_naive_model_agrees_on_a_hand_computed_case() -> None:
    """A sanity check of the model itself: the §4 example of the unit tests."""
    ledger = _ledger()
    ledger.execute(commands.AdjustStock("q1", (commands.Movement("A", "N1", "RECEIPT", 10),)), START)
    created = {}
    for index, (rid, quantity, priority) in enumerate(
        [("old", 3, 0), ("mid", 4, 0), ("new", 2, 0), ("vip", 1, 10)]
    ):
        ledger.execute(commands.Reserve(rid, (commands.LineRequest("l1", "A", quantity, "N1"),),
                                 priority=priority), START)
        created[rid] = index
    ledger.execute(commands.AdjustStock("q2", (commands.Movement("A", "N1", "SHRINKAGE", 3),)), START)
    assert naive_at_risk(ledger, day_of(START), created) == {("mid", "l1")}
    assert marked_at_risk(ledger) == {("mid", "l1")}


def test_day_rollover_alone_re_examines_at_risk_marks() -> None:
    ledger = _ledger()
    today = day_of(START)
    ledger.execute(commands.AdjustStock("q1", (commands.Movement("A", "N1", "CYCLE_COUNT", 0),)), START)
    ledger.execute(commands.UpsertSupply("s1", "A", "N1", 5, date_of(today)), START)
    ledger.execute(commands.Reserve("hi", (commands.LineRequest("l1", "A", 5, "N1"),), priority=5, commit=True),
                   START)
    ledger.execute(commands.UpsertSupply("s1", "A", "N1", 5, date_of(today + 1)), START)  # slips a day
    ledger.execute(commands.UpsertSupply("s2", "A", "N1", 5, date_of(today + 1)), START)
    ledger.execute(commands.Reserve("lo", (commands.LineRequest("l1", "A", 5, "N1", date_of(today + 1)),),
                             commit=True), START)
    ledger.execute(commands.UpsertSupply("s2", "A", "N1", 2, date_of(today + 1)), START)  # 7 due tomorrow
    created = {"hi": 0, "lo": 1}
    # Today: hi needs 5 today and nothing is there (at risk); lo fits on tomorrow's 7.
    assert marked_at_risk(ledger) == naive_at_risk(ledger, today, created) == {("hi", "l1")}
    # Tomorrow the 7 units count today: hi (priority 5) fits and takes 5; lo no longer fits.
    tomorrow = START + 86400
    ledger.execute(commands.ExpireDue(), tomorrow)  # what the server's clock does; nothing is due
    assert naive_at_risk(ledger, today + 1, created) == {("lo", "l1")}
    assert marked_at_risk(ledger) == {("lo", "l1")}
