from atp.v1 import common_pb2 as _common_pb2
from google.rpc import status_pb2 as _status_pb2
from google.type import date_pb2 as _date_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveRequest(_message.Message):
    __slots__ = ("reservation_id", "lines", "destination_region", "policy", "ttl_seconds", "commit", "priority", "channel", "customer_id", "allow_substitution")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_REGION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SUBSTITUTION_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReservationLine]
    destination_region: str
    policy: _common_pb2.FulfillmentPolicy
    ttl_seconds: int
    commit: bool
    priority: int
    channel: str
    customer_id: str
    allow_substitution: bool
    def __init__(self, reservation_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[_common_pb2.ReservationLine, _Mapping]]] = ..., destination_region: _Optional[str] = ..., policy: _Optional[_Union[_common_pb2.FulfillmentPolicy, _Mapping]] = ..., ttl_seconds: _Optional[int] = ..., commit: _Optional[bool] = ..., priority: _Optional[int] = ..., channel: _Optional[str] = ..., customer_id: _Optional[str] = ..., allow_substitution: _Optional[bool] = ...) -> None: ...

class ReserveResult(_message.Message):
    __slots__ = ("reservation_id", "reservation", "status", "reason", "commit_sequence")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    reservation: _common_pb2.Reservation
    status: _status_pb2.Status
    reason: str
    commit_sequence: int
    def __init__(self, reservation_id: _Optional[str] = ..., reservation: _Optional[_Union[_common_pb2.Reservation, _Mapping]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., reason: _Optional[str] = ..., commit_sequence: _Optional[int] = ...) -> None: ...

class ReserveBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ReserveRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ReserveRequest, _Mapping]]] = ...) -> None: ...

class ReserveBatchResponse(_message.Message):
    __slots__ = ("results", "commit_sequence")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReserveResult]
    commit_sequence: int
    def __init__(self, results: _Optional[_Iterable[_Union[ReserveResult, _Mapping]]] = ..., commit_sequence: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("reservation_id", "request_id", "expected_version")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    request_id: str
    expected_version: int
    def __init__(self, reservation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("reservation_id", "request_id", "lines", "expected_version")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    request_id: str
    lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.LineQuantity]
    expected_version: int
    def __init__(self, reservation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[_common_pb2.LineQuantity, _Mapping]]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class FulfillRequest(_message.Message):
    __slots__ = ("reservation_id", "request_id", "lines", "expected_version")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    request_id: str
    lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.LineQuantity]
    expected_version: int
    def __init__(self, reservation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[_common_pb2.LineQuantity, _Mapping]]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("reservation_id", "request_id", "ttl_seconds", "expected_version")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    request_id: str
    ttl_seconds: int
    expected_version: int
    def __init__(self, reservation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., expected_version: _Optional[int] = ...) -> None: ...

class GetReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "min_sequence", "consistency")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    min_sequence: int
    consistency: _common_pb2.ReadConsistency
    def __init__(self, reservation_id: _Optional[str] = ..., min_sequence: _Optional[int] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class ListReservationsRequest(_message.Message):
    __slots__ = ("state", "sku", "node_id", "at_risk", "page_size", "page_token", "min_sequence", "consistency")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.Reservation.State
    sku: str
    node_id: str
    at_risk: bool
    page_size: int
    page_token: str
    min_sequence: int
    consistency: _common_pb2.ReadConsistency
    def __init__(self, state: _Optional[_Union[_common_pb2.Reservation.State, str]] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., at_risk: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., min_sequence: _Optional[int] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("reservations", "next_page_token")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Reservation]
    next_page_token: str
    def __init__(self, reservations: _Optional[_Iterable[_Union[_common_pb2.Reservation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReallocateRequest(_message.Message):
    __slots__ = ("node_id", "sku", "reservation_ids", "dry_run", "plan_sequence")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_IDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    PLAN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    sku: str
    reservation_ids: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    plan_sequence: int
    def __init__(self, node_id: _Optional[str] = ..., sku: _Optional[str] = ..., reservation_ids: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ..., plan_sequence: _Optional[int] = ...) -> None: ...

class RecordDeliveryRequest(_message.Message):
    __slots__ = ("reservation_id", "request_id", "delivery")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    request_id: str
    delivery: _common_pb2.Delivery
    def __init__(self, reservation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., delivery: _Optional[_Union[_common_pb2.Delivery, _Mapping]] = ...) -> None: ...

class ReallocationPlan(_message.Message):
    __slots__ = ("reservation_id", "old_lines", "new_lines", "old_promise_date", "new_promise_date", "slipped", "unfilled_quantity", "decided_by")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_LINES_FIELD_NUMBER: _ClassVar[int]
    NEW_LINES_FIELD_NUMBER: _ClassVar[int]
    OLD_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    NEW_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    SLIPPED_FIELD_NUMBER: _ClassVar[int]
    UNFILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    old_lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReservationLine]
    new_lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReservationLine]
    old_promise_date: _date_pb2.Date
    new_promise_date: _date_pb2.Date
    slipped: bool
    unfilled_quantity: int
    decided_by: str
    def __init__(self, reservation_id: _Optional[str] = ..., old_lines: _Optional[_Iterable[_Union[_common_pb2.ReservationLine, _Mapping]]] = ..., new_lines: _Optional[_Iterable[_Union[_common_pb2.ReservationLine, _Mapping]]] = ..., old_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., new_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., slipped: _Optional[bool] = ..., unfilled_quantity: _Optional[int] = ..., decided_by: _Optional[str] = ...) -> None: ...

class ReallocateResponse(_message.Message):
    __slots__ = ("plans", "applied", "plan_sequence", "commit_sequence")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    PLAN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[ReallocationPlan]
    applied: bool
    plan_sequence: int
    commit_sequence: int
    def __init__(self, plans: _Optional[_Iterable[_Union[ReallocationPlan, _Mapping]]] = ..., applied: _Optional[bool] = ..., plan_sequence: _Optional[int] = ..., commit_sequence: _Optional[int] = ...) -> None: ...
