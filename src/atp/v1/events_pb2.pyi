import datetime

from atp.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("after_sequence", "types", "sku", "node_id", "reservation_id", "stop_at_head", "principal")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_AT_HEAD_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    types: _containers.RepeatedScalarFieldContainer[str]
    sku: str
    node_id: str
    reservation_id: str
    stop_at_head: bool
    principal: str
    def __init__(self, after_sequence: _Optional[int] = ..., types: _Optional[_Iterable[str]] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., stop_at_head: _Optional[bool] = ..., principal: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "time", "type", "reservation_id", "sku", "node_id", "data", "principal", "node_upserted", "stock_moved", "safety_stock_set", "supply_created", "supply_updated", "supply_received", "hold_placed", "hold_released", "hold_expired", "reservation_created", "reservation_committed", "reservation_released", "reservation_fulfilled", "reservation_expired", "reservation_reallocated", "backorder_filled", "line_at_risk", "line_recovered", "position_out_of_stock", "position_back_in_stock", "position_below_safety_stock", "reservation_extended", "delivery_recorded", "allocation_policy_set", "channel_allocation_set")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    NODE_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    STOCK_MOVED_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_SET_FIELD_NUMBER: _ClassVar[int]
    SUPPLY_CREATED_FIELD_NUMBER: _ClassVar[int]
    SUPPLY_UPDATED_FIELD_NUMBER: _ClassVar[int]
    SUPPLY_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    HOLD_PLACED_FIELD_NUMBER: _ClassVar[int]
    HOLD_RELEASED_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_CREATED_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_RELEASED_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FULFILLED_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_REALLOCATED_FIELD_NUMBER: _ClassVar[int]
    BACKORDER_FILLED_FIELD_NUMBER: _ClassVar[int]
    LINE_AT_RISK_FIELD_NUMBER: _ClassVar[int]
    LINE_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    POSITION_OUT_OF_STOCK_FIELD_NUMBER: _ClassVar[int]
    POSITION_BACK_IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    POSITION_BELOW_SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_EXTENDED_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_RECORDED_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_POLICY_SET_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ALLOCATION_SET_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    type: str
    reservation_id: str
    sku: str
    node_id: str
    data: _struct_pb2.Struct
    principal: str
    node_upserted: NodeUpserted
    stock_moved: StockMoved
    safety_stock_set: SafetyStockSet
    supply_created: SupplyCreated
    supply_updated: SupplyUpdated
    supply_received: SupplyReceived
    hold_placed: HoldPlaced
    hold_released: HoldReleased
    hold_expired: HoldExpired
    reservation_created: ReservationCreated
    reservation_committed: ReservationCommitted
    reservation_released: ReservationReleased
    reservation_fulfilled: ReservationFulfilled
    reservation_expired: ReservationExpired
    reservation_reallocated: ReservationReallocated
    backorder_filled: BackorderFilled
    line_at_risk: LineAtRisk
    line_recovered: LineRecovered
    position_out_of_stock: PositionOutOfStock
    position_back_in_stock: PositionBackInStock
    position_below_safety_stock: PositionBelowSafetyStock
    reservation_extended: ReservationExtended
    delivery_recorded: DeliveryRecorded
    allocation_policy_set: AllocationPolicySet
    channel_allocation_set: ChannelAllocationSet
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[str] = ..., reservation_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., principal: _Optional[str] = ..., node_upserted: _Optional[_Union[NodeUpserted, _Mapping]] = ..., stock_moved: _Optional[_Union[StockMoved, _Mapping]] = ..., safety_stock_set: _Optional[_Union[SafetyStockSet, _Mapping]] = ..., supply_created: _Optional[_Union[SupplyCreated, _Mapping]] = ..., supply_updated: _Optional[_Union[SupplyUpdated, _Mapping]] = ..., supply_received: _Optional[_Union[SupplyReceived, _Mapping]] = ..., hold_placed: _Optional[_Union[HoldPlaced, _Mapping]] = ..., hold_released: _Optional[_Union[HoldReleased, _Mapping]] = ..., hold_expired: _Optional[_Union[HoldExpired, _Mapping]] = ..., reservation_created: _Optional[_Union[ReservationCreated, _Mapping]] = ..., reservation_committed: _Optional[_Union[ReservationCommitted, _Mapping]] = ..., reservation_released: _Optional[_Union[ReservationReleased, _Mapping]] = ..., reservation_fulfilled: _Optional[_Union[ReservationFulfilled, _Mapping]] = ..., reservation_expired: _Optional[_Union[ReservationExpired, _Mapping]] = ..., reservation_reallocated: _Optional[_Union[ReservationReallocated, _Mapping]] = ..., backorder_filled: _Optional[_Union[BackorderFilled, _Mapping]] = ..., line_at_risk: _Optional[_Union[LineAtRisk, _Mapping]] = ..., line_recovered: _Optional[_Union[LineRecovered, _Mapping]] = ..., position_out_of_stock: _Optional[_Union[PositionOutOfStock, _Mapping]] = ..., position_back_in_stock: _Optional[_Union[PositionBackInStock, _Mapping]] = ..., position_below_safety_stock: _Optional[_Union[PositionBelowSafetyStock, _Mapping]] = ..., reservation_extended: _Optional[_Union[ReservationExtended, _Mapping]] = ..., delivery_recorded: _Optional[_Union[DeliveryRecorded, _Mapping]] = ..., allocation_policy_set: _Optional[_Union[AllocationPolicySet, _Mapping]] = ..., channel_allocation_set: _Optional[_Union[ChannelAllocationSet, _Mapping]] = ...) -> None: ...

