"""A small asyncio client of etcd's v3 gRPC API: what leader election, fencing and failover need.

Why our own: the maintained etcd clients for Python are sync-only or pull in a protobuf/grpc
stack of their own; this one is a few hundred lines over grpc.aio and stubs that `make protos`
generates from trimmed copies of etcd's protos (protos/atp/cluster/etcdpb).

What callers get: plain values and dataclasses (never protobuf messages), str keys and values
(UTF-8 bytes on the wire), a deadline on every call, and one exception, `EtcdUnavailable`, when
no endpoint answered in time. A caller that holds leadership must stop acting as leader on it:
it can no longer prove that its lease is alive.

A target lists endpoints, "host:port[,host:port...]". A call goes to the endpoint that answered
last, then to the next ones in order when an endpoint is UNAVAILABLE or does not answer within
its share of the deadline, and round again until the deadline. A write whose endpoint timed out
may still have been applied: `create_if_absent` returns the holder, so a campaigner retrying
after a timeout can recognise its own value and lease.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

import grpc
import grpc.aio

from atp.cluster.etcdpb import kv_pb2, rpc_pb2, rpc_pb2_grpc
from atp.tls import TlsOptions

__all__ = [
    "ClusterStatus",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "EventType",
    "KeyValue",
    "Lease",
    "WatchEvent",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 2.0
# A restarted or failed-over etcd is retried within a second, not after gRPC's default backoff
# (which grows to two minutes): failover must see a member come back quickly.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Pings find a dead peer under a long watch; etcd allows one every 5 s by default.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)
# Codes on which the next endpoint may answer: the member is down or unreachable, has no
# leader, or did not answer in time (etcd reports "no leader" and its own timeouts as
# UNAVAILABLE).
_TRY_NEXT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_ROUND_PAUSE_S = 0.05


class EtcdError(Exception):
    """etcd refused a request (a lease that is gone, a compacted revision...)."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code  # the gRPC status code name, e.g. "NOT_FOUND"


