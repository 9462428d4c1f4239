"""A gateway process's transport: reads answered from its follower copy of the ledger, once
that copy holds everything the writer had committed when the read arrived; everything else
forwarded, as bytes, to the writer process over its private Unix socket.

`atpd --gateways N` (atp/supervisor.py) runs one writer process, which owns the data
directory and serves on a Unix socket only, and N gateway processes sharing the public port
(SO_REUSEPORT). A gateway is an atpd follower (server/replication.py `Follower`) of the
writer, with an in-memory store, plus this module's `GatewayInterceptor`:

- Which calls are reads comes from one place, authorization's `METHOD_ROLES`: the methods
  a reader may call are answered here (health and reflection too, which need no ledger);
  every other method (the writes, Reallocate even as a dry run, the replication and server
  services) is forwarded, and so is any method the table does not know yet, which is always
  correct, only slower.
- A forwarded call is relayed unchanged: its request bytes, its metadata and deadline go to
  the writer; the writer's response bytes, initial and trailing metadata (atp-commit-sequence
  ...), status and details come back as they are. The gateway decodes nothing, so the writer
  applies the call exactly as a single-process atpd does: durability, idempotency, refusals
  and their field paths are its own. A writer that is down makes the call UNAVAILABLE.
- A read is linearizable (Raft's read-index idea): it learns the writer's commit at its
  arrival and waits until the follower copy has applied that commit, so it reflects every
  write acknowledged before it began, through any gateway. On one machine the commit is
  read from the writer's `CommitBoard` (shared memory: no cost to the writer, and reads go
  on while the writer restarts); without one, `ReadIndex` asks the writer
  (Replication.Status; the reads arriving while a query is out share the next one), and a
  writer that cannot be asked makes the read UNAVAILABLE rather than stale. A read that
  asks for `consistency: READ_CONSISTENCY_STALE` skips that wait and answers from the copy
  as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from atp.engine.writer import Writer
from atp.ledger.archive import NotHeldHere
from atp.ledger.errors import InvalidArgument, LedgerError, Unavailable
from atp.server.authorization import (
    METHOD_ROLES,
    OPEN,
    PRINCIPAL_KEY,
    READER,
    principal_metadata,
)
from atp.server.decoding import is_stale_read, read_options
from atp.server.handlers import Behaviour, Rebuilds, passing_bytes, rebuilt, responses_of
from atp.server.status import DETAILS_KEY, abort
from atp.store import WriteBatch
from atp.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger("atp.gateway")

# The follower ids of gateways (a writer's server info does not count them as followers).
GATEWAY_FOLLOWER_PREFIX = "gateway-"
# The roles whose methods a gateway answers itself; the rest go to the writer.
LOCAL_ROLES = frozenset({READER, OPEN})
# Services whose local methods read the ledger (and so wait for the read index first):
# health and reflection answer without it.
LEDGER_SERVICE_PREFIX = "/atp.v1."
# The longest a read waits for the writer's commit and for the copy to apply it, whatever
# its deadline (as a min_sequence read does).
READ_INDEX_WAIT_MAX_S = 30.0
# How long before the call's deadline a read stops waiting, to answer UNAVAILABLE itself.
READ_DEADLINE_MARGIN_S = 0.2
# Metadata a server may not be handed back as call metadata: HTTP/2 pseudo-headers and the
# headers gRPC itself sets.
_TRANSPORT_HEADERS = frozenset({"user-agent", "content-type", "te", "host", "grpc-timeout",
                                "grpc-encoding", "grpc-accept-encoding"})
# A restarted writer is reached again within a second: gRPC's default backoff grows to
# two minutes, during which every forwarded call would fail although the writer serves.
WRITER_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# The writes a gateway with a command link decodes, validates and answers itself, sending
# only their commands to the writer: those whose answer is built from the command's outcome
# alone. The rest (AdjustStock and SetSafetyStock answer positions read from the ledger,
# Reallocate plans on it, the admin and replication services) are relayed as calls.
APPLIED_HERE = frozenset({
    *(f"/atp.v1.Reservations/{name}" for name in (
        "Reserve", "ReserveBatch", "ReserveStream", "Commit", "Release", "Fulfill", "Extend",
        "RecordDelivery")),
    *(f"/atp.v1.Inventory/{name}" for name in (
        "UpsertNode", "UpsertSupply", "ReceiveSupply", "PlaceHold", "ReleaseHold")),
})
# The generated stubs' constructors are unannotated: typed here, once.
_replication_stub: Callable[[grpc.aio.Channel], Any] = replication_pb2_grpc.ReplicationStub


def gateway_follower_id(index: int) -> str:
    """The name a gateway follows its writer under."""
    return f"{GATEWAY_FOLLOWER_PREFIX}{index}"


def is_gateway(follower_id: str) -> bool:
    return follower_id.startswith(GATEWAY_FOLLOWER_PREFIX)


def is_local(method: str) -> bool:
    """Whether a gateway answers `method` itself (a read); False: the writer does."""
    return METHOD_ROLES.get(method) in LOCAL_ROLES


def reads_ledger(method: str) -> bool:
    """Whether a local method reads the ledger (and so waits for the read index)."""
    return is_local(method) and method.startswith(LEDGER_SERVICE_PREFIX)


def forwarded_metadata(metadata: Any) -> tuple[tuple[str, Any], ...]:
    """The caller's metadata that the writer should see (not gRPC's own headers), and the
    caller's principal as authorized here (a principal the client named itself is dropped:
    the writer trusts the one this gateway names)."""
    return tuple((key, value) for key, value in metadata or ()
                 if not key.startswith(":") and key not in _TRANSPORT_HEADERS
                 and key != PRINCIPAL_KEY) + principal_metadata()


class ReadIndex:
    """The writer's commit at a read's arrival, learned by one query for all the reads that
    arrive while the previous query is out (a query already out may have been answered
    before a read arrived, so that read waits for the next one)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = _replication_stub(channel)
        # The query out now, and the one that goes out when it is answered (None: none).
        self._out: asyncio.Task[int] | None = None
        self._queued: asyncio.Task[int] | None = None
        self.queries = 0  # queries sent to the writer (tests see that reads share them)

    async def commit(self, timeout_s: float) -> int:
        """The writer's commit, learned by a query sent after this call began."""
        if self._out is None:
            self._out = asyncio.create_task(self._ask(timeout_s))
            waited = self._out
        else:
            if self._queued is None:
                self._queued = asyncio.create_task(self._ask_after(self._out, timeout_s))
            waited = self._queued
        waited.add_done_callback(_retrieved)
        return await asyncio.shield(waited)

    async def _ask_after(self, previous: asyncio.Task[int], timeout_s: float) -> int:
        await asyncio.gather(previous, return_exceptions=True)
        self._out, self._queued = self._queued, None  # later arrivals queue behind this one
        return await self._ask(timeout_s)

    async def _ask(self, timeout_s: float) -> int:
        try:
            self.queries += 1
            status = await self._stub.Status(replication_pb2.ReplicationStatusRequest(),
                                             timeout=max(0.01, timeout_s))
            return int(status.commit)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"the writer cannot be reached ({error.code().name}); retry "
                              "shortly") from None
        finally:
            if self._out is asyncio.current_task():
                self._out = None