class NodeUpserted(_message.Message):
    __slots__ = ("node_id", "active")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    active: bool
    def __init__(self, node_id: _Optional[str] = ..., active: _Optional[bool] = ...) -> None: ...

class StockMoved(_message.Message):
    __slots__ = ("sku", "node_id", "type", "quantity", "delta", "on_hand", "to_node_id", "from_node_id", "reason")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[StockMoved.Type]
        RECEIPT: _ClassVar[StockMoved.Type]
        RETURN: _ClassVar[StockMoved.Type]
        SHRINKAGE: _ClassVar[StockMoved.Type]
        DAMAGE: _ClassVar[StockMoved.Type]
        CYCLE_COUNT: _ClassVar[StockMoved.Type]
        TRANSFER: _ClassVar[StockMoved.Type]
        TRANSFER_IN: _ClassVar[StockMoved.Type]
    TYPE_UNSPECIFIED: StockMoved.Type
    RECEIPT: StockMoved.Type
    RETURN: StockMoved.Type
    SHRINKAGE: StockMoved.Type
    DAMAGE: StockMoved.Type
    CYCLE_COUNT: StockMoved.Type
    TRANSFER: StockMoved.Type
    TRANSFER_IN: StockMoved.Type
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    type: StockMoved.Type
    quantity: int
    delta: int
    on_hand: int
    to_node_id: str
    from_node_id: str
    reason: str
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., type: _Optional[_Union[StockMoved.Type, str]] = ..., quantity: _Optional[int] = ..., delta: _Optional[int] = ..., on_hand: _Optional[int] = ..., to_node_id: _Optional[str] = ..., from_node_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SafetyStockSet(_message.Message):
    __slots__ = ("sku", "node_id", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class SupplyCreated(_message.Message):
    __slots__ = ("supply_id", "sku", "node_id", "quantity", "expected_date", "state")
    SUPPLY_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    supply_id: str
    sku: str
    node_id: str
    quantity: int
    expected_date: _date_pb2.Date
    state: _common_pb2.Supply.State
    def __init__(self, supply_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., expected_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.Supply.State, str]] = ...) -> None: ...

class SupplyUpdated(_message.Message):
    __slots__ = ("supply_id", "sku", "node_id", "quantity", "expected_date", "state", "slipped")
    SUPPLY_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SLIPPED_FIELD_NUMBER: _ClassVar[int]
    supply_id: str
    sku: str
    node_id: str
    quantity: int
    expected_date: _date_pb2.Date
    state: _common_pb2.Supply.State
    slipped: bool
    def __init__(self, supply_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., expected_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.Supply.State, str]] = ..., slipped: _Optional[bool] = ...) -> None: ...

