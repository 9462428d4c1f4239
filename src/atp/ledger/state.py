"""The ledger's state: every index of nodes, positions, supply, holds and reservations, the
bookkeeping that keeps those indexes consistent with one another, and the record of what
changed (records to write, journal events) since the writer last took it.

Behaviour lives elsewhere: the handler modules (atp.ledger.handlers) change the state, one
command at a time; promising and reallocation planning read it through LedgerView. Nothing
here decides whether a command is allowed; everything here keeps a derived quantity or an
index in step with the records it is derived from.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TypeVar

from sortedcontainers import SortedDict, SortedList

from atp.ledger import commands
from atp.ledger.allocation_policy import (
    DEFAULT_POLICY,
    AllocationPolicy,
    PolicyInForce,
    Source,
)
from atp.ledger.archive import Archive, NoArchive
from atp.ledger.delivery_measures import DeliveryTally
from atp.ledger.errors import AlreadyExists, InvariantViolation, NotFound
from atp.ledger.model import (
    EVENT_TYPES,
    HELD,
    OPEN_RESERVATION_STATES,
    Day,
    Event,
    Hold,
    Lane,
    Node,
    Position,
    RequestRecord,
    Reservation,
    ReservationLine,
    ReservationState,
    Supply,
)
from atp.ledger.quotas import AllocationKey, ChannelAllocation, supply_base
from atp.ledger.sortedkeys import LazySortedDict, LazySortedSet

LineKey = tuple[str, str]  # (reservation_id, line_id)
PositionKey = tuple[str, str]  # (sku, node_id)
_Key = TypeVar("_Key", str, PositionKey)  # what open units by channel are counted under
# What the expiry queue holds: (expire_time, kind, id) of HELD reservations and of holds.
EXPIRING_RESERVATION = "reservation"
EXPIRING_HOLD = "hold"


class NoExpiryQueue(SortedList):  # type: ignore[misc]  # sortedcontainers is untyped
    """The expiry queue of a ledger that never expires anything: a gateway's copy, whose
    expiries are the writer's and reach it as records. Adding each HELD reservation to a
    sorted list of (time, kind, id), and taking it out again, was a tenth of applying the
    commit feed. Always empty: next_expiry() is None."""

    def add(self, value: object) -> None:
        pass

    def discard(self, value: object) -> None:
        pass

    def update(self, iterable: object) -> None:
        pass


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
    # The allocation policy where no SKU or node policy is set (--allocation-policy).
    allocation_policy: AllocationPolicy = DEFAULT_POLICY


@dataclass
class Changes:
    """What the commands since the last take changed, in the domain's terms: the records to
    write (persistence maps them to stored records) and the journal events.

    A reservation is in `reservations` while open and in `closed` once closed (its open
    record is then deleted); holds likewise in `holds` and `ended_holds`.
    """

    nodes: dict[str, Node] = field(default_factory=dict)
    positions: dict[PositionKey, Position] = field(default_factory=dict)
    supplies: dict[str, Supply] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    ended_holds: dict[str, Hold] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    closed: dict[str, Reservation] = field(default_factory=dict)
    requests: dict[str, RequestRecord] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # (sku, node_id) -> the allocation policy set there; None: removed.
    allocation_policies: dict[PositionKey, AllocationPolicy | None] = field(
        default_factory=dict)
    # Channel allocations set, by (sku, node_id, channel); None: removed.
    channel_allocations: dict[tuple[str, str, str], ChannelAllocation | None] = field(
        default_factory=dict)

    def __bool__(self) -> bool:
        # Events first: nearly every change emits one, so this rarely looks further.
        return bool(
            self.events or self.positions or self.reservations or self.closed
            or self.requests or self.nodes or self.supplies or self.holds or self.ended_holds
            or self.allocation_policies or self.channel_allocations
        )


class LedgerState:
    """Indexes and their bookkeeping. Every collection here is bounded by what the ledger
    holds live (see atp.limits, "In memory"): open reservations, active holds, positions,
    supplies, nodes; and what the writer has not yet made durable."""

    def __init__(self, config: LedgerConfig | None = None) -> None:
        self.config = config or LedgerConfig()
        # SortedDicts (typed as dicts): ordered by id for listing and paging.
        self.nodes: dict[str, Node] = SortedDict()
        self.positions: dict[PositionKey, Position] = {}
        self.positions_by_sku: dict[str, dict[str, Position]] = {}  # sku -> node_id -> Position
        self.positions_by_node: dict[str, dict[str, Position]] = {}  # node_id -> sku -> Position
        self.supplies: dict[str, Supply] = SortedDict()
        self.holds: dict[str, Hold] = SortedDict()
        # Active holds by position, for the held-units audit after a hold command.
        self.holds_by_position: dict[PositionKey, dict[str, Hold]] = {}
        # Open reservations (HELD, COMMITTED): live state.
        self.reservations: dict[str, Reservation] = LazySortedDict()
        # Closed reservations, ended holds and idempotency records not yet durable (then the
        # archive has them and forget_durable() drops them here).
        self.closed: dict[str, Reservation] = {}
        self.ended_holds: dict[str, Hold] = {}
        self.requests: dict[str, RequestRecord] = {}
        self.archive: Archive = NoArchive()
        # Indexes for listing without scanning: open reservation ids by state, and the
        # positions with lines at risk.
        self.held_ids: LazySortedSet[str] = LazySortedSet()
        self.committed_ids: LazySortedSet[str] = LazySortedSet()
        self.positions_at_risk: set[PositionKey] = set()
        # (expire_time, kind, id) of HELD reservations and active holds that expire.
        self.expiries: SortedList = SortedList()
        # sku -> (reservation_id, line_id) of lines of open reservations with backordered units.
        self.backorders: dict[str, set[LineKey]] = {}
        # Plans a gateway made on its copy (commands.PlannedReserve) are taken while nothing
        # they read changed after the commit they were made at. The writer keeps change_mark
        # at the commit that will carry what is applied now; a SKU's positions changed at
        # sku_changed[sku], the nodes (or anything, at load) at everything_changed.
        self.change_mark = 0
        self.sku_changed: dict[str, int] = {}
        self.everything_changed = 0
        # The plan offered for the command being applied (placing takes it), or None.
        self.offered_plan: object | None = None
        # The digest a gateway sent with the Reserve being applied (commands.VettedReserve),
        # or "": the Reserve is then known plain (valid, no ship dates), its digest known.
        self.vetted_digest = ""
        self.plans_offered = 0  # gateway plans offered, and those valid (taken)
        self.plans_taken = 0
        # The sequence of the last journal event.
        self.sequence = 0
        # The principal the command being applied came from (its events record it).
        self.principal = ""
        # Counts kept for metrics without scanning: open reservations per state, reservations
        # closed since start per state, expiries so far, lines at risk.
        self.state_counts: collections.Counter[ReservationState] = collections.Counter()
        self.closed_counts: collections.Counter[ReservationState] = collections.Counter()
        self.expired_total = 0
        self.at_risk_count = 0
        # Deliveries recorded since start and the measures they met, per channel (metrics).
        self.delivery_tally = DeliveryTally()
        # Positions the running command changed: re-examined (risk, stock levels, audit)
        # after it.
        self.touched: dict[PositionKey, Position] = {}
        # The day at-risk marks were last computed for.
        self.risk_day: Day | None = None
        # The instant of the command being applied (closing stamps it on reservations).
        self.now = 0.0
        self.changes = Changes()
        # (sku, node_id) -> the allocation policy set there (node_id "": the whole SKU).
        self.allocation_policies: dict[PositionKey, AllocationPolicy] = {}
        # sku -> (node_id, channel) -> its channel allocation (quota); only SKUs with one, so
        # that a Reserve of any other SKU pays one dict lookup (atp.ledger.quotas).
        self.channel_allocations: dict[str, dict[AllocationKey, ChannelAllocation]] = {}
        # (sku, node_id) -> channel -> open units of its reservations there (HELD and
        # COMMITTED lines), kept for the SKUs with an allocation only.
        self.channel_units: dict[PositionKey, dict[str, int]] = {}
        # sku -> channel -> the same open units summed over the SKU's positions, kept with
        # channel_units: what a SKU-wide allocation's consumption is read from, without a
        # pass over the SKU's positions on every Reserve (quotas.count_problems checks it).
        self.sku_channel_units: dict[str, dict[str, int]] = {}
        # sku -> quotas.supply_base of its positions, for SKUs with an allocation, filled when
        # a fence first needs it (a SKU-wide share is taken of it on every Reserve). On hand,
        # safety stock, holds and inbound change only with a save_position, so a save (and
        # indexing or dropping a position) drops the SKU's entry; a follower, which applies
        # its leader's records without saving, drops them all (forget_supply_bases).
        # quotas.count_problems checks every entry.
        self.supply_bases: dict[str, int] = {}
        # region -> the active nodes with a lane there, and those lanes; cleared on node change.
        self._routes: dict[str, tuple[list[Node], dict[str, Lane]]] = {}

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

    def position(self, sku: str, node_id: str) -> Position | None:
        return self.positions.get((sku, node_id))

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

    def retained_reservation(self, reservation_id: str, now: float) -> Reservation | None:
        """The reservation guarding this id now: closed ones only within closed retention
        (the purge may lag behind the window by a slice or two)."""
        reservation = self.reservations.get(reservation_id)
        if reservation is not None:
            return reservation
        reservation = self.closed.get(reservation_id) or self.archive.reservation(reservation_id)
        if reservation is None or self.past_retention(reservation.close_time, now):
            return None
        return reservation

    def retained_hold(self, hold_id: str, now: float) -> Hold | None:
        """The hold guarding this id now: an active one, or an ended one within closed
        retention (then it is purged)."""
        hold = self.holds.get(hold_id)
        if hold is not None:
            return hold
        hold = self.ended_holds.get(hold_id) or self.archive.hold(hold_id)
        if hold is None or self.past_retention(hold.end_time, now):
            return None
        return hold

    def past_retention(self, end_time: float | None, now: float) -> bool:
        """Whether something that ended at `end_time` no longer guards its id (its record
        may still wait for the purge, which runs in slices)."""
        return end_time is not None and end_time < now - self.config.closed_retention_s

    def open_ids(self, state: ReservationState) -> LazySortedSet[str]:
        """The index of open reservation ids in `state` (HELD or COMMITTED); an `is` test,
        not a dict keyed by the enum, whose __hash__ is a Python call on the reserve path."""
        return self.held_ids if state is HELD else self.committed_ids

    def known_reservations(self) -> dict[str, Reservation]:
        """Every reservation memory holds: open ones and closed ones not yet handed to the
        archive (all of them, for a ledger without a store)."""
        return {**self.closed, **self.reservations}

    def known_holds(self) -> dict[str, Hold]:
        """Every hold memory holds: active ones and ended ones not yet handed to the archive."""
        return {**self.ended_holds, **self.holds}

    def include_safety_stock(self, priority: int) -> bool:
        return priority >= self.config.safety_stock_priority_min

    @property
    def default_policy(self) -> AllocationPolicy:
        return self.config.allocation_policy

    def next_expiry(self) -> float | None:
        return self.expiries[0][0] if self.expiries else None

    @property
    def at_risk_lines(self) -> int:
        return self.at_risk_count

    # ----- positions ----------------------------------------------------------------------

    def add_position(self, sku: str, node_id: str) -> Position:
        """A new, empty position, indexed (not yet saved: its first change saves it)."""
        position = Position(sku, node_id)
        self.index_position(position)
        return position

    def index_position(self, position: Position) -> None:
        """Puts a position (new, or loaded from its record) into the position indexes."""
        self.positions[position.key] = position
        self.positions_by_sku.setdefault(position.sku, {})[position.node_id] = position
        self.positions_by_node.setdefault(position.node_id, {})[position.sku] = position
        self.supply_bases.pop(position.sku, None)

    def drop_position(self, position: Position) -> None:
        """Takes a position created by a command that was then refused out of the indexes."""
        del self.positions[position.key]
        by_node = self.positions_by_sku[position.sku]
        del by_node[position.node_id]
        if not by_node:
            del self.positions_by_sku[position.sku]
        del self.positions_by_node[position.node_id][position.sku]
        self.supply_bases.pop(position.sku, None)

    def save_position(self, position: Position) -> None:
        """The position's stored fields changed (or it is new): write it, and re-examine it."""
        key = (position.sku, position.node_id)  # not the .key property: a call, every reserve
        self.touched[key] = position
        self.changes.positions[key] = position
        self.supply_bases.pop(position.sku, None)

    def reexamine(self, position: Position) -> None:
        """Only derived quantities changed: nothing to write, but the position is re-examined
        (risk marks, stock level, audit) after the command."""
        self.touched[(position.sku, position.node_id)] = position

    # ----- reservations -------------------------------------------------------------------

    def count_line(
        self, reservation_id: str, held: bool, position: Position, line: ReservationLine,
        channel: str,
    ) -> None:
        """Adds an open line (whose demand is already on the timeline) to the position's sums;
        `channel`: its reservation's."""
        if held:
            position.reserved += line.open_quantity
        else:
            position.allocated += line.open_quantity
        position.lines[(reservation_id, line.line_id)] = line
        self.touched[(position.sku, position.node_id)] = position
        if line.sku in self.channel_allocations:
            self._count_channel_units(position, channel, line.open_quantity)

    def reduce_line(
        self, reservation: Reservation, line: ReservationLine, quantity: int
    ) -> Position:
        """Removes `quantity` open units of a line from its position's demand and sums (the
        caller then counts them as released or fulfilled)."""
        position = self.positions[(line.sku, line.node_id)]
        position.add_delta(line.ship_day, quantity)
        if reservation.state is HELD:
            position.reserved -= quantity
        else:
            position.allocated -= quantity
        if line.sku in self.channel_allocations:
            self._count_channel_units(position, reservation.channel, -quantity)
        if line.open_quantity == quantity:
            self._unindex_line(position, (reservation.reservation_id, line.line_id))
            line.at_risk, line.at_risk_reason = False, ""
        self.touched[(position.sku, position.node_id)] = position
        return position

    def index_at_risk(self, position: Position, key: LineKey) -> None:
        """A line of the position marked at risk (by its record) joins the at-risk indexes."""
        if key not in position.at_risk:
            position.at_risk = position.at_risk | {key}
            self.at_risk_count += 1
            self.positions_at_risk.add((position.sku, position.node_id))

    def unindex_open(self, reservation: Reservation) -> None:
        """An open reservation (its lines already taken off their positions) out of the open
        indexes: the inverse of index_open."""
        self.stop_expiry(reservation)
        self.state_counts[reservation.state] -= 1
        self.open_ids(reservation.state).discard(reservation.reservation_id)
        for line in reservation.lines:
            self.backorders.get(line.sku, set()).discard((reservation.reservation_id, line.line_id))
        del self.reservations[reservation.reservation_id]

    def _unindex_line(self, position: Position, key: LineKey) -> None:
        position.lines.pop(key, None)
        if key in position.at_risk:
            position.at_risk = position.at_risk - {key}
            self.at_risk_count -= 1
            if not position.at_risk:
                self.positions_at_risk.discard(position.key)

    def note_backorder(self, reservation_id: str, line: ReservationLine) -> None:
        """Keeps the backorder index in step with the line's backordered units."""
        if line.backordered_quantity:
            self.backorders.setdefault(line.sku, set()).add((reservation_id, line.line_id))
        elif line.sku in self.backorders:
            self.backorders[line.sku].discard((reservation_id, line.line_id))

    def index_open(self, reservation: Reservation) -> None:
        """A new open reservation (its lines already counted) joins the open indexes."""
        self.reservations[reservation.reservation_id] = reservation
        self.state_counts[reservation.state] += 1
        self.open_ids(reservation.state).add(reservation.reservation_id)
        if reservation.expire_time is not None:
            self.expiries.add(
                (reservation.expire_time, EXPIRING_RESERVATION, reservation.reservation_id)
            )

    def set_state(self, reservation: Reservation, state: ReservationState) -> None:
        """Moves a reservation to `state`, keeping the per-state indexes; a closing state
        retires it from live state."""
        self.state_counts[reservation.state] -= 1
        self.open_ids(reservation.state).discard(reservation.reservation_id)
        reservation.state = state
        if state in OPEN_RESERVATION_STATES:
            self.state_counts[state] += 1
            self.open_ids(state).add(reservation.reservation_id)
        else:
            self.retire(reservation)

    def retire(self, reservation: Reservation) -> None:
        """A closed reservation leaves live state: out of the open ones (and their indexes),
        into `closed` until durable, then only in the store (saving it writes the closed
        record in place of the open one)."""
        reservation_id = reservation.reservation_id
        for line in reservation.lines:
            self.backorders.get(line.sku, set()).discard((reservation_id, line.line_id))
        self.closed_counts[reservation.state] += 1
        reservation.close_time = self.now
        del self.reservations[reservation_id]
        self.closed[reservation_id] = reservation
        self.changes.reservations.pop(reservation_id, None)

    def move_expiry(self, reservation: Reservation, expire_time: float) -> None:
        """A HELD reservation's expiry, moved (Extend)."""
        self.stop_expiry(reservation)
        reservation.expire_time = expire_time
        self.expiries.add((expire_time, EXPIRING_RESERVATION, reservation.reservation_id))

    def stop_expiry(self, reservation: Reservation) -> None:
        if reservation.expire_time is not None:
            self.expiries.discard(
                (reservation.expire_time, EXPIRING_RESERVATION, reservation.reservation_id)
            )
            reservation.expire_time = None

    def save_reservation(self, reservation: Reservation) -> None:
        """Queues the reservation's record for the next commit; every change of a reservation
        comes through here, so here its version moves on."""
        reservation.version += 1
        if reservation.close_time is None:
            self.changes.reservations[reservation.reservation_id] = reservation
        else:
            self.changes.closed[reservation.reservation_id] = reservation
            # A closed one changed again (RecordDelivery) came from the archive: memory
            # answers for it until the new record is durable, as for one just retired.
            self.closed[reservation.reservation_id] = reservation

    # ----- holds --------------------------------------------------------------------------

    def index_hold(self, hold: Hold) -> None:
        """A hold (new, or loaded from its record) joins the hold indexes; the expiry queue
        is the caller's (a restart queues every expiry at once)."""
        self.holds[hold.hold_id] = hold
        self.holds_by_position.setdefault((hold.sku, hold.node_id), {})[hold.hold_id] = hold

    def unindex_hold(self, hold: Hold) -> None:
        """A hold out of the hold indexes and the expiry queue (its units are the caller's)."""
        if hold.expire_time is not None:
            self.expiries.discard((hold.expire_time, EXPIRING_HOLD, hold.hold_id))
        del self.holds[hold.hold_id]
        key = (hold.sku, hold.node_id)
        at_position = self.holds_by_position.get(key, {})
        at_position.pop(hold.hold_id, None)
        if not at_position:
            self.holds_by_position.pop(key, None)

    def retire_hold(self, hold: Hold, now: float) -> None:
        """An ended hold leaves live state as a closed reservation does (see retire)."""
        hold.active = False
        hold.end_time = now
        self.unindex_hold(hold)
        self.ended_holds[hold.hold_id] = hold
        self.changes.holds.pop(hold.hold_id, None)
        self.changes.ended_holds[hold.hold_id] = hold

    def save_hold(self, hold: Hold) -> None:
        if hold.active:
            self.changes.holds[hold.hold_id] = hold
        else:
            self.changes.ended_holds[hold.hold_id] = hold

    # ----- nodes and supply ---------------------------------------------------------------

    def save_node(self, node: Node) -> None:
        self.load_node(node)
        self.changes.nodes[node.node_id] = node

    def load_node(self, node: Node) -> None:
        """A node (new, changed, or from its record) into the index; routes are derived
        from the nodes, so they are computed afresh."""
        self.nodes[node.node_id] = node
        self._routes.clear()

    def save_supply(self, supply: Supply) -> None:
        self.supplies[supply.supply_id] = supply
        self.changes.supplies[supply.supply_id] = supply

    # ----- allocation policies -----------------------------------------------------------

    def policy_in_force(self, sku: str, node_id: str) -> PolicyInForce:
        """The policy that orders a position's demand: the node's, else the SKU's, else the
        server default (node_id "": the SKU's, else the default)."""
        policies = self.allocation_policies
        if policies:  # nearly always empty: no lookups then
            if node_id:
                policy = policies.get((sku, node_id))
                if policy is not None:
                    return PolicyInForce(sku, node_id, policy, Source.NODE_POLICY)
            policy = policies.get((sku, ""))
            if policy is not None:
                return PolicyInForce(sku, node_id, policy, Source.SKU_POLICY)
        return PolicyInForce(sku, node_id, self.config.allocation_policy, Source.SERVER_DEFAULT)

    def policy_for(self, sku: str, node_id: str) -> AllocationPolicy:
        return self.policy_in_force(sku, node_id).policy

    def save_allocation_policy(
        self, sku: str, node_id: str, policy: AllocationPolicy | None
    ) -> None:
        """Sets (None: removes) the policy of a scope, and queues its record."""
        if policy is None:
            self.allocation_policies.pop((sku, node_id), None)
        else:
            self.allocation_policies[(sku, node_id)] = policy
        self.changes.allocation_policies[(sku, node_id)] = policy

    # ----- channel allocations ------------------------------------------------------------

    def load_channel_allocation(self, allocation: ChannelAllocation) -> None:
        """An allocation (set, or from its record) into the index; a removed one out of it.
        The open units per channel are counted at the positions of SKUs with an allocation
        only: a SKU's first allocation counts its open lines, its last one drops the counts."""
        sku = allocation.sku
        by_key = self.channel_allocations.get(sku)
        if by_key is None:
            if allocation.removed:
                return
            by_key = self.channel_allocations[sku] = {}
            self._recount_channel_units(sku)
        if allocation.removed:
            by_key.pop(allocation.key, None)
            if not by_key:
                del self.channel_allocations[sku]
                for node_id in self.positions_by_sku.get(sku, {}):
                    self.channel_units.pop((sku, node_id), None)
                self.sku_channel_units.pop(sku, None)
                self.supply_bases.pop(sku, None)
        else:
            by_key[allocation.key] = allocation

    def _recount_channel_units(self, sku: str) -> None:
        """The open units of each channel at each of the SKU's positions, from its lines."""
        self.sku_channel_units.pop(sku, None)
        for node_id, position in self.positions_by_sku.get(sku, {}).items():
            self.channel_units.pop((sku, node_id), None)
            for (reservation_id, _), line in position.lines.items():
                reservation = self.reservations.get(reservation_id)
                if reservation is not None and line.open_quantity:
                    self._count_channel_units(position, reservation.channel, line.open_quantity)

    def _count_channel_units(self, position: Position, channel: str, units: int) -> None:
        _add_units(self.channel_units, (position.sku, position.node_id), channel, units)
        _add_units(self.sku_channel_units, position.sku, channel, units)

    def supply_base_of(self, sku: str) -> int:
        """quotas.supply_base of the SKU's positions, kept while it has an allocation."""
        base = self.supply_bases.get(sku)
        if base is None:
            base = supply_base(self.positions_by_sku.get(sku, {}).values())
            if sku in self.channel_allocations:
                self.supply_bases[sku] = base
        return base

    def forget_supply_bases(self) -> None:
        """Positions changed without save_position (a follower applying records)."""
        self.supply_bases.clear()

    def save_channel_allocation(self, allocation: ChannelAllocation) -> None:
        self.load_channel_allocation(allocation)
        self.changes.channel_allocations[
            (allocation.sku, allocation.node_id, allocation.channel)
        ] = None if allocation.removed else allocation

    # ----- idempotency keys ---------------------------------------------------------------

    def is_replay(self, request_id: str, command: commands.Command) -> bool:
        """True when this request id already did exactly this; AlreadyExists when it did else.
        A record older than the idempotency window is forgotten: the request is new."""
        record = self.requests.get(request_id)
        if record is None:
            record = self.archive.request(request_id)
        if record is None or record.time < self.now - self.config.idempotency_window_s:
            return False
        if record.digest != commands.digest(command):
            raise AlreadyExists("request", request_id)
        return True

    def remember_request(self, request_id: str, command: commands.Command, now: float) -> None:
        record = self.requests[request_id] = RequestRecord(commands.digest(command), now)
        self.changes.requests[request_id] = record

    # ----- the change record --------------------------------------------------------------

    def emit(self, now: float, event_type: str, **data: object) -> None:
        if event_type not in EVENT_TYPES:
            raise InvariantViolation(f"undeclared event type {event_type}")
        self.sequence += 1
        self.changes.events.append(Event(self.sequence, now, event_type, data, self.principal))

    def take_changes(self) -> Changes:
        """Hands over what changed since the last call (for one durable batch)."""
        changes, self.changes = self.changes, Changes()
        return changes

    @property
    def has_changes(self) -> bool:
        changes = self.changes
        return bool(changes.events) or bool(changes)  # events first: nearly always some

    def forget_durable(self, changes: Changes) -> None:
        """The batch of `changes` is durable: its closed reservations, ended holds and
        idempotency records leave memory (the archive answers for them from now on)."""
        for reservation_id, reservation in changes.closed.items():
            if self.closed.get(reservation_id) is reservation:
                del self.closed[reservation_id]
        for hold_id, hold in changes.ended_holds.items():
            if self.ended_holds.get(hold_id) is hold:
                del self.ended_holds[hold_id]
        for request_id, record in changes.requests.items():
            if self.requests.get(request_id) is record:
                del self.requests[request_id]


def _add_units(counts: dict[_Key, dict[str, int]], key: _Key, channel: str, units: int) -> None:
    """Adds units to counts[key][channel], dropping a count that reaches 0 and an empty key."""
    by_channel = counts.get(key)
    if by_channel is None:
        by_channel = counts[key] = {}
    total = by_channel.get(channel, 0) + units
    if total:
        by_channel[channel] = total
    else:
        by_channel.pop(channel, None)
        if not by_channel:
            del counts[key]