class EtcdUnavailable(EtcdError):
    """No endpoint answered within the call's deadline: callers fence on this."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "UNAVAILABLE")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds, as granted by the server


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: str  # "" for a DELETE
    mod_revision: int  # for a DELETE, the revision of the deletion


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    revision: int  # the store's revision when the member answered
    leader: int  # the member id that the answering member believes is the raft leader
    member_id: int  # the member that answered
    raft_term: int
    version: str  # the server's version, e.g. "3.5.1"


@dataclass(frozen=True, slots=True)
class _Stubs:
    kv: rpc_pb2_grpc.KVStub
    lease: rpc_pb2_grpc.LeaseStub
    watch: rpc_pb2_grpc.WatchStub
    maintenance: rpc_pb2_grpc.MaintenanceStub


class EtcdClient:
    """One channel per endpoint, opened on first use; see the module docstring for failover."""

    def __init__(
        self, target: str, timeout_s: float = DEFAULT_TIMEOUT_S, tls: TlsOptions | None = None,
    ) -> None:
        # https:// endpoints are reached over TLS (the system's roots when `tls` is None).
        endpoints = [part.strip() for part in target.split(",") if part.strip()]
        if tls is None and any(part.startswith("https://") for part in endpoints):
            tls = TlsOptions()
        self.tls = tls
        self.endpoints = [part.removeprefix("https://").removeprefix("http://")
                          for part in endpoints]
        if not self.endpoints:
            raise ValueError(f"no etcd endpoint in {target!r}")
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, _Stubs] = {}
        self._preferred = 0  # index of the endpoint that answered last

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes every channel; open watches end."""
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()

    # -- keys -------------------------------------------------------------------------------

    async def get(self, key: str, *, timeout: float | None = None) -> KeyValue | None:
        """A linearizable read: what a majority has committed, not a member's stale copy."""
        request = rpc_pb2.RangeRequest(key=_bytes(key))
        response: rpc_pb2.RangeResponse = await self._call(
            lambda stubs, t: stubs.kv.Range(request, timeout=t), timeout)
        return _key_value(response.kvs[0]) if response.kvs else None

    async def get_prefix(self, prefix: str, *, timeout: float | None = None) -> list[KeyValue]:
        """Every key under `prefix`, in key order (linearizable, like get)."""
        start = _bytes(prefix)
        request = rpc_pb2.RangeRequest(key=start, range_end=_prefix_end(start))
        response: rpc_pb2.RangeResponse = await self._call(
            lambda stubs, t: stubs.kv.Range(request, timeout=t), timeout)
        return [_key_value(kv) for kv in response.kvs]

    async def put(
        self, key: str, value: str, lease: int = 0, *, timeout: float | None = None
    ) -> int:
        """Writes the key (attached to `lease` unless 0); returns the store's new revision."""
        request = rpc_pb2.PutRequest(key=_bytes(key), value=_bytes(value), lease=lease)
        response: rpc_pb2.PutResponse = await self._call(
            lambda stubs, t: stubs.kv.Put(request, timeout=t), timeout)
        return response.header.revision

    async def delete(self, key: str, *, timeout: float | None = None) -> int:
        """Deletes the key; returns how many keys were deleted (0 when it was absent)."""
        request = rpc_pb2.DeleteRangeRequest(key=_bytes(key))
        response: rpc_pb2.DeleteRangeResponse = await self._call(
            lambda stubs, t: stubs.kv.DeleteRange(request, timeout=t), timeout)
        return response.deleted

    # -- transactions: election and fencing ---------------------------------------------------

    async def create_if_absent(
        self, key: str, value: str, lease: int, *, timeout: float | None = None
    ) -> tuple[bool, KeyValue | None]:
        """Creates the key only if nobody holds it: the leader-election primitive.

        Returns (True, the created key) to the one winner, (False, the current holder) to the
        others, atomically (one Txn: compare create_revision == 0, else read the key)."""
        compare = _created_at(key, 0)
        put = _put_op(key, value, lease)
        read = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=_bytes(key)))
        response = await self._txn(compare, put, read, timeout)
        if response.succeeded:
            revision = response.header.revision
            return True, KeyValue(key, value, revision, revision, 1, lease)
        kvs = response.responses[0].response_range.kvs
        return False, (_key_value(kvs[0]) if kvs else None)

    async def replace_if(
        self, key: str, expected_mod_revision: int, value: str, lease: int,
        *, timeout: float | None = None,
    ) -> bool:
        """Writes only if nobody wrote the key since `expected_mod_revision` (fencing)."""
        compare = _modified_at(key, expected_mod_revision)
        response = await self._txn(compare, _put_op(key, value, lease), None, timeout)
        return response.succeeded

    async def delete_if(
        self, key: str, expected_create_revision: int, *, timeout: float | None = None
    ) -> bool:
        """Deletes only the incarnation created at `expected_create_revision`: a leader that
        resigns must not delete a successor's key."""
        compare = _created_at(key, expected_create_revision)
        delete = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=_bytes(key)))
        response = await self._txn(compare, delete, None, timeout)
        return response.succeeded and response.responses[0].response_delete_range.deleted > 0

    async def _txn(
        self, compare: rpc_pb2.Compare, success: rpc_pb2.RequestOp,
        failure: rpc_pb2.RequestOp | None, timeout: float | None,
    ) -> rpc_pb2.TxnResponse:
        request = rpc_pb2.TxnRequest(
            compare=[compare], success=[success], failure=[failure] if failure else [])
        response: rpc_pb2.TxnResponse = await self._call(
            lambda stubs, t: stubs.kv.Txn(request, timeout=t), timeout)
        return response

    # -- leases ---------------------------------------------------------------------------------

    async def grant_lease(self, ttl_s: int, *, timeout: float | None = None) -> Lease:
        """A new lease: keys attached to it vanish `ttl_s` after the last keep-alive."""
        request = rpc_pb2.LeaseGrantRequest(TTL=ttl_s)
        response: rpc_pb2.LeaseGrantResponse = await self._call(
            lambda stubs, t: stubs.lease.LeaseGrant(request, timeout=t), timeout)
        if response.error:
            raise EtcdError(f"lease grant refused: {response.error}")
        return Lease(response.ID, response.TTL)

    async def keep_alive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Renews the lease; returns its TTL from now in seconds, 0 when the lease is gone.

        One request on a short-lived stream: the caller paces renewals (at a third of the TTL,
        say) and treats an exception as "cannot prove the lease is alive"."""
        return await self._call(lambda stubs, t: _keep_alive(stubs, lease_id, t), timeout)

    async def lease_ttl(self, lease_id: int, *, timeout: float | None = None) -> int:
        """The lease's remaining seconds without renewing it; 0 when it is gone."""
        request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id)
        response: rpc_pb2.LeaseTimeToLiveResponse = await self._call(
            lambda stubs, t: stubs.lease.LeaseTimeToLive(request, timeout=t), timeout)
        return max(response.TTL, 0)  # etcd answers -1 for an expired or unknown lease

    async def revoke_lease(self, lease_id: int, *, timeout: float | None = None) -> None:
        """Ends the lease now, deleting its keys; a lease already gone is not an error."""
        request = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call(lambda stubs, t: stubs.lease.LeaseRevoke(request, timeout=t), timeout)
        except EtcdError as error:
            if error.code != "NOT_FOUND":
                raise

    # -- watch and status -------------------------------------------------------------------

    async def watch(
        self, key: str, start_revision: int = 0, *, timeout: float | None = None
    ) -> AsyncIterator[WatchEvent]:
        """The key's events from `start_revision` (0: from now on), in revision order.

        `timeout` bounds opening the watch only. The iterator ends when the client is closed;
        cancelling the consuming task or leaving the loop cancels the stream. When the member
        goes away it raises EtcdUnavailable: watch again from the last mod_revision + 1."""
        call = await self._call(
            lambda stubs, t: _open_watch(stubs, key, start_revision, t), timeout)
        try:
            while True:
                response = await _read(call)
                if response is None:
                    return
                for event in response.events:
                    yield _watch_event(event)
        finally:
            call.cancel()

    async def status(self, *, timeout: float | None = None) -> ClusterStatus:
        """The answering member's view: store revision and raft leader."""
        response: rpc_pb2.StatusResponse = await self._call(
            lambda stubs, t: stubs.maintenance.Status(rpc_pb2.StatusRequest(), timeout=t), timeout)
        header = response.header
        return ClusterStatus(
            header.revision, response.leader, header.member_id, header.raft_term, response.version)

    # -- endpoints ------------------------------------------------------------------------------

    async def _call(
        self, attempt: Callable[[_Stubs, float], Awaitable[T]], timeout: float | None
    ) -> T:
        """Runs `attempt` on the endpoints in turn until one answers or the deadline passes."""
        budget = self.timeout_s if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        failures: list[str] = []
        while deadline > loop.time():
            for position, index in enumerate(self._rotation()):
                endpoint = self.endpoints[index]
                share = (deadline - loop.time()) / (len(self.endpoints) - position)
                if share <= 0:
                    break
                try:
                    result = await attempt(self._stubs_for(endpoint), share)
                except grpc.aio.AioRpcError as error:
                    if error.code() not in _TRY_NEXT:
                        raise _refusal(endpoint, error) from error
                    failures.append(f"{endpoint}: {error.code().name}: {error.details()}")
                    continue
                except TimeoutError:
                    failures.append(f"{endpoint}: no answer in time")
                    continue
                self._preferred = index
                return result
            await asyncio.sleep(max(0.0, min(_ROUND_PAUSE_S, deadline - loop.time())))
        raise EtcdUnavailable(f"no etcd endpoint answered within {budget:g} s: "
                              + "; ".join(failures[-len(self.endpoints):]))

    def _rotation(self) -> list[int]:
        count = len(self.endpoints)
        return [(self._preferred + step) % count for step in range(count)]

    def _stubs_for(self, endpoint: str) -> _Stubs:
        stubs = self._stubs.get(endpoint)
        if stubs is None:
            channel = (
                grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
                if self.tls is None else grpc.aio.secure_channel(
                    endpoint, self.tls.credentials(),
                    options=[*CHANNEL_OPTIONS, *self.tls.channel_options()]))
            self._channels[endpoint] = channel
            stubs = _Stubs(
                rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.LeaseStub(channel),
                rpc_pb2_grpc.WatchStub(channel), rpc_pb2_grpc.MaintenanceStub(channel))
            self._stubs[endpoint] = stubs
        return stubs


