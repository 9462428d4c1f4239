from atp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpsertNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.Node
    def __init__(self, node: _Optional[_Union[_common_pb2.Node, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("min_sequence", "consistency")
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    min_sequence: int
    consistency: _common_pb2.ReadConsistency
    def __init__(self, min_sequence: _Optional[int] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_common_pb2.Node, _Mapping]]] = ...) -> None: ...

class StockMovement(_message.Message):
    __slots__ = ("sku", "node_id", "type", "quantity", "to_node_id", "reason")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[StockMovement.Type]
        RECEIPT: _ClassVar[StockMovement.Type]
        RETURN: _ClassVar[StockMovement.Type]
        SHRINKAGE: _ClassVar[StockMovement.Type]
        DAMAGE: _ClassVar[StockMovement.Type]
        CYCLE_COUNT: _ClassVar[StockMovement.Type]
        TRANSFER: _ClassVar[StockMovement.Type]
    TYPE_UNSPECIFIED: StockMovement.Type
    RECEIPT: StockMovement.Type
    RETURN: StockMovement.Type
    SHRINKAGE: StockMovement.Type
    DAMAGE: StockMovement.Type
    CYCLE_COUNT: StockMovement.Type
    TRANSFER: StockMovement.Type
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    type: StockMovement.Type
    quantity: int
    to_node_id: str
    reason: str
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., type: _Optional[_Union[StockMovement.Type, str]] = ..., quantity: _Optional[int] = ..., to_node_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AdjustStockRequest(_message.Message):
    __slots__ = ("request_id", "movements")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    movements: _containers.RepeatedCompositeFieldContainer[StockMovement]
    def __init__(self, request_id: _Optional[str] = ..., movements: _Optional[_Iterable[_Union[StockMovement, _Mapping]]] = ...) -> None: ...

class AdjustStockResponse(_message.Message):
    __slots__ = ("positions", "commit_sequence")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Position]
    commit_sequence: int
    def __init__(self, positions: _Optional[_Iterable[_Union[_common_pb2.Position, _Mapping]]] = ..., commit_sequence: _Optional[int] = ...) -> None: ...

class SetSafetyStockRequest(_message.Message):
    __slots__ = ("sku", "node_id", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class UpsertSupplyRequest(_message.Message):
    __slots__ = ("supply",)
    SUPPLY_FIELD_NUMBER: _ClassVar[int]
    supply: _common_pb2.Supply
    def __init__(self, supply: _Optional[_Union[_common_pb2.Supply, _Mapping]] = ...) -> None: ...

class ReceiveSupplyRequest(_message.Message):
    __slots__ = ("request_id", "supply_id", "quantity")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUPPLY_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    supply_id: str
    quantity: int
    def __init__(self, request_id: _Optional[str] = ..., supply_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class ListSupplyRequest(_message.Message):
    __slots__ = ("sku", "node_id", "include_closed", "page_size", "page_token", "min_sequence", "consistency")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CLOSED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    include_closed: bool
    page_size: int
    page_token: str
    min_sequence: int
    consistency: _common_pb2.ReadConsistency
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., include_closed: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., min_sequence: _Optional[int] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class ListSupplyResponse(_message.Message):
    __slots__ = ("supplies", "next_page_token")
    SUPPLIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    supplies: _containers.RepeatedCompositeFieldContainer[_common_pb2.Supply]
    next_page_token: str
    def __init__(self, supplies: _Optional[_Iterable[_Union[_common_pb2.Supply, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PlaceHoldRequest(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: _common_pb2.Hold
    def __init__(self, hold: _Optional[_Union[_common_pb2.Hold, _Mapping]] = ...) -> None: ...

class ReleaseHoldRequest(_message.Message):
    __slots__ = ("hold_id",)
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    def __init__(self, hold_id: _Optional[str] = ...) -> None: ...

class ListHoldsRequest(_message.Message):
    __slots__ = ("sku", "node_id", "page_size", "page_token", "min_sequence", "consistency")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    page_size: int
    page_token: str
    min_sequence: int
    consistency: _common_pb2.ReadConsistency
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., min_sequence: _Optional[int] = ..., consistency: _Optional[_Union[_common_pb2.ReadConsistency, str]] = ...) -> None: ...

class ListHoldsResponse(_message.Message):
    __slots__ = ("holds", "next_page_token")
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    holds: _containers.RepeatedCompositeFieldContainer[_common_pb2.Hold]
    next_page_token: str
    def __init__(self, holds: _Optional[_Iterable[_Union[_common_pb2.Hold, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
