"""Typed Python client of the ATP engine: one method per RPC, typed errors, safe retries.

`Client` is synchronous and `AsyncClient` is for asyncio (grpc.aio). Both are built from one
table of RPCs (`RPCS`: stub, method, request builder, retry rule) and differ only in their
thin call wrappers, so a behaviour fixed in one is fixed in both.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import enum
import inspect
import random
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    Self,
    TypeAlias,
    TypeVar,
    Union,
    cast,
)

import grpc
import grpc.aio
from google.protobuf import any_pb2, message_factory, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from atp.tls import TlsOptions
from atp.v1 import (
    allocation_pb2,
    allocation_pb2_grpc,
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
)

__all__ = [
    "RPCS",
    "AsyncClient",
    "AtpError",
    "Client",
    "ReserveStream",
    "Retry",
    "Rpc",
    "TlsOptions",
    "reservation_from_result",
    "reserve_request",
    "to_date",
    "to_message",
    "to_timestamp",
    "token_metadata",
    "with_token",
]

DEFAULT_TARGET = "127.0.0.1:50051"
# The call metadata key of a bearer token (`Bearer TOKEN`): who the caller is.
AUTHORIZATION_KEY = "authorization"

# Trailing metadata key under which a server sends the google.rpc.Status with its details.
STATUS_DETAILS_METADATA_KEY = "grpc-status-details-bin"
# Backoff before retry n (1-based) is backoff_first_s * 2**(n-1), capped, times a jitter in
# [0.5, 1] so that clients failed by one outage do not come back in lockstep.
backoff_first_s = 0.05
backoff_max_s = 1.0
# A server's RetryInfo delay is waited at least, times a jitter in [1, 1.5]: the clients it
# refused together then come back spread out rather than all at once.
retry_hint_jitter_max = 1.5
# A retry is made only if, after its wait, at least this much of the call's deadline is left:
# an attempt with less would only end in DEADLINE_EXCEEDED, hiding why the last one failed.
attempt_time_min_s = 0.01
# The ErrorInfo reason of a RESOURCE_EXHAUSTED that means "busy now, come back later", unlike
# a limit the request itself exceeds (a message too large), which no retry changes.
OVERLOADED_REASON = "OVERLOADED"
# Attempts of a retry-safe call to a client of several members: bounded by the call's
# deadline in practice, so that a call made during a failover (a lease TTL without a leader)
# lands on the new leader if its deadline outlasts the failover.
FAILOVER_ATTEMPTS_MAX = 10_000

MessageT = TypeVar("MessageT", bound=Message)
RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])
Parameters = ParamSpec("Parameters")

DateLike: TypeAlias = datetime.date | date_pb2.Date | str
TimestampLike: TypeAlias = datetime.datetime | timestamp_pb2.Timestamp
# A message, or a dict of its fields (converted with the message's constructor).
MessageLike: TypeAlias = Union[MessageT, Mapping[str, Any]]  # noqa: UP007  # generic alias


# ---------------------------------------------------------------------------------------------
# Errors


_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.RequestInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)
_STATUS_CODES_BY_NUMBER: dict[int, grpc.StatusCode] = {
    code.value[0]: code for code in grpc.StatusCode
}


# A ReserveBatch answer is larger than its request (~49 bytes a line): gRPC's default 4 MiB
# receive limit would leave a committed batch's answer unreadable.
RECEIVE_MESSAGE_BYTES_MAX = 64 * 1024 * 1024
# A channel whose member is down tries to connect again after at most a second (gRPC's own
# default grows to 120 s), so that a call or a followed watch finds it soon after it is back.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", RECEIVE_MESSAGE_BYTES_MAX),
                   ("grpc.max_reconnect_backoff_ms", 1000)]
# The reason of a write sent to a follower; its ErrorInfo metadata "leader" names the leader.
NOT_LEADER = "NOT_LEADER"


class AtpError(Exception):
    """A failed call: the gRPC status code, message and decoded google.rpc details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: Sequence[Message] = (),
        *,
        reason: str = "",
    ) -> None:
        self.code = code
        self.message = message
        self.details = list(details)
        error_info = self.detail(error_details_pb2.ErrorInfo)
        # ReserveResult carries the reason beside the status; ErrorInfo wins when both exist.
        self.reason = error_info.reason if error_info is not None else reason
        self.metadata: dict[str, str] = dict(error_info.metadata) if error_info else {}
        super().__init__(self._one_line())

    @classmethod
    def from_status(cls, status: status_pb2.Status, *, reason: str = "") -> AtpError:
        """Builds the error a google.rpc.Status describes (e.g. ReserveResult.status)."""
        code = _STATUS_CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
        details = [_unpack_detail(packed) for packed in status.details]
        return cls(code, status.message, details, reason=reason)

    def detail(self, message_type: type[MessageT]) -> MessageT | None:
        """The first detail of the given type, or None."""
        for detail in self.details:
            if isinstance(detail, message_type):
                return detail
        return None

    @property
    def field_violations(self) -> list[error_details_pb2.BadRequest.FieldViolation]:
        """Each bad field named by a BadRequest detail."""
        return [
            violation
            for detail in self.details
            if isinstance(detail, error_details_pb2.BadRequest)
            for violation in detail.field_violations
        ]

    @property
    def precondition_violations(self) -> list[error_details_pb2.PreconditionFailure.Violation]:
        """Each failed precondition (e.g. a short line) named by a PreconditionFailure detail."""
        return [
            violation
            for detail in self.details
            if isinstance(detail, error_details_pb2.PreconditionFailure)
            for violation in detail.violations
        ]

    @property
    def resource_info(self) -> error_details_pb2.ResourceInfo | None:
        """The resource a NOT_FOUND (or similar) error is about, or None."""
        return self.detail(error_details_pb2.ResourceInfo)

    @property
    def retry_delay_s(self) -> float | None:
        """Seconds the server asks to wait before trying again (its RetryInfo), or None."""
        retry_info = self.detail(error_details_pb2.RetryInfo)
        if retry_info is None or not retry_info.HasField("retry_delay"):
            return None
        nanoseconds: int = retry_info.retry_delay.ToNanoseconds()
        return nanoseconds / 1e9

    @property
    def transient(self) -> bool:
        """True when the server did not act on the call and the same call later may succeed:
        UNAVAILABLE, or RESOURCE_EXHAUSTED refusing it for overload (reason OVERLOADED or a
        RetryInfo), not for a limit the request breaks."""
        if self.code is grpc.StatusCode.UNAVAILABLE:
            return True
        return self.code is grpc.StatusCode.RESOURCE_EXHAUSTED and (
            self.reason == OVERLOADED_REASON or self.retry_delay_s is not None
        )

    def _one_line(self) -> str:
        # A reason that only repeats the code (NOT_FOUND NOT_FOUND) says nothing more.
        reason = self.reason if self.reason != self.code.name else ""
        heading = " ".join(part for part in (self.code.name, reason) if part)
        text = self.message or "; ".join(self._violation_texts()) or "no message"
        return f"{heading}: {' '.join(text.split())}"

    def _violation_texts(self) -> list[str]:
        fields = [f"{item.field}: {item.description}" for item in self.field_violations]
        preconditions = [
            f"{item.subject}: {item.description}" for item in self.precondition_violations
        ]
        return fields + preconditions

    def __repr__(self) -> str:
        return f"AtpError({self.code.name}, {self.reason!r}, {self.message!r})"


def _unpack_detail(packed: any_pb2.Any) -> Message:
    for detail_type in _DETAIL_TYPES:
        if packed.TypeName() == detail_type.DESCRIPTOR.full_name:
            detail = detail_type()
            packed.Unpack(detail)
            return detail
    return packed  # An unknown detail type stays packed rather than being dropped.


