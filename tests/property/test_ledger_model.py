"""The ledger against a plain-dict reference model, with restarts through LMDB (hypothesis).

A RuleBasedStateMachine drives random commands over a small universe (3 nodes, 3 SKUs,
small quantities, so that conflicts happen) and checks after every step that the ledger
agrees with tests/property/reference.py, whose ATP is the naive formula of docs/contract.md.
Every change the ledger reports is committed to an LmdbStore as the writer would; the
`restart` rule closes the store, reopens it and continues with `ledger_from_records`.

On failure hypothesis prints the shrunk steps and a `@reproduce_failure(...)` blob
(print_blob=True); `pytest --hypothesis-seed=N` replays a whole run.
"""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from atp.ledger import Ledger, LedgerConfig, day_of, timeline
from atp.ledger import commands
from atp.ledger.errors import (
    AlreadyExists,
    FailedPrecondition,
    InsufficientAvailability,
    InsufficientOnHand,
    InvalidArgument,
    LedgerError,
    NotFound,
)
from atp.ledger.model import Position
from atp.persistence import codec, encode_batch, ledger_from_records
from atp.persistence.archive import StoreArchive
from atp.store import LmdbStore
from tests.property.reference import (
    COMMITTED,
    EXPIRED,
    FULFILLED,
    HELD,
    OPEN_STATES,
    RELEASED,
    Model,
    ModelHold,
    ModelLine,
    ModelPosition,
    ModelReservation,
    ModelSupply,
    date_of,
    day_of_instant,
    ordinal,
)

SKUS = ("A", "B", "C")
NODES = ("N1", "N2", "N3")
# Windows far longer than any run: the reference model keeps every reservation and request
# id for good (the windows have unit tests of their own).
FOREVER_S = 100 * 365 * 86400.0
CONFIG = LedgerConfig(default_ttl_seconds=1800, safety_stock_priority_min=100,
                      closed_retention_s=FOREVER_S, idempotency_window_s=FOREVER_S)
# 2024-03-01 10:00 UTC: a fixed start keeps failures reproducible.
START = datetime.datetime(2024, 3, 1, 10, tzinfo=datetime.UTC).timestamp()
MAP_SIZE = 32 << 20

Expected = tuple[type[LedgerError], str | None] | None  # None: the command must be accepted


skus = st.sampled_from(SKUS)
nodes = st.sampled_from(NODES)


def observe(ledger: Ledger, store: LmdbStore | None = None) -> dict[str, Any]:
    """Everything observable about a ledger, by value (with its store: what it archived)."""
    return {
        "nodes": {key: repr(node) for key, node in ledger.nodes.items()},
        "positions": {
            key: (
                p.on_hand, p.allocated, p.reserved, p.held, p.safety_stock, p.inbound,
                tuple(sorted(p.deltas.items())), frozenset(p.lines),
            )
            for key, p in ledger.positions.items()
        },
        "positions_by_sku": {sku: tuple(sorted(by_node)) for sku, by_node in ledger.positions_by_sku.items()},
        "reservations": {key: repr(r) for key, r in ledger.known_reservations().items()},
        "archived": archived(store) if store is not None else None,
        "holds": {key: repr(h) for key, h in ledger.holds.items()},
        "supplies": {key: repr(s) for key, s in ledger.supplies.items()},
        "requests": {key: repr(r) for key, r in ledger.requests.items()},
        "expiries": tuple(ledger.expiries),
        "sequence": ledger.sequence,
        # Counters and indexes kept beside the records (absent in older ledgers).
        "at_risk_count": getattr(ledger, "at_risk_count", None),
        "state_counts": {k: v for k, v in getattr(ledger, "state_counts", {}).items() if v},
        "backorders": repr(getattr(ledger, "backorders", None)),
    }


def archived(store: LmdbStore) -> dict[str, Any]:
    """The closed reservations and idempotency records the store holds (the ledger reads
    them from there once durable)."""
    return {
        database: {key: codec.decode_record(database, data)
                   for key, data in store.scan(database, b"", 1_000_000)}
        for database in ("closed", "requests", "ended_holds")
    }


def check_outcome(outcome: Any, expected: Expected, command: Any) -> None:
    if expected is None:
        assert not isinstance(outcome, LedgerError), (
            f"model expected {command!r} to be accepted; the ledger refused it: {outcome!r}"
        )
        return
    error_type, reason = expected
    assert isinstance(outcome, LedgerError), (
        f"model expected {command!r} to be refused with {error_type.__name__}; the ledger accepted"
    )
    assert isinstance(outcome, error_type), (
        f"{command!r}: expected {error_type.__name__}, got {type(outcome).__name__}: {outcome}"
    )
    if reason is not None:
        assert outcome.reason == reason, f"{command!r}: reason {outcome.reason}, expected {reason}"


def wrong_state(state: str) -> Expected:
    return (FailedPrecondition, "RESERVATION_EXPIRED" if state == EXPIRED else "INVALID_STATE")


class LedgerMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")
    supplies = Bundle("supplies")
    holds = Bundle("holds")
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="atp-model-")
        self.store = LmdbStore(self.directory, map_size=MAP_SIZE, sync=False)
        self.ledger = Ledger(CONFIG)
        self.ledger.archive = StoreArchive(self.store)
        self.model = Model()
        self.now = START
        self.counter = 0
        self.restarts = 0
        # reservation id -> (its content without the version, its version) when last checked
        self.versions_seen: dict[str, tuple[str, int]] = {}
        # reservation id -> (delivered day, units, damaged, documentation right) last recorded
        self.deliveries: dict[str, tuple[int, int, int, bool]] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ----- plumbing -------------------------------------------------------------------------

    @property
    def today(self) -> int:
        return day_of_instant(self.now)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def run(self, command: Any) -> tuple[Any, bool]:
        """Executes on the ledger; a refusal must change nothing. Returns (outcome, changed)."""
        assert not self.ledger.has_changes
        before = observe(self.ledger)
        try:
            result = self.ledger.execute(command, self.now)
        except LedgerError as error:
            assert observe(self.ledger) == before, f"refused {command!r} changed the ledger"
            leftover = self.ledger.take_changes()
            assert not leftover, f"refused {command!r} left changes behind: {leftover}"
            return error, False
        changes = self.ledger.take_changes()
        if changes:
            self.store.commit(encode_batch(changes))
            self.ledger.forget_durable(changes)  # as the writer does once a batch is durable
        return result, observe(self.ledger) != before or bool(changes)

    def run_expecting(self, command: Any, expected: Expected) -> Any:
        outcome, _ = self.run(command)
        event(f"{type(command).__name__}: "
              f"{'accepted' if expected is None else expected[0].__name__}")
        check_outcome(outcome, expected, command)
        return outcome

    def run_replay(self, command: Any) -> None:
        """A replay of an accepted request: accepted, and nothing changes at all."""
        outcome, changed = self.run(command)
        check_outcome(outcome, None, command)
        assert not changed, f"replaying {command!r} changed the ledger"

    def include_safety(self, priority: int) -> bool:
        return priority >= 100

    # ----- setup ----------------------------------------------------------------------------

    @initialize(
        handling=st.tuples(*(st.integers(0, 2) for _ in NODES)),
        stock=st.lists(
            st.tuples(skus, nodes, st.integers(0, 12)), min_size=1, max_size=6,
            unique_by=lambda item: item[:2],
        ),
    )
    def create_nodes_and_stock(
        self, handling: tuple[int, ...], stock: list[tuple[str, str, int]]
    ) -> None:
        for node_id, days in zip(NODES, handling):
            self.run_expecting(commands.UpsertNode(node_id, "DC", "EU", True, days), None)
            self.model.nodes[node_id] = (days, True)
        # A cycle count creates the position even when it counts nothing.
        command = commands.AdjustStock(
            self.fresh("Q"),
            tuple(commands.Movement(sku, node_id, "CYCLE_COUNT", units) for sku, node_id, units in stock),
        )
        self.run_expecting(command, None)
        for sku, node_id, units in stock:
            self.model.positions[(sku, node_id)] = ModelPosition(on_hand=units)
        self.model.requests[command.request_id] = command

    @rule(node_id=nodes, handling=st.integers(0, 2), active=st.sampled_from([True, True, False]))
    def upsert_node(self, node_id: str, handling: int, active: bool) -> None:
        self.run_expecting(commands.UpsertNode(node_id, "DC", "EU", active, handling), None)
        self.model.nodes[node_id] = (handling, active)

    # ----- stock movements ------------------------------------------------------------------

    @rule(
        target=requests,
        movements=st.lists(
            st.tuples(
                st.sampled_from(
                    ["RECEIPT", "RETURN", "SHRINKAGE", "DAMAGE", "CYCLE_COUNT", "TRANSFER"]
                ),
                skus, nodes, st.integers(0, 8), nodes,
            ),
            min_size=1, max_size=3,
        ),
    )
    def adjust_stock(self, movements: list[tuple[str, str, str, int, str]]) -> Any:
        built = tuple(
            commands.Movement(
                sku, node_id, kind,
                quantity if kind == "CYCLE_COUNT" else max(1, quantity),
                to_node_id=to_node if kind == "TRANSFER" else "",
                reason="model",
            )
            for kind, sku, node_id, quantity, to_node in movements
        )
        command = commands.AdjustStock(self.fresh("Q"), built)
        expected, after = self.expect_movements(built)
        self.run_expecting(command, expected)
        if expected is not None:
            return multiple()
        self.model.positions = after
        self.model.requests[command.request_id] = command
        return command.request_id

    @precondition(lambda self: bool(self.model.positions))
    @rule(target=requests, data=st.data(), to_node=nodes, quantity=st.integers(1, 8))
    def transfer(self, data: st.DataObject, to_node: str, quantity: int) -> Any:
        """A TRANSFER out of an existing position (moves only units available there)."""
        sku, node_id = data.draw(st.sampled_from(sorted(self.model.positions)), label="source")
        if node_id == to_node:
            return multiple()
        return self.adjust_stock([("TRANSFER", sku, node_id, quantity, to_node)])

    def expect_movements(
        self, movements: tuple[commands.Movement, ...]
    ) -> tuple[Expected, dict[Any, ModelPosition]]:
        """Applies the movements in order to a copy of the positions (all or nothing)."""
        model = self.model
        if any(m.type == "TRANSFER" and m.to_node_id == m.node_id for m in movements):
            return (InvalidArgument, None), model.positions
        after = {key: dataclasses.replace(p) for key, p in model.positions.items()}
        for m in movements:
            key = (m.sku, m.node_id)
            if m.type not in ("RECEIPT", "RETURN", "CYCLE_COUNT") and m.sku not in {
                sku for sku, _ in after
            }:
                return (NotFound, None), model.positions
            position = after.setdefault(key, ModelPosition())
            if m.type in ("RECEIPT", "RETURN"):
                position.on_hand += m.quantity
            elif m.type in ("SHRINKAGE", "DAMAGE"):
                if m.quantity > position.on_hand:
                    return (InsufficientOnHand, "INSUFFICIENT_ON_HAND"), model.positions
                position.on_hand -= m.quantity
            elif m.type == "CYCLE_COUNT":
                position.on_hand = m.quantity
            else:
                # Only units physically there that nothing needs may move: ATP(today) with
                # safety stock kept and without supply that is due but not received.
                due = sum(
                    supply.quantity for supply in model.open_supply(key) if supply.day <= self.today
                )
                stock_only = model.atp(key, self.today, self.today, False, position.on_hand) - due
                if m.quantity > max(0, min(position.on_hand, stock_only)):
                    return (InsufficientAvailability, None), model.positions
                position.on_hand -= m.quantity
                after.setdefault((m.sku, m.to_node_id), ModelPosition()).on_hand += m.quantity
        return None, after

    @rule(sku=skus, node_id=nodes, quantity=st.integers(0, 3))
    def set_safety_stock(self, sku: str, node_id: str, quantity: int) -> None:
        self.run_expecting(commands.SetSafetyStock(sku, node_id, quantity), None)
        self.model.positions.setdefault((sku, node_id), ModelPosition()).safety_stock = quantity

    # ----- supply ---------------------------------------------------------------------------

    @rule(target=supplies, sku=skus, node_id=nodes, quantity=st.integers(0, 6),
          offset=st.integers(-1, 5))
    def create_supply(self, sku: str, node_id: str, quantity: int, offset: int) -> str:
        command = commands.UpsertSupply(self.fresh("S"), sku, node_id, quantity, date_of(self.today + offset))
        self.run_expecting(command, None)
        self.model.positions.setdefault((sku, node_id), ModelPosition())
        self.model.supplies[command.supply_id] = ModelSupply(
            sku, node_id, quantity, self.today + offset, state="OPEN" if quantity else "CANCELLED"
        )
        return command.supply_id

    @rule(supply_id=supplies, quantity=st.integers(0, 6), offset=st.integers(-1, 5),
          identity=st.sampled_from(["same", "empty", "other"]))
    def update_supply(self, supply_id: str, quantity: int, offset: int, identity: str) -> None:
        supply = self.model.supplies[supply_id]
        sku = {"same": supply.sku, "empty": "", "other": supply.sku + "X"}[identity]
        day = self.today + offset
        command = commands.UpsertSupply(supply_id, sku, "", quantity, date_of(day))
        if identity == "other":
            self.run_expecting(command, (InvalidArgument, None))
            return
        unchanged = supply.quantity == quantity and supply.day == day
        if supply.state == "RECEIVED" and not unchanged:  # received in full: takes no change
            self.run_expecting(command, (FailedPrecondition, "INVALID_STATE"))
            return
        outcome, changed = self.run(command)
        check_outcome(outcome, None, command)
        if unchanged:
            assert not changed, "an upsert that changes nothing must record nothing"
            return
        supply.quantity, supply.day = quantity, day
        supply.state = "OPEN" if quantity else "CANCELLED"

    @rule(target=requests, supply_id=supplies, quantity=st.integers(1, 7))
    def receive_supply(self, supply_id: str, quantity: int) -> Any:
        supply = self.model.supplies[supply_id]
        command = commands.ReceiveSupply(self.fresh("Q"), supply_id, quantity)
        if quantity > supply.quantity:
            self.run_expecting(command, (FailedPrecondition, "QUANTITY_EXCEEDS_OPEN"))
            return multiple()
        self.run_expecting(command, None)
        supply.quantity -= quantity
        supply.received += quantity
        supply.state = "OPEN" if supply.quantity else "RECEIVED"
        self.model.positions[(supply.sku, supply.node_id)].on_hand += quantity
        self.model.requests[command.request_id] = command
        return command.request_id

    # ----- holds ----------------------------------------------------------------------------

    @rule(target=holds, sku=skus, node_id=nodes, quantity=st.integers(1, 5), force=st.booleans(),
          expire_in=st.sampled_from([None, None, 30, 600, 7200]))
    def place_hold(self, sku: str, node_id: str, quantity: int, force: bool,
                   expire_in: int | None) -> Any:
        expire_time = None if expire_in is None else self.now + expire_in
        command = commands.PlaceHold(self.fresh("H"), sku, node_id, quantity, "qa", expire_time, force)
        key = (sku, node_id)
        if sku not in self.model.known_skus():
            expected: Expected = (NotFound, None)
        elif not force and quantity > max(0, self.model.atp(key, self.today, self.today, False)):
            expected = (InsufficientAvailability, None)
        else:
            expected = None
        self.run_expecting(command, expected)
        if expected is not None:
            return multiple()
        self.model.positions.setdefault(key, ModelPosition())
        self.model.holds[command.hold_id] = ModelHold(command)
        return command.hold_id

    @rule(hold_id=holds)
    def release_hold(self, hold_id: str) -> None:
        hold = self.model.holds[hold_id]
        outcome, changed = self.run(commands.ReleaseHold(hold_id))
        check_outcome(outcome, None, "ReleaseHold")
        assert changed == hold.active, "releasing an inactive hold must change nothing"
        hold.active = False

    @rule(hold_id=holds, same=st.booleans())
    def replay_hold(self, hold_id: str, same: bool) -> None:
        """Same hold id: the same request is answered (even once expired), another refused."""
        command = self.model.holds[hold_id].command
        if same:
            self.run_replay(command)
            return
        command = dataclasses.replace(command, quantity=command.quantity + 1)
        if command.expire_time is not None and command.expire_time <= self.now:
            self.run_expecting(command, (InvalidArgument, None))
        else:
            self.run_expecting(command, (AlreadyExists, None))

    # ----- reservations ---------------------------------------------------------------------

    @rule(
        target=reservations,
        lines=st.lists(
            st.tuples(skus, nodes, st.integers(1, 6), st.none() | st.integers(0, 4)),
            min_size=1, max_size=3,
        ),
        commit=st.booleans(),
        priority=st.sampled_from([0, 100]),
        ttl_seconds=st.sampled_from([0, 60, 3600]),
    )
    def reserve(self, lines: list[tuple[str, str, int, int | None]], commit: bool, priority: int,
                ttl_seconds: int) -> Any:
        return self.try_reserve(lines, commit, priority, ttl_seconds)

    @precondition(lambda self: any(p.on_hand for p in self.model.positions.values()))
    @rule(
        target=reservations,
        data=st.data(),
        commit=st.booleans(),
        priority=st.sampled_from([0, 100]),
        ttl_seconds=st.sampled_from([0, 60, 3600]),
    )
    def reserve_stocked(self, data: st.DataObject, commit: bool, priority: int,
                        ttl_seconds: int) -> Any:
        """Lines at positions that have stock, so that most of these reservations fit."""
        stocked = sorted(key for key, p in self.model.positions.items() if p.on_hand)
        lines = data.draw(
            st.lists(
                st.tuples(st.sampled_from(stocked), st.integers(1, 4), st.none() | st.integers(0, 3)),
                min_size=1, max_size=3,
            ),
            label="lines",
        )
        return self.try_reserve(
            [(sku, node_id, quantity, offset) for (sku, node_id), quantity, offset in lines],
            commit, priority, ttl_seconds,
        )

    @precondition(
        lambda self: any(r.state in OPEN_STATES for r in self.model.reservations.values())
    )
    @rule(target=requests, data=st.data(), action=st.sampled_from(["commit", "release", "fulfill"]))
    def progress_open_reservation(self, data: st.DataObject, action: str) -> Any:
        """Commit, release or fulfill a reservation that is still open."""
        open_ids = sorted(
            key for key, r in self.model.reservations.items() if r.state in OPEN_STATES
        )
        reservation_id = data.draw(st.sampled_from(open_ids), label="reservation")
        if action == "commit":
            return self.commit(reservation_id)
        if action == "release":
            return self.release(reservation_id, data)
        return self.fulfill(reservation_id, data)

    def try_reserve(self, lines: list[tuple[str, str, int, int | None]], commit: bool,
                    priority: int, ttl_seconds: int) -> Any:
        command = commands.Reserve(
            reservation_id=self.fresh("R"),
            lines=tuple(
                commands.LineRequest(
                    f"L{index}", sku, quantity, node_id,
                    None if offset is None else date_of(self.today + offset),
                )
                for index, (sku, node_id, quantity, offset) in enumerate(lines)
            ),
            ttl_seconds=ttl_seconds,
            commit=commit,
            priority=priority,
        )
        expected, placed = self.expect_reserve(command)
        outcome = self.run_expecting(command, expected)
        if expected is not None:
            return multiple()
        got = [(line.line_id, line.ship_day, line.quantity) for line in outcome.lines]
        want = [(line.line_id, line.ship_day, line.quantity) for line in placed]
        assert got == want, f"ship days: ledger placed {got}, model expects {want}"
        self.model.reservations[command.reservation_id] = ModelReservation(
            command,
            COMMITTED if commit else HELD,
            placed,
            None if commit else self.now + (ttl_seconds or CONFIG.default_ttl_seconds),
        )
        return command.reservation_id

    def expect_reserve(self, command: commands.Reserve) -> tuple[Expected, list[ModelLine]]:
        """Accept iff every line fits, each seeing the lines placed before it (all or nothing)."""
        model, today = self.model, self.today
        if any(line.ship_date and ordinal(line.ship_date) < today for line in command.lines):
            return (InvalidArgument, None), []
        include = self.include_safety(command.priority)
        known = model.known_skus()
        placed: list[ModelLine] = []
        extra: list[tuple[Any, int, int]] = []
        short = False
        for line in command.lines:
            handling, active = model.nodes[line.node_id]
            if not active:
                return (FailedPrecondition, "NODE_INACTIVE"), []
            if line.sku not in known:
                return (NotFound, None), []
            key = (line.sku, line.node_id)
            earliest = today + handling
            if line.ship_date is not None:
                requested = ordinal(line.ship_date)
                if requested < earliest:
                    return (FailedPrecondition, "SHIP_DATE_INFEASIBLE"), []
                fits = model.atp(key, today, requested, include, extra=extra) >= line.quantity
                ship_day = requested if fits else None
            else:
                ship_day = model.earliest(key, today, earliest, line.quantity, include, extra)
            if ship_day is None:
                short = True
                continue
            extra.append((key, ship_day, -line.quantity))
            placed.append(ModelLine(line.line_id, line.sku, line.node_id, line.quantity, ship_day))
        if short:
            return (InsufficientAvailability, "INSUFFICIENT_AVAILABILITY"), []
        return None, placed

    @rule(reservation_id=reservations, same=st.booleans())
    def replay_reserve(self, reservation_id: str, same: bool) -> None:
        """Same reservation id: the same request is answered (even once its dates passed)."""
        command = self.model.reservations[reservation_id].command
        if same:
            self.run_replay(command)
            return
        command = command._replace(priority=command.priority + 1)
        if any(line.ship_date and ordinal(line.ship_date) < self.today for line in command.lines):
            self.run_expecting(command, (InvalidArgument, None))
        else:
            self.run_expecting(command, (AlreadyExists, None))

    @rule(target=requests, reservation_id=reservations)
    def commit(self, reservation_id: str) -> Any:
        reservation = self.model.reservations[reservation_id]
        command = commands.Commit(reservation_id, self.fresh("Q"))
        if reservation.state not in OPEN_STATES:
            self.run_expecting(command, wrong_state(reservation.state))
            return multiple()
        self.run_expecting(command, None)
        reservation.state = COMMITTED
        reservation.expire_time = None
        self.model.requests[command.request_id] = command
        return command.request_id

    def line_quantities(
        self, reservation: ModelReservation, data: st.DataObject
    ) -> tuple[tuple[commands.LineQuantity, ...], Expected]:
        """Per-line quantities for Release/Fulfill ((): every open unit) and the refusal they
        earn: a line the reservation lacks is invalid; more than a line has open, a failed
        precondition."""
        if data.draw(st.booleans(), label="whole"):
            return (), None
        chosen = data.draw(
            st.lists(st.sampled_from([line.line_id for line in reservation.lines] + ["LX"]),
                     min_size=1, max_size=3, unique=True),
            label="line ids",
        )
        result = []
        unknown = exceeding = False
        for line_id in chosen:
            line = reservation.line(line_id)
            most = line.open if line is not None else 1
            quantity = data.draw(st.integers(1, max(1, most) + 1), label=f"quantity of {line_id}")
            unknown = unknown or line is None
            exceeding = exceeding or (line is not None and quantity > line.open)
            result.append(commands.LineQuantity(line_id, quantity))
        if unknown:
            return tuple(result), (InvalidArgument, None)
        return tuple(result), (FailedPrecondition, "QUANTITY_EXCEEDS_OPEN") if exceeding else None

    def apply_lines(self, reservation: ModelReservation, lines: tuple[commands.LineQuantity, ...],
                    field_name: str) -> None:
        targets = (
            [(line, line.open) for line in reservation.lines if line.open]
            if not lines
            else [(reservation.line(item.line_id), item.quantity) for item in lines]
        )
        for line, quantity in targets:
            setattr(line, field_name, getattr(line, field_name) + quantity)
            if field_name == "fulfilled":
                self.model.positions[line.key].on_hand -= quantity
        if not any(line.open for line in reservation.lines):
            reservation.state = FULFILLED if any(l.fulfilled for l in reservation.lines) else RELEASED
            reservation.expire_time = None

    @rule(target=requests, reservation_id=reservations, ttl=st.sampled_from([0, 60, 900, 7200]))
    def extend(self, reservation_id: str, ttl: int) -> Any:
        """A HELD reservation expires ttl (0: the default TTL) from now, or later if it
        already would; any other state is refused."""
        reservation = self.model.reservations[reservation_id]
        command = commands.Extend(reservation_id, self.fresh("Q"), ttl)
        if reservation.state != HELD:
            self.run_expecting(command, wrong_state(
                reservation.state if reservation.state == EXPIRED else COMMITTED))
            return multiple()
        self.run_expecting(command, None)
        reservation.expire_time = max(
            self.now + (ttl or CONFIG.default_ttl_seconds), reservation.expire_time)
        self.model.requests[command.request_id] = command
        return command.request_id

    @rule(reservation_id=reservations, kind=st.sampled_from(["commit", "release", "fulfill",
                                                             "extend"]))
    def act_on_a_stale_version(self, reservation_id: str, kind: str) -> None:
        """Whatever the state, a call conditional on a version the reservation is not at is
        refused VERSION_MISMATCH and changes nothing."""
        stale = self.ledger.reservation(reservation_id).version + 1
        request_id = self.fresh("Q")
        command = {
            "commit": commands.Commit(reservation_id, request_id, expected_version=stale),
            "release": commands.Release(reservation_id, request_id, expected_version=stale),
            "fulfill": commands.Fulfill(reservation_id, request_id, expected_version=stale),
            "extend": commands.Extend(reservation_id, request_id, 60, expected_version=stale),
        }[kind]
        self.run_expecting(command, (FailedPrecondition, "VERSION_MISMATCH"))

    @rule(target=requests, reservation_id=reservations, data=st.data())
    def release(self, reservation_id: str, data: st.DataObject) -> Any:
        reservation = self.model.reservations[reservation_id]
        lines, refusal = self.line_quantities(reservation, data)
        command = commands.Release(reservation_id, self.fresh("Q"), lines)
        expected = wrong_state(reservation.state) if reservation.state not in OPEN_STATES else refusal
        self.run_expecting(command, expected)
        if expected is not None:
            return multiple()
        self.apply_lines(reservation, lines, "released")
        self.model.requests[command.request_id] = command
        return command.request_id

    @rule(target=requests, reservation_id=reservations, data=st.data())
    def fulfill(self, reservation_id: str, data: st.DataObject) -> Any:
        reservation = self.model.reservations[reservation_id]
        lines, refusal = self.line_quantities(reservation, data)
        command = commands.Fulfill(reservation_id, self.fresh("Q"), lines)
        expected: Expected = None
        if reservation.state != COMMITTED:
            expected = wrong_state(reservation.state)
        elif refusal is not None:
            expected = refusal
        else:
            needed: dict[Any, int] = {}
            targets = (
                [(line, line.open) for line in reservation.lines if line.open]
                if not lines
                else [(reservation.line(item.line_id), item.quantity) for item in lines]
            )
            for line, quantity in targets:
                needed[line.key] = needed.get(line.key, 0) + quantity
            if any(amount > self.model.positions[key].on_hand for key, amount in needed.items()):
                expected = (FailedPrecondition, "INSUFFICIENT_ON_HAND")
        self.run_expecting(command, expected)
        if expected is not None:
            return multiple()
        self.apply_lines(reservation, lines, "fulfilled")
        self.model.requests[command.request_id] = command
        return command.request_id

    @rule(target=requests, reservation_id=reservations, data=st.data())
    def record_delivery(self, reservation_id: str, data: st.DataObject) -> Any:
        """A reservation that shipped (FULFILLED, or COMMITTED with units fulfilled) takes a
        delivery outcome; a new request id replaces the earlier one. Any other is refused as
        in the wrong state."""
        reservation = self.model.reservations[reservation_id]
        units = data.draw(st.integers(0, 8), label="units")
        damaged = data.draw(st.integers(0, units), label="damaged")
        documents = data.draw(st.booleans(), label="documentation_correct")
        command = commands.RecordDelivery(reservation_id, self.fresh("Q"), date_of(self.today),
                                          units, damaged, documents)
        shipped = reservation.state == FULFILLED or (
            reservation.state == COMMITTED and any(line.fulfilled for line in reservation.lines))
        if not shipped:
            self.run_expecting(command, wrong_state(reservation.state))
            return multiple()
        self.run_expecting(command, None)
        self.deliveries[reservation_id] = (self.today, units, damaged, documents)
        self.model.requests[command.request_id] = command
        return command.request_id

    @invariant()
    def deliveries_match_the_model(self) -> None:
        for reservation_id in self.model.reservations:
            delivery = self.ledger.reservation(reservation_id).delivery
            found = None if delivery is None else (
                delivery.delivered_day, delivery.units_delivered, delivery.damaged_units,
                delivery.documentation_correct)
            assert found == self.deliveries.get(reservation_id), reservation_id

    # ----- idempotency keys -----------------------------------------------------------------

    @rule(request_id=requests)
    def replay_request(self, request_id: str) -> None:
        self.run_replay(self.model.requests[request_id])

    @rule(request_id=requests, kind=st.sampled_from(["adjust", "receive", "commit"]))
    def reuse_request_id(self, request_id: str, kind: str) -> None:
        """The same request id with a different request is ALREADY_EXISTS."""
        first = self.model.requests[request_id]
        if kind == "adjust" or not self.model.supplies and kind == "receive":
            command: Any = commands.AdjustStock(request_id, (commands.Movement("A", "N1", "RECEIPT", 99),))
        elif kind == "receive":
            command = commands.ReceiveSupply(request_id, next(iter(self.model.supplies)), 99)
        else:
            other = [r for r in self.model.reservations if getattr(first, "reservation_id", "") != r]
            if not other:
                return
            command = commands.Commit(other[0], request_id)
        self.run_expecting(command, (AlreadyExists, None))

    # ----- refusals of unknown things -------------------------------------------------------

    @rule(kind=st.sampled_from(["commit", "release", "receive", "release_hold", "hold_node",
                                "hold_sku", "reserve_node", "adjust_node", "supply_node"]))
    def unknown_reference(self, kind: str) -> None:
        by_kind = {
            "commit": commands.Commit("R-missing", self.fresh("Q")),
            "release": commands.Release("R-missing", self.fresh("Q")),
            "receive": commands.ReceiveSupply(self.fresh("Q"), "S-missing", 1),
            "release_hold": commands.ReleaseHold("H-missing"),
            "hold_node": commands.PlaceHold(self.fresh("H"), "A", "NX", 1, force=True),
            "hold_sku": commands.PlaceHold(self.fresh("H"), "Z", "N1", 1, force=True),
            "reserve_node": commands.Reserve(self.fresh("R"), (commands.LineRequest("L0", "A", 1, "NX"),)),
            "adjust_node": commands.AdjustStock(self.fresh("Q"), (commands.Movement("A", "NX", "RECEIPT", 1),)),
            "supply_node": commands.UpsertSupply(self.fresh("S"), "A", "NX", 1, date_of(self.today)),
        }
        self.run_expecting(by_kind[kind], (NotFound, None))

    # ----- time -----------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 59, 600, 1800, 3600, 86400, 3 * 86400]))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds
        expired = 0
        for reservation in self.model.reservations.values():
            if reservation.state == HELD and reservation.expire_time <= self.now:
                for line in reservation.lines:
                    line.released += line.open
                reservation.state = EXPIRED
                reservation.expire_time = None
                expired += 1
        for hold in self.model.holds.values():
            expire_time = hold.command.expire_time
            if hold.active and expire_time is not None and expire_time <= self.now:
                hold.active = False
                expired += 1
        outcome = self.run_expecting(commands.ExpireDue(), None)
        assert outcome == expired, f"ExpireDue expired {outcome}, model expects {expired}"

    # ----- restart --------------------------------------------------------------------------

    @rule()
    def restart(self) -> None:
        """Close LMDB, reopen it and rebuild the ledger from what was committed."""
        before = observe(self.ledger, self.store)
        self.store.close()
        self.store = LmdbStore(self.directory, map_size=MAP_SIZE, sync=False)
        # As atpd does: with the clock, so that stock levels are known from the start.
        self.ledger = ledger_from_records(
            self.store.load(), self.store.last_sequence(), CONFIG, now=self.now
        )
        self.ledger.archive = StoreArchive(self.store)
        self.restarts += 1
        after = observe(self.ledger, self.store)
        differing = [name for name in before if before[name] != after[name]]
        assert not differing, f"state after restart differs in {differing}"

    # ----- invariants -----------------------------------------------------------------------

    @invariant()
    def ledger_checks_its_own_records(self) -> None:
        assert self.ledger.check_invariants() == []

    @invariant()
    def positions_match_the_model(self) -> None:
        model, ledger = self.model, self.ledger
        assert set(ledger.positions) == set(model.positions)
        for key, expected in model.positions.items():
            p = ledger.positions[key]
            got = (p.on_hand, p.safety_stock, p.reserved, p.allocated, p.held, p.inbound)
            want = (
                expected.on_hand, expected.safety_stock, model.reserved(key), model.allocated(key),
                model.held(key), model.inbound(key),
            )
            assert got == want, f"{key}: ledger (on_hand, safety, reserved, allocated, held, " \
                                f"inbound) = {got}, model {want}"
            assert min(got) >= 0, f"{key}: a quantity went negative: {got}"

    @invariant()
    def atp_matches_the_naive_formula(self) -> None:
        today = day_of(self.now)
        assert today == self.today
        for key in self.model.positions:
            position = self.ledger.positions[key]
            for include in (False, True):
                naive = self.model.atp_table(key, today, today + 8, include)
                assert timeline.available_now(position, today, include) == max(0, naive[today]), (
                    f"{key} available (safety stock usable={include})"
                )
                for day in range(today, today + 9):
                    assert timeline.atp_on(position, today, day, include) == naive[day], (
                        f"{key} ATP on day +{day - today} (safety stock usable={include})"
                    )

    @invariant()
    def versions_move_with_every_change_and_only_then(self) -> None:
        for reservation_id in self.model.reservations:
            actual = self.ledger.reservation(reservation_id)
            content = repr(dataclasses.replace(actual, version=0))
            last = self.versions_seen.get(reservation_id)
            if last is not None:
                if content != last[0]:
                    assert actual.version > last[1], f"{reservation_id} changed, same version"
                else:
                    assert actual.version == last[1], f"{reservation_id}: version moved alone"
            self.versions_seen[reservation_id] = (content, actual.version)

    @invariant()
    def records_match_the_model(self) -> None:
        ledger, model = self.ledger, self.model
        open_ids = {rid for rid, r in model.reservations.items() if r.state in (HELD, COMMITTED)}
        assert set(ledger.reservations) == open_ids, "open reservations in memory"
        for reservation_id, expected in model.reservations.items():
            actual = ledger.reservation(reservation_id)
            assert actual.state.value == expected.state, reservation_id
            assert actual.expire_time == expected.expire_time, reservation_id
            assert [
                (l.line_id, l.sku, l.node_id, l.quantity, l.ship_day, l.released_quantity,
                 l.fulfilled_quantity)
                for l in actual.lines
            ] == [
                (l.line_id, l.sku, l.node_id, l.quantity, l.ship_day, l.released, l.fulfilled)
                for l in expected.lines
            ], reservation_id
        if hasattr(ledger, "state_counts"):
            counted = {state.value: n for state, n in ledger.state_counts.items() if n}
            expected_counts: dict[str, int] = {}
            for reservation in model.reservations.values():
                if reservation.state not in (HELD, COMMITTED):
                    continue  # closed ones leave memory and its counts
                expected_counts[reservation.state] = expected_counts.get(reservation.state, 0) + 1
            assert counted == expected_counts, "reservation counts by state"
        assert set(ledger.holds) == {k for k, h in model.holds.items() if h.active}
        for hold_id, expected in model.holds.items():  # ended ones from the store
            found = ledger.retained_hold(hold_id, self.now)
            assert found is not None and found.active == expected.active, hold_id
        assert {
            k: (s.quantity, s.expected_day, s.received_quantity, s.state.value)
            for k, s in ledger.supplies.items()
        } == {k: (s.quantity, s.day, s.received, s.state) for k, s in model.supplies.items()}