class SupplyReceived(_message.Message):
    __slots__ = ("supply_id", "sku", "node_id", "quantity", "expected_date", "state", "receipt_quantity", "on_hand")
    SUPPLY_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    supply_id: str
    sku: str
    node_id: str
    quantity: int
    expected_date: _date_pb2.Date
    state: _common_pb2.Supply.State
    receipt_quantity: int
    on_hand: int
    def __init__(self, supply_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., expected_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.Supply.State, str]] = ..., receipt_quantity: _Optional[int] = ..., on_hand: _Optional[int] = ...) -> None: ...

class HoldPlaced(_message.Message):
    __slots__ = ("hold_id", "sku", "node_id", "quantity", "reason", "force")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    sku: str
    node_id: str
    quantity: int
    reason: str
    force: bool
    def __init__(self, hold_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class HoldReleased(_message.Message):
    __slots__ = ("hold_id", "sku", "node_id", "quantity", "reason", "force")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    sku: str
    node_id: str
    quantity: int
    reason: str
    force: bool
    def __init__(self, hold_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class HoldExpired(_message.Message):
    __slots__ = ("hold_id", "sku", "node_id", "quantity", "reason", "force")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    sku: str
    node_id: str
    quantity: int
    reason: str
    force: bool
    def __init__(self, hold_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ReservationEventLine(_message.Message):
    __slots__ = ("line_id", "sku", "node_id", "quantity", "ship_date", "backordered_quantity")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SHIP_DATE_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    sku: str
    node_id: str
    quantity: int
    ship_date: _date_pb2.Date
    backordered_quantity: int
    def __init__(self, line_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., ship_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., backordered_quantity: _Optional[int] = ...) -> None: ...

class LineUnits(_message.Message):
    __slots__ = ("line_id", "sku", "node_id", "quantity")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    sku: str
    node_id: str
    quantity: int
    def __init__(self, line_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class ReservationCreated(_message.Message):
    __slots__ = ("reservation_id", "state", "lines", "first_promise_date")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FIRST_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: _common_pb2.Reservation.State
    lines: _containers.RepeatedCompositeFieldContainer[ReservationEventLine]
    first_promise_date: _date_pb2.Date
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.Reservation.State, str]] = ..., lines: _Optional[_Iterable[_Union[ReservationEventLine, _Mapping]]] = ..., first_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class ReservationCommitted(_message.Message):
    __slots__ = ("reservation_id", "lines")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReservationEventLine]
    def __init__(self, reservation_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReservationEventLine, _Mapping]]] = ...) -> None: ...

class ReservationReleased(_message.Message):
    __slots__ = ("reservation_id", "state", "lines")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: _common_pb2.Reservation.State
    lines: _containers.RepeatedCompositeFieldContainer[LineUnits]
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.Reservation.State, str]] = ..., lines: _Optional[_Iterable[_Union[LineUnits, _Mapping]]] = ...) -> None: ...

class ReservationFulfilled(_message.Message):
    __slots__ = ("reservation_id", "state", "lines")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: _common_pb2.Reservation.State
    lines: _containers.RepeatedCompositeFieldContainer[LineUnits]
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.Reservation.State, str]] = ..., lines: _Optional[_Iterable[_Union[LineUnits, _Mapping]]] = ...) -> None: ...

class ReservationExpired(_message.Message):
    __slots__ = ("reservation_id", "lines")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ReservationEventLine]
    def __init__(self, reservation_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ReservationEventLine, _Mapping]]] = ...) -> None: ...

class ReservationReallocated(_message.Message):
    __slots__ = ("reservation_id", "old_promise_date", "new_promise_date", "slipped", "unfilled_quantity", "lines")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    NEW_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    SLIPPED_FIELD_NUMBER: _ClassVar[int]
    UNFILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    old_promise_date: _date_pb2.Date
    new_promise_date: _date_pb2.Date
    slipped: bool
    unfilled_quantity: int
    lines: _containers.RepeatedCompositeFieldContainer[ReservationEventLine]
    def __init__(self, reservation_id: _Optional[str] = ..., old_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., new_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., slipped: _Optional[bool] = ..., unfilled_quantity: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[ReservationEventLine, _Mapping]]] = ...) -> None: ...

