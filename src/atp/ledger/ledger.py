"""The ledger: every position, reservation, hold and supply, changed only by commands.

Pure and deterministic: the caller passes `now` with each command, so tests move time and
a journal replays to the same state. Each command is one synchronous step that either
applies fully or raises a LedgerError and leaves everything as it was. Changed records and
journal events accumulate until the writer takes them for the next durable batch.
"""

from __future__ import annotations

import collections
import datetime
import functools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedDict, SortedList

from atp import limits
from atp.ledger import codec, risk, timeline, validation
from atp.ledger import commands as c
from atp.ledger.archive import Archive, NoArchive
from atp.ledger.errors import (
    INVALID_STATE,
    NODE_INACTIVE,
    QUANTITY_EXCEEDS_OPEN,
    RESERVATION_EXPIRED,
    SHIP_DATE_INFEASIBLE,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InsufficientAvailability,
    InsufficientOnHand,
    InvalidArgument,
    InvariantViolation,
    LedgerError,
    NotFound,
    Shortfall,
)
from atp.ledger.invariants import derived_problems
from atp.ledger.model import (
    EVENT_TYPES,
    OPEN_RESERVATION_STATES,
    Day,
    Event,
    Hold,
    Lane,
    MovementType,
    Node,
    Policy,
    Position,
    RequestRecord,
    Reservation,
    ReservationLine,
    ReservationState,
    Supply,
    SupplyState,
)
from atp.ledger.promising import LinePlan, OrderLine, OrderPlan, Planner
from atp.ledger.reallocation import (
    PLAN_STALE,
    ReallocationResult,
    Reallocator,
    ReservationPlan,
    Scope,
    free_part_id,
    line_from,
)
from atp.ledger.sortedkeys import LazySortedDict, LazySortedSet

EPOCH_ORDINAL = 719163  # datetime.date(1970, 1, 1).toordinal()
MOVEMENT_TYPES = {member.value for member in MovementType}