# Passing runs take ~10-20 s; a failing one may shrink for up to 5 minutes (hypothesis's own
# cap), so the timeout leaves room for the shrunk steps and the reproduce blob to be printed.
TestLedgerModel = pytest.mark.timeout(900)(LedgerMachine.TestCase)
TestLedgerModel.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ----- the timeline module on its own ---------------------------------------------------------

TODAY = 738_000


@st.composite
def positions(draw: st.DrawFn) -> Position:
    position = Position("A", "N1", on_hand=draw(st.integers(0, 20)),
                        safety_stock=draw(st.integers(0, 5)))
    position.held = draw(st.integers(0, 5))
    deltas = draw(st.dictionaries(st.integers(TODAY - 3, TODAY + 12),
                                  st.integers(-10, 10).filter(bool), max_size=8))
    position.deltas = dict(deltas)
    return position


def naive_atp(position: Position, day: int, include_safety_stock: bool) -> int:
    def net(t: int) -> int:
        dated = sum(amount for d, amount in position.deltas.items() if max(d, TODAY) <= t)
        safety = 0 if include_safety_stock else position.safety_stock
        return position.on_hand - position.held - safety + dated

    last = max([day, TODAY, *position.deltas.keys()])
    return min(net(t) for t in range(max(day, TODAY), last + 1))


