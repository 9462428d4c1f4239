import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("build", "default_ttl_seconds", "ttl_seconds_max", "safety_stock_priority_min", "limits", "role", "cluster", "leader", "sync_replicas", "journal_retention_seconds", "journal_retention_events", "closed_retention_seconds", "idempotency_window_seconds", "authentication", "tls", "client_certificates_required", "start_time", "gateways", "gateways_following")
    BUILD_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_MAX_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_PRIORITY_MIN_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    SYNC_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_RETENTION_EVENTS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATION_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATES_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FOLLOWING_FIELD_NUMBER: _ClassVar[int]
    build: BuildInfo
    default_ttl_seconds: int
    ttl_seconds_max: int
    safety_stock_priority_min: int
    limits: ServerLimits
    role: str
    cluster: str
    leader: str
    sync_replicas: int
    journal_retention_seconds: int
    journal_retention_events: int
    closed_retention_seconds: int
    idempotency_window_seconds: int
    authentication: str
    tls: bool
    client_certificates_required: bool
    start_time: _timestamp_pb2.Timestamp
    gateways: int
    gateways_following: int
    def __init__(self, build: _Optional[_Union[BuildInfo, _Mapping]] = ..., default_ttl_seconds: _Optional[int] = ..., ttl_seconds_max: _Optional[int] = ..., safety_stock_priority_min: _Optional[int] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ..., role: _Optional[str] = ..., cluster: _Optional[str] = ..., leader: _Optional[str] = ..., sync_replicas: _Optional[int] = ..., journal_retention_seconds: _Optional[int] = ..., journal_retention_events: _Optional[int] = ..., closed_retention_seconds: _Optional[int] = ..., idempotency_window_seconds: _Optional[int] = ..., authentication: _Optional[str] = ..., tls: _Optional[bool] = ..., client_certificates_required: _Optional[bool] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gateways: _Optional[int] = ..., gateways_following: _Optional[int] = ...) -> None: ...

class BuildInfo(_message.Message):
    __slots__ = ("version", "git_commit", "python_version", "grpc_version", "protobuf_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GIT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    GRPC_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOBUF_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    git_commit: str
    python_version: str
    grpc_version: str
    protobuf_version: str
    def __init__(self, version: _Optional[str] = ..., git_commit: _Optional[str] = ..., python_version: _Optional[str] = ..., grpc_version: _Optional[str] = ..., protobuf_version: _Optional[str] = ...) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("id_bytes_max", "lines_max", "quantity_max", "batch_requests_max", "message_bytes_max", "page_size_max", "page_size_default", "reason_bytes_max", "concurrent_rpcs_max", "pending_mutations_max", "days_max", "horizon_days_max", "stream_in_flight_max")
    ID_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    LINES_MAX_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_MAX_FIELD_NUMBER: _ClassVar[int]
    BATCH_REQUESTS_MAX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_MAX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    REASON_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_RPCS_MAX_FIELD_NUMBER: _ClassVar[int]
    PENDING_MUTATIONS_MAX_FIELD_NUMBER: _ClassVar[int]
    DAYS_MAX_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_MAX_FIELD_NUMBER: _ClassVar[int]
    STREAM_IN_FLIGHT_MAX_FIELD_NUMBER: _ClassVar[int]
    id_bytes_max: int
    lines_max: int
    quantity_max: int
    batch_requests_max: int
    message_bytes_max: int
    page_size_max: int
    page_size_default: int
    reason_bytes_max: int
    concurrent_rpcs_max: int
    pending_mutations_max: int
    days_max: int
    horizon_days_max: int
    stream_in_flight_max: int
    def __init__(self, id_bytes_max: _Optional[int] = ..., lines_max: _Optional[int] = ..., quantity_max: _Optional[int] = ..., batch_requests_max: _Optional[int] = ..., message_bytes_max: _Optional[int] = ..., page_size_max: _Optional[int] = ..., page_size_default: _Optional[int] = ..., reason_bytes_max: _Optional[int] = ..., concurrent_rpcs_max: _Optional[int] = ..., pending_mutations_max: _Optional[int] = ..., days_max: _Optional[int] = ..., horizon_days_max: _Optional[int] = ..., stream_in_flight_max: _Optional[int] = ...) -> None: ...
