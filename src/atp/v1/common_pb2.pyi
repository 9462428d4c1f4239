import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_CONSISTENCY_UNSPECIFIED: _ClassVar[ReadConsistency]
    READ_CONSISTENCY_LINEARIZABLE: _ClassVar[ReadConsistency]
    READ_CONSISTENCY_STALE: _ClassVar[ReadConsistency]
READ_CONSISTENCY_UNSPECIFIED: ReadConsistency
READ_CONSISTENCY_LINEARIZABLE: ReadConsistency
READ_CONSISTENCY_STALE: ReadConsistency

class Lane(_message.Message):
    __slots__ = ("region", "transit_days", "cost")
    REGION_FIELD_NUMBER: _ClassVar[int]
    TRANSIT_DAYS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    region: str
    transit_days: int
    cost: int
    def __init__(self, region: _Optional[str] = ..., transit_days: _Optional[int] = ..., cost: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "kind", "region", "active", "handling_days", "lanes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    HANDLING_DAYS_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    kind: str
    region: str
    active: bool
    handling_days: int
    lanes: _containers.RepeatedCompositeFieldContainer[Lane]
    def __init__(self, node_id: _Optional[str] = ..., kind: _Optional[str] = ..., region: _Optional[str] = ..., active: _Optional[bool] = ..., handling_days: _Optional[int] = ..., lanes: _Optional[_Iterable[_Union[Lane, _Mapping]]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("sku", "node_id", "on_hand", "allocated", "reserved", "held", "safety_stock", "inbound", "available", "timeline", "short", "at_risk_quantity", "channels")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    INBOUND_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    SHORT_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    node_id: str
    on_hand: int
    allocated: int
    reserved: int
    held: int
    safety_stock: int
    inbound: int
    available: int
    timeline: _containers.RepeatedCompositeFieldContainer[AtpBucket]
    short: bool
    at_risk_quantity: int
    channels: _containers.RepeatedCompositeFieldContainer[ChannelAvailability]
    def __init__(self, sku: _Optional[str] = ..., node_id: _Optional[str] = ..., on_hand: _Optional[int] = ..., allocated: _Optional[int] = ..., reserved: _Optional[int] = ..., held: _Optional[int] = ..., safety_stock: _Optional[int] = ..., inbound: _Optional[int] = ..., available: _Optional[int] = ..., timeline: _Optional[_Iterable[_Union[AtpBucket, _Mapping]]] = ..., short: _Optional[bool] = ..., at_risk_quantity: _Optional[int] = ..., channels: _Optional[_Iterable[_Union[ChannelAvailability, _Mapping]]] = ...) -> None: ...

class AtpBucket(_message.Message):
    __slots__ = ("date", "available")
    DATE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    date: _date_pb2.Date
    available: int
    def __init__(self, date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., available: _Optional[int] = ...) -> None: ...

class Supply(_message.Message):
    __slots__ = ("supply_id", "sku", "node_id", "quantity", "expected_date", "received_quantity", "state")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Supply.State]
        OPEN: _ClassVar[Supply.State]
        RECEIVED: _ClassVar[Supply.State]
        CANCELLED: _ClassVar[Supply.State]
    STATE_UNSPECIFIED: Supply.State
    OPEN: Supply.State
    RECEIVED: Supply.State
    CANCELLED: Supply.State
    SUPPLY_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    supply_id: str
    sku: str
    node_id: str
    quantity: int
    expected_date: _date_pb2.Date
    received_quantity: int
    state: Supply.State
    def __init__(self, supply_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., expected_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., received_quantity: _Optional[int] = ..., state: _Optional[_Union[Supply.State, str]] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("hold_id", "sku", "node_id", "quantity", "reason", "expire_time", "force", "create_time")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    sku: str
    node_id: str
    quantity: int
    reason: str
    expire_time: _timestamp_pb2.Timestamp
    force: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, hold_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., force: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FulfillmentPolicy(_message.Message):
    __slots__ = ("ship_complete", "max_nodes", "allow_partial", "objective")
    class Objective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OBJECTIVE_UNSPECIFIED: _ClassVar[FulfillmentPolicy.Objective]
        EARLIEST: _ClassVar[FulfillmentPolicy.Objective]
        CHEAPEST: _ClassVar[FulfillmentPolicy.Objective]
    OBJECTIVE_UNSPECIFIED: FulfillmentPolicy.Objective
    EARLIEST: FulfillmentPolicy.Objective
    CHEAPEST: FulfillmentPolicy.Objective
    SHIP_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    ship_complete: bool
    max_nodes: int
    allow_partial: bool
    objective: FulfillmentPolicy.Objective
    def __init__(self, ship_complete: _Optional[bool] = ..., max_nodes: _Optional[int] = ..., allow_partial: _Optional[bool] = ..., objective: _Optional[_Union[FulfillmentPolicy.Objective, str]] = ...) -> None: ...

class ReservationLine(_message.Message):
    __slots__ = ("line_id", "sku", "node_id", "quantity", "fulfilled_quantity", "ship_date", "delivery_date", "at_risk", "released_quantity", "backordered_quantity", "from_inbound", "at_risk_reason", "request_line_id", "unit_value", "substitute_skus", "substitute_for", "need_by_date")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FULFILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SHIP_DATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_DATE_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_FIELD_NUMBER: _ClassVar[int]
    RELEASED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FROM_INBOUND_FIELD_NUMBER: _ClassVar[int]
    AT_RISK_REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_LINE_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_VALUE_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTE_SKUS_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTE_FOR_FIELD_NUMBER: _ClassVar[int]
    NEED_BY_DATE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    sku: str
    node_id: str
    quantity: int
    fulfilled_quantity: int
    ship_date: _date_pb2.Date
    delivery_date: _date_pb2.Date
    at_risk: bool
    released_quantity: int
    backordered_quantity: int
    from_inbound: bool
    at_risk_reason: str
    request_line_id: str
    unit_value: int
    substitute_skus: _containers.RepeatedScalarFieldContainer[str]
    substitute_for: str
    need_by_date: _date_pb2.Date
    def __init__(self, line_id: _Optional[str] = ..., sku: _Optional[str] = ..., node_id: _Optional[str] = ..., quantity: _Optional[int] = ..., fulfilled_quantity: _Optional[int] = ..., ship_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., delivery_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., at_risk: _Optional[bool] = ..., released_quantity: _Optional[int] = ..., backordered_quantity: _Optional[int] = ..., from_inbound: _Optional[bool] = ..., at_risk_reason: _Optional[str] = ..., request_line_id: _Optional[str] = ..., unit_value: _Optional[int] = ..., substitute_skus: _Optional[_Iterable[str]] = ..., substitute_for: _Optional[str] = ..., need_by_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "state", "lines", "create_time", "expire_time", "promise_date", "priority", "channel", "customer_id", "destination_region", "policy", "version", "first_promise_date", "delivery")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Reservation.State]
        HELD: _ClassVar[Reservation.State]
        COMMITTED: _ClassVar[Reservation.State]
        FULFILLED: _ClassVar[Reservation.State]
        RELEASED: _ClassVar[Reservation.State]
        EXPIRED: _ClassVar[Reservation.State]
    STATE_UNSPECIFIED: Reservation.State
    HELD: Reservation.State
    COMMITTED: Reservation.State
    FULFILLED: Reservation.State
    RELEASED: Reservation.State
    EXPIRED: Reservation.State
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_REGION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_PROMISE_DATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: Reservation.State
    lines: _containers.RepeatedCompositeFieldContainer[ReservationLine]
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    promise_date: _date_pb2.Date
    priority: int
    channel: str
    customer_id: str
    destination_region: str
    policy: FulfillmentPolicy
    version: int
    first_promise_date: _date_pb2.Date
    delivery: Delivery
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[Reservation.State, str]] = ..., lines: _Optional[_Iterable[_Union[ReservationLine, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., priority: _Optional[int] = ..., channel: _Optional[str] = ..., customer_id: _Optional[str] = ..., destination_region: _Optional[str] = ..., policy: _Optional[_Union[FulfillmentPolicy, _Mapping]] = ..., version: _Optional[int] = ..., first_promise_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., delivery: _Optional[_Union[Delivery, _Mapping]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("delivered_date", "units_delivered", "damaged_units", "documentation_correct", "record_time")
    DELIVERED_DATE_FIELD_NUMBER: _ClassVar[int]
    UNITS_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_UNITS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTATION_CORRECT_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    delivered_date: _date_pb2.Date
    units_delivered: int
    damaged_units: int
    documentation_correct: bool
    record_time: _timestamp_pb2.Timestamp
    def __init__(self, delivered_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., units_delivered: _Optional[int] = ..., damaged_units: _Optional[int] = ..., documentation_correct: _Optional[bool] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChannelAvailability(_message.Message):
    __slots__ = ("channel", "allocated", "consumed", "available", "end_date")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    allocated: int
    consumed: int
    available: int
    end_date: _date_pb2.Date
    def __init__(self, channel: _Optional[str] = ..., allocated: _Optional[int] = ..., consumed: _Optional[int] = ..., available: _Optional[int] = ..., end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class LineQuantity(_message.Message):
    __slots__ = ("line_id", "quantity")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    quantity: int
    def __init__(self, line_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...