@settings(max_examples=300, deadline=None, print_blob=True)
@given(position=positions(), include=st.booleans())
def test_atp_never_decreases_with_the_day(position: Position, include: bool) -> None:
    values = [timeline.atp_on(position, TODAY, day, include) for day in range(TODAY, TODAY + 16)]
    assert values == sorted(values)
    steps = timeline.atp_steps(position, TODAY, include)
    assert [value for _, value in steps] == sorted(value for _, value in steps)
    assert values == [naive_atp(position, day, include) for day in range(TODAY, TODAY + 16)]
    assert timeline.available_now(position, TODAY, include) == max(0, values[0])


@settings(max_examples=300, deadline=None, print_blob=True)
@given(position=positions(), include=st.booleans(), quantity=st.integers(1, 25),
       not_before=st.integers(TODAY, TODAY + 14))
def test_earliest_day_is_the_first_day_with_enough_atp(
    position: Position, include: bool, quantity: int, not_before: int
) -> None:
    found = timeline.earliest_day(position, TODAY, not_before, quantity, include)
    horizon = max([not_before, *position.deltas.keys()]) + 1
    first = next(
        (d for d in range(not_before, horizon + 1) if naive_atp(position, d, include) >= quantity),
        None,
    )
    assert found == first


@pytest.mark.parametrize("include", [False, True])
def test_supply_and_demand_dated_in_the_past_count_today(include: bool) -> None:
    position = Position("A", "N1", on_hand=5, safety_stock=2)
    position.deltas = {TODAY + 1: -6, TODAY - 2: 3}
    expected = 5 + 3 - 6 - (0 if include else 2)
    assert timeline.atp_on(position, TODAY, TODAY, include) == expected


# ----- regressions found by the state machine ----------------------------------------------


def test_transfer_never_moves_units_that_are_not_on_hand() -> None:
    """Shrunk by the state machine: no stock, 1 unit inbound today, TRANSFER 1 -> refused.

    (Was a bug: ATP(today) counts supply due today, so the transfer drove on_hand negative.)
    """
    ledger = Ledger(CONFIG)
    today = date_of(day_of(START))
    for node_id in ("N1", "N2"):
        ledger.execute(commands.UpsertNode(node_id), START)
    ledger.execute(commands.UpsertSupply("S1", "A", "N1", 1, today), START)
    ledger.take_changes()
    before = observe(ledger)
    with pytest.raises(InsufficientAvailability):
        ledger.execute(commands.AdjustStock("Q1", (commands.Movement("A", "N1", "TRANSFER", 1, "N2"),)), START)
    assert observe(ledger) == before
    assert not ledger.take_changes()
