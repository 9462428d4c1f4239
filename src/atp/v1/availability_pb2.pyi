from atp.v1 import common_pb2 as _common_pb2
from google.type import date_pb2 as _date_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetAvailabilityRequest(_message.Message):
    __slots__ = ("skus", "node_ids", "include_timeline", "priority", "min_sequence", "channel", "consistency")
    SKUS_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TIMELINE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    include_timeline: bool
    priority: int
    min_sequence: int
    channel: str
    consistency: _common_pb2.ReadConsistency
    def __init__(self, skus: _Optional[_Iterable[str]] = ..., node_ids: _Optional[_Iterable[str]] = ..., include_timeline: _Optional[bool] = ..., priority: _Optional[int] = ..., min_sequence: _Optional[int] = ..., channel: _Optional[str] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class NetworkAvailability(_message.Message):
    __slots__ = ("sku", "on_hand", "allocated", "reserved", "held", "safety_stock", "inbound", "available", "channels")
    SKU_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    on_hand: int
    allocated: int
    reserved: int
    held: int
    safety_stock: int
    inbound: int
    available: int
    channels: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChannelAvailability]
    def __init__(self, sku: _Optional[str] = ..., on_hand: _Optional[int] = ..., allocated: _Optional[int] = ..., reserved: _Optional[int] = ..., held: _Optional[int] = ..., safety_stock: _Optional[int] = ..., inbound: _Optional[int] = ..., available: _Optional[int] = ..., channels: _Optional[_Iterable[_Union[_common_pb2.ChannelAvailability, _Mapping]]] = ...) -> None: ...

class GetAvailabilityResponse(_message.Message):
    __slots__ = ("positions", "totals")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Position]
    totals: _containers.RepeatedCompositeFieldContainer[NetworkAvailability]
    def __init__(self, positions: _Optional[_Iterable[_Union[_common_pb2.Position, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[NetworkAvailability, _Mapping]]] = ...) -> None: ...

class OrderLine(_message.Message):
    __slots__ = ("line_id", "sku", "quantity", "substitute_skus", "need_by_date")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTE_SKUS_FIELD_NUMBER: _ClassVar[int]
    NEED_BY_DATE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    sku: str
    quantity: int
    substitute_skus: _containers.RepeatedScalarFieldContainer[str]
    need_by_date: _date_pb2.Date
    def __init__(self, line_id: _Optional[str] = ..., sku: _Optional[str] = ..., quantity: _Optional[int] = ..., substitute_skus: _Optional[_Iterable[str]] = ..., need_by_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class PromiseRequest(_message.Message):
    __slots__ = ("lines", "destination_region", "policy", "priority", "explain", "min_sequence", "channel", "consistency")
    LINES_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_REGION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    destination_region: str
    policy: _common_pb2.FulfillmentPolicy
    priority: int
    explain: bool
    min_sequence: int
    channel: str
    consistency: _common_pb2.ReadConsistency
    def __init__(self, lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., destination_region: _Optional[str] = ..., policy: _Optional[_Union[_common_pb2.FulfillmentPolicy, _Mapping]] = ..., priority: _Optional[int] = ..., explain: _Optional[bool] = ..., min_sequence: _Optional[int] = ..., channel: _Optional[str] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("node_id", "quantity", "ship_date", "delivery_date", "from_inbound")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SHIP_DATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_DATE_FIELD_NUMBER: _ClassVar[int]
    FROM_INBOUND_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    quantity: int
    ship_date: _date_pb2.Date
    delivery_date: _date_pb2.Date
    from_inbound: bool
    def __init__(self, node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., ship_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., delivery_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., from_inbound: _Optional[bool] = ...) -> None: ...

class CandidateExplanation(_message.Message):
    __slots__ = ("node_id", "outcome", "detail")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    outcome: str
    detail: str
    def __init__(self, node_id: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class LinePromise(_message.Message):
    __slots__ = ("line_id", "allocations", "backordered_quantity", "backorder_date", "candidates", "substitute", "substitutes")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BACKORDER_DATE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTE_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTES_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    backordered_quantity: int
    backorder_date: _date_pb2.Date
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateExplanation]
    substitute: SubstituteOffer
    substitutes: _containers.RepeatedCompositeFieldContainer[SubstituteExplanation]
    def __init__(self, line_id: _Optional[str] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ..., backordered_quantity: _Optional[int] = ..., backorder_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[CandidateExplanation, _Mapping]]] = ..., substitute: _Optional[_Union[SubstituteOffer, _Mapping]] = ..., substitutes: _Optional[_Iterable[_Union[SubstituteExplanation, _Mapping]]] = ...) -> None: ...

class SubstituteOffer(_message.Message):
    __slots__ = ("sku", "allocations", "promise_date", "reason")
    SKU_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sku: str
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    promise_date: _date_pb2.Date
    reason: str
    def __init__(self, sku: _Optional[str] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ..., promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class SubstituteExplanation(_message.Message):
    __slots__ = ("sku", "outcome", "detail")
    SKU_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    sku: str
    outcome: str
    detail: str
    def __init__(self, sku: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class PromiseResponse(_message.Message):
    __slots__ = ("lines", "promise_date", "complete")
    LINES_FIELD_NUMBER: _ClassVar[int]
    PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LinePromise]
    promise_date: _date_pb2.Date
    complete: bool
    def __init__(self, lines: _Optional[_Iterable[_Union[LinePromise, _Mapping]]] = ..., promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., complete: _Optional[bool] = ...) -> None: ...
