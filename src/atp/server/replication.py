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

from atp.engine.replication import HISTORY_DIVERGED, SNAPSHOT_REQUIRED, ReplicationLog
from atp.engine.writer import NOT_LEADER, Writer
from atp.ledger.errors import FailedPrecondition, InvalidArgument, LedgerError
from atp.server.snapshot import (
    SNAPSHOT_MESSAGE_BYTES_MAX,
    SnapshotProgress,
    received_chunks,
    snapshot_messages,
)
from atp.server.status import abort
from atp.store import StoreError, WriteBatch
from atp.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger("atp.replication")
# Seconds between a follower's attempts to reach its leader, doubling up to the most.
RECONNECT_FIRST_S = 0.1
RECONNECT_MOST_S = 2.0
# The refusals of Replicate that a snapshot mends.
SNAPSHOT_REASONS = (SNAPSHOT_REQUIRED, HISTORY_DIVERGED)
# The generated stub's constructor is unannotated: typed here, once.
_replication_stub: Callable[[grpc.aio.Channel], Any] = replication_pb2_grpc.ReplicationStub


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


class ReplicationServicer(replication_pb2_grpc.ReplicationServicer):
    def __init__(
        self, replication_log: ReplicationLog, writer: Writer, follower: Follower | None = None
    ) -> None:
        self.log = replication_log
        self.writer = writer
        self.follower = follower

    async def Status(
        self, request: replication_pb2.ReplicationStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> replication_pb2.ReplicationStatus:
        return replication_status(self.writer, self.log, self.follower)

    async def Replicate(
        self, request_iterator: AsyncIterator[replication_pb2.FollowerProgress],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[replication_pb2.ReplicatedBatch]:
        if self.follower is not None:  # a follower has no batches of its own to send
            await abort(context, FailedPrecondition(
                NOT_LEADER, f"this member follows {self.follower.leader}; follow it instead",
                {"leader": self.follower.leader}))
            return
        hello = await anext(request_iterator, None)
        if hello is None or not hello.follower_id:
            await abort(context, InvalidArgument.single(
                "follower_id", "the first message names the follower"))
            return
        follower_id = hello.follower_id
        self.log.acknowledge(follower_id, hello.durable_commit)
        acknowledgements = asyncio.create_task(self._read_acks(follower_id, request_iterator))
        self.log.connected.add(follower_id)
        try:
            async for commit, batch in self.log.after(hello.durable_commit):
                yield batch_message(commit, batch)
        except LedgerError as error:  # SNAPSHOT_REQUIRED
            await abort(context, error)
        finally:
            self.log.connected.discard(follower_id)
            acknowledgements.cancel()

    async def Snapshot(
        self, request: replication_pb2.SnapshotRequest, context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[replication_pb2.SnapshotChunk]:
        leader = self.writer.leader_address
        if leader is not None:  # a follower's copy may be behind, or being replaced
            await abort(context, FailedPrecondition(
                NOT_LEADER, f"this member follows {leader}; ask it instead", {"leader": leader}))
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

    def __init__(self, writer: Writer, leader: str, follower_id: str) -> None:
        self.writer = writer
        self.leader = leader
        self.follower_id = follower_id
        self.connected = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="atp-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        wait_s = RECONNECT_FIRST_S
        snapshot_needed = False
        while True:
            try:
                if snapshot_needed or self.writer.restoring:
                    await self._install_snapshot()
                    snapshot_needed = False
                await self._follow()
            except grpc.aio.AioRpcError as error:
                if _reason_of(error) in SNAPSHOT_REASONS:
                    commit = self.writer.commit_index  # a new member's first snapshot: routine
                    log.log(logging.WARNING if commit else logging.INFO,
                            "the leader cannot stream after our commit %d: %s; taking a "
                            "snapshot", commit, error.details())
                    snapshot_needed = True
                elif self.connected or wait_s >= RECONNECT_MOST_S:
                    log.warning("replication from %s broke: %s", self.leader, error.code())
            except (LedgerError, StoreError) as error:
                # A batch out of order: start over from our commit. A snapshot that ended
                # short or could not be stored: take another.
                log.error("replication from %s: %s", self.leader, error)
            if self.connected:
                wait_s = RECONNECT_FIRST_S
            self.connected = False
            await asyncio.sleep(wait_s)
            wait_s = min(RECONNECT_MOST_S, wait_s * 2)

    async def _install_snapshot(self) -> None:
        """Replaces this member's store and memory with a snapshot of the leader's; a
        snapshot that stops short leaves the store marked, and the next attempt starts over."""
        log.info("taking a snapshot from %s", self.leader)
        options = [("grpc.max_receive_message_length", SNAPSHOT_MESSAGE_BYTES_MAX)]
        try:
            async with grpc.aio.insecure_channel(self.leader, options=options) as channel:
                stream = _replication_stub(channel).Snapshot(
                    replication_pb2.SnapshotRequest(follower_id=self.follower_id))
                installed = await self.writer.install_snapshot(received_chunks(stream))
        except grpc.aio.AioRpcError as error:
            log.warning("the snapshot from %s broke (%s: %s); it will be taken again",
                        self.leader, error.code().name, error.details())
            raise
        log.info("installed a snapshot from %s: commit %d, %d records, %.2f s", self.leader,
                 installed.commit, installed.records, installed.seconds)

    async def _follow(self) -> None:
        progress: asyncio.Queue[replication_pb2.FollowerProgress] = asyncio.Queue()
        progress.put_nowait(replication_pb2.FollowerProgress(
            follower_id=self.follower_id, durable_commit=self.writer.commit_index))

        async def messages() -> AsyncIterator[replication_pb2.FollowerProgress]:
            while True:
                yield await progress.get()

        async with grpc.aio.insecure_channel(self.leader) as channel:
            stream = _replication_stub(channel).Replicate(messages())
            async for message in stream:
                self.connected = True
                await self.writer.commit_replicated(message.commit, batch_of(message))
                progress.put_nowait(replication_pb2.FollowerProgress(
                    durable_commit=message.commit))


def replication_status(
    writer: Writer, replication_log: ReplicationLog, follower: Follower | None
) -> replication_pb2.ReplicationStatus:
    """This member's part in replication, as Status answers it (and metrics read it)."""
    status = replication_pb2.ReplicationStatus(
        role="follower" if follower is not None else "leader", commit=writer.commit_index,
        sync_replicas=writer.sync_replicas)
    if follower is not None:
        status.leader, status.connected = follower.leader, follower.connected
        return status
    for follower_id, acknowledged in sorted(replication_log.acknowledged.items()):
        lag_commits, lag_seconds = replication_log.lag_of(follower_id)
        status.followers.add(
            follower_id=follower_id, acknowledged_commit=acknowledged, lag_commits=lag_commits,
            lag_seconds=lag_seconds, connected=follower_id in replication_log.connected)
    return status


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
