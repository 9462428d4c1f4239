"""Snapshots over gRPC: the leader streams its whole store as of one moment
(`atp.v1.Replication/Snapshot`), and a follower turns the stream back into store records.

The leader reads the snapshot (`Store.snapshot_chunks`: one LMDB read transaction, so commits
go on and are not seen) on a thread of its own, a few chunks ahead of the stream: never on the
event loop, which serves calls meanwhile, and never on the writer's commit thread, which
commits meanwhile. While a snapshot is read, LMDB keeps the pages it sees, so the leader's
data file may grow by what is written during it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from atp import limits
from atp.engine.replication import snapshot_position
from atp.ledger.errors import Unavailable
from atp.store import JOURNAL_DATABASE, Store, StoreError
from atp.store.base import (
    SNAPSHOT_CHUNK_BYTES_MAX,
    SnapshotRecord,
    decode_sequence,
    encode_sequence,
)
from atp.v1 import replication_pb2

log = logging.getLogger("atp.replication")
T = TypeVar("T")
# Records per chunk (a chunk also ends at about SNAPSHOT_CHUNK_BYTES_MAX bytes).
SNAPSHOT_RECORDS_MAX = 4096
# Chunks read ahead of the stream: enough to keep it busy, few enough to bound memory.
CHUNKS_AHEAD = 4
# How often the reading thread, waiting for room, checks that the stream still wants chunks.
HAND_OVER_POLL_S = 0.2
# What a follower accepts in one message: a chunk, plus one record of the largest size a
# request can make (its JSON encoding may be larger than the request's protobuf).
SNAPSHOT_MESSAGE_BYTES_MAX = SNAPSHOT_CHUNK_BYTES_MAX + 4 * limits.message_bytes_max
# Tests only: seconds a follower waits after storing each chunk but the last, so that a test
# can kill it in the middle of a snapshot. Read here and nowhere else.
TEST_CHUNK_DELAY_S = float(os.environ.get("ATP_TEST_SNAPSHOT_CHUNK_DELAY_S") or 0)


async def snapshot_messages(
    store: Store, records_max: int = SNAPSHOT_RECORDS_MAX
) -> AsyncGenerator[replication_pb2.SnapshotChunk, None]:
    """The leader's store as chunk messages: the first says the commit and term it holds,
    the last has `last` set. Unavailable if the store ends the snapshot meanwhile."""
    try:
        async with read_ahead(store.snapshot_chunks(records_max), CHUNKS_AHEAD) as chunks:
            first = await anext(chunks)  # the whole META: where the snapshot stands
            held = chunk_message(first)
            held.commit, held.term = snapshot_position(first)
            async for chunk in chunks:  # each sent once the next shows it is not the last
                yield held
                held = chunk_message(chunk)
            held.last = True
            yield held
    except StoreError as error:
        raise Unavailable(f"reading the snapshot failed: {error}; ask for another") from error


def chunk_message(chunk: list[SnapshotRecord]) -> replication_pb2.SnapshotChunk:
    message = replication_pb2.SnapshotChunk()
    for database, key, value in chunk:
        if database == JOURNAL_DATABASE:
            message.journal.add(sequence=decode_sequence(key), data=value)
        else:
            message.records.add(database=database, key=key, value=value)
    return message


def records_of(message: replication_pb2.SnapshotChunk) -> list[SnapshotRecord]:
    records = [(record.database, record.key, record.value) for record in message.records]
    records += [(JOURNAL_DATABASE, encode_sequence(entry.sequence), entry.data)
                for entry in message.journal]
    return records


async def received_chunks(
    stream: AsyncIterator[replication_pb2.SnapshotChunk],
) -> AsyncIterator[list[SnapshotRecord]]:
    """A follower's side: each chunk's records as it arrives, until the one marked last;
    Unavailable if the stream ends before it (the snapshot is incomplete)."""
    async for message in stream:
        yield records_of(message)
        if message.last:
            return
        if TEST_CHUNK_DELAY_S:
            await asyncio.sleep(TEST_CHUNK_DELAY_S)
    raise Unavailable("the snapshot stream ended before its last chunk")


@dataclass(frozen=True)
class _End:
    """The reading thread is done: with the error that stopped it, if any."""

    error: BaseException | None = None


class ReadAhead(Generic[T]):
    """Pulls a blocking iterator on a thread of its own (the same thread throughout), at
    most `ahead` items before the event loop takes them."""

    def __init__(self, items: Iterator[T], ahead: int) -> None:
        self._items = items
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue(ahead)
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._read, name="atp-snapshot", daemon=True)
        self._thread.start()

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._queue.get()
        if isinstance(item, _End):
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    def abandon(self) -> None:
        """The consumer has gone: the thread stops, letting go of what the iterator holds."""
        self._abandoned.set()

    def _read(self) -> None:
        try:
            for item in self._items:
                if not self._hand_over(item):
                    return
            self._hand_over(_End())
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._hand_over(_End(error))
        finally:
            if isinstance(self._items, Generator):  # closed here, on the thread that read it
                self._items.close()

    def _hand_over(self, item: T | _End) -> bool:
        """Queues the item once there is room; False if the consumer went first."""
        try:
            queued = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the event loop is closed
            return False
        while True:
            try:
                queued.result(HAND_OVER_POLL_S)
                return True
            except concurrent.futures.TimeoutError:
                if self._abandoned.is_set():
                    queued.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False


@contextlib.asynccontextmanager
async def read_ahead(items: Iterator[T], ahead: int) -> AsyncIterator[ReadAhead[T]]:
    reader = ReadAhead(items, ahead)
    try:
        yield reader
    finally:
        reader.abandon()


class SnapshotProgress:
    """What the leader has sent of one snapshot, for its log lines."""

    def __init__(self, follower_id: str) -> None:
        self.follower_id = follower_id
        self.started = time.monotonic()
        self.records = 0
        self.chunks = 0
        log.info("sending a snapshot to %s", follower_id)

    def sent(self, message: replication_pb2.SnapshotChunk) -> None:
        self.records += len(message.records) + len(message.journal)
        self.chunks += 1
        if message.last:
            log.info("sent a snapshot to %s: %d records in %d chunks, %.2f s", self.follower_id,
                     self.records, self.chunks, time.monotonic() - self.started)