def _refusal(endpoint: str, error: grpc.aio.AioRpcError) -> EtcdError:
    """An answer that another endpoint would give too (NOT_FOUND, FAILED_PRECONDITION...)."""
    code = error.code()
    return EtcdError(f"etcd {endpoint}: {code.name}: {error.details()}", code.name)


async def _keep_alive(stubs: _Stubs, lease_id: int, timeout: float) -> int:
    call = stubs.lease.LeaseKeepAlive(timeout=timeout)
    try:
        await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
        response = await call.read()
    finally:
        call.cancel()
    if response is grpc.aio.EOF:
        raise EtcdError("etcd closed the keep-alive stream without an answer")
    ttl: int = response.TTL
    return max(ttl, 0)


async def _open_watch(
    stubs: _Stubs, key: str, start_revision: int, timeout: float
) -> grpc.aio.StreamStreamCall:
    """Opens a Watch stream and waits for etcd to confirm the watcher; returns the call."""
    call = stubs.watch.Watch()  # no gRPC deadline: the stream lives as long as the watch
    create = rpc_pb2.WatchCreateRequest(key=_bytes(key), start_revision=start_revision)
    try:
        await asyncio.wait_for(_confirm_watch(call, create), timeout)
    except BaseException:
        call.cancel()
        raise
    return call