class ReservationExtended(_message.Message):
    __slots__ = ("reservation_id", "expire_time", "ttl_seconds")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    expire_time: _timestamp_pb2.Timestamp
    ttl_seconds: int
    def __init__(self, reservation_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class DeliveryRecorded(_message.Message):
    __slots__ = ("reservation_id", "channel", "customer_id", "delivered_date", "units_delivered", "damaged_units", "documentation_correct", "units_ordered", "first_promise_date")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_DATE_FIELD_NUMBER: _ClassVar[int]
    UNITS_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_UNITS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTATION_CORRECT_FIELD_NUMBER: _ClassVar[int]
    UNITS_ORDERED_FIELD_NUMBER: _ClassVar[int]
    FIRST_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    channel: str
    customer_id: str
    delivered_date: _date_pb2.Date
    units_delivered: int
    damaged_units: int
    documentation_correct: bool
    units_ordered: int
    first_promise_date: _date_pb2.Date
    def __init__(self, reservation_id: _Optional[str] = ..., channel: _Optional[str] = ..., customer_id: _Optional[str] = ..., delivered_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., units_delivered: _Optional[int] = ..., damaged_units: _Optional[int] = ..., documentation_correct: _Optional[bool] = ..., units_ordered: _Optional[int] = ..., first_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class AllocationPolicySet(_message.Message):
    __slots__ = ("sku", "node_id", "criteria", "channel_ranks")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_RANKS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    criteria: _containers.RepeatedScalarFieldContainer[str]
    channel_ranks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., criteria: _Optional[_Iterable[str]] = ..., channel_ranks: _Optional[_Iterable[str]] = ...) -> None: ...

class ChannelAllocationSet(_message.Message):
    __slots__ = ("sku", "node_id", "channel", "quantity", "share", "end_date")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    channel: str
    quantity: int
    share: float
    end_date: _date_pb2.Date
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., channel: _Optional[str] = ..., quantity: _Optional[int] = ..., share: _Optional[float] = ..., end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class BackorderFilled(_message.Message):
    __slots__ = ("reservation_id", "line_id", "sku", "filled_quantity", "backordered_quantity")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    line_id: str
    sku: str
    filled_quantity: int
    backordered_quantity: int
    def __init__(self, reservation_id: _Optional[str] = ..., line_id: _Optional[str] = ..., sku: _Optional[str] = ..., filled_quantity: _Optional[int] = ..., backordered_quantity: _Optional[int] = ...) -> None: ...

class LineAtRisk(_message.Message):
    __slots__ = ("reservation_id", "line_id", "sku", "node_id", "quantity", "at_risk_reason", "decided_by")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    line_id: str
    sku: str
    node_id: str
    quantity: int
    at_risk_reason: str
    decided_by: str
    def __init__(self, reservation_id: _Optional[str] = ..., line_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., at_risk_reason: _Optional[str] = ..., decided_by: _Optional[str] = ...) -> None: ...

class LineRecovered(_message.Message):
    __slots__ = ("reservation_id", "line_id", "sku", "node_id", "quantity")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    line_id: str
    sku: str
    node_id: str
    quantity: int
    def __init__(self, reservation_id: _Optional[str] = ..., line_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class PositionOutOfStock(_message.Message):
    __slots__ = ("sku", "node_id", "on_hand", "safety_stock")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    on_hand: int
    safety_stock: int
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., on_hand: _Optional[int] = ..., safety_stock: _Optional[int] = ...) -> None: ...

class PositionBackInStock(_message.Message):
    __slots__ = ("sku", "node_id", "on_hand", "safety_stock")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    on_hand: int
    safety_stock: int
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., on_hand: _Optional[int] = ..., safety_stock: _Optional[int] = ...) -> None: ...

class PositionBelowSafetyStock(_message.Message):
    __slots__ = ("sku", "node_id", "on_hand", "safety_stock")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    on_hand: int
    safety_stock: int
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., on_hand: _Optional[int] = ..., safety_stock: _Optional[int] = ...) -> None: ...