def _error_from_call(error: grpc.RpcError) -> AtpError:
    """Decodes the error of a synchronous call."""
    call = cast(grpc.Call, error)
    if not hasattr(call, "code"):
        return AtpError(grpc.StatusCode.UNKNOWN, str(error))
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        status = None  # Details that contradict the call's own status are not trusted.
    if status is None:
        return AtpError(call.code(), call.details() or "")
    return AtpError(call.code(), status.message, [_unpack_detail(d) for d in status.details])


def _error_from_aio(error: grpc.aio.AioRpcError) -> AtpError:
    """Decodes the error of an asyncio call from its trailing metadata."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_METADATA_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = [_unpack_detail(packed) for packed in status.details]
            return AtpError(error.code(), status.message or error.details() or "", details)
    return AtpError(error.code(), error.details() or "")


def reservation_from_result(result: reservations_pb2.ReserveResult) -> common_pb2.Reservation:
    """The reservation of one ReserveBatch or ReserveStream result, or its AtpError raised."""
    if result.WhichOneof("result") == "reservation":
        return result.reservation
    if result.WhichOneof("result") == "status":
        raise AtpError.from_status(result.status, reason=result.reason)
    raise AtpError(grpc.StatusCode.INTERNAL, f"result for {result.reservation_id!r} is empty")


# ---------------------------------------------------------------------------------------------
# Conversions from plain Python values


def to_date(value: DateLike) -> date_pb2.Date:
    """A google.type.Date from a datetime.date, an ISO 'YYYY-MM-DD' string or a Date."""
    if isinstance(value, date_pb2.Date):
        return value
    if isinstance(value, str):
        value = datetime.date.fromisoformat(value)
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def to_timestamp(value: TimestampLike) -> timestamp_pb2.Timestamp:
    """A Timestamp from a datetime (naive means UTC) or a Timestamp."""
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(value)
    return timestamp


def to_message(message_type: type[MessageT], value: MessageLike[MessageT]) -> MessageT:
    """The message itself, or one built from a dict (dates, datetimes and nested dicts too)."""
    if isinstance(value, message_type):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected {message_type.__name__} or dict, got {type(value).__name__}")
    fields = message_type.DESCRIPTOR.fields_by_name
    converted = {
        name: _to_field_value(fields[name], item) if name in fields else item
        for name, item in value.items()
    }
    return message_type(**converted)


def _to_field_value(field: Any, value: Any) -> Any:
    """The value for one field of a message built from a dict (field: its FieldDescriptor)."""
    message_descriptor = field.message_type
    if message_descriptor is None or message_descriptor.GetOptions().map_entry:
        return value
    if field.is_repeated:
        return [_to_single_message(message_descriptor.full_name, field, item) for item in value]
    return _to_single_message(message_descriptor.full_name, field, value)


def _to_single_message(full_name: str, field: Any, value: Any) -> Any:
    if full_name == "google.type.Date" and isinstance(value, datetime.date | str):
        return to_date(value)
    if full_name == "google.protobuf.Timestamp" and isinstance(value, datetime.datetime):
        return to_timestamp(value)
    if isinstance(value, Mapping):
        message_type = message_factory.GetMessageClass(field.message_type)
        return to_message(message_type, value)
    return value


def _to_messages(
    message_type: type[MessageT], values: Iterable[MessageLike[MessageT]] | None
) -> list[MessageT]:
    return [to_message(message_type, value) for value in values or ()]


def _optional_message(
    message_type: type[MessageT], value: MessageLike[MessageT] | None
) -> MessageT | None:
    return None if value is None else to_message(message_type, value)


def _request_id(request_id: str | None) -> str:
    # Made once per logical call, before the first attempt, so every retry carries the same
    # key and the server applies the change at most once.
    return request_id if request_id is not None else uuid.uuid4().hex


def _reservation_state(state: int | str | None) -> int:
    if state is None:
        return 0
    if isinstance(state, str):
        return common_pb2.Reservation.State.Value(state.upper())
    return state


# ---------------------------------------------------------------------------------------------
# Request builders: all request logic lives here, shared by both clients.


def _upsert_node_request(
    node: MessageLike[common_pb2.Node] | None = None, /, **fields: Any
) -> inventory_pb2.UpsertNodeRequest:
    """Creates or replaces a node, given as a Node, a dict or keyword fields."""
    node_message = to_message(common_pb2.Node, node if node is not None else fields)
    return inventory_pb2.UpsertNodeRequest(node=node_message)


def _get_server_info_request() -> server_pb2.GetServerInfoRequest:
    """The server's version and build, its defaults (reservation TTL, the safety-stock
    priority), its request limits, its role (standalone, leader, follower, candidate), its
    cluster, retention windows and authentication mode."""
    return server_pb2.GetServerInfoRequest()


def _list_nodes_request() -> inventory_pb2.ListNodesRequest:
    """Lists every node, ordered by node_id."""
    return inventory_pb2.ListNodesRequest()


def _adjust_stock_request(
    movements: Iterable[MessageLike[inventory_pb2.StockMovement]],
    request_id: str | None = None,
) -> inventory_pb2.AdjustStockRequest:
    """Applies stock movements atomically; request_id is the idempotency key (made if None)."""
    return inventory_pb2.AdjustStockRequest(
        request_id=_request_id(request_id),
        movements=_to_messages(inventory_pb2.StockMovement, movements),
    )


def _set_safety_stock_request(
    sku: str, node_id: str, quantity: int
) -> inventory_pb2.SetSafetyStockRequest:
    """Sets the safety stock of a position."""
    return inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_id, quantity=quantity)


def _upsert_supply_request(
    supply_id: str, sku: str, node_id: str, quantity: int, expected_date: DateLike
) -> inventory_pb2.UpsertSupplyRequest:
    """Creates or updates inbound supply; quantity 0 cancels it."""
    supply = common_pb2.Supply(
        supply_id=supply_id,
        sku=sku,
        node_id=node_id,
        quantity=quantity,
        expected_date=to_date(expected_date),
    )
    return inventory_pb2.UpsertSupplyRequest(supply=supply)


def _receive_supply_request(
    supply_id: str, quantity: int, request_id: str | None = None
) -> inventory_pb2.ReceiveSupplyRequest:
    """Moves received units of a supply into on_hand."""
    return inventory_pb2.ReceiveSupplyRequest(
        request_id=_request_id(request_id), supply_id=supply_id, quantity=quantity
    )


def _list_supply_request(
    sku: str = "",
    node_id: str = "",
    include_closed: bool = False,
    page_size: int = 0,
    page_token: str = "",
) -> inventory_pb2.ListSupplyRequest:
    """Lists one page of inbound supply."""
    return inventory_pb2.ListSupplyRequest(
        sku=sku,
        node_id=node_id,
        include_closed=include_closed,
        page_size=page_size,
        page_token=page_token,
    )


def _place_hold_request(
    hold_id: str,
    sku: str,
    node_id: str,
    quantity: int,
    *,
    reason: str = "",
    expire_time: TimestampLike | None = None,
    force: bool = False,
) -> inventory_pb2.PlaceHoldRequest:
    """Places a manual hold; idempotent on hold_id."""
    hold = common_pb2.Hold(
        hold_id=hold_id,
        sku=sku,
        node_id=node_id,
        quantity=quantity,
        reason=reason,
        force=force,
        expire_time=to_timestamp(expire_time) if expire_time is not None else None,
    )
    return inventory_pb2.PlaceHoldRequest(hold=hold)


def _release_hold_request(hold_id: str) -> inventory_pb2.ReleaseHoldRequest:
    """Releases a manual hold."""
    return inventory_pb2.ReleaseHoldRequest(hold_id=hold_id)


def _list_holds_request(
    sku: str = "", node_id: str = "", page_size: int = 0, page_token: str = ""
) -> inventory_pb2.ListHoldsRequest:
    """Lists one page of active holds."""
    return inventory_pb2.ListHoldsRequest(
        sku=sku, node_id=node_id, page_size=page_size, page_token=page_token
    )


def _get_availability_request(
    skus: Iterable[str],
    node_ids: Iterable[str] = (),
    include_timeline: bool = False,
    priority: int = 0,
    min_sequence: int = 0,
    channel: str = "",
    stale: bool = False,
) -> availability_pb2.GetAvailabilityRequest:
    """Positions of SKUs (at the given nodes, or all) with the network totals; with
    min_sequence, once the member holds that commit (a write's commit_sequence); `available`
    as demand of `channel` sees it (other channels' unconsumed allocations taken off). With
    stale, a gateway answers from its copy without waiting for the writer's last commit."""
    if isinstance(skus, str):
        skus = [skus]  # A lone SKU would otherwise be split into characters.
    if isinstance(node_ids, str):
        node_ids = [node_ids]
    return availability_pb2.GetAvailabilityRequest(
        skus=list(skus),
        node_ids=list(node_ids),
        include_timeline=include_timeline,
        priority=priority,
        min_sequence=min_sequence,
        channel=channel,
        consistency=_consistency(stale),
    )


def _consistency(stale: bool) -> common_pb2.ReadConsistency:
    return common_pb2.READ_CONSISTENCY_STALE if stale else common_pb2.READ_CONSISTENCY_UNSPECIFIED


def _promise_request(
    lines: Iterable[MessageLike[availability_pb2.OrderLine]],
    destination_region: str,
    *,
    policy: MessageLike[common_pb2.FulfillmentPolicy] | None = None,
    priority: int = 0,
    explain: bool = False,
    channel: str = "",
    stale: bool = False,
) -> availability_pb2.PromiseRequest:
    """A read-only quote of where and when order lines can be fulfilled (for demand of
    `channel`: other channels' unconsumed allocations are not promised). A line may list
    `substitute_skus` (and a `need_by_date`): when its own SKU cannot meet the request, the
    first substitute that can is offered on its answer (LinePromise.substitute)."""
    return availability_pb2.PromiseRequest(
        lines=_to_messages(availability_pb2.OrderLine, lines),
        destination_region=destination_region,
        policy=_optional_message(common_pb2.FulfillmentPolicy, policy),
        priority=priority,
        explain=explain,
        channel=channel,
        consistency=_consistency(stale),
    )


def reserve_request(
    reservation_id: str,
    lines: Iterable[MessageLike[common_pb2.ReservationLine]],
    *,
    destination_region: str = "",
    policy: MessageLike[common_pb2.FulfillmentPolicy] | None = None,
    ttl_seconds: int = 0,
    commit: bool = False,
    priority: int = 0,
    channel: str = "",
    customer_id: str = "",
    allow_substitution: bool = False,
) -> reservations_pb2.ReserveRequest:
    """Reserves every line or none; idempotent on reservation_id. A line may list
    `substitute_skus` (and a `need_by_date`): with allow_substitution, a line whose own SKU
    cannot be held in full (or by need_by_date) holds the first substitute that can."""
    return reservations_pb2.ReserveRequest(
        reservation_id=reservation_id,
        lines=_to_messages(common_pb2.ReservationLine, lines),
        destination_region=destination_region,
        policy=_optional_message(common_pb2.FulfillmentPolicy, policy),
        ttl_seconds=ttl_seconds,
        commit=commit,
        priority=priority,
        channel=channel,
        customer_id=customer_id,
        allow_substitution=allow_substitution,
    )


def _reserve_batch_request(
    requests: Iterable[MessageLike[reservations_pb2.ReserveRequest]],
) -> reservations_pb2.ReserveBatchRequest:
    """Up to 1,000 independent reservations in one group commit (see reserve_request)."""
    return reservations_pb2.ReserveBatchRequest(
        requests=_to_messages(reservations_pb2.ReserveRequest, requests)
    )


def _commit_request(
    reservation_id: str, request_id: str | None = None, expected_version: int = 0
) -> reservations_pb2.CommitRequest:
    """HELD -> COMMITTED: firm demand that no longer expires. With expected_version, only if
    the reservation is still at that version (else VERSION_MISMATCH)."""
    return reservations_pb2.CommitRequest(
        reservation_id=reservation_id, request_id=_request_id(request_id),
        expected_version=expected_version,
    )


def _release_request(
    reservation_id: str,
    lines: Iterable[MessageLike[common_pb2.LineQuantity]] | None = None,
    request_id: str | None = None,
    expected_version: int = 0,
) -> reservations_pb2.ReleaseRequest:
    """Releases the whole reservation, or the given quantities of some lines."""
    return reservations_pb2.ReleaseRequest(
        reservation_id=reservation_id,
        request_id=_request_id(request_id),
        lines=_to_messages(common_pb2.LineQuantity, lines),
        expected_version=expected_version,
    )


def _fulfill_request(
    reservation_id: str,
    lines: Iterable[MessageLike[common_pb2.LineQuantity]] | None = None,
    request_id: str | None = None,
    expected_version: int = 0,
) -> reservations_pb2.FulfillRequest:
    """Ships the whole reservation, or the given quantities of some lines."""
    return reservations_pb2.FulfillRequest(
        reservation_id=reservation_id,
        request_id=_request_id(request_id),
        lines=_to_messages(common_pb2.LineQuantity, lines),
        expected_version=expected_version,
    )


def _extend_request(
    reservation_id: str,
    ttl_seconds: int = 0,
    request_id: str | None = None,
    expected_version: int = 0,
) -> reservations_pb2.ExtendRequest:
    """A HELD reservation expires ttl_seconds from now (0: the server's default TTL), or
    later if it already would."""
    return reservations_pb2.ExtendRequest(
        reservation_id=reservation_id,
        request_id=_request_id(request_id),
        ttl_seconds=ttl_seconds,
        expected_version=expected_version,
    )


def _record_delivery_request(
    reservation_id: str,
    delivered_date: DateLike,
    units_delivered: int,
    damaged_units: int = 0,
    documentation_correct: bool = True,
    request_id: str | None = None,
) -> reservations_pb2.RecordDeliveryRequest:
    """What reached the customer for a reservation that shipped (a record with a new
    request_id replaces an earlier one: a correction)."""
    return reservations_pb2.RecordDeliveryRequest(
        reservation_id=reservation_id,
        request_id=_request_id(request_id),
        delivery=common_pb2.Delivery(
            delivered_date=to_date(delivered_date), units_delivered=units_delivered,
            damaged_units=damaged_units, documentation_correct=documentation_correct,
        ),
    )


def _get_reservation_request(
    reservation_id: str, min_sequence: int = 0, stale: bool = False
) -> reservations_pb2.GetReservationRequest:
    """One reservation by id; with min_sequence, once the member holds that commit (with
    stale, a gateway answers from its copy at once)."""
    return reservations_pb2.GetReservationRequest(
        reservation_id=reservation_id, min_sequence=min_sequence,
        consistency=_consistency(stale))


def _list_reservations_request(
    state: int | str | None = None,
    sku: str = "",
    node_id: str = "",
    at_risk: bool | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> reservations_pb2.ListReservationsRequest:
    """One page of reservations matching every given filter (state as enum value or name)."""
    return reservations_pb2.ListReservationsRequest(
        state=_reservation_state(state),  # type: ignore[arg-type]  # checked by the enum
        sku=sku,
        node_id=node_id,
        at_risk=at_risk,
        page_size=page_size,
        page_token=page_token,
    )


def _reallocate_request(
    *,
    node_id: str = "",
    sku: str = "",
    reservation_ids: Iterable[str] = (),
    dry_run: bool = False,
    plan_sequence: int = 0,
) -> reservations_pb2.ReallocateRequest:
    """Re-sources at-risk (or chosen) reservations; dry_run returns the plan only."""
    return reservations_pb2.ReallocateRequest(
        node_id=node_id,
        sku=sku,
        reservation_ids=list(reservation_ids),
        dry_run=dry_run,
        plan_sequence=plan_sequence,
    )


def _criterion(value: int | str) -> allocation_pb2.AllocationPolicy.Criterion:
    """A criterion as its enum value, from the value or its name (any case)."""
    criteria = allocation_pb2.AllocationPolicy.Criterion
    number = criteria.Value(value.upper()) if isinstance(value, str) else value
    return cast(allocation_pb2.AllocationPolicy.Criterion, number)


def _set_allocation_policy_request(
    sku: str,
    criteria: Iterable[int | str],
    *,
    node_id: str = "",
    channel_ranks: Iterable[str] = (),
) -> allocation_pb2.SetAllocationPolicyRequest:
    """Sets the allocation policy of a SKU (or of the SKU at node_id): criteria as enum values
    or names ("value", "PRIORITY", ...); no criteria removes it."""
    return allocation_pb2.SetAllocationPolicyRequest(policy=allocation_pb2.AllocationPolicy(
        sku=sku, node_id=node_id, criteria=[_criterion(each) for each in criteria],
        channel_ranks=list(channel_ranks),
    ))


def _get_allocation_policy_request(
    sku: str = "", node_id: str = ""
) -> allocation_pb2.GetAllocationPolicyRequest:
    """The policy in force for a SKU at a node (sku empty: the server default)."""
    return allocation_pb2.GetAllocationPolicyRequest(sku=sku, node_id=node_id)


def _list_allocation_policies_request() -> allocation_pb2.ListAllocationPoliciesRequest:
    """Every SKU and node policy set."""
    return allocation_pb2.ListAllocationPoliciesRequest()


def _explain_allocation_request(
    sku: str, node_id: str
) -> allocation_pb2.ExplainAllocationRequest:
    """A position's open lines in the order its policy serves them, and why."""
    return allocation_pb2.ExplainAllocationRequest(sku=sku, node_id=node_id)


def _set_channel_allocation_request(
    sku: str,
    channel: str,
    *,
    node_id: str = "",
    quantity: int = 0,
    share: float = 0.0,
    end_date: DateLike | None = None,
) -> allocation_pb2.SetChannelAllocationRequest:
    """Fences `quantity` units (or a `share` of the supply) of a SKU for a channel, across its
    nodes or at node_id, until end_date; quantity and share both 0 remove the allocation."""
    return allocation_pb2.SetChannelAllocationRequest(allocation=allocation_pb2.ChannelAllocation(
        sku=sku, node_id=node_id, channel=channel, quantity=quantity, share=share,
        end_date=None if end_date is None else to_date(end_date),
    ))


def _list_channel_allocations_request(
    sku: str = "", node_id: str = "", channel: str = ""
) -> allocation_pb2.ListChannelAllocationsRequest:
    """The channel allocations set (optionally of one SKU, node or channel), each with what it
    has allocated, consumed and available now."""
    return allocation_pb2.ListChannelAllocationsRequest(
        sku=sku, node_id=node_id, channel=channel)


def _health_check_request(service: str = "") -> health_pb2.HealthCheckRequest:
    """The standard gRPC health check ("" is the whole server)."""
    return health_pb2.HealthCheckRequest(service=service)


def _watch_request(
    after_sequence: int = 0,
    types: Iterable[str] = (),
    sku: str = "",
    node_id: str = "",
    reservation_id: str = "",
    stop_at_head: bool = False,
    principal: str = "",
) -> events_pb2.WatchRequest:
    """Journal events after after_sequence, then live ones (or only up to the head)."""
    return events_pb2.WatchRequest(
        after_sequence=after_sequence, types=list(types), sku=sku, node_id=node_id,
        reservation_id=reservation_id, stop_at_head=stop_at_head, principal=principal,
    )


# ---------------------------------------------------------------------------------------------
# The RPC table


class Retry(enum.Enum):
    """Whether a second attempt after a transient failure (UNAVAILABLE, an overload refusal)
    is safe, and why."""

    IDEMPOTENCY_KEY = "carries an idempotency key"
    NATURALLY_IDEMPOTENT = "the same request twice has the effect of once"
    READ_ONLY = "changes nothing"
    WHEN_DRY_RUN = ("read-only when dry_run is set; guarded by plan_sequence when that is set "
                    "(a repeat of an applied plan is refused PLAN_STALE: it cannot apply twice)")
    NEVER = "a second attempt could act twice"


@dataclass(frozen=True)
class Rpc(Generic[Parameters, RequestT, ResponseT]):
    """One RPC: where it lives, how its request is built, and whether it may be retried."""

    stub: type
    method: str
    build: Callable[Parameters, RequestT]
    response: type[ResponseT]
    retry: Retry

    def retry_safe(self, request: Message) -> bool:
        """True when retrying this request after a transient failure cannot apply it twice."""
        if self.retry is Retry.WHEN_DRY_RUN:
            return bool(getattr(request, "dry_run", False) or getattr(request, "plan_sequence", 0))
        if self.retry is Retry.IDEMPOTENCY_KEY:
            return _carries_idempotency_key(request)
        return self.retry is not Retry.NEVER


def _carries_idempotency_key(request: Message) -> bool:
    """True when the server would know a repeat of `request` for the first one: by its
    request_id, or for a reservation its reservation_id, or for a hold its hold_id."""
    if isinstance(request, reservations_pb2.ReserveBatchRequest):
        return all(_carries_idempotency_key(each) for each in request.requests)
    if isinstance(request, reservations_pb2.ReserveRequest):
        return bool(request.reservation_id)
    if isinstance(request, inventory_pb2.PlaceHoldRequest):
        return bool(request.hold.hold_id)
    return bool(getattr(request, "request_id", ""))


_Inventory = inventory_pb2_grpc.InventoryStub
_Availability = availability_pb2_grpc.AvailabilityStub
_Reservations = reservations_pb2_grpc.ReservationsStub
_Health = health_pb2_grpc.HealthStub
_Server = server_pb2_grpc.ServerStub
_Allocations = allocation_pb2_grpc.AllocationsStub

UPSERT_NODE = Rpc(
    _Inventory, "UpsertNode", _upsert_node_request, common_pb2.Node, Retry.NATURALLY_IDEMPOTENT
)
LIST_NODES = Rpc(
    _Inventory,
    "ListNodes",
    _list_nodes_request,
    inventory_pb2.ListNodesResponse,
    Retry.READ_ONLY,
)
ADJUST_STOCK = Rpc(
    _Inventory,
    "AdjustStock",
    _adjust_stock_request,
    inventory_pb2.AdjustStockResponse,
    Retry.IDEMPOTENCY_KEY,
)
SET_SAFETY_STOCK = Rpc(
    _Inventory,
    "SetSafetyStock",
    _set_safety_stock_request,
    common_pb2.Position,
    Retry.NATURALLY_IDEMPOTENT,
)
UPSERT_SUPPLY = Rpc(
    _Inventory,
    "UpsertSupply",
    _upsert_supply_request,
    common_pb2.Supply,
    Retry.NATURALLY_IDEMPOTENT,
)
RECEIVE_SUPPLY = Rpc(
    _Inventory, "ReceiveSupply", _receive_supply_request, common_pb2.Supply, Retry.IDEMPOTENCY_KEY
)
LIST_SUPPLY = Rpc(
    _Inventory,
    "ListSupply",
    _list_supply_request,
    inventory_pb2.ListSupplyResponse,
    Retry.READ_ONLY,
)
PLACE_HOLD = Rpc(
    _Inventory, "PlaceHold", _place_hold_request, common_pb2.Hold, Retry.IDEMPOTENCY_KEY
)
RELEASE_HOLD = Rpc(
    _Inventory, "ReleaseHold", _release_hold_request, common_pb2.Hold, Retry.NATURALLY_IDEMPOTENT
)
LIST_HOLDS = Rpc(
    _Inventory, "ListHolds", _list_holds_request, inventory_pb2.ListHoldsResponse, Retry.READ_ONLY
)
GET_AVAILABILITY = Rpc(
    _Availability,
    "GetAvailability",
    _get_availability_request,
    availability_pb2.GetAvailabilityResponse,
    Retry.READ_ONLY,
)
PROMISE = Rpc(
    _Availability,
    "Promise",
    _promise_request,
    availability_pb2.PromiseResponse,
    Retry.READ_ONLY,
)
RESERVE = Rpc(
    _Reservations, "Reserve", reserve_request, common_pb2.Reservation, Retry.IDEMPOTENCY_KEY
)
RESERVE_BATCH = Rpc(
    _Reservations,
    "ReserveBatch",
    _reserve_batch_request,
    reservations_pb2.ReserveBatchResponse,
    Retry.IDEMPOTENCY_KEY,
)
COMMIT = Rpc(
    _Reservations, "Commit", _commit_request, common_pb2.Reservation, Retry.IDEMPOTENCY_KEY
)
RELEASE = Rpc(
    _Reservations, "Release", _release_request, common_pb2.Reservation, Retry.IDEMPOTENCY_KEY
)
FULFILL = Rpc(
    _Reservations, "Fulfill", _fulfill_request, common_pb2.Reservation, Retry.IDEMPOTENCY_KEY
)
EXTEND = Rpc(
    _Reservations, "Extend", _extend_request, common_pb2.Reservation, Retry.IDEMPOTENCY_KEY
)
RECORD_DELIVERY = Rpc(
    _Reservations, "RecordDelivery", _record_delivery_request, common_pb2.Reservation,
    Retry.IDEMPOTENCY_KEY,
)
GET_RESERVATION = Rpc(
    _Reservations,
    "GetReservation",
    _get_reservation_request,
    common_pb2.Reservation,
    Retry.READ_ONLY,
)
LIST_RESERVATIONS = Rpc(
    _Reservations,
    "ListReservations",
    _list_reservations_request,
    reservations_pb2.ListReservationsResponse,
    Retry.READ_ONLY,
)
# Applying a plan twice could move reservations twice, so only the dry run is retried.
REALLOCATE = Rpc(
    _Reservations,
    "Reallocate",
    _reallocate_request,
    reservations_pb2.ReallocateResponse,
    Retry.WHEN_DRY_RUN,
)
SET_ALLOCATION_POLICY = Rpc(
    _Allocations,
    "SetAllocationPolicy",
    _set_allocation_policy_request,
    allocation_pb2.AllocationPolicy,
    Retry.NATURALLY_IDEMPOTENT,
)
GET_ALLOCATION_POLICY = Rpc(
    _Allocations,
    "GetAllocationPolicy",
    _get_allocation_policy_request,
    allocation_pb2.AllocationPolicy,
    Retry.READ_ONLY,
)
LIST_ALLOCATION_POLICIES = Rpc(
    _Allocations,
    "ListAllocationPolicies",
    _list_allocation_policies_request,
    allocation_pb2.ListAllocationPoliciesResponse,
    Retry.READ_ONLY,
)
EXPLAIN_ALLOCATION = Rpc(
    _Allocations,
    "ExplainAllocation",
    _explain_allocation_request,
    allocation_pb2.ExplainAllocationResponse,
    Retry.READ_ONLY,
)
SET_CHANNEL_ALLOCATION = Rpc(
    _Allocations,
    "SetChannelAllocation",
    _set_channel_allocation_request,
    allocation_pb2.ChannelAllocation,
    Retry.NATURALLY_IDEMPOTENT,
)
LIST_CHANNEL_ALLOCATIONS = Rpc(
    _Allocations,
    "ListChannelAllocations",
    _list_channel_allocations_request,
    allocation_pb2.ListChannelAllocationsResponse,
    Retry.READ_ONLY,
)
HEALTH_CHECK = Rpc(
    _Health,
    "Check",
    _health_check_request,
    health_pb2.HealthCheckResponse,
    Retry.READ_ONLY,
)
GET_SERVER_INFO = Rpc(
    _Server,
    "GetServerInfo",
    _get_server_info_request,
    server_pb2.ServerInfo,
    Retry.READ_ONLY,
)

RPCS: dict[str, Rpc[..., Any, Any]] = {
    rpc.method if rpc is not HEALTH_CHECK else "Health.Check": rpc
    for rpc in (
        UPSERT_NODE,
        LIST_NODES,
        ADJUST_STOCK,
        SET_SAFETY_STOCK,
        UPSERT_SUPPLY,
        RECEIVE_SUPPLY,
        LIST_SUPPLY,
        PLACE_HOLD,
        RELEASE_HOLD,
        LIST_HOLDS,
        GET_AVAILABILITY,
        PROMISE,
        RESERVE,
        RESERVE_BATCH,
        COMMIT,
        RELEASE,
        FULFILL,
        EXTEND,
        RECORD_DELIVERY,
        GET_RESERVATION,
        LIST_RESERVATIONS,
        REALLOCATE,
        GET_SERVER_INFO,
        SET_ALLOCATION_POLICY,
        GET_ALLOCATION_POLICY,
        LIST_ALLOCATION_POLICIES,
        EXPLAIN_ALLOCATION,
        SET_CHANNEL_ALLOCATION,
        LIST_CHANNEL_ALLOCATIONS,
        HEALTH_CHECK,
    )
}
_STUB_TYPES = (_Inventory, _Availability, _Reservations, _Health, _Server,
               events_pb2_grpc.EventsStub, _Allocations)


def _attempts(rpc: Rpc[..., Any, Any], request: Message, retries: int, members: int) -> int:
    """Attempts a call may make: one unless retry-safe; with several members (a cluster that
    may be failing over), as many as the call's deadline allows."""
    if not rpc.retry_safe(request):
        return 1
    return 1 + max(0, retries) if members == 1 else FAILOVER_ATTEMPTS_MAX


def _retry_delay_s(error: AtpError, attempt: int, attempts: int, deadline: float) -> float | None:
    """Seconds to wait before retrying after failed attempt number `attempt`, or None when the
    call must fail now: the failure is an answer (only a transient one says the server did not
    act), no attempt is left, or the wait would leave no time before the call's deadline."""
    # NOT_LEADER is transient too: the member named has not been reached yet, or has died
    # and a successor is being elected (nothing was applied either way).
    if not (error.transient or error.reason == NOT_LEADER) or attempt >= attempts:
        return None
    delay_s = _backoff_s(attempt)
    hint_s = error.retry_delay_s
    if hint_s is not None:
        delay_s = max(delay_s, hint_s * random.uniform(1.0, retry_hint_jitter_max))
    if _time_left_s(deadline) < delay_s + attempt_time_min_s:
        return None
    return delay_s


def _time_left_s(deadline: float) -> float:
    return deadline - time.monotonic()


def _backoff_s(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1-based): exponential, capped, jittered."""
    exponential_s = backoff_first_s * 2.0 ** (attempt - 1)
    return min(backoff_max_s, exponential_s) * random.uniform(0.5, 1.0)


def _sync_method(
    rpc: Rpc[Parameters, Any, ResponseT],
) -> Callable[Concatenate[Client, Parameters], ResponseT]:
    """A Client method that builds the request of `rpc` and makes the call."""

    def method(self: Client, /, *args: Parameters.args, **kwargs: Parameters.kwargs) -> ResponseT:
        return self._call(rpc, rpc.build(*args, **kwargs))

    return _named_after(method, rpc)


def _async_method(
    rpc: Rpc[Parameters, Any, ResponseT],
) -> Callable[Concatenate[AsyncClient, Parameters], Coroutine[Any, Any, ResponseT]]:
    """An AsyncClient method that builds the request of `rpc` and awaits the call."""

    async def method(
        self: AsyncClient, /, *args: Parameters.args, **kwargs: Parameters.kwargs
    ) -> ResponseT:
        return await self._call(rpc, rpc.build(*args, **kwargs))

    return _named_after(method, rpc)


def _named_after(method: FunctionT, rpc: Rpc[..., Any, Any]) -> FunctionT:
    """Gives a generated method its RPC's name and its builder's docstring and signature."""
    # help(), inspect and IDEs then show the real parameters rather than *args, **kwargs.
    builder_signature = inspect.signature(rpc.build)
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    parameters = [self_parameter, *builder_signature.parameters.values()]
    signature = builder_signature.replace(parameters=parameters, return_annotation=rpc.response)
    method.__signature__ = signature  # type: ignore[attr-defined]
    method.__doc__ = rpc.build.__doc__
    method.__name__ = method.__qualname__ = _snake_case(rpc.method)
    return method


def _snake_case(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name).lstrip("_")


def _serving_status_name(response: health_pb2.HealthCheckResponse) -> str:
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


# ---------------------------------------------------------------------------------------------
# Clients


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that presents a bearer token (none for no token)."""
    token = (token or "").strip()
    if not token:
        return ()
    if any(char.isspace() or not char.isprintable() for char in token):
        raise ValueError("a token is printable characters without spaces")
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]  # grpc is untyped
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the token's metadata to every call made on a (synchronous) channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _with_token(self, details: Any) -> Any:
        return _CallDetails(details.method, details.timeout,
                            (*(details.metadata or ()), *self._metadata),
                            details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str], ...]
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    """The channel, presenting the bearer token with every call made on it (for stubs used
    directly; Client(token=...) adds it to its own calls)."""
    metadata = token_metadata(token)
    return grpc.intercept_channel(channel, _TokenInterceptor(metadata)) if metadata else channel


class _ClientBase:
    """What both clients share: configuration, and stubs over one channel per member.

    `target` may name several members of a cluster, comma separated: calls go to one of
    them; a write refused NOT_LEADER goes again to the leader the refusal names, and a
    retry-safe call failing UNAVAILABLE is retried on the next member."""

    def __init__(
        self, target: str, timeout_s: float, retries: int, channel: Any | None,
        make_channel: Callable[[str], Any], token: str | None = None,
    ) -> None:
        # Sent with every call, streams too, when the server checks who calls (--auth-policy).
        self.metadata: tuple[tuple[str, str], ...] = token_metadata(token)
        self.targets = [name.strip() for name in target.split(",") if name.strip()] or [target]
        self.target = self.targets[0]
        self.timeout_s = timeout_s
        self.retries = retries
        self._make_channel = make_channel
        self._channel = channel if channel is not None else make_channel(self.target)
        self._channels: dict[str, Any] = {self.target: self._channel}
        self._stubs_of: dict[str, dict[type, Any]] = {}

    def _stub(self, stub_type: type) -> Any:
        """The stub of that type on the current member's channel (streams stay on it)."""
        return self._stubs_for_target()[stub_type]

    def _callable(self, rpc: Rpc[..., Any, Any]) -> Any:
        return getattr(self._stubs_for_target()[rpc.stub], rpc.method)

    def _stubs_for_target(self) -> dict[type, Any]:
        stubs = self._stubs_of.get(self.target)
        if stubs is None:
            channel = self._channels.get(self.target)
            if channel is None:
                channel = self._channels[self.target] = self._make_channel(self.target)
            stubs = self._stubs_of[self.target] = {
                stub_type: stub_type(channel) for stub_type in _STUB_TYPES}
        return stubs

    def _redirected(self, error: AtpError, retry_safe: bool) -> bool:
        """After a failed attempt, moves to another member when one may answer: the leader
        a NOT_LEADER refusal names (the write was not applied: safe to send again), or the
        next member after UNAVAILABLE for a retry-safe call. True: try again at once."""
        leader = error.metadata.get("leader", "") if error.reason == NOT_LEADER else ""
        if leader and leader != self.target:
            if leader not in self.targets:
                self.targets.append(leader)
            self.target = leader
            return True
        if error.code is grpc.StatusCode.UNAVAILABLE and retry_safe and len(self.targets) > 1:
            self.next_member()
            return True
        return False

    def next_member(self) -> None:
        """Calls go to the next member of the target list from now on (round the list)."""
        self.target = self.targets[(self.targets.index(self.target) + 1) % len(self.targets)]

    def _extra_channels(self) -> list[Any]:
        """The channels this client made for members beyond the first."""
        return [channel for channel in self._channels.values() if channel is not self._channel]


def make_channel(target: str, tls: TlsOptions | None = None) -> grpc.Channel:
    """A channel to one member: TLS with `tls` (its files read now), else plaintext."""
    if tls is None:
        return grpc.insecure_channel(target, CHANNEL_OPTIONS)
    return grpc.secure_channel(target, tls.credentials(),
                               [*CHANNEL_OPTIONS, *tls.channel_options()])


def make_aio_channel(target: str, tls: TlsOptions | None = None) -> grpc.aio.Channel:
    """make_channel for the asyncio client."""
    if tls is None:
        return grpc.aio.insecure_channel(target, CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(target, tls.credentials(),
                                   [*CHANNEL_OPTIONS, *tls.channel_options()])


class Client(_ClientBase):
    """Synchronous client: one method per RPC, each returning the protobuf response.

    Every call has a deadline of timeout_s, its retries included. A retry-safe call (reads,
    naturally idempotent writes, writes carrying their idempotency key) failing with
    UNAVAILABLE, or refused with RESOURCE_EXHAUSTED because the server is overloaded, is
    retried up to `retries` more times with jittered exponential backoff, waiting at least the
    server's RetryInfo delay and never past the deadline; other failures raise AtpError.

    `tls` (TlsOptions: a CA file, and a certificate and key for mutual TLS) makes every
    member's channel a TLS channel with the same credentials; None: plaintext.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        channel: grpc.Channel | None = None,
        tls: TlsOptions | None = None,
        token: str | None = None,
    ) -> None:
        self._owns_channel = channel is None
        self.tls = tls
        super().__init__(target, timeout_s, retries, channel,
                         lambda name: make_channel(name, tls), token)

    def close(self) -> None:
        """Closes the channels (the first one only if this client made it)."""
        for channel in self._extra_channels():
            channel.close()
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, rpc: Rpc[..., Any, ResponseT], request: Message) -> ResponseT:
        attempts = _attempts(rpc, request, self.retries, len(self.targets))
        deadline = time.monotonic() + self.timeout_s  # for all the attempts together
        redirects = 0
        attempt = 1
        while True:
            try:
                timeout_s = _time_left_s(deadline)
                return cast(ResponseT, self._callable(rpc)(
                    request, timeout=timeout_s, metadata=self.metadata))
            except grpc.RpcError as rpc_error:
                error = _error_from_call(rpc_error)
                if redirects < len(self.targets) and self._redirected(error, attempts > 1):
                    redirects += 1
                    continue
                delay_s = _retry_delay_s(error, attempt, attempts, deadline)
                if delay_s is None:
                    raise error from None
            time.sleep(delay_s)
            attempt += 1
            redirects = 0  # after a pause, every member is worth another try

    upsert_node = _sync_method(UPSERT_NODE)
    list_nodes = _sync_method(LIST_NODES)
    adjust_stock = _sync_method(ADJUST_STOCK)
    set_safety_stock = _sync_method(SET_SAFETY_STOCK)
    upsert_supply = _sync_method(UPSERT_SUPPLY)
    receive_supply = _sync_method(RECEIVE_SUPPLY)
    list_supply = _sync_method(LIST_SUPPLY)
    place_hold = _sync_method(PLACE_HOLD)
    release_hold = _sync_method(RELEASE_HOLD)
    list_holds = _sync_method(LIST_HOLDS)
    get_availability = _sync_method(GET_AVAILABILITY)
    promise = _sync_method(PROMISE)
    reserve = _sync_method(RESERVE)
    reserve_batch = _sync_method(RESERVE_BATCH)
    commit = _sync_method(COMMIT)
    release = _sync_method(RELEASE)
    fulfill = _sync_method(FULFILL)
    extend = _sync_method(EXTEND)
    record_delivery = _sync_method(RECORD_DELIVERY)
    get_reservation = _sync_method(GET_RESERVATION)
    list_reservations = _sync_method(LIST_RESERVATIONS)
    reallocate = _sync_method(REALLOCATE)
    get_server_info = _sync_method(GET_SERVER_INFO)
    set_allocation_policy = _sync_method(SET_ALLOCATION_POLICY)
    get_allocation_policy = _sync_method(GET_ALLOCATION_POLICY)
    list_allocation_policies = _sync_method(LIST_ALLOCATION_POLICIES)
    explain_allocation = _sync_method(EXPLAIN_ALLOCATION)
    set_channel_allocation = _sync_method(SET_CHANNEL_ALLOCATION)
    list_channel_allocations = _sync_method(LIST_CHANNEL_ALLOCATIONS)

    def health(self, service: str = "") -> str:
        """The serving status of the server: SERVING, NOT_SERVING, UNKNOWN..."""
        return _serving_status_name(self._call(HEALTH_CHECK, _health_check_request(service)))

    def iter_reservations(self, **filters: Any) -> Iterator[common_pb2.Reservation]:
        """Every reservation matching the list_reservations filters, page after page."""
        return _follow_page_tokens(
            lambda token: self.list_reservations(**filters, page_token=token)
        )

    def iter_supply(self, **filters: Any) -> Iterator[common_pb2.Supply]:
        """Every supply matching the list_supply filters, page after page."""
        return _follow_page_tokens(lambda token: self.list_supply(**filters, page_token=token))

    def iter_holds(self, **filters: Any) -> Iterator[common_pb2.Hold]:
        """Every active hold matching the list_holds filters, page after page."""
        return _follow_page_tokens(lambda token: self.list_holds(**filters, page_token=token))

    def watch(
        self,
        after_sequence: int = 0,
        *,
        types: Iterable[str] = (),
        sku: str = "",
        node_id: str = "",
        reservation_id: str = "",
        stop_at_head: bool = False,
        principal: str = "",
        follow: bool = False,
    ) -> Iterator[events_pb2.Event]:
        """Journal events after after_sequence, then live ones (or only up to the head).
        Each event's values are typed in its `payload` member, named after its type
        (event.WhichOneof("payload") == "reservation_created", event.reservation_created),
        beside the untyped `data`.

        With several members, a stream that fails UNAVAILABLE (its member died, or ended its
        watches to install a snapshot or to shut down) is opened again on the next member
        after the last event received, with backoff, until no member has answered for
        timeout_s; then, or with a single member, the UNAVAILABLE error is raised.

        follow=True: the watch survives restarts and outages, on one member too. After
        UNAVAILABLE (or a live stream ending without an error) it is opened again, on the
        next member if there are several, after the last event delivered (no gap, no
        duplicate), with backoff capped at backoff_max_s, and never gives up: it ends only
        when the caller stops iterating, at the head with stop_at_head, or on another error
        (OUT_OF_RANGE if the journal was trimmed past the last event meanwhile)."""
        rewatch = _Rewatch(self, after_sequence, follow and not stop_at_head)
        while True:
            request = _watch_request(
                rewatch.after, types, sku, node_id, reservation_id, stop_at_head, principal)
            stream = self._stub(events_pb2_grpc.EventsStub).Watch(request, metadata=self.metadata)
            try:
                for event in stream:
                    rewatch.received(event)
                    yield event
                delay_s = rewatch.after_clean_end()
                if delay_s is None:
                    return
            except grpc.RpcError as rpc_error:
                error = _error_from_call(rpc_error)
                delay_s = rewatch.next_member(error)
                if delay_s is None:
                    raise error from None
            finally:
                stream.cancel()
            time.sleep(delay_s)


class _Rewatch:
    """Where a watch resumes, and whether it may: see Client.watch."""

    def __init__(self, client: _ClientBase, after_sequence: int, follow: bool = False) -> None:
        self.client = client
        self.after = after_sequence
        self.follow = follow  # never give up (a live watch with follow=True)
        self.attempt = 0
        self.failing_since: float | None = None

    def received(self, event: events_pb2.Event) -> None:
        self.after = event.sequence
        self.attempt, self.failing_since = 0, None

    def next_member(self, error: AtpError) -> float | None:
        """Seconds to wait before watching again on the next member; None: give up."""
        client = self.client
        if error.code is not grpc.StatusCode.UNAVAILABLE:
            return None
        if not self.follow:
            if len(client.targets) < 2:
                return None
            now = time.monotonic()
            self.failing_since = self.failing_since or now
            if now - self.failing_since > client.timeout_s:
                return None
        return self._again()

    def after_clean_end(self) -> float | None:
        """A stream ended without an error: None (done), or, following, a live stream's
        end (a server that ends watches OK at shutdown): seconds to wait, then watch again."""
        return self._again() if self.follow else None

    def _again(self) -> float:
        client = self.client
        client.next_member()
        self.attempt += 1
        return _backoff_s(self.attempt)


def _follow_page_tokens(page: Callable[[str], Message]) -> Iterator[Any]:
    """Items of one List call after another, following next_page_token to the last page."""
    token = ""
    while True:
        response = page(token)
        yield from _page_items(response)
        token = response.next_page_token  # type: ignore[attr-defined]
        if not token:
            return


def _page_items(response: Message) -> Iterable[Any]:
    # Every List response has exactly one repeated message field: the items of the page.
    (items_field,) = [field for field in response.DESCRIPTOR.fields if field.is_repeated]
    return cast(Iterable[Any], getattr(response, items_field.name))


class AsyncClient(_ClientBase):
    """The asyncio client (grpc.aio): the same methods as Client, as coroutines."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        channel: grpc.aio.Channel | None = None,
        tls: TlsOptions | None = None,
        token: str | None = None,
    ) -> None:
        self._owns_channel = channel is None
        self.tls = tls
        super().__init__(target, timeout_s, retries, channel,
                         lambda name: make_aio_channel(name, tls), token)

    async def close(self) -> None:
        """Closes the channels (the first one only if this client made it)."""
        for channel in self._extra_channels():
            await channel.close()
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, rpc: Rpc[..., Any, ResponseT], request: Message) -> ResponseT:
        attempts = _attempts(rpc, request, self.retries, len(self.targets))
        deadline = time.monotonic() + self.timeout_s  # for all the attempts together
        redirects = 0
        attempt = 1
        while True:
            try:
                timeout_s = _time_left_s(deadline)
                return cast(ResponseT, await self._callable(rpc)(
                    request, timeout=timeout_s, metadata=self.metadata))
            except grpc.aio.AioRpcError as rpc_error:
                error = _error_from_aio(rpc_error)
                if redirects < len(self.targets) and self._redirected(error, attempts > 1):
                    redirects += 1
                    continue
                delay_s = _retry_delay_s(error, attempt, attempts, deadline)
                if delay_s is None:
                    raise error from None
            await asyncio.sleep(delay_s)
            attempt += 1
            redirects = 0  # after a pause, every member is worth another try

    upsert_node = _async_method(UPSERT_NODE)
    list_nodes = _async_method(LIST_NODES)
    adjust_stock = _async_method(ADJUST_STOCK)
    set_safety_stock = _async_method(SET_SAFETY_STOCK)
    upsert_supply = _async_method(UPSERT_SUPPLY)
    receive_supply = _async_method(RECEIVE_SUPPLY)
    list_supply = _async_method(LIST_SUPPLY)
    place_hold = _async_method(PLACE_HOLD)
    release_hold = _async_method(RELEASE_HOLD)
    list_holds = _async_method(LIST_HOLDS)
    get_availability = _async_method(GET_AVAILABILITY)
    promise = _async_method(PROMISE)
    reserve = _async_method(RESERVE)
    reserve_batch = _async_method(RESERVE_BATCH)
    commit = _async_method(COMMIT)
    release = _async_method(RELEASE)
    fulfill = _async_method(FULFILL)
    extend = _async_method(EXTEND)
    record_delivery = _async_method(RECORD_DELIVERY)
    get_reservation = _async_method(GET_RESERVATION)
    list_reservations = _async_method(LIST_RESERVATIONS)
    reallocate = _async_method(REALLOCATE)
    get_server_info = _async_method(GET_SERVER_INFO)
    set_allocation_policy = _async_method(SET_ALLOCATION_POLICY)
    get_allocation_policy = _async_method(GET_ALLOCATION_POLICY)
    list_allocation_policies = _async_method(LIST_ALLOCATION_POLICIES)
    explain_allocation = _async_method(EXPLAIN_ALLOCATION)
    set_channel_allocation = _async_method(SET_CHANNEL_ALLOCATION)
    list_channel_allocations = _async_method(LIST_CHANNEL_ALLOCATIONS)

    async def health(self, service: str = "") -> str:
        """The serving status of the server: SERVING, NOT_SERVING, UNKNOWN..."""
        response = await self._call(HEALTH_CHECK, _health_check_request(service))
        return _serving_status_name(response)

    def iter_reservations(self, **filters: Any) -> AsyncIterator[common_pb2.Reservation]:
        """Every reservation matching the list_reservations filters, page after page."""
        return _follow_page_tokens_async(
            lambda token: self.list_reservations(**filters, page_token=token)
        )

    def iter_supply(self, **filters: Any) -> AsyncIterator[common_pb2.Supply]:
        """Every supply matching the list_supply filters, page after page."""
        return _follow_page_tokens_async(
            lambda token: self.list_supply(**filters, page_token=token)
        )

    def iter_holds(self, **filters: Any) -> AsyncIterator[common_pb2.Hold]:
        """Every active hold matching the list_holds filters, page after page."""
        return _follow_page_tokens_async(lambda token: self.list_holds(**filters, page_token=token))

    async def watch(
        self,
        after_sequence: int = 0,
        *,
        types: Iterable[str] = (),
        sku: str = "",
        node_id: str = "",
        reservation_id: str = "",
        stop_at_head: bool = False,
        principal: str = "",
        follow: bool = False,
    ) -> AsyncIterator[events_pb2.Event]:
        """Journal events after after_sequence, then live ones (or only up to the head);
        with several members, opened again on the next one as Client.watch is, and with
        follow=True across restarts and outages, forever, as Client.watch is."""
        rewatch = _Rewatch(self, after_sequence, follow and not stop_at_head)
        while True:
            request = _watch_request(
                rewatch.after, types, sku, node_id, reservation_id, stop_at_head, principal)
            call = self._stub(events_pb2_grpc.EventsStub).Watch(request, metadata=self.metadata)
            try:
                async for event in call:
                    rewatch.received(event)
                    yield event
                delay_s = rewatch.after_clean_end()
                if delay_s is None:
                    return
            except grpc.aio.AioRpcError as rpc_error:
                error = _error_from_aio(rpc_error)
                delay_s = rewatch.next_member(error)
                if delay_s is None:
                    raise error from None
            finally:
                call.cancel()
            await asyncio.sleep(delay_s)

    def reserve_stream(self, *, timeout_s: float | None = None) -> ReserveStream:
        """Opens Reservations.ReserveStream: `async with client.reserve_stream() as stream`.

        The stream has no deadline unless timeout_s is given, since it is meant to live long.
        """
        return ReserveStream(self._stub(_Reservations), timeout_s, self.metadata)