def refuse_unmade(min_sequence: Any, commit: int) -> None:
    """A read's min_sequence beyond the writer's commit at its arrival is refused, as the
    writer of a single atpd refuses it (the gateway's copy would wait for it in vain)."""
    if isinstance(min_sequence, int) and min_sequence > commit:
        raise InvalidArgument.single(
            "min_sequence", f"commit {min_sequence} has not been made; the newest is {commit}")


class CommitBoard:
    """The writer's last durable commit, published in a 16-byte file that the gateways map
    into memory: a read learns it for the cost of a memory load, and the writer pays nothing
    per read (a `ReadIndex` query costs it a gRPC call).

    The writer publishes each commit after it is durable and before anyone is answered
    (`publish_commits`), so every acknowledged write's commit is on the board before its
    caller can start a read. The board outlives a writer: while the writer is down it still
    holds a commit no acknowledged write exceeds, so reads go on from the gateways' copies.
    The value is stored with its complement: a torn read (a publish halfway) is told apart
    and read again."""

    SIZE = 16
    _CHECK = (1 << 64) - 1

    def __init__(self, path: str, writable: bool = False) -> None:
        self.path = path
        self.writable = writable
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            flags = os.O_RDWR | os.O_CREAT if self.writable else os.O_RDONLY
            try:
                descriptor = os.open(self.path, flags, 0o600)
            except OSError as error:  # the writer has not published yet
                raise Unavailable(f"the writer's commit is not published yet ({error.strerror})"
                                  "; retry shortly") from None
            try:
                if self.writable and os.fstat(descriptor).st_size < self.SIZE:
                    os.ftruncate(descriptor, self.SIZE)
                access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
                self._map = mmap.mmap(descriptor, self.SIZE, access=access)
            finally:
                os.close(descriptor)
        return self._map

    def publish(self, commit: int) -> None:
        self._mapped()[:self.SIZE] = struct.pack("<QQ", commit, commit ^ self._CHECK)

    def read(self) -> int:
        board = self._mapped()
        for _attempt in range(1000):
            commit, check = struct.unpack_from("<QQ", board)
            if commit ^ self._CHECK == check:
                return int(commit)
        raise Unavailable("the writer's published commit could not be read; retry")

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def publish_commits(writer: Writer, board: CommitBoard) -> None:
    """Has `writer` publish its commit now and after each durable batch, before the batch's
    callers are answered (Writer.on_durable_batch runs before them)."""
    board.publish(writer.commit_index)
    then = writer.on_durable_batch

    def published(commit: int, batch: WriteBatch, term: int) -> None:
        board.publish(commit)
        if then is not None:
            then(commit, batch, term)

    writer.on_durable_batch = published


