"""Nodes and stock on hand: UpsertNode, AdjustStock (receipts, returns, shrinkage, damage,
cycle counts, transfers) and SetSafetyStock."""

from __future__ import annotations

from atp.ledger import commands, event_data, timeline, validation
from atp.ledger.errors import InsufficientAvailability, InsufficientOnHand, LedgerError
from atp.ledger.event_data import EventData
from atp.ledger.model import Day, MovementType, Node, Position, day_of
from atp.ledger.refusals import check_on_hand_limit, shortfall
from atp.ledger.state import LedgerState, PositionKey

MOVEMENT_TYPES = frozenset(member.value for member in MovementType)
ADDING = (MovementType.RECEIPT, MovementType.RETURN)
REMOVING = (MovementType.SHRINKAGE, MovementType.DAMAGE)
# Movements that may create a position (the others need the SKU known already).
CREATING = (MovementType.RECEIPT, MovementType.RETURN, MovementType.CYCLE_COUNT)


def upsert_node(state: LedgerState, command: commands.UpsertNode, now: float) -> Node:
    validation.check_node(command)
    node = Node(
        node_id=command.node_id,
        kind=(command.kind or "DC").upper(),
        region=command.region,
        active=command.active,
        handling_days=command.handling_days,
        lanes=command.lanes,
    )
    previous = state.nodes.get(node.node_id)
    if previous == node:
        return node
    state.save_node(node)
    if previous is not None and previous.active != node.active:
        for position in state.positions_by_node.get(node.node_id, {}).values():
            state.reexamine(position)  # its lines go at risk, or recover
    state.emit(now, "NODE_UPSERTED", node_id=node.node_id, active=node.active)
    return node


class _Movements:
    """The positions one AdjustStock moved so far, to undo them all if a later one fails."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.on_hand_before: dict[PositionKey, tuple[Position, int]] = {}
        self.created: list[Position] = []
        self.events: list[EventData] = []

    def position(self, sku: str, node_id: str) -> Position:
        position = self.state.positions.get((sku, node_id))
        if position is None:
            position = self.state.add_position(sku, node_id)
            self.created.append(position)
        if position.key not in self.on_hand_before:
            self.on_hand_before[position.key] = (position, position.on_hand)
        return position

    def undo(self) -> None:
        for position, on_hand in self.on_hand_before.values():
            position.on_hand = on_hand
        for position in self.created:
            self.state.drop_position(position)

    @property
    def moved(self) -> list[Position]:
        return [position for position, _ in self.on_hand_before.values()]


def adjust_stock(state: LedgerState, command: commands.AdjustStock, now: float) -> list[Position]:
    validation.check_adjust_stock(command, MOVEMENT_TYPES)
    if state.is_replay(command.request_id, command):
        return _positions_named_by(state, command)
    today = day_of(now)
    movements = _Movements(state)
    try:
        for index, movement in enumerate(command.movements):
            _apply_movement(state, f"movements[{index}]", movement, today, movements)
    except LedgerError:
        movements.undo()
        raise
    state.remember_request(command.request_id, command, now)
    for position in movements.moved:
        state.save_position(position)
    for data in movements.events:
        state.emit(now, "STOCK_MOVED", **data)
    return movements.moved


def _apply_movement(
    state: LedgerState, path: str, movement: commands.Movement, today: Day, moved: _Movements
) -> None:
    state.node(movement.node_id)
    kind = MovementType(movement.type)
    if kind not in CREATING:
        state.known_sku(movement.sku)
    position = moved.position(movement.sku, movement.node_id)
    before = position.on_hand
    if kind in ADDING:
        check_on_hand_limit(f"{path}.quantity", position.on_hand + movement.quantity)
        position.on_hand += movement.quantity
    elif kind in REMOVING:
        if movement.quantity > position.on_hand:
            raise InsufficientOnHand(
                [shortfall(path, position, movement.quantity, position.on_hand, "on hand")]
            )
        position.on_hand -= movement.quantity
    elif kind is MovementType.CYCLE_COUNT:
        position.on_hand = movement.quantity
    else:
        _transfer(state, path, movement, position, today, moved)
    moved.events.append(event_data.movement(movement, position, position.on_hand - before))


def _transfer(
    state: LedgerState, path: str, movement: commands.Movement, source: Position, today: Day,
    moved: _Movements,
) -> None:
    state.node(movement.to_node_id)
    # Only physical units that nothing else needs: supply due but not received stays put.
    free = max(0, min(source.on_hand, timeline.stock_only_atp(source, today, False)))
    if movement.quantity > free:
        raise InsufficientAvailability(
            [shortfall(path, source, movement.quantity, free, "available to transfer")]
        )
    target = moved.position(movement.sku, movement.to_node_id)
    check_on_hand_limit(f"{path}.quantity", target.on_hand + movement.quantity)
    source.on_hand -= movement.quantity
    target.on_hand += movement.quantity
    moved.events.append(event_data.transfer_in(movement, target))


def _positions_named_by(state: LedgerState, command: commands.AdjustStock) -> list[Position]:
    """A replay's answer: the positions its movements name, as they are now."""
    keys: dict[PositionKey, None] = {}
    for movement in command.movements:
        keys[(movement.sku, movement.node_id)] = None
        if movement.to_node_id:
            keys[(movement.sku, movement.to_node_id)] = None
    return [state.positions[key] for key in keys if key in state.positions]


def set_safety_stock(
    state: LedgerState, command: commands.SetSafetyStock, now: float
) -> Position:
    validation.check_safety_stock(command)
    state.node(command.node_id)
    position = state.positions.get((command.sku, command.node_id))
    if position is None:
        position = state.add_position(command.sku, command.node_id)
    elif position.safety_stock == command.quantity:
        return position
    position.safety_stock = command.quantity
    state.save_position(position)
    state.emit(
        now, "SAFETY_STOCK_SET", sku=command.sku, node_id=command.node_id,
        quantity=command.quantity,
    )
    return position
