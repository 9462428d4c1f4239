"""Inbound supply: UpsertSupply (create, change quantity or date, cancel) and ReceiveSupply."""

from __future__ import annotations

from atp import limits
from atp.ledger import commands, event_data, validation
from atp.ledger.errors import (
    INVALID_STATE,
    QUANTITY_EXCEEDS_OPEN,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from atp.ledger.model import Day, Position, Supply, SupplyState, day_of
from atp.ledger.refusals import check_on_hand_limit
from atp.ledger.state import LedgerState


def upsert_supply(state: LedgerState, command: commands.UpsertSupply, now: float) -> Supply:
    expected_day = validation.check_supply(command, day_of(now))
    supply = state.supplies.get(command.supply_id)
    if supply is None:
        return _create_supply(state, command, expected_day, now)
    _check_immutable(supply, command)
    if supply.quantity == command.quantity and supply.expected_day == expected_day:
        return supply
    if supply.state is SupplyState.RECEIVED:
        raise _received_in_full(supply)
    position = state.positions[(supply.sku, supply.node_id)]
    _check_inbound_limit(position, command.quantity - supply.quantity)
    _unapply(position, supply)
    previous_day = supply.expected_day
    supply.quantity = command.quantity
    supply.expected_day = expected_day
    supply.state = _supply_state(supply, cancelled=command.quantity == 0)
    _apply(position, supply)
    state.save_supply(supply)
    state.save_position(position)
    state.emit(
        now, "SUPPLY_UPDATED", **event_data.supply(supply), slipped=expected_day > previous_day
    )
    return supply


def _create_supply(
    state: LedgerState, command: commands.UpsertSupply, expected_day: Day, now: float
) -> Supply:
    missing = [
        FieldViolation(f"supply.{name}", "required when creating a supply")
        for name in ("sku", "node_id")
        if not getattr(command, name)
    ]
    if missing:
        raise InvalidArgument(missing)
    state.node(command.node_id)
    position = state.positions.get((command.sku, command.node_id))
    _check_inbound_limit(position, command.quantity)
    if position is None:
        position = state.add_position(command.sku, command.node_id)
    supply = Supply(
        supply_id=command.supply_id,
        sku=command.sku,
        node_id=command.node_id,
        quantity=command.quantity,
        expected_day=expected_day,
        state=SupplyState.OPEN if command.quantity else SupplyState.CANCELLED,
    )
    _apply(position, supply)
    state.save_supply(supply)
    state.save_position(position)
    state.emit(now, "SUPPLY_CREATED", **event_data.supply(supply))
    return supply


def receive_supply(state: LedgerState, command: commands.ReceiveSupply, now: float) -> Supply:
    validation.check_receive(command)
    supply = state.supplies.get(command.supply_id)
    if supply is None:
        raise NotFound("supply", command.supply_id)
    if state.is_replay(command.request_id, command):
        return supply
    if command.quantity > supply.quantity:
        raise FailedPrecondition(
            QUANTITY_EXCEEDS_OPEN,
            f"supply {supply.supply_id!r} has {supply.quantity} open units; "
            f"cannot receive {command.quantity}",
            {"open_quantity": str(supply.quantity)},
        )
    position = state.positions[(supply.sku, supply.node_id)]
    check_on_hand_limit("quantity", position.on_hand + command.quantity)
    _unapply(position, supply)
    supply.quantity -= command.quantity
    supply.received_quantity += command.quantity
    supply.state = _supply_state(supply, cancelled=False)
    _apply(position, supply)
    position.on_hand += command.quantity
    state.remember_request(command.request_id, command, now)
    state.save_supply(supply)
    state.save_position(position)
    state.emit(
        now, "SUPPLY_RECEIVED", **event_data.supply(supply), received=command.quantity,
        on_hand=position.on_hand,
    )
    return supply


def _apply(position: Position, supply: Supply) -> None:
    position.add_supply(supply.expected_day, supply.quantity)


def _unapply(position: Position, supply: Supply) -> None:
    position.add_supply(supply.expected_day, -supply.quantity)


def _check_inbound_limit(position: Position | None, added: int) -> None:
    """An upsert may not take a position's open inbound over quantity_max, as no stock
    movement may take its on_hand over it (a receipt only moves inbound to on_hand)."""
    already = position.inbound if position is not None else 0
    if already + added > limits.quantity_max:
        raise InvalidArgument.single(
            "supply.quantity",
            f"inbound would exceed {limits.quantity_max} ({already} open at this SKU and node)",
        )


def _check_immutable(supply: Supply, command: commands.UpsertSupply) -> None:
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