async def _follow_page_tokens_async(
    page: Callable[[str], Awaitable[Any]],
) -> AsyncIterator[Any]:
    token = ""
    while True:
        response = await page(token)
        for item in _page_items(response):
            yield item
        token = response.next_page_token
        if not token:
            return


class ReserveStream:
    """A bidirectional ReserveStream: many submits in flight, answers matched by order."""

    def __init__(self, stub: Any, timeout_s: float | None,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._metadata = metadata
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: collections.deque[asyncio.Future[reservations_pb2.ReserveResult]] = (
            collections.deque()
        )
        # Held from queuing a future to writing its request, so that the order of the
        # pending futures is the order of the requests on the wire.
        self._write_lock = asyncio.Lock()
        self._failure: AtpError | None = None

    async def __aenter__(self) -> Self:
        self._call = self._stub.ReserveStream(timeout=self._timeout_s, metadata=self._metadata)
        self._reader = asyncio.create_task(self._read_results())
        return self

    async def __aexit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._reader is not None, "used outside `async with`"
        if exception is None:
            await self._finish_writing()
        else:
            self._call.cancel()
        await self._reader

    async def submit(
        self, request: MessageLike[reservations_pb2.ReserveRequest]
    ) -> common_pb2.Reservation:
        """Sends one reserve request and waits for its reservation (raises AtpError)."""
        return reservation_from_result(await self.submit_result(request))

    async def submit_result(
        self, request: MessageLike[reservations_pb2.ReserveRequest]
    ) -> reservations_pb2.ReserveResult:
        """Sends one reserve request and waits for its raw ReserveResult."""
        message = to_message(reservations_pb2.ReserveRequest, request)
        future: asyncio.Future[reservations_pb2.ReserveResult]
        future = asyncio.get_running_loop().create_future()
        async with self._write_lock:
            if self._reader is None or self._reader.done():
                raise self._failure or AtpError(
                    grpc.StatusCode.FAILED_PRECONDITION, "reserve stream is not open"
                )
            self._pending.append(future)
            try:
                await self._call.write(message)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # The reader sees the stream end and fails every pending future.
        return await future

    async def _finish_writing(self) -> None:
        async with self._write_lock:
            try:
                await self._call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # Already over: the reader reports why.

    async def _read_results(self) -> None:
        failure = AtpError(grpc.StatusCode.UNAVAILABLE, "reserve stream closed before answering")
        try:
            while (result := await self._call.read()) is not grpc.aio.EOF:
                self._resolve_next(result)
        except grpc.aio.AioRpcError as rpc_error:
            failure = _error_from_aio(rpc_error)
        except AtpError as error:
            failure = error
            self._call.cancel()
        except asyncio.CancelledError:
            failure = AtpError(grpc.StatusCode.CANCELLED, "reserve stream cancelled")
            if _is_being_cancelled():
                raise  # This task itself is cancelled, not just the call: let it end.
        finally:
            self._failure = failure
            while self._pending:
                future = self._pending.popleft()
                if not future.done():
                    future.set_exception(failure)

    def _resolve_next(self, result: reservations_pb2.ReserveResult) -> None:
        if not self._pending:
            raise AtpError(grpc.StatusCode.INTERNAL, "reserve stream answered an unsent request")
        future = self._pending.popleft()
        if not future.done():  # Its submitter may have been cancelled meanwhile.
            future.set_result(result)


def _is_being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
