from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SnapshotRequest(_message.Message):
    __slots__ = ("follower_id",)
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    def __init__(self, follower_id: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("commit", "term", "records", "journal", "last")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    commit: int
    term: int
    records: _containers.RepeatedCompositeFieldContainer[RecordChange]
    journal: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    last: bool
    def __init__(self, commit: _Optional[int] = ..., term: _Optional[int] = ..., records: _Optional[_Iterable[_Union[RecordChange, _Mapping]]] = ..., journal: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ..., last: _Optional[bool] = ...) -> None: ...

class MemberStatus(_message.Message):
    __slots__ = ("address", "role", "commit", "term", "published_seconds_ago", "eligible")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    address: str
    role: str
    commit: int
    term: int
    published_seconds_ago: float
    eligible: bool
    def __init__(self, address: _Optional[str] = ..., role: _Optional[str] = ..., commit: _Optional[int] = ..., term: _Optional[int] = ..., published_seconds_ago: _Optional[float] = ..., eligible: _Optional[bool] = ...) -> None: ...

class ReplicationStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicationStatus(_message.Message):
    __slots__ = ("role", "commit", "leader", "connected", "sync_replicas", "term", "followers", "cluster", "members", "sync_standbys", "lease_renewed_seconds_ago", "fenced", "installing_snapshot")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SYNC_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    FOLLOWERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SYNC_STANDBYS_FIELD_NUMBER: _ClassVar[int]
    LEASE_RENEWED_SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    INSTALLING_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    role: str
    commit: int
    leader: str
    connected: bool
    sync_replicas: int
    term: int
    followers: _containers.RepeatedCompositeFieldContainer[FollowerStatus]
    cluster: str
    members: _containers.RepeatedCompositeFieldContainer[MemberStatus]
    sync_standbys: _containers.RepeatedScalarFieldContainer[str]
    lease_renewed_seconds_ago: float
    fenced: bool
    installing_snapshot: bool
    def __init__(self, role: _Optional[str] = ..., commit: _Optional[int] = ..., leader: _Optional[str] = ..., connected: _Optional[bool] = ..., sync_replicas: _Optional[int] = ..., term: _Optional[int] = ..., followers: _Optional[_Iterable[_Union[FollowerStatus, _Mapping]]] = ..., cluster: _Optional[str] = ..., members: _Optional[_Iterable[_Union[MemberStatus, _Mapping]]] = ..., sync_standbys: _Optional[_Iterable[str]] = ..., lease_renewed_seconds_ago: _Optional[float] = ..., fenced: _Optional[bool] = ..., installing_snapshot: _Optional[bool] = ...) -> None: ...

class FollowerStatus(_message.Message):
    __slots__ = ("follower_id", "acknowledged_commit", "lag_commits", "lag_seconds", "connected")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_COMMIT_FIELD_NUMBER: _ClassVar[int]
    LAG_COMMITS_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    acknowledged_commit: int
    lag_commits: int
    lag_seconds: float
    connected: bool
    def __init__(self, follower_id: _Optional[str] = ..., acknowledged_commit: _Optional[int] = ..., lag_commits: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., connected: _Optional[bool] = ...) -> None: ...

class FollowerProgress(_message.Message):
    __slots__ = ("follower_id", "durable_commit", "last_term", "leader_term")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    DURABLE_COMMIT_FIELD_NUMBER: _ClassVar[int]
    LAST_TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_TERM_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    durable_commit: int
    last_term: int
    leader_term: int
    def __init__(self, follower_id: _Optional[str] = ..., durable_commit: _Optional[int] = ..., last_term: _Optional[int] = ..., leader_term: _Optional[int] = ...) -> None: ...

class ReplicatedBatch(_message.Message):
    __slots__ = ("commit", "term", "records", "journal")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    commit: int
    term: int
    records: _containers.RepeatedCompositeFieldContainer[RecordChange]
    journal: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    def __init__(self, commit: _Optional[int] = ..., term: _Optional[int] = ..., records: _Optional[_Iterable[_Union[RecordChange, _Mapping]]] = ..., journal: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ...) -> None: ...

class RecordChange(_message.Message):
    __slots__ = ("database", "key", "value", "deleted")
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    database: str
    key: bytes
    value: bytes
    deleted: bool
    def __init__(self, database: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., deleted: _Optional[bool] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("sequence", "data")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    data: bytes
    def __init__(self, sequence: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