def _retrieved(task: asyncio.Task[int]) -> None:
    """Marks a shared query's failure as seen (its readers may all have gone)."""
    if not task.cancelled():
        task.exception()


class GatewayInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Forwards the calls that are not reads to the writer at `writer_target`, and holds
    each read until the local copy (`writer`, a follower's) is as new as the writer was when
    the read arrived. Innermost of the interceptors: the admission gate and metrics see a
    forwarded call like any other."""

    def __init__(self, writer: Writer, writer_target: str, commit_file: str = "",
                 applies_writes: bool = False) -> None:
        self.writer = writer
        # The writes this gateway decodes and applies through its command link (its
        # servicers' `mutations`) rather than relaying the call.
        self.applied_here = APPLIED_HERE if applies_writes else frozenset()
        # Where the writer's commit is learned: its board (same machine), else by queries.
        self.board = CommitBoard(commit_file) if commit_file else None
        # Whatever the writer answers, a single atpd would have sent: no size limit here
        # (the caller's own receive limit applies, as with one process).
        self.channel = grpc.aio.insecure_channel(
            writer_target, options=[("grpc.max_receive_message_length", -1),
                                    ("grpc.max_send_message_length", -1),
                                    *WRITER_RECONNECT_OPTIONS])
        self.read_index = ReadIndex(self.channel)
        self.forwarded = 0  # calls forwarded so far
        # Reads relayed to the writer because this copy does not hold what they need.
        self.reads_relayed = 0
        self._relays: dict[str, Behaviour] = {}
        self._forwarders = Rebuilds(self._forwarding)  # the forwarded methods' handlers
        self._reads = Rebuilds(self._reading)  # the read methods' linearized handlers
        # The tasks sending forwarded request streams on, stopped at shutdown.
        self._pumps: set[asyncio.Task[None]] = set()
        # ...and those end_streams stopped before their client's stream ended.
        self._stopped_pumps: set[asyncio.Task[None]] = set()
        self.streams_ending = False

    async def close(self) -> None:
        await self.channel.close()
        if self.board is not None:
            self.board.close()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if not is_local(method) and method not in self.applied_here:
            return self._forwarders.of(method, handler)
        if reads_ledger(method):
            return self._reads.of(method, handler)
        return handler

    def _reading(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        return rebuilt(handler,
                       lambda kind, behaviour: self._linearized(method, kind, behaviour),
                       response_serializer=passing_bytes(handler.response_serializer))

    # ----- reads ---------------------------------------------------------------------------

    def _linearized(self, method: str, kind: str, behaviour: Behaviour) -> Behaviour:
        async def linearized(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                min_sequence = read_options(request)
                if is_stale_read(request):  # no wait; an unmade min_sequence still refused
                    if self.board is not None:
                        refuse_unmade(min_sequence, self.board.read())
                else:
                    refuse_unmade(min_sequence, await self.caught_up(context.time_remaining()))
            except LedgerError as error:
                await abort(context, error)
            try:
                if kind.endswith("_unary"):
                    return await behaviour(request, context)
                return await responses_of(behaviour, request, context)
            except NotHeldHere:  # raised before any answer: what ended, or older events
                return await self._relayed(method, kind, request, context)

        return linearized

    async def _relayed(self, method: str, kind: str, request: Any,
                       context: grpc.aio.ServicerContext) -> Any:
        """A read this gateway's copy cannot answer (it keeps live state and a tail of the
        journal), answered by the writer: the request as the client sent it, and the
        writer's answer as it is (bytes, which the read's serializer passes through)."""
        self.reads_relayed += 1
        relay = self._relays.get(method)
        if relay is None:
            relay = self._relays[method] = (
                self._unary_unary(method) if kind == "unary_unary"
                else self._streaming(method, self.channel.unary_stream(method)))
        return await relay(request.SerializeToString(), context)

    async def caught_up(self, time_remaining: float | None) -> int:
        """Waits until the local copy holds the writer's commit as of now; that commit."""
        wait_s = READ_INDEX_WAIT_MAX_S if time_remaining is None else min(
            time_remaining - READ_DEADLINE_MARGIN_S, READ_INDEX_WAIT_MAX_S)
        started = time.monotonic()
        if self.board is not None:
            commit = self.board.read()
        else:
            commit = await self.read_index.commit(wait_s)
        if commit > self.writer.commit_index:
            await self.writer.until_commit(commit, wait_s - (time.monotonic() - started))
        return commit

    # ----- everything else -----------------------------------------------------------------

    def _forwarding(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A handler of the same kind relaying raw bytes to and from the writer."""
        if handler.unary_unary is not None:
            behaviour = self._unary_unary(method)
            return grpc.unary_unary_rpc_method_handler(behaviour)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, self.channel.unary_stream(method)))
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._stream_unary(method))
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, self.channel.stream_stream(method), streamed_requests=True))

    def _unary_unary(self, method: str) -> Behaviour:
        return self._answered_once(self.channel.unary_unary(method))

    def _stream_unary(self, method: str) -> Behaviour:
        return self._answered_once(self.channel.stream_unary(method))

    def _answered_once(self, call_writer: Any) -> Behaviour:
        """Forwards a call with one answer (its request a message or a stream of them)."""

        async def forward(request: Any, context: grpc.aio.ServicerContext) -> bytes:
            self.forwarded += 1
            call = call_writer(request, metadata=forwarded_metadata(
                context.invocation_metadata()), timeout=context.time_remaining())
            try:
                response: bytes = await call
            except grpc.aio.AioRpcError as error:
                await _relay_failure(context, error)
                raise  # unreachable: abort raises
            await _relay_metadata(context, call)
            return response

        return forward

    def _streaming(self, method: str, call_writer: Any, streamed_requests: bool = False,
                   ) -> Behaviour:
        """Relays a call with a stream of responses. Its request is one message, or a
        stream (`streamed_requests`) pumped to the writer by a task of its own, which
        `end_streams` stops at shutdown: the writer then answers what it was sent, and the
        call ends UNAVAILABLE, as a single atpd's ReserveStream does."""

        async def forward(request: Any, context: grpc.aio.ServicerContext) -> None:
            self.forwarded += 1
            metadata = forwarded_metadata(context.invocation_metadata())
            timeout = context.time_remaining()
            pump = None
            if streamed_requests:
                call = call_writer(metadata=metadata, timeout=timeout)
                pump = asyncio.create_task(_pump(request, call))
                self._pumps.add(pump)
                if self.streams_ending:
                    self._stopped_pumps.add(pump)
                    pump.cancel()
            else:
                call = call_writer(request, metadata=metadata, timeout=timeout)
            try:
                initial = await call.initial_metadata()
                if initial:
                    await context.send_initial_metadata(tuple(initial))
                async for response in call:
                    await context.write(response)
            except grpc.aio.AioRpcError as error:
                await _relay_failure(context, error)
            finally:
                call.cancel()  # a client gone: the writer's side ends too
                if pump is not None:
                    self._pumps.discard(pump)
                    pump.cancel()  # done by now, unless the writer ended the call first
            if pump is not None and pump in self._stopped_pumps:
                self._stopped_pumps.discard(pump)
                await abort(context, Unavailable(
                    "the server is shutting down; every message answered on this stream "
                    "was applied, none after them: open a new stream once it is back"))
            trailing = await call.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(tuple(trailing))

        return forward

    def end_streams(self) -> None:
        """At shutdown: forwarded request streams stop reading (see `_streaming`)."""
        self.streams_ending = True
        for pump in self._pumps:
            if not pump.done():
                self._stopped_pumps.add(pump)
                pump.cancel()


async def _pump(requests: AsyncIterator[bytes], call: Any) -> None:
    """Sends a client's request stream on to the writer's call; the writer's stream is
    half-closed when the client's ends, or when this task is cancelled (shutdown)."""
    try:
        async for request in requests:
            await call.write(request)
    finally:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await asyncio.shield(call.done_writing())


async def _relay_metadata(context: grpc.aio.ServicerContext, call: Any) -> None:
    initial = await call.initial_metadata()
    if initial:
        await context.send_initial_metadata(tuple(initial))
    trailing = await call.trailing_metadata()
    if trailing:
        context.set_trailing_metadata(tuple(trailing))


async def _relay_failure(context: grpc.aio.ServicerContext,
                         error: grpc.aio.AioRpcError) -> None:
    """Ends the call as the writer ended it: code, message and details (raises). A writer
    that could not be reached, or went away during the call, is this gateway's own
    UNAVAILABLE, with the error model's details (the transport's words name a private
    socket)."""
    trailing = tuple(error.trailing_metadata() or ())
    if error.code() is grpc.StatusCode.UNAVAILABLE and not any(
            key == DETAILS_KEY for key, _ in trailing):
        await abort(context, Unavailable(
            "the writer is not reachable (it is restarting, or stopping): if this was a "
            "write, it may or may not have been applied; retry with the same ids"))
    await context.abort(error.code(), error.details() or "", trailing_metadata=trailing)
