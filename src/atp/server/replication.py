"""Replication over gRPC: the leader's Replicate and Snapshot services, and the follower's
side of them.

The leader streams each committed batch (engine.replication.ReplicationLog) to every
follower that asks; a follower stores each batch as it is, applies it to its memory
(Writer.commit_replicated) and acknowledges it, and reconnects with a back-off when the
stream breaks, resuming after the last commit it holds. A follower whose next batch the
leader no longer holds (SNAPSHOT_REQUIRED), or whose history parted from the leader's
(HISTORY_DIVERGED), first installs a snapshot of the leader's store (server.snapshot,
Writer.install_snapshot), then replicates after the snapshot's commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from atp.engine.replication import ReplicationLog, term_of
from atp.engine.writer import Writer
from atp.ledger.errors import (
    HISTORY_DIVERGED,
    NOT_LEADER,
    SNAPSHOT_REQUIRED,
    FailedPrecondition,
    InvalidArgument,
    LedgerError,
    Unavailable,
)
from atp.server.snapshot import (
    SNAPSHOT_MESSAGE_BYTES_MAX,
    SnapshotProgress,
    received_chunks,
    snapshot_messages,
)
from atp.server.status import abort
from atp.store import StoreError, WriteBatch
from atp.tls import TlsFileError, TlsOptions
from atp.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger("atp.replication")
# The initial metadata a leader sends a follower it accepted.
ACCEPTED = (("atp-replication", "accepted"),)
# Seconds between a follower's attempts to reach its leader, doubling up to the most.
RECONNECT_FIRST_S = 0.1
RECONNECT_MOST_S = 2.0
# The most for a gateway's commit feed: its writer is on this machine, restarted at once by
# the supervisor, and a refused connection to its socket costs nothing. The copy's reads
# wait for it (they are linearizable), so it follows again within this of the writer's
# return rather than within RECONNECT_MOST_S.
FEED_RECONNECT_MOST_S = 0.2
# The refusals of Replicate that a snapshot mends.
SNAPSHOT_REASONS = (SNAPSHOT_REQUIRED, HISTORY_DIVERGED)
# The generated stub's constructor is unannotated: typed here, once.
_replication_stub: Callable[[grpc.aio.Channel], Any] = replication_pb2_grpc.ReplicationStub


# A source of the leader's batches after a commit (calling back once the leader accepted).
Feed = Callable[[int, Callable[[], None]], AsyncIterator[tuple[int, WriteBatch, int]]]


def batch_message(commit: int, batch: WriteBatch, term: int = 0) -> replication_pb2.ReplicatedBatch:
    message = replication_pb2.ReplicatedBatch(commit=commit, term=term)
    for (database, key), value in batch.records.items():
        if value is None:
            message.records.add(database=database, key=key, deleted=True)
        else:
            message.records.add(database=database, key=key, value=value)
    for sequence, data in batch.journal:
        message.journal.add(sequence=sequence, data=data)
    return message


def batch_of(message: replication_pb2.ReplicatedBatch) -> WriteBatch:
    batch = WriteBatch()
    for record in message.records:
        batch.put(record.database, record.key, None if record.deleted else record.value)
    for entry in message.journal:
        batch.append(entry.sequence, entry.data)
    return batch


# Adds what a cluster member knows of its cluster to a status (given with --cluster).
DescribeCluster = Callable[[replication_pb2.ReplicationStatus], None]


class ReplicationServicer(replication_pb2_grpc.ReplicationServicer):
    def __init__(
        self, replication_log: ReplicationLog, writer: Writer, follower: Follower | None = None,
        describe_cluster: DescribeCluster | None = None,
    ) -> None:
        self.log = replication_log
        self.writer = writer
        self.follower = follower
        self.describe_cluster = describe_cluster

    async def Status(
        self, request: replication_pb2.ReplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> replication_pb2.ReplicationStatus:
        return replication_status(self.writer, self.log, self.follower, self.describe_cluster)

    async def Replicate(
        self, request_iterator: AsyncIterator[replication_pb2.FollowerProgress],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[replication_pb2.ReplicatedBatch]:
        hello = await anext(request_iterator, None)
        if hello is None or not hello.follower_id:
            await abort(context, InvalidArgument.single(
                "follower_id", "the first message names the follower"))
            return
        refusal = self._refusal_of(hello)
        if refusal is not None:
            await abort(context, refusal)
            return
        follower_id = hello.follower_id
        self.log.acknowledge(follower_id, hello.durable_commit)
        acknowledgements = asyncio.create_task(self._read_acks(follower_id, request_iterator))
        self.log.connected.add(follower_id)
        try:
            await context.send_initial_metadata(ACCEPTED)  # the follower is connected
            async for commit, batch, term in self.log.after(hello.durable_commit):
                if not self.writer.leads:  # deposed: stop feeding anyone at once
                    await abort(context, self._not_leader())
                    return
                yield batch_message(commit, batch, term)
        except LedgerError as error:  # SNAPSHOT_REQUIRED
            await abort(context, error)
        finally:
            self.log.connected.discard(follower_id)
            acknowledgements.cancel()

    def _refusal_of(self, hello: replication_pb2.FollowerProgress) -> LedgerError | None:
        """Why this member cannot feed the follower that said `hello`, if it cannot: it does
        not lead (in the term the follower means), or their histories part before the
        follower's last commit (the follower holds batches this leader never made)."""
        writer = self.writer
        if not writer.leads or (hello.leader_term and hello.leader_term != writer.term):
            return self._not_leader()
        commit, term = hello.durable_commit, hello.last_term
        if commit > writer.commit_index or (commit and term_of(writer.terms, commit) != term):
            return FailedPrecondition(
                HISTORY_DIVERGED, f"the follower's commit {commit} of term {term} is not in "
                f"this leader's history (it holds {writer.commit_index}, term "
                f"{term_of(writer.terms, commit)} there); start from a snapshot",
                {"commit": str(commit), "term": str(term)})
        return None

    def _not_leader(self) -> FailedPrecondition:
        leader = self.writer.leader_address or ""
        where = f"; follow {leader}" if leader else ""
        return FailedPrecondition(
            NOT_LEADER, f"this member does not lead (term {self.writer.term}){where}",
            {"leader": leader})
    async def Snapshot(
        self, request: replication_pb2.SnapshotRequest, context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[replication_pb2.SnapshotChunk]:
        if not self.writer.leads:  # a follower's copy may be behind, or being replaced
            await abort(context, self._not_leader())
            return
        progress = SnapshotProgress(request.follower_id or context.peer())
        try:
            async with contextlib.aclosing(snapshot_messages(self.writer.store)) as messages:
                async for message in messages:
                    yield message
                    progress.sent(message)
        except LedgerError as error:  # the store ended the snapshot: UNAVAILABLE
            await abort(context, error)
            return
        self.log.snapshots_sent += 1

    async def _read_acks(
        self, follower_id: str, progress: AsyncIterator[replication_pb2.FollowerProgress]
    ) -> None:
        async for message in progress:
            self.log.acknowledge(follower_id, message.durable_commit)


class Follower:
    """Keeps a follower's writer fed from its leader, for as long as the process runs."""

    def __init__(
        self, writer: Writer, leader: str, follower_id: str, leader_term: int = 0,
        tls: TlsOptions | None = None,
    ) -> None:
        self.writer = writer
        # How the leader is reached: TLS with this member's certificate (read again at each
        # connection, so that a rotated certificate is used), or plaintext when None.
        self.tls = tls
        self.leader = leader
        self.follower_id = follower_id
        # The leader's term as the cluster names it (0: any, without a cluster).
        self.leader_term = leader_term
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        # Call metadata presenting this member to a leader run with --auth-policy (its
        # bearer token, for the replica role); none by default.
        self.metadata: tuple[tuple[str, str], ...] = ()
        # Where the leader's batches come from instead of its Replicate stream, if set: a
        # gateway's command link (every batch after a commit, then each new one). Snapshots
        # still come over gRPC.
        self.feed: Feed | None = None
        self._broken = False  # the feed broke and has not been taken again since

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="atp-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.writer.settle_replication()
        self.connected = False

    @property
    def running(self) -> bool:
        return self._task is not None

    async def follow(self, leader: str, leader_term: int) -> None:
        """Follows `leader` in `leader_term` from now on (a failover named it)."""
        await self.stop()
        self.leader, self.leader_term = leader, leader_term
        self.writer.step_down(leader)
        # A deposed leader may still be committing what it applied: its first message to
        # the new leader must name the last commit it will ever make on its own.
        await self.writer.settle_commits()
        self.start()

    async def _run(self) -> None:
        wait_s = RECONNECT_FIRST_S
        snapshot_needed = False
        while True:
            try:
                if snapshot_needed or self.writer.restoring:
                    await self._install_snapshot()
                    snapshot_needed = False
                await (self._follow_feed() if self.feed is not None else self._follow())
            except grpc.aio.AioRpcError as error:
                if _reason_of(error) in SNAPSHOT_REASONS:
                    commit = self.writer.commit_index  # a new member's first snapshot: routine
                    log.log(logging.WARNING if commit else logging.INFO,
                            "the leader cannot stream after our commit %d: %s; taking a "
                            "snapshot", commit, error.details())
                    snapshot_needed = True
                elif self.connected or wait_s >= RECONNECT_MOST_S:
                    log.warning("replication from %s broke: %s", self.leader, error.code())
            except (LedgerError, StoreError, TlsFileError) as error:
                if isinstance(error, Unavailable) and self.feed is not None:
                    # The command link is lost: the writer restarts (the supervisor brings
                    # it back) or stops. Said once when the feed breaks, not at every retry.
                    if self.connected:
                        log.warning("the commit feed from the writer broke (the writer is "
                                    "not reachable); following again once it is back")
                    self._broken = True
                elif isinstance(error, LedgerError) and error.reason in SNAPSHOT_REASONS:
                    log.warning("the leader's feed cannot go on after our commit %d: %s; "
                                "taking a snapshot", self.writer.commit_index, error)
                    snapshot_needed = True
                else:
                    # A batch out of order: start over from our commit. A snapshot that ended
                    # short or could not be stored: take another.
                    log.error("replication from %s: %s", self.leader, error)
            if self.connected:
                wait_s = RECONNECT_FIRST_S
            self.connected = False
            await asyncio.sleep(wait_s)
            wait_s = min(FEED_RECONNECT_MOST_S if self.feed is not None else RECONNECT_MOST_S,
                         wait_s * 2)

    async def _install_snapshot(self) -> None:
        """Replaces this member's store and memory with a snapshot of the leader's; a
        snapshot that stops short leaves the store marked, and the next attempt starts over."""
        log.info("taking a snapshot from %s", self.leader)
        options = [("grpc.max_receive_message_length", SNAPSHOT_MESSAGE_BYTES_MAX)]
        try:
            async with self._channel(options) as channel:
                stream = _replication_stub(channel).Snapshot(
                    replication_pb2.SnapshotRequest(follower_id=self.follower_id),
                    metadata=self.metadata)
                installed = await self.writer.install_snapshot(received_chunks(stream))
        except grpc.aio.AioRpcError as error:
            log.warning("the snapshot from %s broke (%s: %s); it will be taken again",
                        self.leader, error.code().name, error.details())
            raise
        log.info("installed a snapshot from %s: commit %d, %d records, %.2f s", self.leader,
                 installed.commit, installed.records, installed.seconds)

    async def _follow(self) -> None:
        progress: asyncio.Queue[replication_pb2.FollowerProgress] = asyncio.Queue()
        writer = self.writer
        progress.put_nowait(replication_pb2.FollowerProgress(
            follower_id=self.follower_id, durable_commit=writer.commit_index,
            last_term=term_of(writer.terms, writer.commit_index), leader_term=self.leader_term))

        async def messages() -> AsyncIterator[replication_pb2.FollowerProgress]:
            while True:
                yield await progress.get()

        async with self._channel([]) as channel:
            stream = _replication_stub(channel).Replicate(messages(), metadata=self.metadata)
            try:
                # The leader's mark that it accepted us (a refusal ends the call without it).
                self.connected = ACCEPTED[0] in tuple(await stream.initial_metadata())
                async for message in stream:
                    await writer.commit_replicated(
                        message.commit, batch_of(message), message.term)
                    progress.put_nowait(replication_pb2.FollowerProgress(
                        durable_commit=message.commit))
            finally:
                stream.cancel()  # ends the request stream's reader with the call


    async def _follow_feed(self) -> None:
        """_follow, with the batches from `feed` (no acknowledgements: the leader counts
        none from a feed)."""
        assert self.feed is not None
        async for commit, batch, term in self.feed(self.writer.commit_index, self._accepted):
            await self.writer.commit_replicated(commit, batch, term)

    def _accepted(self) -> None:
        self.connected = True
        if self._broken:
            self._broken = False
            log.info("following the writer's commit feed again from commit %d",
                     self.writer.commit_index)

    def _channel(self, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(self.leader, options=options)
        # Raises TlsFileError (a rotation half done?): logged, and the next attempt reads again.
        credentials = self.tls.credentials()
        return grpc.aio.secure_channel(self.leader, credentials,
                                       options=[*options, *self.tls.channel_options()])


def replication_status(
    writer: Writer, replication_log: ReplicationLog, follower: Follower | None,
    describe_cluster: DescribeCluster | None = None,
) -> replication_pb2.ReplicationStatus:
    """This member's part in replication, as Status answers it (and metrics read it)."""
    status = replication_pb2.ReplicationStatus(
        role=role_of(writer), commit=writer.commit_index, sync_replicas=writer.sync_replicas,
        term=writer.term, fenced=writer.fenced or not writer.leads and not writer.leader_address,
        installing_snapshot=writer.restoring)
    if describe_cluster is not None:
        describe_cluster(status)
    if writer.leader_address is not None and follower is not None:
        status.leader, status.connected = follower.leader, follower.connected
        return status
    if not writer.leads:
        return status
    for follower_id, acknowledged in sorted(replication_log.acknowledged.items()):
        lag_commits, lag_seconds = replication_log.lag_of(follower_id)
        status.followers.add(
            follower_id=follower_id, acknowledged_commit=acknowledged, lag_commits=lag_commits,
            lag_seconds=lag_seconds, connected=follower_id in replication_log.connected)
    return status


def role_of(writer: Writer) -> str:
    if writer.leader_address is not None:
        return "follower"
    return "leader" if writer.leads else "candidate"


def _reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refusal, from the status details in its trailers."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""
