from google.type import date_pb2 as _date_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AllocationPolicy(_message.Message):
    __slots__ = ("sku", "node_id", "criteria", "channel_ranks", "source")
    class Criterion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CRITERION_UNSPECIFIED: _ClassVar[AllocationPolicy.Criterion]
        PRIORITY: _ClassVar[AllocationPolicy.Criterion]
        CHANNEL_RANK: _ClassVar[AllocationPolicy.Criterion]
        VALUE: _ClassVar[AllocationPolicy.Criterion]
        DUE_DATE: _ClassVar[AllocationPolicy.Criterion]
        FIFO: _ClassVar[AllocationPolicy.Criterion]
    CRITERION_UNSPECIFIED: AllocationPolicy.Criterion
    PRIORITY: AllocationPolicy.Criterion
    CHANNEL_RANK: AllocationPolicy.Criterion
    VALUE: AllocationPolicy.Criterion
    DUE_DATE: AllocationPolicy.Criterion
    FIFO: AllocationPolicy.Criterion
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[AllocationPolicy.Source]
        SERVER_DEFAULT: _ClassVar[AllocationPolicy.Source]
        SKU_POLICY: _ClassVar[AllocationPolicy.Source]
        NODE_POLICY: _ClassVar[AllocationPolicy.Source]
    SOURCE_UNSPECIFIED: AllocationPolicy.Source
    SERVER_DEFAULT: AllocationPolicy.Source
    SKU_POLICY: AllocationPolicy.Source
    NODE_POLICY: AllocationPolicy.Source
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_RANKS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    criteria: _containers.RepeatedScalarFieldContainer[AllocationPolicy.Criterion]
    channel_ranks: _containers.RepeatedScalarFieldContainer[str]
    source: AllocationPolicy.Source
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., criteria: _Optional[_Iterable[_Union[AllocationPolicy.Criterion, str]]] = ..., channel_ranks: _Optional[_Iterable[str]] = ..., source: _Optional[_Union[AllocationPolicy.Source, str]] = ...) -> None: ...

class SetAllocationPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: AllocationPolicy
    def __init__(self, policy: _Optional[_Union[AllocationPolicy, _Mapping]] = ...) -> None: ...

class GetAllocationPolicyRequest(_message.Message):
    __slots__ = ("sku", "node_id")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class ListAllocationPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAllocationPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[AllocationPolicy]
    def __init__(self, policies: _Optional[_Iterable[_Union[AllocationPolicy, _Mapping]]] = ...) -> None: ...

class ExplainAllocationRequest(_message.Message):
    __slots__ = ("sku", "node_id")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class RankedLine(_message.Message):
    __slots__ = ("rank", "reservation_id", "line_id", "quantity", "at_risk", "decided_by", "detail", "priority", "channel", "unit_value", "due_date")
    RANK_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    UNIT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    reservation_id: str
    line_id: str
    quantity: int
    at_risk: bool
    decided_by: str
    detail: str
    priority: int
    channel: str
    unit_value: int
    due_date: _date_pb2.Date
    def __init__(self, rank: _Optional[int] = ..., reservation_id: _Optional[str] = ..., line_id: _Optional[str] = ..., quantity: _Optional[int] = ..., at_risk: _Optional[bool] = ..., decided_by: _Optional[str] = ..., detail: _Optional[str] = ..., priority: _Optional[int] = ..., channel: _Optional[str] = ..., unit_value: _Optional[int] = ..., due_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class ExplainAllocationResponse(_message.Message):
    __slots__ = ("policy", "lines")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    policy: AllocationPolicy
    lines: _containers.RepeatedCompositeFieldContainer[RankedLine]
    def __init__(self, policy: _Optional[_Union[AllocationPolicy, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[RankedLine, _Mapping]]] = ...) -> None: ...

class ChannelAllocation(_message.Message):
    __slots__ = ("sku", "node_id", "channel", "quantity", "share", "end_date", "allocated", "consumed", "available")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    channel: str
    quantity: int
    share: float
    end_date: _date_pb2.Date
    allocated: int
    consumed: int
    available: int
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., channel: _Optional[str] = ..., quantity: _Optional[int] = ..., share: _Optional[float] = ..., end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., allocated: _Optional[int] = ..., consumed: _Optional[int] = ..., available: _Optional[int] = ...) -> None: ...

class SetChannelAllocationRequest(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: ChannelAllocation
    def __init__(self, allocation: _Optional[_Union[ChannelAllocation, _Mapping]] = ...) -> None: ...

class ListChannelAllocationsRequest(_message.Message):
    __slots__ = ("sku", "node_id", "channel")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    channel: str
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class ListChannelAllocationsResponse(_message.Message):
    __slots__ = ("allocations",)
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[ChannelAllocation]
    def __init__(self, allocations: _Optional[_Iterable[_Union[ChannelAllocation, _Mapping]]] = ...) -> None: ...