def day_of(now: float) -> Day:
    """The UTC calendar day of an instant, as an ordinal."""
    return int(now // 86400) + EPOCH_ORDINAL


@dataclass(frozen=True)
class LedgerConfig:
    # Seconds a HELD reservation lives when the request gives no ttl_seconds.
    default_ttl_seconds: int = 900
    # Demand with priority at or above this may consume safety stock.
    safety_stock_priority_min: int = 100
    # Seconds a closed reservation stays readable and guards its id (then it is purged).
    closed_retention_s: float = 7 * 86400
    # Seconds an idempotency record (a request_id, a Reserve's content) is honoured.
    idempotency_window_s: float = 86400


@dataclass
class Changes:
    """What the commands since the last take changed: records to write and journal events."""

    records: dict[tuple[str, str], Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records or self.events)


@dataclass(slots=True)
class _Placement:
    position: Position
    line: ReservationLine


class Ledger:
    def __init__(self, config: LedgerConfig | None = None) -> None:
        self.config = config or LedgerConfig()
        # SortedDicts (typed as dicts): ordered by id for listing and paging.
        self.nodes: dict[str, Node] = SortedDict()
        self.positions: dict[tuple[str, str], Position] = {}
        self.positions_by_sku: dict[str, dict[str, Position]] = {}  # sku -> node_id -> Position
        self.supplies: dict[str, Supply] = SortedDict()
        self.holds: dict[str, Hold] = SortedDict()
        # Open reservations (HELD, COMMITTED): live state.
        self.reservations: dict[str, Reservation] = LazySortedDict()
        # Closed reservations and idempotency records not yet durable (then the archive has
        # them and forget_durable() drops them here).
        self.closed: dict[str, Reservation] = {}
        self.ended_holds: dict[str, Hold] = {}
        self.requests: dict[str, RequestRecord] = {}
        self.archive: Archive = NoArchive()
        # Indexes for listing without scanning: open reservation ids by state, and the
        # positions with lines at risk.
        self.held_ids: LazySortedSet[str] = LazySortedSet()
        self.committed_ids: LazySortedSet[str] = LazySortedSet()
        self.positions_at_risk: set[tuple[str, str]] = set()
        # Reservations closed since start, by state (closed ones leave memory).
        self.closed_counts: collections.Counter[ReservationState] = collections.Counter()
        # (expire_time, kind, id) of HELD reservations and holds that expire.
        self.expiries: SortedList = SortedList()
        self.sequence = 0
        # Reservations per state and expiries so far, kept for metrics without scanning.
        self.state_counts: collections.Counter[ReservationState] = collections.Counter()
        self.expired_total = 0
        self.at_risk_count = 0
        self.positions_by_node: dict[str, dict[str, Position]] = {}  # node_id -> sku -> Position
        # sku -> (reservation_id, line_id) of lines of open reservations with backordered units.
        self.backorders: dict[str, set[tuple[str, str]]] = {}
        # Positions the running command changed: re-examined for risk and stock levels after it.
        self._touched: dict[tuple[str, str], Position] = {}
        # The day at-risk marks were last computed for.
        self.risk_day: Day | None = None
        # region -> the active nodes with a lane there, and those lanes; cleared on node change.
        self._routes: dict[str, tuple[list[Node], dict[str, Lane]]] = {}
        self._changes = Changes()
        # The instant of the command being applied (closing stamps it on reservations).
        self._now = 0.0
        self._handlers: dict[type, Callable[[Any, float], Any]] = {
            c.UpsertNode: self._upsert_node,
            c.AdjustStock: self._adjust_stock,
            c.SetSafetyStock: self._set_safety_stock,
            c.UpsertSupply: self._upsert_supply,
            c.ReceiveSupply: self._receive_supply,
            c.PlaceHold: self._place_hold,
            c.ReleaseHold: self._release_hold,
            c.Reserve: self._reserve,
            c.Commit: self._commit,
            c.Release: self._release,
            c.Fulfill: self._fulfill,
            c.Reallocate: self._reallocate,
            c.ExpireDue: self._expire_due,
        }

    # ----- entry points -------------------------------------------------------------------

    def execute(self, command: c.Command, now: float) -> Any:
        """Applies one command fully or raises a LedgerError having changed nothing."""
        handler = self._handlers.get(type(command))
        if handler is None:
            raise InvalidArgument.single("command", f"unknown command {type(command).__name__}")
        self._now = now
        self._note_day(day_of(now))
        # A HELD reservation the command names whose time has passed expires first (expiry
        # works through a backlog in slices and may not have reached it yet).
        named = self.reservations.get(getattr(command, "reservation_id", ""))
        if named is not None and named.expire_time is not None and named.expire_time <= now:
            self._expire_overdue(named, now)
        try:
            result = handler(command, now)
        except LedgerError:
            self._touched.clear()
            raise
        if self._touched:
            self._settle(command, now)
        return result

    def _expire_overdue(self, reservation: Reservation, now: float) -> None:
        """Expires a reservation a command names, as a step of its own before the command."""
        self._expire_reservation(reservation, now)
        self._settle(EXPIRY, now)

    def execute_batch(self, commands: Iterable[c.Command], now: float) -> list[Any]:
        """Applies each command on its own; a refused one yields its LedgerError in its place."""
        outcomes: list[Any] = []
        for command in commands:
            try:
                outcomes.append(self.execute(command, now))
            except LedgerError as error:
                outcomes.append(error)
        return outcomes

    def take_changes(self) -> Changes:
        """Hands over what changed since the last call (for one durable batch)."""
        changes, self._changes = self._changes, Changes()
        return changes

    def forget_durable(self, changes: Changes) -> None:
        """The batch of `changes` is durable: its closed reservations and idempotency records
        leave memory (the archive answers for them from now on)."""
        for (database, key), value in changes.records.items():
            if database == "closed":
                if self.closed.get(key) is value:
                    del self.closed[key]
            elif database == "ended_holds":
                if self.ended_holds.get(key) is value:
                    del self.ended_holds[key]
            elif database == "requests" and self.requests.get(key) is value:
                del self.requests[key]

    @property
    def has_changes(self) -> bool:
        return bool(self._changes)

    def next_expiry(self) -> float | None:
        return self.expiries[0][0] if self.expiries else None

    @property
    def at_risk_lines(self) -> int:
        return self.at_risk_count

    def include_safety_stock(self, priority: int) -> bool:
        return priority >= self.config.safety_stock_priority_min

    # ----- lookups ------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        node = self.nodes.get(node_id)
        if node is None:
            raise NotFound("node", node_id)
        return node

    def routes_to(self, region: str) -> tuple[list[Node], dict[str, Lane]]:
        """The active nodes with a lane to region (in node id order) and each one's lane."""
        routes = self._routes.get(region)
        if routes is None:
            lanes: dict[str, Lane] = {}
            for node in self.nodes.values():
                lane = node.lane_to(region) if node.active else None
                if lane is not None:
                    lanes[node.node_id] = lane
            nodes = [node for node in self.nodes.values() if node.node_id in lanes]
            routes = self._routes[region] = (nodes, lanes)
        return routes

    def known_sku(self, sku: str) -> dict[str, Position]:
        by_node = self.positions_by_sku.get(sku)
        if by_node is None:
            raise NotFound("sku", sku)
        return by_node

    def reservation(self, reservation_id: str) -> Reservation:
        """An open reservation, or a closed one still retained."""
        reservation = self.find_reservation(reservation_id)
        if reservation is None:
            raise NotFound("reservation", reservation_id)
        return reservation

    def find_reservation(self, reservation_id: str) -> Reservation | None:
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            reservation = self.closed.get(reservation_id)
            if reservation is None:
                reservation = self.archive.reservation(reservation_id)
        return reservation

    def open_ids(self, state: ReservationState) -> LazySortedSet[str]:
        """The index of open reservation ids in `state` (HELD or COMMITTED); an `is` test,
        not a dict keyed by the enum, whose __hash__ is a Python call on the reserve path."""
        return self.held_ids if state is ReservationState.HELD else self.committed_ids

    def known_reservations(self) -> dict[str, Reservation]:
        """Every reservation memory holds: open ones and closed ones not yet handed to the
        archive (all of them, for a ledger without a store)."""
        return {**self.closed, **self.reservations}

    def known_holds(self) -> dict[str, Hold]:
        """Every hold memory holds: active ones and ended ones not yet handed to the archive."""
        return {**self.ended_holds, **self.holds}

    def _retained_reservation(self, reservation_id: str, now: float) -> Reservation | None:
        """The reservation guarding this id now: closed ones only within closed retention
        (the purge may lag behind the window by a slice or two)."""
        reservation = self.reservations.get(reservation_id)
        if reservation is not None:
            return reservation
        reservation = self.closed.get(reservation_id) or self.archive.reservation(reservation_id)
        if reservation is None or self._past_retention(reservation.close_time, now):
            return None
        return reservation

    def _past_retention(self, end_time: float | None, now: float) -> bool:
        """Whether something that ended at `end_time` no longer guards its id (its record
        may still wait for the purge, which runs in slices)."""
        return end_time is not None and end_time < now - self.config.closed_retention_s

    def position(self, sku: str, node_id: str) -> Position | None:
        return self.positions.get((sku, node_id))

    # ----- nodes --------------------------------------------------------------------------

    def _upsert_node(self, command: c.UpsertNode, now: float) -> Node:
        validation.check_node(command)
        node = Node(
            node_id=command.node_id,
            kind=(command.kind or "DC").upper(),
            region=command.region,
            active=command.active,
            handling_days=command.handling_days,
            lanes=command.lanes,
        )
        previous = self.nodes.get(node.node_id)
        if previous == node:
            return node
        self.nodes[node.node_id] = node
        self._routes.clear()
        if previous is not None and previous.active != node.active:
            self._touched.update(
                (position.key, position)
                for position in self.positions_by_node.get(node.node_id, {}).values()
            )
        self._record("nodes", node.node_id, node)
        self._emit(now, "NODE_UPSERTED", node_id=node.node_id, active=node.active)
        return node

    # ----- stock movements ----------------------------------------------------------------

    def _adjust_stock(self, command: c.AdjustStock, now: float) -> list[Position]:
        validation.check_adjust_stock(command, MOVEMENT_TYPES)
        if self._is_replay(command.request_id, command):
            return self._positions_touched_by(command)
        today = day_of(now)
        touched: dict[tuple[str, str], tuple[Position, int]] = {}
        created: list[Position] = []
        events: list[dict[str, Any]] = []
        try:
            for index, movement in enumerate(command.movements):
                self._apply_movement(index, movement, today, touched, created, events)
        except LedgerError:
            for position, on_hand_before in touched.values():
                position.on_hand = on_hand_before
            for position in created:
                self._forget_position(position)
            raise
        self._remember_request(command.request_id, command, now)
        for position, _ in touched.values():
            self._record_position(position)
        for data in events:
            self._emit(now, "STOCK_MOVED", **data)
        return [position for position, _ in touched.values()]

    def _apply_movement(
        self,
        index: int,
        movement: c.Movement,
        today: Day,
        touched: dict[tuple[str, str], tuple[Position, int]],
        created: list[Position],
        events: list[dict[str, Any]],
    ) -> None:
        path = f"movements[{index}]"
        self.node(movement.node_id)
        kind = MovementType(movement.type)
        if kind in (MovementType.RECEIPT, MovementType.RETURN, MovementType.CYCLE_COUNT):
            position = self._touch(movement.sku, movement.node_id, touched, created)
        else:
            self.known_sku(movement.sku)
            position = self._touch(movement.sku, movement.node_id, touched, created)
        before = position.on_hand
        if kind in (MovementType.RECEIPT, MovementType.RETURN):
            self._check_on_hand_limit(f"{path}.quantity", position.on_hand + movement.quantity)
            position.on_hand += movement.quantity
        elif kind in (MovementType.SHRINKAGE, MovementType.DAMAGE):
            if movement.quantity > position.on_hand:
                raise InsufficientOnHand(
                    [_shortfall(path, position, movement.quantity, position.on_hand, "on hand")]
                )
            position.on_hand -= movement.quantity
        elif kind is MovementType.CYCLE_COUNT:
            position.on_hand = movement.quantity
        else:
            self._transfer(path, movement, position, today, touched, created, events)
        events.append(_movement_event(movement, position, position.on_hand - before))

    def _transfer(
        self,
        path: str,
        movement: c.Movement,
        source: Position,
        today: Day,
        touched: dict[tuple[str, str], tuple[Position, int]],
        created: list[Position],
        events: list[dict[str, Any]],
    ) -> None:
        self.node(movement.to_node_id)
        # Only physical units that nothing else needs: supply due but not received stays put.
        free = max(0, min(source.on_hand, timeline.stock_only_atp(source, today, False)))
        if movement.quantity > free:
            raise InsufficientAvailability(
                [_shortfall(path, source, movement.quantity, free, "available to transfer")]
            )
        target = self._touch(movement.sku, movement.to_node_id, touched, created)
        self._check_on_hand_limit(f"{path}.quantity", target.on_hand + movement.quantity)
        source.on_hand -= movement.quantity
        target.on_hand += movement.quantity
        events.append(
            {
                "sku": movement.sku,
                "node_id": movement.to_node_id,
                "movement": "TRANSFER_IN",
                "quantity": movement.quantity,
                "delta": movement.quantity,
                "on_hand": target.on_hand,
                "from_node_id": movement.node_id,
                "reason": movement.reason,
            }
        )

    def _touch(
        self,
        sku: str,
        node_id: str,
        touched: dict[tuple[str, str], tuple[Position, int]],
        created: list[Position],
    ) -> Position:
        position = self.positions.get((sku, node_id))
        if position is None:
            position = self._new_position(sku, node_id)
            created.append(position)
        if position.key not in touched:
            touched[position.key] = (position, position.on_hand)
        return position

    def _positions_touched_by(self, command: c.AdjustStock) -> list[Position]:
        keys: dict[tuple[str, str], None] = {}
        for movement in command.movements:
            keys[(movement.sku, movement.node_id)] = None
            if movement.to_node_id:
                keys[(movement.sku, movement.to_node_id)] = None
        return [self.positions[key] for key in keys if key in self.positions]

    @staticmethod
    def _check_on_hand_limit(field_path: str, on_hand: int) -> None:
        if on_hand > limits.quantity_max:
            raise InvalidArgument.single(field_path, f"on_hand would exceed {limits.quantity_max}")

    @staticmethod
    def _check_inbound_limit(position: Position | None, added: int) -> None:
        """An upsert may not take a position's open inbound over quantity_max, as no stock
        movement may take its on_hand over it (a receipt only moves inbound to on_hand)."""
        already = position.inbound if position is not None else 0
        if already + added > limits.quantity_max:
            raise InvalidArgument.single(
                "supply.quantity",
                f"inbound would exceed {limits.quantity_max} ({already} open at this SKU and node)",
            )

    def _set_safety_stock(self, command: c.SetSafetyStock, now: float) -> Position:
        validation.check_safety_stock(command)
        self.node(command.node_id)
        position = self.positions.get((command.sku, command.node_id))
        if position is None:
            position = self._new_position(command.sku, command.node_id)
        elif position.safety_stock == command.quantity:
            return position
        position.safety_stock = command.quantity
        self._record_position(position)
        self._emit(
            now, "SAFETY_STOCK_SET", sku=command.sku, node_id=command.node_id,
            quantity=command.quantity,
        )
        return position

    # ----- inbound supply -----------------------------------------------------------------

    def _upsert_supply(self, command: c.UpsertSupply, now: float) -> Supply:
        expected_day = validation.check_supply(command, day_of(now))
        supply = self.supplies.get(command.supply_id)
        if supply is None:
            return self._create_supply(command, expected_day, now)
        _check_immutable(supply, command)
        if supply.quantity == command.quantity and supply.expected_day == expected_day:
            return supply
        if supply.state is SupplyState.RECEIVED:
            raise _received_in_full(supply)
        position = self.positions[(supply.sku, supply.node_id)]
        self._check_inbound_limit(position, command.quantity - supply.quantity)
        self._unapply_supply(position, supply)
        previous_day = supply.expected_day
        supply.quantity = command.quantity
        supply.expected_day = expected_day
        supply.state = _supply_state(supply, cancelled=command.quantity == 0)
        self._apply_supply(position, supply)
        self._record("supply", supply.supply_id, supply)
        self._record_position(position)
        self._emit(
            now, "SUPPLY_UPDATED", **_supply_event(supply), slipped=expected_day > previous_day
        )
        return supply

    def _create_supply(self, command: c.UpsertSupply, expected_day: Day, now: float) -> Supply:
        missing = [
            FieldViolation(f"supply.{name}", "required when creating a supply")
            for name in ("sku", "node_id")
            if not getattr(command, name)
        ]
        if missing:
            raise InvalidArgument(missing)
        self.node(command.node_id)
        position = self.positions.get((command.sku, command.node_id))
        self._check_inbound_limit(position, command.quantity)
        if position is None:
            position = self._new_position(command.sku, command.node_id)
        supply = Supply(
            supply_id=command.supply_id,
            sku=command.sku,
            node_id=command.node_id,
            quantity=command.quantity,
            expected_day=expected_day,
            state=SupplyState.OPEN if command.quantity else SupplyState.CANCELLED,
        )
        self.supplies[supply.supply_id] = supply
        self._apply_supply(position, supply)
        self._record("supply", supply.supply_id, supply)
        self._record_position(position)
        self._emit(now, "SUPPLY_CREATED", **_supply_event(supply))
        return supply

    def _receive_supply(self, command: c.ReceiveSupply, now: float) -> Supply:
        validation.check_receive(command)
        supply = self.supplies.get(command.supply_id)
        if supply is None:
            raise NotFound("supply", command.supply_id)
        if self._is_replay(command.request_id, command):
            return supply
        if command.quantity > supply.quantity:
            raise FailedPrecondition(
                QUANTITY_EXCEEDS_OPEN,
                f"supply {supply.supply_id!r} has {supply.quantity} open units; "
                f"cannot receive {command.quantity}",
                {"open_quantity": str(supply.quantity)},
            )
        position = self.positions[(supply.sku, supply.node_id)]
        self._check_on_hand_limit("quantity", position.on_hand + command.quantity)
        self._unapply_supply(position, supply)
        supply.quantity -= command.quantity
        supply.received_quantity += command.quantity
        supply.state = _supply_state(supply, cancelled=False)
        self._apply_supply(position, supply)
        position.on_hand += command.quantity
        self._remember_request(command.request_id, command, now)
        self._record("supply", supply.supply_id, supply)
        self._record_position(position)
        self._emit(
            now, "SUPPLY_RECEIVED", **_supply_event(supply), received=command.quantity,
            on_hand=position.on_hand,
        )
        return supply

    @staticmethod
    def _apply_supply(position: Position, supply: Supply) -> None:
        position.add_supply(supply.expected_day, supply.quantity)

    @staticmethod
    def _unapply_supply(position: Position, supply: Supply) -> None:
        position.add_supply(supply.expected_day, -supply.quantity)

    # ----- holds --------------------------------------------------------------------------

    def _place_hold(self, command: c.PlaceHold, now: float) -> Hold:
        request_digest = c.digest(command)
        existing = self._retained_hold(command.hold_id, now)
        if existing is not None and existing.request_digest == request_digest:
            return existing  # a replay: answered even if its expire_time has since passed
        validation.check_hold(command, now)
        if existing is not None:
            raise AlreadyExists("hold", command.hold_id)
        self.node(command.node_id)
        self.known_sku(command.sku)
        position = self.positions.get((command.sku, command.node_id))
        if not command.force:
            self._check_hold_fits(command, position, day_of(now))
        if position is None:
            position = self._new_position(command.sku, command.node_id)
        hold = Hold(
            hold_id=command.hold_id, sku=command.sku, node_id=command.node_id,
            quantity=command.quantity, reason=command.reason, expire_time=command.expire_time,
            force=command.force, create_time=now, request_digest=request_digest,
        )
        self.holds[hold.hold_id] = hold
        position.held += hold.quantity
        if hold.expire_time is not None:
            self.expiries.add((hold.expire_time, "hold", hold.hold_id))
        self._record("holds", hold.hold_id, hold)
        self._record_position(position)
        self._emit(now, "HOLD_PLACED", **_hold_event(hold))
        return hold

    def _check_hold_fits(self, command: c.PlaceHold, position: Position | None, today: Day) -> None:
        available = 0
        if position is not None:
            available = timeline.available_now(position, today, include_safety_stock=False)
        if command.quantity > available:
            subject = f"hold {command.hold_id} ({command.sku} at {command.node_id})"
            raise InsufficientAvailability(
                [Shortfall(subject, f"{subject}: requested {command.quantity}, available "
                           f"{available} (a forced hold takes them anyway)",
                           command.quantity, available)]
            )

    def _release_hold(self, command: c.ReleaseHold, now: float) -> Hold:
        violations = validation.Violations()
        violations.identifier("hold_id", command.hold_id)
        violations.raise_if_any()
        hold = self._retained_hold(command.hold_id, now)
        if hold is None:
            raise NotFound("hold", command.hold_id)
        if hold.active:
            self._end_hold(hold, now, "HOLD_RELEASED")
        return hold

    def _retained_hold(self, hold_id: str, now: float) -> Hold | None:
        """The hold guarding this id now: an active one, or an ended one within closed
        retention (then it is purged)."""
        hold = self.holds.get(hold_id)
        if hold is not None:
            return hold
        hold = self.ended_holds.get(hold_id) or self.archive.hold(hold_id)
        if hold is None or self._past_retention(hold.end_time, now):
            return None
        return hold

    def _end_hold(self, hold: Hold, now: float, event_type: str) -> None:
        hold.active = False
        position = self.positions[(hold.sku, hold.node_id)]
        position.held -= hold.quantity
        if hold.expire_time is not None:
            self.expiries.discard((hold.expire_time, "hold", hold.hold_id))
        self._retire_hold(hold, now)
        self._record_position(position)
        self._emit(now, event_type, **_hold_event(hold))

    # ----- reservations -------------------------------------------------------------------

    def _reserve(self, command: c.Reserve, now: float) -> Reservation:
        today = day_of(now)
        request_digest = c.digest(command)
        existing = self._retained_reservation(command.reservation_id, now)
        if existing is not None and existing.request_digest == request_digest:
            return existing  # a replay: answered even if its ship dates have since passed
        requested_days = validation.check_reserve(command, today)
        if existing is not None:
            raise AlreadyExists("reservation", command.reservation_id)
        placements = self._place_lines(command, requested_days, today)
        reservation = Reservation(
            reservation_id=command.reservation_id,
            state=ReservationState.COMMITTED if command.commit else ReservationState.HELD,
            lines=[placement.line for placement in placements],
            create_time=now,
            expire_time=None if command.commit else now + self._ttl(command),
            priority=command.priority,
            channel=command.channel,
            customer_id=command.customer_id,
            destination_region=command.destination_region,
            policy=command.policy,
            request_digest=request_digest,
            create_sequence=self.sequence + 1,
        )
        self._open_reservation(reservation, placements)
        self._emit(
            now, "RESERVATION_CREATED", reservation_id=reservation.reservation_id,
            # _value_: the same as .value, which is a slow descriptor on Python 3.11 enums
            state=reservation.state._value_,
            lines=[_line_event(line) for line in reservation.lines],
        )
        return reservation

    def _ttl(self, command: c.Reserve) -> int:
        return command.ttl_seconds or self.config.default_ttl_seconds

    def _open_reservation(self, reservation: Reservation, placements: list[_Placement]) -> None:
        held = reservation.state is ReservationState.HELD
        for placement in placements:
            position, line = placement.position, placement.line
            if line.backordered_quantity or line.sku in self.backorders:
                self._note_backorder(reservation.reservation_id, line)
            if not position.node_id:
                continue  # a wholly backordered sourced line: no node holds it yet
            if position.key not in self.positions:
                self._register_position(position)
                self._record_position(position)
            if line.quantity:
                self._count_line(reservation.reservation_id, held, position, line)
        self.reservations[reservation.reservation_id] = reservation
        self.state_counts[reservation.state] += 1
        self.open_ids(reservation.state).add(reservation.reservation_id)
        if reservation.expire_time is not None:
            self.expiries.add((reservation.expire_time, "reservation", reservation.reservation_id))
        self._record_reservation(reservation)

    def _place_lines(
        self, command: c.Reserve, requested_days: list[Day | None], today: Day
    ) -> list[_Placement]:
        """Fits every line (their demand added to the timelines) or raises having undone all.

        Lines naming a node are fitted there first; the others are then sourced by the
        promising logic against what is left, in the same step.
        """
        include_safety = self.include_safety_stock(command.priority)
        placements: list[_Placement] = []
        shortfalls: list[Shortfall] = []
        any_unsourced = False
        try:
            for index, (request, requested_day) in enumerate(zip(command.lines, requested_days)):
                if not request.node_id:
                    any_unsourced = True
                    continue
                placement = self._fit_line(
                    command, index, request, requested_day, today, include_safety, shortfalls
                )
                if placement is not None:
                    placement.position.add_delta(placement.line.ship_day, -placement.line.quantity)
                    placements.append(placement)
            if shortfalls:
                raise InsufficientAvailability(shortfalls)
            if any_unsourced:
                placements += self._source_lines(command, requested_days, today)
        except LedgerError:
            for placement in placements:
                placement.position.add_delta(placement.line.ship_day, placement.line.quantity)
            raise
        return placements

    def _source_lines(
        self, command: c.Reserve, requested_days: list[Day | None], today: Day
    ) -> list[_Placement]:
        """Sources the lines that name no node, holding the plan Promise would return."""
        indexed = [(i, line) for i, line in enumerate(command.lines) if not line.node_id]
        for index, line in indexed:
            if requested_days[index] is not None:
                raise InvalidArgument.single(
                    f"lines[{index}].ship_date", "only for lines that name a node"
                )
        planner = Planner(self, today, command.destination_region, command.policy, command.priority)
        plan = planner.plan(
            [OrderLine(line.line_id, line.sku, line.quantity) for _, line in indexed]
        )
        if not plan.complete and not command.policy.allow_partial:
            raise InsufficientAvailability(
                [self._network_shortfall(planner, line, index) for index, line in indexed]
            )
        planner.hold(plan)
        taken_ids = {line.line_id for line in command.lines}
        return [
            placement
            for line_plan in plan.lines
            for placement in self._placements_of(
                line_plan, command.destination_region, today, taken_ids
            )
        ]

    def _network_shortfall(self, planner: Planner, line: c.LineRequest, index: int) -> Shortfall:
        most = sum(planner.most_at(node, line.sku) for node in planner.nodes)
        return Shortfall(
            subject=f"line {line.line_id}",
            description=f"line {line.line_id} ({line.sku}, sourced to {planner.region}): "
            f"requested {line.quantity}, available {most} across {len(planner.nodes)} nodes",
            requested=line.quantity,
            available=most,
        )

    def _placements_of(
        self, line_plan: LinePlan, region: str, today: Day, taken_ids: set[str]
    ) -> list[_Placement]:
        """One reservation line per allocation; a split line's extra parts get ids like l1/2."""
        line = line_plan.line
        placements: list[_Placement] = []
        for part, allocation in enumerate(line_plan.allocations, start=1):
            line_id = line.line_id if part == 1 else free_part_id(line.line_id, taken_ids)
            position = self.positions[(line.sku, allocation.node_id)]
            placements.append(_Placement(position, line_from(allocation, line_id, line.sku, True)))
        backordered = line_plan.backordered_quantity
        if placements:
            placements[0].line.backordered_quantity = backordered
        else:
            unplaced = ReservationLine(
                line_id=line.line_id, sku=line.sku, node_id="", quantity=0, ship_day=today,
                backordered_quantity=backordered,
            )
            placements.append(_Placement(Position(line.sku, ""), unplaced))
        return placements

    # ----- promising (read-only) ----------------------------------------------------------

    def promise(
        self, lines: list[OrderLine], region: str, policy: Policy, priority: int, now: float,
        explain: bool = False,
    ) -> OrderPlan:
        """A quote: where and when the lines can be fulfilled. Changes nothing."""
        validation.check_promise(lines, region, policy)
        return Planner(self, day_of(now), region, policy, priority).plan(lines, explain)

    def _fit_line(
        self,
        command: c.Reserve,
        index: int,
        request: c.LineRequest,
        requested_day: Day | None,
        today: Day,
        include_safety: bool,
        shortfalls: list[Shortfall],
    ) -> _Placement | None:
        """Where and when the line fits at its node; None (and a shortfall) when it does not."""
        node = self.nodes.get(request.node_id)
        if node is None or not node.active:
            node = self._active_node(request.node_id)  # raises the error that says which
        by_node = self.positions_by_sku.get(request.sku)
        if by_node is None:
            by_node = self.known_sku(request.sku)  # raises NotFound
        position = by_node.get(node.node_id)
        if position is None:
            position = Position(request.sku, node.node_id)
        earliest = today + node.handling_days
        if requested_day is not None and requested_day < earliest:
            raise FailedPrecondition(
                SHIP_DATE_INFEASIBLE,
                f"lines[{index}]: ship date {_iso(requested_day)} is before the earliest "
                f"possible {_iso(earliest)} at {node.node_id} ({node.handling_days} handling days)",
                {"line_id": request.line_id, "earliest_ship_date": _iso(earliest)},
            )
        steps = timeline.atp_steps(position, today, include_safety)
        quantity, ship_day = _fit_quantity(
            request, requested_day, steps, earliest, command.policy.allow_partial
        )
        if quantity == 0 and not command.policy.allow_partial:
            available = max(0, timeline.atp_in(steps, requested_day or today))
            later = None if requested_day is None else timeline.earliest_in(
                steps, requested_day, request.quantity)
            shortfalls.append(
                _shortfall(f"lines[{index}]", position, request.quantity, available, "available",
                           line_id=request.line_id,
                           note=f"; enough from {_iso(later)}" if later is not None else "")
            )
            return None
        line = ReservationLine(
            # The position's own strings and interned line ids: a million lines share them.
            line_id=sys.intern(request.line_id),
            sku=position.sku,
            node_id=node.node_id,
            quantity=quantity,
            ship_day=ship_day,
            delivery_day=_delivery_day(node, command.destination_region, ship_day),
            backordered_quantity=request.quantity - quantity,
            from_inbound=quantity > 0
            and bool(position.supply_days)
            and steps[0][1] - timeline.supply_due(position, today) < quantity,
        )
        return _Placement(position, line)

    def _active_node(self, node_id: str) -> Node:
        node = self.node(node_id)
        if not node.active:
            raise FailedPrecondition(
                NODE_INACTIVE, f"node {node_id!r} is inactive", {"node_id": node_id}
            )
        return node

    def _commit(self, command: c.Commit, now: float) -> Reservation:
        validation.check_reservation_call(command.reservation_id, command.request_id, ())
        reservation = self.reservation(command.reservation_id)
        if self._is_replay(command.request_id, command):
            return reservation
        if reservation.state is ReservationState.HELD:
            self._firm_up(reservation)
            self._record_reservation(reservation)
            self._emit(now, "RESERVATION_COMMITTED", reservation_id=reservation.reservation_id,
                       lines=[_line_event(line) for line in reservation.lines])
        elif reservation.state is not ReservationState.COMMITTED:
            raise _wrong_state(reservation, "commit")
        self._remember_request(command.request_id, command, now)
        return reservation

    def _firm_up(self, reservation: Reservation) -> None:
        for line in reservation.lines:
            if line.open_quantity:
                position = self.positions[(line.sku, line.node_id)]
                position.reserved -= line.open_quantity
                position.allocated += line.open_quantity
                self._touch_position(position)
        self._stop_expiry(reservation)
        self._set_state(reservation, ReservationState.COMMITTED)

    def _release(self, command: c.Release, now: float) -> Reservation:
        validation.check_reservation_call(command.reservation_id, command.request_id, command.lines)
        reservation = self.reservation(command.reservation_id)
        if self._is_replay(command.request_id, command):
            return reservation
        if not reservation.is_open:
            raise _wrong_state(reservation, "release")
        quantities = _line_quantities(reservation, command.lines, backordered_too=True)
        for line, quantity in quantities:
            self._release_units(reservation, line, quantity)
        return self._finish_line_change(
            reservation, command, now, "RESERVATION_RELEASED", quantities
        )

    def _release_units(
        self, reservation: Reservation, line: ReservationLine, quantity: int
    ) -> None:
        """Cancels backordered units first (nothing holds them yet), then returns held ones."""
        cancelled = min(quantity, line.backordered_quantity)
        if cancelled:
            line.backordered_quantity -= cancelled
            self._note_backorder(reservation.reservation_id, line)
        if quantity > cancelled:
            self._reduce_line(reservation, line, quantity - cancelled)
            line.released_quantity += quantity - cancelled

    def _fulfill(self, command: c.Fulfill, now: float) -> Reservation:
        validation.check_reservation_call(command.reservation_id, command.request_id, command.lines)
        reservation = self.reservation(command.reservation_id)
        if self._is_replay(command.request_id, command):
            return reservation
        if reservation.state is not ReservationState.COMMITTED:
            raise _wrong_state(reservation, "fulfill", hint=" (commit it first)"
                               if reservation.state is ReservationState.HELD else "")
        quantities = _line_quantities(reservation, command.lines)
        if not quantities:
            raise _nothing_to_ship(reservation)
        self._check_on_hand_for(quantities)
        for line, quantity in quantities:
            position = self._reduce_line(reservation, line, quantity)
            position.on_hand -= quantity
            self._record_position(position)
            line.fulfilled_quantity += quantity
        return self._finish_line_change(
            reservation, command, now, "RESERVATION_FULFILLED", quantities
        )

    def _finish_line_change(
        self,
        reservation: Reservation,
        command: c.Release | c.Fulfill,
        now: float,
        event_type: str,
        quantities: list[tuple[ReservationLine, int]],
    ) -> Reservation:
        """After a release or shipment: close if nothing is open, remember, write, announce."""
        self._close_if_done(reservation)
        self._remember_request(command.request_id, command, now)
        self._record_reservation(reservation)
        self._emit(
            now, event_type, reservation_id=reservation.reservation_id,
            state=reservation.state.value,
            lines=[_line_quantity_event(line, q) for line, q in quantities],
        )
        return reservation

    def _check_on_hand_for(self, quantities: list[tuple[ReservationLine, int]]) -> None:
        needed: dict[tuple[str, str], int] = {}
        for line, quantity in quantities:
            key = (line.sku, line.node_id)
            needed[key] = needed.get(key, 0) + quantity
        shortfalls = [
            _shortfall(f"{key[0]} at {key[1]}", self.positions[key], amount,
                       self.positions[key].on_hand, "on hand")
            for key, amount in needed.items()
            if amount > self.positions[key].on_hand
        ]
        if shortfalls:
            raise InsufficientOnHand(shortfalls)

    def _count_line(
        self, reservation_id: str, held: bool, position: Position, line: ReservationLine
    ) -> None:
        """Adds an open line (whose demand is already on the timeline) to the position's sums."""
        if held:
            position.reserved += line.open_quantity
        else:
            position.allocated += line.open_quantity
        position.lines[(reservation_id, line.line_id)] = line
        self._touch_position(position)

    def _note_backorder(self, reservation_id: str, line: ReservationLine) -> None:
        if line.backordered_quantity:
            self.backorders.setdefault(line.sku, set()).add((reservation_id, line.line_id))
        elif line.sku in self.backorders:
            self.backorders[line.sku].discard((reservation_id, line.line_id))

    def _reduce_line(
        self, reservation: Reservation, line: ReservationLine, quantity: int
    ) -> Position:
        """Removes `quantity` open units of a line from its position's demand."""
        position = self.positions[(line.sku, line.node_id)]
        position.add_delta(line.ship_day, quantity)
        if reservation.state is ReservationState.HELD:
            position.reserved -= quantity
        else:
            position.allocated -= quantity
        if line.open_quantity == quantity:
            key = (reservation.reservation_id, line.line_id)
            position.lines.pop(key, None)
            if key in position.at_risk:
                position.at_risk = position.at_risk - {key}
                self.at_risk_count -= 1
                if not position.at_risk:
                    self.positions_at_risk.discard(position.key)
            line.at_risk, line.at_risk_reason = False, ""
        self._touch_position(position)
        return position

    def _close_if_done(self, reservation: Reservation) -> None:
        """Closes a reservation with nothing left: no open units and none waiting on backorder."""
        if any(line.open_quantity or line.backordered_quantity for line in reservation.lines):
            return
        shipped = any(line.fulfilled_quantity for line in reservation.lines)
        self._stop_expiry(reservation)
        self._set_state(
            reservation, ReservationState.FULFILLED if shipped else ReservationState.RELEASED
        )

    def _set_state(self, reservation: Reservation, state: ReservationState) -> None:
        self.state_counts[reservation.state] -= 1
        self.open_ids(reservation.state).discard(reservation.reservation_id)
        reservation.state = state
        if state in OPEN_RESERVATION_STATES:
            self.state_counts[state] += 1
            self.open_ids(state).add(reservation.reservation_id)
        else:
            self._retire(reservation)

    def _retire(self, reservation: Reservation) -> None:
        """A closed reservation leaves live state: out of the open ones (and their indexes),
        into `closed` until durable, then only in the store (its closed record is written by
        the caller's _record_reservation, its purge index entry here)."""
        reservation_id = reservation.reservation_id
        for line in reservation.lines:
            self.backorders.get(line.sku, set()).discard((reservation_id, line.line_id))
        self.closed_counts[reservation.state] += 1
        reservation.close_time = self._now
        del self.reservations[reservation_id]
        self.closed[reservation_id] = reservation
        self._record("reservations", reservation_id, None)
        self._record("closed_by_time", codec.time_key(self._now, reservation_id), reservation_id)

    def _retire_hold(self, hold: Hold, now: float) -> None:
        """An ended hold leaves live state as a closed reservation does (see _retire)."""
        hold.end_time = now
        del self.holds[hold.hold_id]
        self.ended_holds[hold.hold_id] = hold
        self._record("holds", hold.hold_id, None)
        self._record("ended_holds", hold.hold_id, hold)
        self._record("ended_holds_by_time", codec.time_key(now, hold.hold_id), hold.hold_id)

    def _record_reservation(self, reservation: Reservation) -> None:
        if reservation.close_time is None:
            self._record("reservations", reservation.reservation_id, reservation)
        else:
            self._record("closed", reservation.reservation_id, reservation)

    def _stop_expiry(self, reservation: Reservation) -> None:
        if reservation.expire_time is not None:
            self.expiries.discard(
                (reservation.expire_time, "reservation", reservation.reservation_id)
            )
            reservation.expire_time = None

    def _expire_due(self, command: c.ExpireDue, now: float) -> int:
        """Expires every HELD reservation and hold whose time has come; returns how many."""
        expired = 0
        while self.expiries and self.expiries[0][0] <= now and expired != (command.limit or -1):
            _, kind, item_id = self.expiries[0]
            if kind == "hold":
                self._end_hold(self.holds[item_id], now, "HOLD_EXPIRED")
            else:
                self._expire_reservation(self.reservations[item_id], now)
            expired += 1
        return expired

    def _expire_reservation(self, reservation: Reservation, now: float) -> None:
        for line in reservation.lines:
            self._release_units(reservation, line, line.open_quantity + line.backordered_quantity)
        self._stop_expiry(reservation)
        self._set_state(reservation, ReservationState.EXPIRED)
        self.expired_total += 1
        self._record_reservation(reservation)
        self._emit(now, "RESERVATION_EXPIRED", reservation_id=reservation.reservation_id,
                   lines=[_line_event(line) for line in reservation.lines])

    # ----- reallocation and backorders ----------------------------------------------------

    def plan_reallocation(self, scope: Scope, now: float) -> ReallocationResult:
        """A dry run: what Reallocate would do now. Changes nothing."""
        _check_scope(scope)
        plans = Reallocator(self, day_of(now)).plan(scope)
        return ReallocationResult(plans, applied=False, plan_sequence=self.sequence)

    def _reallocate(self, command: c.Reallocate, now: float) -> ReallocationResult:
        scope = Scope(command.node_id, command.sku, command.reservation_ids)
        _check_scope(scope)
        if command.plan_sequence and command.plan_sequence != self.sequence:
            raise FailedPrecondition(
                PLAN_STALE,
                f"the ledger moved since the plan (sequence {command.plan_sequence}, now "
                f"{self.sequence}); plan again",
                {"plan_sequence": str(command.plan_sequence), "sequence": str(self.sequence)},
            )
        planned_at = self.sequence
        plans = Reallocator(self, day_of(now)).plan(scope)
        for plan in plans:
            self._apply_plan(plan, now)
        return ReallocationResult(plans, applied=True, plan_sequence=planned_at)

    def _apply_plan(self, plan: ReservationPlan, now: float) -> None:
        reservation = self.reservations[plan.reservation_id]
        held = reservation.state is ReservationState.HELD
        lines: list[ReservationLine] = []
        for line in reservation.lines:
            replacements = plan.replacements.get(line.line_id)
            if replacements is None:
                lines.append(line)
                continue
            if line.open_quantity:
                self._reduce_line(reservation, line, line.open_quantity)
            self.backorders.get(line.sku, set()).discard((reservation.reservation_id, line.line_id))
            for new in replacements:
                self._hold_new_line(reservation.reservation_id, held, new)
                lines.append(new)
        reservation.lines = lines
        self._record_reservation(reservation)
        self._emit(
            now, "RESERVATION_REALLOCATED", reservation_id=reservation.reservation_id,
            old_promise_date=_iso_or_none(plan.old_promise_day),
            new_promise_date=_iso_or_none(plan.new_promise_day),
            slipped=plan.slipped, unfilled=plan.unfilled_quantity,
            lines=[_line_event(line) for line in plan.old_lines + reservation.lines],
        )

    def _hold_new_line(self, reservation_id: str, held: bool, line: ReservationLine) -> None:
        """Puts a new line's open units on its position's timeline and sums."""
        self._note_backorder(reservation_id, line)
        if not line.node_id or not line.open_quantity:
            return
        position = self.positions[(line.sku, line.node_id)]
        position.add_delta(line.ship_day, -line.open_quantity)
        self._count_line(reservation_id, held, position, line)

    def _fill_backorders(self, sku: str, now: float, today: Day) -> None:
        """Gives backordered units of a sku what supply now allows, in policy order."""
        for reservation, line, allocations in Reallocator(self, today).backorder_fills(sku):
            held = reservation.state is ReservationState.HELD
            taken = {existing.line_id for existing in reservation.lines}
            filled = sum(allocation.quantity for allocation in allocations)
            remaining = line.backordered_quantity - filled
            line.backordered_quantity = remaining
            if line.quantity == 0:  # a placeholder: the first allocation takes it over
                first, allocations = allocations[0], allocations[1:]
                line.node_id, line.quantity, line.ship_day = (
                    first.node_id, first.quantity, first.ship_day
                )
                line.delivery_day = first.delivery_day if reservation.destination_region else None
                line.from_inbound = first.from_inbound
                self._hold_new_line(reservation.reservation_id, held, line)
            else:
                self._note_backorder(reservation.reservation_id, line)
            for allocation in allocations:
                part = line_from(allocation, free_part_id(line.line_id, taken), sku,
                                 bool(reservation.destination_region))
                reservation.lines.append(part)
                self._hold_new_line(reservation.reservation_id, held, part)
            self._record_reservation(reservation)
            self._emit(
                now, "BACKORDER_FILLED", reservation_id=reservation.reservation_id,
                line_id=line.line_id, sku=sku, filled=filled, remaining=remaining,
            )

    # ----- idempotency keys ---------------------------------------------------------------

    def _is_replay(self, request_id: str, command: c.Command) -> bool:
        """True when this request id already did exactly this; AlreadyExists when it did else.
        A record older than the idempotency window is forgotten: the request is new."""
        record = self.requests.get(request_id)
        if record is None:
            record = self.archive.request(request_id)
        if record is None or record.time < self._now - self.config.idempotency_window_s:
            return False
        if record.digest != c.digest(command):
            raise AlreadyExists("request", request_id)
        return True

    def _remember_request(self, request_id: str, command: c.Command, now: float) -> None:
        record = self.requests[request_id] = RequestRecord(c.digest(command), now)
        self._record("requests", request_id, record)
        self._record("requests_by_time", codec.time_key(now, request_id), request_id)

    # ----- positions and bookkeeping ------------------------------------------------------

    def _new_position(self, sku: str, node_id: str) -> Position:
        position = Position(sku, node_id)
        self._register_position(position)
        return position

    def _register_position(self, position: Position) -> None:
        self.positions[position.key] = position
        self.positions_by_sku.setdefault(position.sku, {})[position.node_id] = position
        self.positions_by_node.setdefault(position.node_id, {})[position.sku] = position

    def _forget_position(self, position: Position) -> None:
        del self.positions[position.key]
        by_node = self.positions_by_sku[position.sku]
        del by_node[position.node_id]
        if not by_node:
            del self.positions_by_sku[position.sku]
        del self.positions_by_node[position.node_id][position.sku]

    def _record_position(self, position: Position) -> None:
        """The position's stored fields changed (or it is new): write it, then re-examine it."""
        self._touch_position(position)
        self._record("positions", position_key(position.sku, position.node_id), position)

    def _touch_position(self, position: Position) -> None:
        """Only derived quantities changed: nothing to write, but re-examine it after the
        command."""
        _assert_position(position)
        self._touched[position.key] = position

    # ----- after each command: at-risk marks and stock-level events ------------------------

    def _note_day(self, today: Day) -> None:
        """A new day can change which lines fit (what was dated later is due now): re-examine
        every position with lines at risk. Positions not short stay so as days pass."""
        if today == self.risk_day:
            return
        self.risk_day = today
        for position in self.positions.values():
            if position.at_risk:
                self._touched[position.key] = position

    def _settle(self, command: c.Command, now: float) -> None:
        """After a command: backorders filled from freed or new supply, risk marks, stock levels."""
        today = day_of(now)
        trigger = RISK_TRIGGERS.get(type(command), SHORTAGE)
        if not isinstance(command, (c.Reserve, c.Commit)):
            for sku in sorted({key[0] for key in self._touched if self.backorders.get(key[0])}):
                self._fill_backorders(sku, now, today)
        touched = list(self._touched.values())
        self._touched.clear()
        may_short = not isinstance(command, DEMAND_ONLY_COMMANDS)
        for position in touched:
            if may_short or position.at_risk:
                self._refresh_risk(position, trigger, now, today)
            self._announce_stock_level(position, now, today)

    def _refresh_risk(self, position: Position, trigger: str, now: float, today: Day) -> None:
        node = self.nodes.get(position.node_id)
        if node is not None and not node.active:
            risky, reason = set(position.lines), NODE_INACTIVE
        elif position.at_risk or timeline.is_short(position, today):
            risky, reason = risk.lines_at_risk(position, self.reservations, today), trigger
        else:
            return
        for key in position.at_risk - risky:
            self._mark_line(position, key, "", now)
        for key in risky:
            current = position.lines[key].at_risk_reason
            # A line keeps the reason it went at risk for, unless its node went down or back up.
            if current != reason and (current in ("", NODE_INACTIVE) or reason == NODE_INACTIVE):
                self._mark_line(position, key, reason, now)
        self.at_risk_count += len(risky) - len(position.at_risk)
        position.at_risk = frozenset(risky)
        if risky:
            self.positions_at_risk.add(position.key)
        else:
            self.positions_at_risk.discard(position.key)

    def _mark_line(self, position: Position, key: tuple[str, str], reason: str, now: float) -> None:
        line = position.lines[key]
        line.at_risk = bool(reason)
        line.at_risk_reason = reason
        self._record_reservation(self.reservations[key[0]])
        self._emit(
            now, "LINE_AT_RISK" if reason else "LINE_RECOVERED", reservation_id=key[0],
            line_id=key[1], sku=line.sku, node_id=line.node_id, quantity=line.open_quantity,
            reason=reason,
        )

    def _announce_stock_level(self, position: Position, now: float, today: Day) -> None:
        flags = stock_flags(position, today)
        previous = position.stock_flags or (False, False)
        position.stock_flags = flags
        event_type = ""
        if previous[0] != flags[0]:
            event_type = "POSITION_BACK_IN_STOCK" if flags[0] else "POSITION_OUT_OF_STOCK"
        elif flags[1] and not previous[1]:
            event_type = "POSITION_BELOW_SAFETY_STOCK"
        if event_type:
            self._emit(
                now, event_type, sku=position.sku, node_id=position.node_id,
                on_hand=position.on_hand, safety_stock=position.safety_stock,
            )

    def _record(self, database: str, key: str, value: Any) -> None:
        self._changes.records[(database, key)] = value

    def _emit(self, now: float, event_type: str, **data: Any) -> None:
        assert event_type in EVENT_TYPES, f"undeclared event type {event_type}"
        self.sequence += 1
        self._changes.events.append(Event(self.sequence, now, event_type, data))

    # ----- whole-ledger checks ------------------------------------------------------------

    def check_invariants(self) -> list[str]:
        """Recomputes every derived quantity from the records; returns each disagreement."""
        return derived_problems(self)


# Commands that only add demand within ATP or take demand away: they cannot make a position
# short, only let at-risk lines fit again.
DEMAND_ONLY_COMMANDS = (c.Reserve, c.Commit, c.Release, c.ExpireDue)
EXPIRY = c.ExpireDue()
SHORTAGE = "SHORTAGE"
SUPPLY_SLIPPED = "SUPPLY_SLIPPED"
# Why newly at-risk lines are at risk, by the kind of command that put them there.
RISK_TRIGGERS: dict[type, str] = {c.UpsertSupply: SUPPLY_SLIPPED}


def stock_flags(position: Position, today: Day) -> tuple[bool, bool]:
    """(anything available to normal demand, free units below the safety stock)."""
    free = timeline.atp_on(position, today, today, include_safety_stock=True)
    return (
        free - position.safety_stock > 0,
        position.safety_stock > 0 and free < position.safety_stock,
    )


def position_key(sku: str, node_id: str) -> str:
    """Storage key of a position; ids are printable, so the unit separator cannot clash."""
    return f"{sku}\x1f{node_id}"


def _assert_position(position: Position) -> None:
    if (
        position.on_hand >= 0 and position.allocated >= 0 and position.reserved >= 0
        and position.held >= 0 and position.inbound >= 0 and position.safety_stock >= 0
    ):
        return  # the common case, without a lookup by name per quantity
    for name in ("on_hand", "allocated", "reserved", "held", "inbound", "safety_stock"):
        value = getattr(position, name)
        if value < 0:
            raise InvariantViolation(
                f"{name} of {position.sku} at {position.node_id} went negative: {value}"
            )


def _wrong_state(reservation: Reservation, action: str, hint: str = "") -> FailedPrecondition:
    state = reservation.state.value
    reason = RESERVATION_EXPIRED if reservation.state is ReservationState.EXPIRED else INVALID_STATE
    return FailedPrecondition(
        reason,
        f"cannot {action} reservation {reservation.reservation_id!r}: it is {state}{hint}",
        {"reservation_id": reservation.reservation_id, "state": state},
    )


def _line_quantities(
    reservation: Reservation, requested: tuple[c.LineQuantity, ...], backordered_too: bool = False
) -> list[tuple[ReservationLine, int]]:
    """The (line, units) a Release/Fulfill acts on: the given ones, or every open unit (and,
    for a release, every backordered one: `backordered_too`).

    A line the reservation lacks is a bad request; more units than a line has is a request
    the reservation's state refuses (FAILED_PRECONDITION, as for supply)."""
    def most(line: ReservationLine) -> int:
        return line.open_quantity + (line.backordered_quantity if backordered_too else 0)

    if not requested:
        return [(line, most(line)) for line in reservation.lines if most(line)]
    violations = validation.Violations()
    result: list[tuple[ReservationLine, int]] = []
    for index, item in enumerate(requested):
        line = reservation.line(item.line_id)
        if line is None:
            violations.add(f"lines[{index}].line_id", f"no line {item.line_id!r} in reservation")
        else:
            result.append((line, item.quantity))
    violations.raise_if_any()
    exceeding = [(line, quantity) for line, quantity in result if quantity > most(line)]
    if exceeding:
        raise FailedPrecondition(
            QUANTITY_EXCEEDS_OPEN,
            "; ".join(f"line {line.line_id!r} has {line.open_quantity} open units"
                      f"{_and_backordered(line) if backordered_too else ''}, got {quantity}"
                      for line, quantity in exceeding),
            {"reservation_id": reservation.reservation_id, "line_id": exceeding[0][0].line_id,
             "open_quantity": str(exceeding[0][0].open_quantity),
             "backordered_quantity": str(exceeding[0][0].backordered_quantity)},
        )
    return result


def _and_backordered(line: ReservationLine) -> str:
    return f" and {line.backordered_quantity} backordered" if line.backordered_quantity else ""


def _nothing_to_ship(reservation: Reservation) -> FailedPrecondition:
    """A whole Fulfill of a reservation whose every remaining unit waits on backorder."""
    waiting = sum(line.backordered_quantity for line in reservation.lines)
    return FailedPrecondition(
        QUANTITY_EXCEEDS_OPEN,
        f"reservation {reservation.reservation_id!r} has no open units to fulfil; {waiting} "
        "units are backordered, waiting for supply (release them to cancel)",
        {"reservation_id": reservation.reservation_id, "open_quantity": "0",
         "backordered_quantity": str(waiting)},
    )


def _shortfall(
    subject: str, position: Position, requested: int, available: int, what: str,
    line_id: str = "", note: str = "",
) -> Shortfall:
    label = f"line {line_id}" if line_id else subject
    where = f"{position.sku} at {position.node_id}"
    named = label if label == where else f"{label} ({where})"
    return Shortfall(
        subject=label,
        description=f"{named}: requested {requested}, {what} {available}{note}",
        requested=requested,
        available=available,
    )


def _check_scope(scope: Scope) -> None:
    violations = validation.Violations()
    violations.identifier("node_id", scope.node_id, required=False)
    violations.identifier("sku", scope.sku, required=False)
    if violations.count("reservation_ids", len(scope.reservation_ids), limits.lines_max, least=0):
        for index, reservation_id in enumerate(scope.reservation_ids):
            violations.identifier(f"reservation_ids[{index}]", reservation_id)
    violations.raise_if_any()


def _iso_or_none(day: Day | None) -> str | None:
    return _iso(day) if day is not None else None


def _fit_quantity(
    request: c.LineRequest,
    requested_day: Day | None,
    steps: list[tuple[Day, int]],
    earliest: Day,
    allow_partial: bool,
) -> tuple[int, Day]:
    """(units that fit, ship day) from the position's ATP steps: all, a part, or none."""
    if requested_day is not None:
        atp = timeline.atp_in(steps, requested_day)
        if atp >= request.quantity:
            return request.quantity, requested_day
        return (max(0, atp) if allow_partial else 0), requested_day
    day = timeline.earliest_in(steps, earliest, request.quantity)
    if day is not None:
        return request.quantity, day
    if not allow_partial:
        return 0, earliest
    most = min(request.quantity, max(0, steps[-1][1]))
    day = timeline.earliest_in(steps, earliest, most) if most else None
    return most, day if day is not None else earliest


def _delivery_day(node: Node, region: str, ship_day: Day) -> Day | None:
    lane = node.lane_to(region) if region else None
    return ship_day + lane.transit_days if lane else None


def _check_immutable(supply: Supply, command: c.UpsertSupply) -> None:
    violations = validation.Violations()
    for name in ("sku", "node_id"):
        given = getattr(command, name)
        if given and given != getattr(supply, name):
            violations.add(f"supply.{name}", f"cannot change {name} of an existing supply")
    violations.raise_if_any()


def _received_in_full(supply: Supply) -> FailedPrecondition:
    """Reopening a received supply would count its units twice (a retried creating upsert
    would add phantom inbound): a new shipment needs a supply id of its own."""
    return FailedPrecondition(
        INVALID_STATE,
        f"supply {supply.supply_id!r} was received in full ({supply.received_quantity} units); "
        "upsert new inbound under a new supply id",
        {"supply_id": supply.supply_id, "state": SupplyState.RECEIVED.value},
    )


def _supply_state(supply: Supply, cancelled: bool) -> SupplyState:
    if supply.quantity:
        return SupplyState.OPEN
    if cancelled or not supply.received_quantity:
        return SupplyState.CANCELLED
    return SupplyState.RECEIVED


@functools.lru_cache(maxsize=4096)
def _iso(day: Day) -> str:
    """Cached: every reservation event names its lines' ship dates, a few distinct days."""
    return datetime.date.fromordinal(day).isoformat()


def _movement_event(movement: c.Movement, position: Position, delta: int) -> dict[str, Any]:
    return {
        "sku": movement.sku,
        "node_id": movement.node_id,
        "movement": movement.type,
        "quantity": movement.quantity,
        "delta": delta,
        "on_hand": position.on_hand,
        "to_node_id": movement.to_node_id,
        "reason": movement.reason,
    }


def _supply_event(supply: Supply) -> dict[str, Any]:
    return {
        "supply_id": supply.supply_id,
        "sku": supply.sku,
        "node_id": supply.node_id,
        "quantity": supply.quantity,
        "expected_date": _iso(supply.expected_day),
        "state": supply.state.value,
    }


def _hold_event(hold: Hold) -> dict[str, Any]:
    return {
        "hold_id": hold.hold_id,
        "sku": hold.sku,
        "node_id": hold.node_id,
        "quantity": hold.quantity,
        "force": hold.force,
        "reason": hold.reason,
    }


def _line_quantity_event(line: ReservationLine, quantity: int) -> dict[str, Any]:
    return {"line_id": line.line_id, "sku": line.sku, "node_id": line.node_id, "quantity": quantity}


def _line_event(line: ReservationLine) -> dict[str, Any]:
    return {
        "line_id": line.line_id,
        "sku": line.sku,
        "node_id": line.node_id,
        "quantity": line.quantity,
        "ship_date": _iso(line.ship_day),
        "backordered": line.backordered_quantity,
    }