async def _confirm_watch(
    call: grpc.aio.StreamStreamCall, create: rpc_pb2.WatchCreateRequest
) -> None:
    await call.write(rpc_pb2.WatchRequest(create_request=create))
    response = await _read(call)
    if response is None or not response.created or response.canceled:
        reason = response.cancel_reason if response is not None else "stream ended"
        raise EtcdError(f"etcd refused the watch: {reason}")


async def _read(call: grpc.aio.StreamStreamCall) -> rpc_pb2.WatchResponse | None:
    """The next response of a watch stream; None when the stream was cancelled or ended."""
    try:
        response = await call.read()
    except asyncio.CancelledError:
        if _being_cancelled():
            raise
        return None  # grpc cancelled the call under us: the client was closed
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.CANCELLED:
            return None
        raise _watch_error(error) from error
    if response is grpc.aio.EOF:
        return None
    if response.canceled:
        raise EtcdError(f"etcd cancelled the watch: {response.cancel_reason}"
                        f" (compact revision {response.compact_revision})")
    watch_response: rpc_pb2.WatchResponse = response
    return watch_response


def _being_cancelled() -> bool:
    """Whether our own task is being cancelled, as opposed to grpc cancelling a call (which
    it reports as CancelledError too, when its channel closes)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _watch_error(error: grpc.aio.AioRpcError) -> EtcdError:
    message = f"watch stream failed: {error.code().name}: {error.details()}"
    return EtcdUnavailable(message) if error.code() in _TRY_NEXT else EtcdError(
        message, error.code().name)


def _created_at(key: str, revision: int) -> rpc_pb2.Compare:
    """The key's create_revision is `revision` (0: the key does not exist)."""
    return rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE,
                           key=_bytes(key), create_revision=revision)


def _modified_at(key: str, revision: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD,
                           key=_bytes(key), mod_revision=revision)


def _put_op(key: str, value: str, lease: int) -> rpc_pb2.RequestOp:
    put = rpc_pb2.PutRequest(key=_bytes(key), value=_bytes(value), lease=lease)
    return rpc_pb2.RequestOp(request_put=put)


def _key_value(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.key.decode(), kv.value.decode(), kv.create_revision, kv.mod_revision,
                    kv.version, kv.lease)


def _watch_event(event: kv_pb2.Event) -> WatchEvent:
    kind = EventType.DELETE if event.type == kv_pb2.Event.DELETE else EventType.PUT
    return WatchEvent(kind, event.kv.key.decode(), event.kv.value.decode(), event.kv.mod_revision)


def _bytes(text: str) -> bytes:
    return text.encode()


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's convention)."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1]) if trimmed else b"\x00"
