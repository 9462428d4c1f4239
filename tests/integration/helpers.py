"""What a client written from the contract alone needs: raw stubs, rich errors, ids, dates, reads.

Deliberately independent of atp.client and of the server's internals: only the generated
stubs of the public contract, grpc, grpc_status and google.rpc are used.
"""

from __future__ import annotations

import datetime
import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2
from google.type import date_pb2
from grpc_status import rpc_status

from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)

DOMAIN = "atp.v1"
CALL_TIMEOUT = 30.0

Code = grpc.StatusCode
Movement = inventory_pb2.StockMovement
State = common_pb2.Reservation.State
SupplyState = common_pb2.Supply.State

_counter = itertools.count()


def uid(prefix: str) -> str:
    """A fresh id: tests on one shared server never see each other's records."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


# ----- stubs ---------------------------------------------------------------------------------


@dataclass
class Api:
    channel: grpc.Channel
    inventory: inventory_pb2_grpc.InventoryStub = field(init=False)
    availability: availability_pb2_grpc.AvailabilityStub = field(init=False)
    reservations: reservations_pb2_grpc.ReservationsStub = field(init=False)

    def __post_init__(self) -> None:
        self.inventory = inventory_pb2_grpc.InventoryStub(self.channel)
        self.availability = availability_pb2_grpc.AvailabilityStub(self.channel)
        self.reservations = reservations_pb2_grpc.ReservationsStub(self.channel)

    def close(self) -> None:
        self.channel.close()


# ----- dates ---------------------------------------------------------------------------------


def today() -> datetime.date:
    """The server's 'today': calendar days are UTC."""
    return datetime.datetime.now(datetime.UTC).date()


def day(offset: int) -> datetime.date:
    return today() + datetime.timedelta(days=offset)


