"""Protobuf messages to domain commands, and domain records to protobuf messages."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date

from atp.ledger import commands, timeline
from atp.ledger.errors import InvalidArgument
from atp.ledger.model import (
    Day,
    Delivery,
    Event,
    Hold,
    Lane,
    Node,
    Objective,
    Policy,
    Position,
    Reservation,
    ReservationLine,
    ReservationState,
    Supply,
)
from atp.ledger.promising import LinePlan, OrderLine, OrderPlan
from atp.ledger.reallocation import ReallocationResult
from atp.server import event_payloads
from atp.v1 import availability_pb2, common_pb2, events_pb2, inventory_pb2, reservations_pb2

# ----- scalars -----------------------------------------------------------------------------


def date_tuple(message: Date, has_value: bool = True) -> commands.Date | None:
    """(year, month, day) of a google.type.Date; None when unset or all zero."""
    if not has_value or (message.year, message.month, message.day) == (0, 0, 0):
        return None
    return (message.year, message.month, message.day)


def date_message(day: Day | None) -> Date | None:
    if day is None:
        return None
    message = Date()
    message.CopyFrom(_date(day))
    return message


def timestamp_message(instant: float | None) -> Timestamp | None:
    """Instants are kept to the microsecond; this rounds to the nearest one."""
    if instant is None:
        return None
    message = Timestamp()
    _set_timestamp(message, instant)
    return message


def instant(message: Timestamp, has_value: bool, field_path: str) -> float | None:
    """Epoch seconds of a Timestamp, truncated to the microsecond."""
    if not has_value:
        return None
    if not 0 <= message.nanos < 1_000_000_000 or not 0 < message.seconds < 253402300800:
        raise InvalidArgument.single(field_path, "not a valid timestamp")
    return (message.seconds * 1_000_000 + message.nanos // 1000) / 1_000_000


# ----- requests to commands ----------------------------------------------------------------


def upsert_node(request: inventory_pb2.UpsertNodeRequest) -> commands.UpsertNode:
    node = request.node
    return commands.UpsertNode(
        node_id=node.node_id,
        kind=node.kind,
        region=node.region,
        active=node.active if node.HasField("active") else True,
        handling_days=node.handling_days,
        lanes=tuple(Lane(lane.region, lane.transit_days, lane.cost) for lane in node.lanes),
    )


def adjust_stock(request: inventory_pb2.AdjustStockRequest) -> commands.AdjustStock:
    type_names = inventory_pb2.StockMovement.Type
    movements = tuple(
        commands.Movement(
            sku=movement.sku,
            node_id=movement.node_id,
            type=type_names.Name(movement.type) if movement.type in type_names.values() else "",
            quantity=movement.quantity,
            to_node_id=movement.to_node_id,
            reason=movement.reason,
        )
        for movement in request.movements
    )
    return commands.AdjustStock(request_id=request.request_id, movements=movements)


def upsert_supply(request: inventory_pb2.UpsertSupplyRequest) -> commands.UpsertSupply:
    supply = request.supply
    return commands.UpsertSupply(
        supply_id=supply.supply_id,
        sku=supply.sku,
        node_id=supply.node_id,
        quantity=supply.quantity,
        expected_date=date_tuple(supply.expected_date, supply.HasField("expected_date")),
    )


def place_hold(request: inventory_pb2.PlaceHoldRequest) -> commands.PlaceHold:
    hold = request.hold
    return commands.PlaceHold(
        hold_id=hold.hold_id,
        sku=hold.sku,
        node_id=hold.node_id,
        quantity=hold.quantity,
        reason=hold.reason,
        expire_time=instant(hold.expire_time, hold.HasField("expire_time"), "hold.expire_time"),
        force=hold.force,
    )


_OBJECTIVES = {
    common_pb2.FulfillmentPolicy.OBJECTIVE_UNSPECIFIED: Objective.EARLIEST,
    common_pb2.FulfillmentPolicy.EARLIEST: Objective.EARLIEST,
    common_pb2.FulfillmentPolicy.CHEAPEST: Objective.CHEAPEST,
}


DEFAULT_POLICY = Policy()  # what policy() makes of an absent (all-default) message


def policy(message: common_pb2.FulfillmentPolicy) -> Policy:
    objective = _OBJECTIVES.get(message.objective)
    if objective is None:
        raise InvalidArgument.single("policy.objective", "unknown objective")
    return _shared_policy(
        message.ship_complete, message.max_nodes, message.allow_partial, objective
    )


@functools.lru_cache(maxsize=256)
def _shared_policy(
    ship_complete: bool, max_nodes: int, allow_partial: bool, objective: Objective
) -> Policy:
    """One Policy object per distinct policy: a million reservations share a handful."""
    return Policy(ship_complete, max_nodes, allow_partial, objective)


def reserve(request: reservations_pb2.ReserveRequest) -> commands.Reserve:
    # tuple.__new__ with every field, in field order: what a NamedTuple's generated __new__
    # does, without its Python call (on every line of every reserve).
    lines = tuple([
        _new_tuple(_LINE_REQUEST, (
            line.line_id, line.sku, line.quantity, line.node_id,
            date_tuple(line.ship_date) if line.HasField("ship_date") else None,
            line.unit_value,
            tuple(line.substitute_skus) if line.substitute_skus else (),
            date_tuple(line.need_by_date) if line.HasField("need_by_date") else None,
        ))
        for line in request.lines
    ])
    return _new_tuple(_RESERVE, (
        request.reservation_id,
        lines,
        request.destination_region,
        policy(request.policy) if request.HasField("policy") else DEFAULT_POLICY,
        request.ttl_seconds,
        request.commit,
        request.priority,
        request.channel,
        request.customer_id,
        request.allow_substitution,
    ))


_new_tuple = tuple.__new__
_LINE_REQUEST = commands.LineRequest
_RESERVE = commands.Reserve


def order_lines(lines: Iterable[availability_pb2.OrderLine]) -> list[OrderLine]:
    return [
        OrderLine(line.line_id, line.sku, line.quantity)
        if not line.substitute_skus and not line.HasField("need_by_date")
        else OrderLine(
            line.line_id, line.sku, line.quantity, tuple(line.substitute_skus),
            date_tuple(line.need_by_date) if line.HasField("need_by_date") else None,
        )
        for line in lines
    ]


def line_quantities(lines: Iterable[common_pb2.LineQuantity]) -> tuple[commands.LineQuantity, ...]:
    return tuple(commands.LineQuantity(line.line_id, line.quantity) for line in lines)


def record_delivery(request: reservations_pb2.RecordDeliveryRequest) -> commands.RecordDelivery:
    """A RecordDelivery command: an unset documentation_correct means true (the usual case)."""
    delivery = request.delivery
    return commands.RecordDelivery(
        request.reservation_id, request.request_id,
        date_tuple(delivery.delivered_date, delivery.HasField("delivered_date")),
        delivery.units_delivered, delivery.damaged_units,
        delivery.documentation_correct if delivery.HasField("documentation_correct") else True,
    )


# ----- records to messages -----------------------------------------------------------------


def node_message(node: Node) -> common_pb2.Node:
    return common_pb2.Node(
        node_id=node.node_id,
        kind=node.kind,
        region=node.region,
        active=node.active,
        handling_days=node.handling_days,
        lanes=[
            common_pb2.Lane(region=lane.region, transit_days=lane.transit_days, cost=lane.cost)
            for lane in node.lanes
        ],
    )


def position_message(
    position: Position, today: Day, include_safety_stock: bool, include_timeline: bool,
    node_active: bool = True,
) -> common_pb2.Position:
    """The position as clients read it. At an inactive node, which takes no new demand,
    `available` is 0 (the timeline still shows the stock's ATP), and the position is short
    while lines are open there (each is at risk, NODE_INACTIVE: docs/architecture.md,
    "At-risk demand")."""
    steps = timeline.atp_steps(position, today, include_safety_stock)
    message = common_pb2.Position(
        sku=position.sku,
        node_id=position.node_id,
        on_hand=position.on_hand,
        allocated=position.allocated,
        reserved=position.reserved,
        held=position.held,
        safety_stock=position.safety_stock,
        inbound=position.inbound,
        available=max(0, steps[0][1]) if node_active else 0,
        short=(not node_active and bool(position.lines))
        or timeline.is_short_in(steps, position, include_safety_stock),
        at_risk_quantity=sum(position.lines[key].open_quantity for key in position.at_risk)
        if position.at_risk else 0,
    )
    if include_timeline:
        message.timeline.extend(
            common_pb2.AtpBucket(date=date_message(day), available=value)
            for index, (day, value) in enumerate(steps)
            if index == 0 or value != steps[index - 1][1]
        )
    return message


def supply_message(supply: Supply) -> common_pb2.Supply:
    return common_pb2.Supply(
        supply_id=supply.supply_id,
        sku=supply.sku,
        node_id=supply.node_id,
        quantity=supply.quantity,
        expected_date=date_message(supply.expected_day),
        received_quantity=supply.received_quantity,
        state=supply.state.value,  # enum fields take their value's name
    )


def hold_message(hold: Hold) -> common_pb2.Hold:
    return common_pb2.Hold(
        hold_id=hold.hold_id,
        sku=hold.sku,
        node_id=hold.node_id,
        quantity=hold.quantity if hold.active else 0,
        reason=hold.reason,
        expire_time=timestamp_message(hold.expire_time),
        force=hold.force,
        create_time=timestamp_message(hold.create_time),
    )


# Keyed by the state's text: an enum member's hash is computed in Python on 3.11.
_RESERVATION_STATES: dict[str, common_pb2.Reservation.State] = {
    state.value: common_pb2.Reservation.State.Value(state.value)  # type: ignore[misc]
    for state in ReservationState
}


def reservation_message(reservation: Reservation) -> common_pb2.Reservation:
    message = common_pb2.Reservation()
    fill_reservation(message, reservation)
    return message


def fill_reservation(message: common_pb2.Reservation, reservation: Reservation) -> None:
    """Fills a new message field by field, with cached dates and policies, leaving fields at
    their defaults unset (the same message, fewer calls): this is on every reserve's path."""
    message.reservation_id = reservation.reservation_id
    # _value_ is enum's documented sunder name for the value; .value is a property:
    # 290 ns against 20 ns a read on Python 3.11 (timeit), on every reserve.
    message.state = _RESERVATION_STATES[reservation.state._value_]
    message.version = reservation.version
    if reservation.priority:
        message.priority = reservation.priority
    if reservation.channel:
        message.channel = reservation.channel
    if reservation.customer_id:
        message.customer_id = reservation.customer_id
    if reservation.destination_region:
        message.destination_region = reservation.destination_region
    lines = message.lines
    promise_day = None  # Reservation.promise_day, computed in this loop rather than in another
    for line in reservation.lines:
        # ship_date copied in, not passed to add(): a message argument is merged (serialised
        # and parsed again), a CopyFrom is cheaper
        line_message = lines.add(line_id=line.line_id, sku=line.sku, node_id=line.node_id,
                                 quantity=line.quantity,
                                 request_line_id=line.request_line_id or line.line_id)
        line_message.ship_date.CopyFrom(_date(line.ship_day))
        _fill_line(line_message, line)
        if line.quantity > 0:
            day = line.delivery_day if line.delivery_day is not None else line.ship_day
            if promise_day is None or day > promise_day:
                promise_day = day
    _set_timestamp(message.create_time, reservation.create_time)
    if reservation.expire_time is not None:
        _set_timestamp(message.expire_time, reservation.expire_time)
    if promise_day is not None:
        message.promise_date.CopyFrom(_date(promise_day))
    if reservation.first_promise_day is not None:
        message.first_promise_date.CopyFrom(_date(reservation.first_promise_day))
    if reservation.delivery is not None:
        _fill_delivery(message.delivery, reservation.delivery)
    policy = reservation.policy
    # The shared default policy without hashing it (a Policy's hash is a Python call).
    message.policy.CopyFrom(
        _DEFAULT_POLICY_MESSAGE if policy is DEFAULT_POLICY else _policy_message(policy)
    )


def _fill_delivery(message: common_pb2.Delivery, delivery: Delivery) -> None:
    message.delivered_date.CopyFrom(_date(delivery.delivered_day))
    message.units_delivered = delivery.units_delivered
    message.damaged_units = delivery.damaged_units
    message.documentation_correct = delivery.documentation_correct
    _set_timestamp(message.record_time, delivery.record_time)


def line_message(line: ReservationLine) -> common_pb2.ReservationLine:
    message = common_pb2.ReservationLine(
        line_id=line.line_id, sku=line.sku, node_id=line.node_id, quantity=line.quantity,
        ship_date=_date(line.ship_day), request_line_id=line.request_line_id or line.line_id,
    )
    _fill_line(message, line)
    return message


def _fill_line(message: common_pb2.ReservationLine, line: ReservationLine) -> None:
    """The fields after the five every line has (set where the message is made)."""
    if line.delivery_day is not None:
        message.delivery_date.CopyFrom(_date(line.delivery_day))
    if line.fulfilled_quantity:
        message.fulfilled_quantity = line.fulfilled_quantity
    if line.released_quantity:
        message.released_quantity = line.released_quantity
    if line.backordered_quantity:
        message.backordered_quantity = line.backordered_quantity
    if line.at_risk:
        message.at_risk = True
    if line.at_risk_reason:
        message.at_risk_reason = line.at_risk_reason
    if line.from_inbound:
        message.from_inbound = True
    if line.unit_value:
        message.unit_value = line.unit_value
    if line.substitute_for:
        message.substitute_for = line.substitute_for


@functools.lru_cache(maxsize=4096)
def _date(day: Day) -> Date:
    """A shared Date message per day; callers copy it, never change it."""
    value = datetime.date.fromordinal(day)
    return Date(year=value.year, month=value.month, day=value.day)


@functools.lru_cache(maxsize=256)
def _policy_message(policy: Policy) -> common_pb2.FulfillmentPolicy:
    return common_pb2.FulfillmentPolicy(
        ship_complete=policy.ship_complete,
        max_nodes=policy.max_nodes,
        allow_partial=policy.allow_partial,
        objective=policy.objective.value,  # enum fields take their value's name
    )


_DEFAULT_POLICY_MESSAGE = _policy_message(DEFAULT_POLICY)


def _set_timestamp(message: Timestamp, instant: float) -> None:
    message.seconds, message.nanos = _timestamp_parts(instant)


@functools.lru_cache(maxsize=256)
def _timestamp_parts(instant: float) -> tuple[int, int]:
    """(seconds, nanos) to the nearest microsecond; cached: a batch's reservations share their
    create and expire times."""
    seconds, micros = divmod(round(instant * 1_000_000), 1_000_000)
    return seconds, micros * 1000


def network_total(
    sku: str, positions: list[common_pb2.Position]
) -> availability_pb2.NetworkAvailability:
    return availability_pb2.NetworkAvailability(
        sku=sku,
        on_hand=sum(p.on_hand for p in positions),
        allocated=sum(p.allocated for p in positions),
        reserved=sum(p.reserved for p in positions),
        held=sum(p.held for p in positions),
        safety_stock=sum(p.safety_stock for p in positions),
        inbound=sum(p.inbound for p in positions),
        available=sum(p.available for p in positions),
    )


def promise_response(plan: OrderPlan) -> availability_pb2.PromiseResponse:
    """Built in place with add(): a message passed to its parent's constructor is copied."""
    response = availability_pb2.PromiseResponse(complete=plan.complete)
    promise_day = plan.promise_day
    if promise_day is not None:
        response.promise_date.CopyFrom(_date(promise_day))
    lines = response.lines
    for line_plan in plan.lines:
        message = lines.add(line_id=line_plan.line.line_id,
                            backordered_quantity=line_plan.backordered_quantity)
        if line_plan.backorder_day is not None:
            message.backorder_date.CopyFrom(_date(line_plan.backorder_day))
        allocations = message.allocations
        for a in line_plan.allocations:
            # Constructor arguments are copied, so the shared cached Dates can be passed.
            allocations.add(node_id=a.node_id, quantity=a.quantity, ship_date=_date(a.ship_day),
                            delivery_date=_date(a.delivery_day), from_inbound=a.from_inbound)
        for node_id, outcome, detail in line_plan.candidates:
            message.candidates.add(node_id=node_id, outcome=outcome.value, detail=detail)
        if line_plan.substitute is not None or line_plan.substitutes:
            _fill_substitutes(message, line_plan)
    return response


def _fill_substitutes(message: availability_pb2.LinePromise, line_plan: LinePlan) -> None:
    """The substitute offered for the line, and (explain) each substitute's outcome."""
    offer = line_plan.substitute
    if offer is not None:
        message.substitute.sku = offer.sku
        message.substitute.reason = offer.reason
        message.substitute.promise_date.CopyFrom(_date(offer.promise_day))
        for a in offer.allocations:
            message.substitute.allocations.add(
                node_id=a.node_id, quantity=a.quantity, ship_date=_date(a.ship_day),
                delivery_date=_date(a.delivery_day), from_inbound=a.from_inbound)
    for sku, outcome, detail in line_plan.substitutes:
        message.substitutes.add(sku=sku, outcome=outcome.value, detail=detail)


def reallocate_response(result: ReallocationResult) -> reservations_pb2.ReallocateResponse:
    return reservations_pb2.ReallocateResponse(
        plans=[
            reservations_pb2.ReallocationPlan(
                reservation_id=plan.reservation_id,
                old_lines=[line_message(line) for line in plan.old_lines],
                new_lines=[line_message(line) for line in plan.new_lines],
                old_promise_date=date_message(plan.old_promise_day),
                new_promise_date=date_message(plan.new_promise_day),
                slipped=plan.slipped,
                unfilled_quantity=plan.unfilled_quantity,
                decided_by=plan.decided_by,
            )
            for plan in result.plans
        ],
        applied=result.applied,
        plan_sequence=result.plan_sequence,
    )


def event_message(event: Event) -> events_pb2.Event:
    """The Event of a journal event: `data` as recorded, and the same values typed in its
    `payload` member (event_payloads), both from the record's dict."""
    data = event.data
    fields: dict[str, Any] = {
        "sequence": event.sequence,
        "time": timestamp_message(event.time),
        "type": event.type,
        "reservation_id": str(data.get("reservation_id") or ""),
        "sku": str(data.get("sku") or ""),
        "node_id": str(data.get("node_id") or ""),
        "principal": event.principal,
    }
    try:
        message = events_pb2.Event(**fields, **event_payloads.payload_fields(event.type, data))
    except (TypeError, ValueError):  # a value of a kind the payload cannot take: data only
        message = events_pb2.Event(**fields)
    message.data.update(cast(Any, data))  # JSON values, as Struct takes them
    return message
