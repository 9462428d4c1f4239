"""The command link of `atpd --gateways N`: gateways send the writer ledger commands, not
calls; the writer sends back outcomes, once they are durable.

A gateway decodes and validates a write itself (its servicers are a single atpd's; the
ledger's prechecks refuse what a command's own fields show wrong), so bad input never
reaches the writer. Commands travel in frames over a Unix socket beside the writer's private
gRPC socket: at once while fewer than FRAMES_IN_FLIGHT_MAX frames are out, else together in
the next. The writer applies a frame as one batch through the same core as any call
(`Writer.apply`), pickles the outcomes at once (a reservation is the state the command made,
not a later one), and answers once the batch is durable, and replicated when sync replicas
are configured. The gateway presents the outcomes (builds the answers) itself. A sourced
Reserve goes with the plan the gateway made on its copy (ledger/gateway_plans.py), which the
writer takes if still valid. Idempotency is the ledger's, in the writer: a gateway that lost
its link fails its calls UNAVAILABLE, and their retries with the same ids are answered as
the first time or applied once.

Frames: a header (`<IQ`: body length, frame id) and a pickled body. Gateway to writer: the
list of (principal, command). Writer to gateway: a header `<IQQQB` (body length, frame id,
commit, term, kind) and either the outcomes, one per command (kind OUTCOMES), or the error
that refused the whole frame (kind FAILED: storage failed before it was durable).

The link also carries the commit feed: a gateway subscribes (frame id 0) after the commit
its copy holds, and the writer sends it every committed batch after that, then each new one
as it commits (kind FEED), each batch encoded once for all gateways. It is the replication
stream a follower would read over gRPC (the same ReplicationLog), at a fraction of the
writer's cost; a gateway acknowledges what its copy applied, so Replication.Status shows
its lag, and falls back on a gRPC snapshot when the log no longer holds what it needs.

Both ends are processes of one atpd, one user and one version: pickle is their common
language (ledger commands, plans, outcomes and store batches are plain values that pickle).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from atp.engine.replication import ReplicationLog
from atp.engine.writer import Writer
from atp.ledger import commands
from atp.ledger.errors import LedgerError, Unavailable
from atp.ledger.outcomes import Outcome, Refused, Result
from atp.ledger.prechecks import precheck
from atp.store import WriteBatch

log = logging.getLogger("atp.command_link")

T = TypeVar("T")

_REQUEST = struct.Struct("<IQ")
_ANSWER = struct.Struct("<IQQQB")
# Kinds of the writer's frames: a command frame's outcomes, or its failure; a batch of the
# commit feed, or the error that ended the feed.
OUTCOMES, FAILED, FEED, FEED_ENDED = 0, 1, 2, 3
# A gateway's frame id for the commit feed's control frames (command frames count from 1):
# ("subscribe", follower id, the commit the feed starts after), ("ack", the commit its copy
# holds) so that the writer knows its gateways' progress as a leader knows its followers'.
SUBSCRIBE = 0
# Encoded feed batches kept for the gateways that ask for them just after another did.
FEED_CACHE_BATCHES = 64
# Feed batches a gateway holds before it stops reading its link (its copy applies them in
# order; a copy that lags holds its own link back, not the writer).
FEED_QUEUE_BATCHES = 1024
# What a gateway's feed queue carries: a batch, the writer's acceptance, or the end.
FeedItem = tuple[int, WriteBatch, int] | LedgerError | None
# The largest frame either end accepts: far above any batch of real commands (a frame holds
# what one turn of a gateway's loop submitted), far below what would exhaust memory.
FRAME_BYTES_MAX = 1 << 30
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
# Frames a gateway has out at once. Two: the writer applies the next frame while the last
# one commits; commands arriving meanwhile wait at the gateway and go together in the frame
# after (group commit on the gateway's side: the busier, the bigger the frames, the less
# the writer pays per command).
FRAMES_IN_FLIGHT_MAX = 2
LINK_LOST = ("the writer is not reachable (it is restarting, or stopping): if this was a "
             "write, it may or may not have been applied; retry with the same ids")


@dataclass(frozen=True, slots=True)
class NotTaken:
    """A command the writer did not apply: it could not take commands (stopping, overloaded,
    storage failed). Raised to the caller, as Writer.apply raises it in one process."""

    error: LedgerError


# ----- the writer's end ----------------------------------------------------------------------


class CommandLinkServer:
    """Serves the command link on a Unix socket: each connection is one gateway."""

    def __init__(self, writer: Writer, path: str, log: ReplicationLog | None = None) -> None:
        self.writer = writer
        self.path = path
        # The committed batches, fed to every gateway that subscribes (its follower copy):
        # each encoded once, whatever the number of gateways.
        self.log = log
        self._encoded: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False
        self.frames = 0  # frames applied (tests see that commands travel together)
        self.commands = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a socket file left by a writer killed before
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        answering: set[asyncio.Task[None]] = set()
        follower_id = ""  # the gateway's name once it subscribed to the feed
        try:
            while True:
                length, frame_id = _REQUEST.unpack(await reader.readexactly(_REQUEST.size))
                if length > FRAME_BYTES_MAX:
                    log.error("a gateway sent a frame of %d bytes: closing its link", length)
                    return
                body = pickle.loads(await reader.readexactly(length))
                if frame_id == SUBSCRIBE:
                    if body[0] == "ack":
                        if self.log is not None and follower_id:
                            self.log.acknowledge(follower_id, int(body[1]))
                        continue
                    follower_id = str(body[1])
                    answer = asyncio.create_task(self._feed(follower_id, int(body[2]), stream))
                else:
                    answer = asyncio.create_task(self._apply(frame_id, body, stream))
                answering.add(answer)
                answer.add_done_callback(answering.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the gateway went away: its calls failed with it
        except asyncio.CancelledError:
            # close() ends the connection: end as done, not cancelled. Python 3.11's
            # start_unix_server reads the handler's task.exception() when it ends, which
            # raises for a cancelled task: an "Exception in callback" traceback in the log
            # at every shutdown with a gateway connected.
            if not self._closing:
                raise
        finally:
            self._connections.discard(task)
            for answer in answering:
                answer.cancel()
            stream.close()

    async def _apply(self, frame_id: int, items: list[tuple[str, commands.Command]],
                     stream: asyncio.StreamWriter) -> None:
        """Applies a frame now (runs of one principal at a time), and answers once durable."""
        self.frames += 1
        self.commands += len(items)
        outcomes: list[Outcome | NotTaken] = []
        durable: asyncio.Future[None] | None = None
        applied = 0
        for principal, run in runs_by_principal(items):
            try:
                run_outcomes, run_durable = self.writer.apply(run, principal)
            except LedgerError as error:
                outcomes.extend(NotTaken(error) for _ in run)
                continue
            outcomes.extend(run_outcomes)
            applied += len(run)
            durable = run_durable or durable
        # Pickled now: a result is the state its command made, whatever follows it.
        body = pickle.dumps(outcomes, PICKLE_PROTOCOL)
        try:
            await self.writer.until_durable(durable, applied)
            kind = OUTCOMES
        except LedgerError as error:
            body, kind = pickle.dumps(error, PICKLE_PROTOCOL), FAILED
        if stream.is_closing():
            return
        stream.write(_ANSWER.pack(len(body), frame_id, self.writer.commit_index,
                                  self.writer.term, kind) + body)


    async def _feed(self, follower_id: str, after: int, stream: asyncio.StreamWriter) -> None:
        """Sends a gateway every committed batch after `after`, then each new one, until the
        link closes; a feed the log cannot serve (it no longer holds `after`'s successor)
        ends with that error, and the gateway takes a snapshot."""
        if self.log is None:
            return
        self.log.acknowledge(follower_id, after)
        self.log.connected.add(follower_id)
        stream.write(_ANSWER.pack(0, SUBSCRIBE, after, self.writer.term, FEED))  # accepted
        try:
            async for commit, batch, term in self.log.after(after):
                body = self._encoded_batch(commit, batch)
                stream.write(_ANSWER.pack(len(body), SUBSCRIBE, commit, term, FEED) + body)
                await stream.drain()  # a gateway that lags holds its own feed back only
        except LedgerError as error:
            body = pickle.dumps(error, PICKLE_PROTOCOL)
            stream.write(_ANSWER.pack(len(body), SUBSCRIBE, 0, 0, FEED_ENDED) + body)
        except ConnectionError:
            pass
        finally:
            self.log.connected.discard(follower_id)

    def _encoded_batch(self, commit: int, batch: WriteBatch) -> bytes:
        body = self._encoded.get(commit)
        if body is None:
            body = self._encoded[commit] = pickle.dumps(batch, PICKLE_PROTOCOL)
            if len(self._encoded) > FEED_CACHE_BATCHES:
                self._encoded.popitem(last=False)
        return body


def _send_control(stream: asyncio.StreamWriter, message: tuple[object, ...]) -> None:
    if not stream.is_closing():
        body = pickle.dumps(message, PICKLE_PROTOCOL)
        stream.write(_REQUEST.pack(len(body), SUBSCRIBE) + body)


def _end_feed(queue: asyncio.Queue[FeedItem] | None) -> None:
    """Ends an open feed at once, the link being lost: what it had not applied yet is
    dropped (its follower starts again from its own commit)."""
    if queue is None:
        return
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(Unavailable(LINK_LOST))


def runs_by_principal(
    items: Sequence[tuple[str, commands.Command]],
) -> list[tuple[str, list[commands.Command]]]:
    """The frame's commands in order, in runs of one principal (events record who asked)."""
    runs: list[tuple[str, list[commands.Command]]] = []
    for principal, command in items:
        if runs and runs[-1][0] == principal:
            runs[-1][1].append(command)
        else:
            runs.append((principal, [command]))
    return runs


# ----- a gateway's end -------------------------------------------------------------------------


class CommandLink:
    """A gateway's link to its writer, with the writer's mutation methods (execute,
    execute_each, submit), so that a servicer applies writes through it as through a Writer.

    Commands go out at once while fewer than FRAMES_IN_FLIGHT_MAX frames await their answers;
    beyond that they wait, and leave together when an answer comes. The link connects
    at the first command, and again after losing the writer; while the writer cannot be
    reached, commands fail UNAVAILABLE at once."""

    def __init__(self, path: str,
                 offer: Callable[[commands.Command], commands.Command] | None = None,
                 follower_id: str = "") -> None:
        self.path = path
        self.follower_id = follower_id  # this gateway's name on the commit feed
        # Makes a command lighter for the writer before it goes (a sourced Reserve gets the
        # plan made on this gateway's copy: ledger/gateway_plans.py).
        self.offer = offer
        # The newest commit and term the writer answered with: a write's answer names this
        # commit (its own, or a later one), as a single atpd's names its own commit index.
        self.commit_index = 0
        self.term = 0
        self._pending: list[tuple[str, commands.Command]] = []
        self._pending_futures: list[asyncio.Future[Outcome | NotTaken]] = []
        self._flush_scheduled = False
        self._stream: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, list[asyncio.Future[Outcome | NotTaken]]] = {}
        self._next_frame = 1
        self.frames_sent = 0
        # The commit feed's queue while a feed is open (one at a time).
        self._feed_queue: asyncio.Queue[FeedItem] | None = None

    # --- what servicers call ---

    async def execute(self, command: commands.Command, present: Callable[[Result], T],
                      *, principal: str = "") -> T | Refused:
        """Writer.execute over the link: the answer presented here, once durable there."""
        outcome = await self._submit(command, principal)
        if isinstance(outcome, NotTaken):
            raise outcome.error
        if isinstance(outcome, Refused):
            return outcome
        return present(outcome)

    async def execute_each(self, batch: Sequence[commands.Command],
                           present: Callable[[Outcome], T], principal: str = "") -> list[T]:
        """Writer.execute_each over the link."""
        futures = [self._submit(command, principal) for command in batch]
        outcomes = await asyncio.gather(*futures)
        for outcome in outcomes:
            if isinstance(outcome, NotTaken):
                raise outcome.error
        return [present(outcome) for outcome in outcomes]  # type: ignore[arg-type]

    def submit(self, command: commands.Command, present: Callable[[Outcome], T],
               principal: str = "") -> Awaitable[T]:
        """Writer.submit over the link: sent now, in order; the answer awaited later."""
        return self._presented(self._submit(command, principal), present)

    async def feed(self, after: int, accepted: Callable[[], None],
                   ) -> AsyncIterator[tuple[int, WriteBatch, int]]:
        """The writer's committed batches after `after`, then each new one (a follower's
        feed: replication.Follower.feed): `accepted` is called once the writer took the
        subscription. Ends with Unavailable when the link is lost, and with the writer's
        error (SNAPSHOT_REQUIRED) when it cannot feed from `after`."""
        stream = await self._connected()
        queue: asyncio.Queue[FeedItem] = asyncio.Queue(FEED_QUEUE_BATCHES)
        self._feed_queue = queue
        _send_control(stream, ("subscribe", self.follower_id, after))
        applied = acknowledged = after
        try:
            while True:
                if queue.empty() and applied > acknowledged:  # caught up: say so, once
                    _send_control(stream, ("ack", applied))
                    acknowledged = applied
                item = await queue.get()
                if item is None:
                    accepted()
                elif isinstance(item, LedgerError):
                    raise item
                else:
                    yield item  # the follower applies it before it asks for the next
                    applied = item[0]
        finally:
            if self._feed_queue is queue:
                self._feed_queue = None

    async def close(self) -> None:
        for task in (self._connecting, self._reader_task):
            if task is not None:
                task.cancel()
        if self._stream is not None:
            self._stream.close()
        self._fail_all(Unavailable(LINK_LOST))
        _end_feed(self._feed_queue)

    # --- sending ---

    def _submit(self, command: commands.Command,
                principal: str) -> asyncio.Future[Outcome | NotTaken]:
        """Sends the command (soon), or refuses it here if its fields alone show it wrong."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome | NotTaken] = loop.create_future()
        try:
            command = precheck(command)
        except LedgerError as error:
            future.set_result(Refused(error))
            return future
        if self.offer is not None:
            command = self.offer(command)
        self._pending.append((principal, command))
        self._pending_futures.append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    @staticmethod
    async def _presented(future: asyncio.Future[Outcome | NotTaken],
                         present: Callable[[Outcome], T]) -> T:
        outcome = await future
        return present(Refused(outcome.error) if isinstance(outcome, NotTaken) else outcome)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        if self._stream is None or self._stream.is_closing():
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())
            return  # sent once connected (or failed, if the writer cannot be reached)
        if len(self._waiting) >= FRAMES_IN_FLIGHT_MAX:
            return  # sent when an answer comes
        items, futures = self._pending, self._pending_futures
        self._pending, self._pending_futures = [], []
        frame_id = self._next_frame
        self._next_frame += 1
        body = pickle.dumps(items, PICKLE_PROTOCOL)
        self._waiting[frame_id] = futures
        self.frames_sent += 1
        self._stream.write(_REQUEST.pack(len(body), frame_id) + body)

    async def _connected(self) -> asyncio.StreamWriter:
        """The link's stream, connecting first if need be; Unavailable if the writer cannot
        be reached."""
        if self._stream is None or self._stream.is_closing():
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())
            await asyncio.shield(self._connecting)
        if self._stream is None or self._stream.is_closing():
            raise Unavailable(LINK_LOST)
        return self._stream

    async def _connect(self) -> None:
        try:
            reader, stream = await asyncio.open_unix_connection(self.path)
        except OSError:
            self._connecting = None
            self._fail_pending(Unavailable(LINK_LOST))
            return
        self._stream = stream
        self._reader_task = asyncio.create_task(self._read_answers(reader, stream))
        self._connecting = None
        self._flush()

    # --- receiving ---

    async def _read_answers(self, reader: asyncio.StreamReader,
                            stream: asyncio.StreamWriter) -> None:
        try:
            while True:
                length, frame_id, commit, term, kind = _ANSWER.unpack(
                    await reader.readexactly(_ANSWER.size))
                body: Any = pickle.loads(await reader.readexactly(length)) if length else None
                if kind in (FEED, FEED_ENDED):
                    await self._to_feed(kind, commit, term, body)
                    continue
                self.commit_index = max(self.commit_index, commit)
                self.term = max(self.term, term)
                futures = self._waiting.pop(frame_id, [])
                self._flush()  # what waited for a frame to come back
                if kind == FAILED:
                    for future in futures:
                        if not future.done():
                            future.set_result(NotTaken(body))
                    continue
                for future, outcome in zip(futures, body):
                    if not future.done():
                        future.set_result(outcome)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            stream.close()
            if self._stream is stream:
                self._stream = None
            self._fail_waiting(Unavailable(LINK_LOST))
            _end_feed(self._feed_queue)

    async def _to_feed(self, kind: int, commit: int, term: int, body: object) -> None:
        queue = self._feed_queue
        if queue is None:
            return  # a feed closed meanwhile
        if kind == FEED_ENDED:
            await queue.put(body if isinstance(body, LedgerError) else Unavailable(LINK_LOST))
        elif body is None:
            await queue.put(None)  # the writer took the subscription
        else:
            assert isinstance(body, WriteBatch)
            await queue.put((commit, body, term))

    def _fail_waiting(self, error: LedgerError) -> None:
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(NotTaken(error))

    def _fail_pending(self, error: LedgerError) -> None:
        futures, self._pending_futures, self._pending = self._pending_futures, [], []
        for future in futures:
            if not future.done():
                future.set_result(NotTaken(error))

    def _fail_all(self, error: LedgerError) -> None:
        self._fail_waiting(error)
        self._fail_pending(error)