def pb_date(value: datetime.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def py_date(value: date_pb2.Date) -> datetime.date | None:
    if (value.year, value.month, value.day) == (0, 0, 0):
        return None
    return datetime.date(value.year, value.month, value.day)


def timeline_of(position: common_pb2.Position) -> list[tuple[datetime.date | None, int]]:
    return [(py_date(bucket.date), bucket.available) for bucket in position.timeline]


# ----- rich errors ---------------------------------------------------------------------------


@dataclass
class Failure:
    """A refused call as a client sees it: code, message, google.rpc.Status and its details."""

    code: Code
    message: str
    status: status_pb2.Status | None
    error_info: error_details_pb2.ErrorInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    precondition: error_details_pb2.PreconditionFailure | None = None
    resource: error_details_pb2.ResourceInfo | None = None

    @property
    def reason(self) -> str:
        return self.error_info.reason if self.error_info is not None else ""

    @property
    def fields(self) -> list[str]:
        if self.bad_request is None:
            return []
        return [violation.field for violation in self.bad_request.field_violations]

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


def _unpack(status: status_pb2.Status | None, code: Code, message: str) -> Failure:
    failure = Failure(code=code, message=message, status=status)
    if status is None:
        return failure
    kinds: list[tuple[str, type[pb_message.Message]]] = [
        ("error_info", error_details_pb2.ErrorInfo),
        ("bad_request", error_details_pb2.BadRequest),
        ("precondition", error_details_pb2.PreconditionFailure),
        ("resource", error_details_pb2.ResourceInfo),
    ]
    for detail in status.details:
        for attribute, kind in kinds:
            if detail.Is(kind.DESCRIPTOR):
                value = kind()
                detail.Unpack(value)
                assert getattr(failure, attribute) is None, f"two {kind.__name__} details"
                setattr(failure, attribute, value)
    return failure


def failure_of(error: grpc.RpcError) -> Failure:
    """Parses a sync or aio RpcError with grpc_status.rpc_status.from_call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return _unpack(status, error.code(), error.details() or "")  # type: ignore[attr-defined]


def failure_from_status(status: status_pb2.Status) -> Failure:
    """A failure carried in a message (ReserveResult.status)."""
    code = next(c for c in Code if c.value[0] == status.code)
    return _unpack(status, code, status.message)


def check_failure(
    failure: Failure,
    code: Code,
    reason: str | None = None,
    *,
    fields: Iterable[str] | None = None,
    resource_type: str | None = None,
    resource_name: str | None = None,
) -> Failure:
    """Asserts the error model (docs/contract.md, Errors) for one failure."""
    assert failure.code == code, f"expected {code.name}, got {failure}"
    assert failure.status is not None, f"no google.rpc.Status details on {failure}"
    assert failure.status.code == code.value[0]
    assert failure.error_info is not None, f"no ErrorInfo on {failure}"
    assert failure.error_info.domain == DOMAIN, failure.error_info
    assert failure.error_info.reason, f"empty ErrorInfo.reason on {failure}"
    if reason is not None:
        assert failure.reason == reason, f"expected reason {reason}, got {failure}"
    if code == Code.INVALID_ARGUMENT:
        assert failure.bad_request is not None, f"no BadRequest on {failure}"
        assert failure.fields, f"BadRequest names no field on {failure}"
    if code in (Code.NOT_FOUND, Code.ALREADY_EXISTS):
        assert failure.resource is not None, f"no ResourceInfo on {failure}"
    if reason == "INSUFFICIENT_AVAILABILITY":
        assert failure.precondition is not None, f"no PreconditionFailure on {failure}"
        assert failure.precondition.violations, failure
    if fields is not None:
        for name in fields:
            assert name in failure.fields, f"{name!r} not among bad fields {failure.fields}"
    if resource_type is not None:
        assert failure.resource is not None
        assert failure.resource.resource_type == resource_type, failure.resource
    if resource_name is not None:
        assert failure.resource is not None
        assert failure.resource.resource_name == resource_name, failure.resource
    return failure


def expect_error(
    method: Callable[..., Any],
    request: Any,
    code: Code,
    reason: str | None = None,
    **checks: Any,
) -> Failure:
    """Calls a unary method expecting a refusal; returns the parsed, checked failure."""
    try:
        reply = method(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        return check_failure(failure_of(error), code, reason, **checks)
    raise AssertionError(f"expected {code.name} {reason or ''}, the call succeeded: {reply}")


# ----- setup and reads -----------------------------------------------------------------------


def upsert_node(
    api: Api,
    node_id: str | None = None,
    *,
    handling_days: int = 0,
    lanes: Iterable[tuple[str, int, int]] = (),
    active: bool | None = None,
    kind: str = "",
    region: str = "",
) -> str:
    node_id = node_id or uid("node")
    node = common_pb2.Node(
        node_id=node_id,
        kind=kind,
        region=region,
        handling_days=handling_days,
        lanes=[common_pb2.Lane(region=r, transit_days=t, cost=c) for r, t, c in lanes],
    )
    if active is not None:
        node.active = active
    api.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=node), timeout=CALL_TIMEOUT)
    return node_id


def movement(sku: str, node_id: str, kind: int, quantity: int, **extra: Any) -> Movement:
    return Movement(sku=sku, node_id=node_id, type=kind, quantity=quantity, **extra)  # type: ignore[arg-type]


def adjust(
    api: Api, *movements: Movement, request_id: str | None = None
) -> inventory_pb2.AdjustStockResponse:
    return api.inventory.AdjustStock(
        inventory_pb2.AdjustStockRequest(request_id=request_id or uid("adj"), movements=movements),
        timeout=CALL_TIMEOUT,
    )


def receive(api: Api, sku: str, node_id: str, quantity: int) -> None:
    adjust(api, movement(sku, node_id, Movement.RECEIPT, quantity))


def stocked(api: Api, quantity: int, **node_options: Any) -> tuple[str, str]:
    """A fresh node holding `quantity` units of a fresh SKU: (sku, node_id)."""
    node_id = upsert_node(api, **node_options)
    sku = uid("sku")
    # A cycle count of 0 makes the SKU known without stock.
    kind = Movement.RECEIPT if quantity else Movement.CYCLE_COUNT
    adjust(api, movement(sku, node_id, kind, quantity))
    return sku, node_id


def get_position(
    api: Api, sku: str, node_id: str, *, priority: int = 0, timeline: bool = False
) -> common_pb2.Position:
    reply = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(
            skus=[sku], node_ids=[node_id], include_timeline=timeline, priority=priority
        ),
        timeout=CALL_TIMEOUT,
    )
    assert len(reply.positions) == 1, reply
    return reply.positions[0]


def assert_position(
    api: Api, sku: str, node_id: str, **expected: int | bool
) -> common_pb2.Position:
    position = get_position(api, sku, node_id)
    actual = {name: getattr(position, name) for name in expected}
    assert actual == expected, f"{sku} at {node_id}: {actual} != {expected}\n{position}"
    return position


def line(
    line_id: str,
    sku: str,
    node_id: str,
    quantity: int,
    ship_date: datetime.date | None = None,
) -> common_pb2.ReservationLine:
    message = common_pb2.ReservationLine(
        line_id=line_id, sku=sku, node_id=node_id, quantity=quantity
    )
    if ship_date is not None:
        message.ship_date.CopyFrom(pb_date(ship_date))
    return message


def reserve_request(
    reservation_id: str | None = None,
    lines: Iterable[common_pb2.ReservationLine] = (),
    **fields: Any,
) -> reservations_pb2.ReserveRequest:
    return reservations_pb2.ReserveRequest(
        reservation_id=uid("res") if reservation_id is None else reservation_id,
        lines=list(lines),
        **fields,
    )


def reserve(api: Api, *lines: common_pb2.ReservationLine, **fields: Any) -> common_pb2.Reservation:
    return api.reservations.Reserve(reserve_request(None, lines, **fields), timeout=CALL_TIMEOUT)


def get_reservation(api: Api, reservation_id: str) -> common_pb2.Reservation:
    return api.reservations.GetReservation(
        reservations_pb2.GetReservationRequest(reservation_id=reservation_id), timeout=CALL_TIMEOUT
    )


def commit(api: Api, reservation_id: str, request_id: str | None = None) -> common_pb2.Reservation:
    return api.reservations.Commit(
        reservations_pb2.CommitRequest(
            reservation_id=reservation_id, request_id=request_id or uid("c")
        ),
        timeout=CALL_TIMEOUT,
    )


def line_quantities(pairs: Iterable[tuple[str, int]]) -> list[common_pb2.LineQuantity]:
    return [common_pb2.LineQuantity(line_id=line_id, quantity=q) for line_id, q in pairs]


def release(
    api: Api,
    reservation_id: str,
    lines: Iterable[tuple[str, int]] = (),
    request_id: str | None = None,
) -> common_pb2.Reservation:
    return api.reservations.Release(
        reservations_pb2.ReleaseRequest(
            reservation_id=reservation_id,
            request_id=request_id or uid("rel"),
            lines=line_quantities(lines),
        ),
        timeout=CALL_TIMEOUT,
    )


def fulfill(
    api: Api,
    reservation_id: str,
    lines: Iterable[tuple[str, int]] = (),
    request_id: str | None = None,
) -> common_pb2.Reservation:
    return api.reservations.Fulfill(
        reservations_pb2.FulfillRequest(
            reservation_id=reservation_id,
            request_id=request_id or uid("ful"),
            lines=line_quantities(lines),
        ),
        timeout=CALL_TIMEOUT,
    )


def list_all(call: Callable[..., Any], request: Any, items: str) -> list[Any]:
    """Every item of a paged List call, following next_page_token (bounded)."""
    result: list[Any] = []
    for _ in range(10_000):
        reply = call(request, timeout=CALL_TIMEOUT)
        result.extend(getattr(reply, items))
        if not reply.next_page_token:
            return result
        request.page_token = reply.next_page_token
    raise AssertionError("paging never ended")


def list_pages(call: Callable[..., Any], request: Any, items: str, key: str) -> list[list[str]]:
    """The `key` of each item, page by page, following next_page_token (bounded)."""
    pages: list[list[str]] = []
    for _ in range(10_000):
        reply = call(request, timeout=CALL_TIMEOUT)
        pages.append([getattr(item, key) for item in getattr(reply, items)])
        if not reply.next_page_token:
            return pages
        request.page_token = reply.next_page_token
    raise AssertionError("paging never ended")


def create_supply(api: Api, sku: str, node_id: str, quantity: int, days_ahead: int) -> str:
    """Open inbound supply expected `days_ahead` days from today; returns its id."""
    supply_id = uid("po")
    api.inventory.UpsertSupply(
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=supply_id,
                sku=sku,
                node_id=node_id,
                quantity=quantity,
                expected_date=pb_date(day(days_ahead)),
            )
        ),
        timeout=CALL_TIMEOUT,
    )
    return supply_id


def snapshot(api: Api, skus: Iterable[str]) -> dict[str, Any]:
    """Everything a client can read about some SKUs, to compare before and after a refusal."""
    skus = list(skus)
    positions = api.availability.GetAvailability(
        availability_pb2.GetAvailabilityRequest(skus=skus, include_timeline=True),
        timeout=CALL_TIMEOUT,
    )
    state: dict[str, Any] = {"positions": positions.SerializeToString(deterministic=True)}
    for sku in skus:
        state[f"reservations/{sku}"] = [
            r.SerializeToString(deterministic=True)
            for r in list_all(
                api.reservations.ListReservations,
                reservations_pb2.ListReservationsRequest(sku=sku),
                "reservations",
            )
        ]
        state[f"holds/{sku}"] = [
            h.SerializeToString(deterministic=True)
            for h in list_all(
                api.inventory.ListHolds, inventory_pb2.ListHoldsRequest(sku=sku), "holds"
            )
        ]
        state[f"supply/{sku}"] = [
            s.SerializeToString(deterministic=True)
            for s in list_all(
                api.inventory.ListSupply,
                inventory_pb2.ListSupplyRequest(sku=sku, include_closed=True),
                "supplies",
            )
        ]
    state["nodes"] = api.inventory.ListNodes(
        inventory_pb2.ListNodesRequest(), timeout=CALL_TIMEOUT
    ).SerializeToString(deterministic=True)
    return state


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05
) -> Any:
    """Polls until predicate() is truthy (returns it) or fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
