"""Streams that survive restarts: atpd ends live streams UNAVAILABLE when it shuts down, and a
client watching with follow=True resumes across kill -9 and SIGTERM restarts, every event
exactly once, in sequence order."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from atp.client import AsyncClient, AtpError, Client, _Rewatch
from atp.v1 import events_pb2, events_pb2_grpc, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    line,
    reserve,
    reserve_request,
    stocked,
    uid,
    wait_for,
)
from tests.support.atpd import AtpdProcess, free_port

pytestmark = pytest.mark.integration


@pytest.mark.one_process_for_time(reason="time: SIGTERM ending streams behind gateways is "
                                   "tests/gateway/test_gateways.py's")
def test_sigterm_ends_live_watch_and_reserve_stream_unavailable(
    tmp_path: Path, gateways: int,
) -> None:
    server = AtpdProcess(tmp_path / "data", gateways=gateways).start()
    api = Api(server.channel())
    try:
        sku, node = stocked(api, 100)
        events: Any = events_pb2_grpc.EventsStub(api.channel)  # type: ignore[no-untyped-call]
        watch = events.Watch(
            events_pb2.WatchRequest(after_sequence=0), timeout=30)
        assert next(watch).sequence == 1  # the replay is under way: the call is live

        requests: queue.Queue[reservations_pb2.ReserveRequest | None] = queue.Queue()

        def sent() -> Iterator[reservations_pb2.ReserveRequest]:
            while (request := requests.get()) is not None:
                yield request

        stream = api.reservations.ReserveStream(sent(), timeout=30)
        requests.put(reserve_request(uid("rs"), [line("l1", sku, node, 1)]))
        answer = next(stream)
        assert answer.reservation.reservation_id and not answer.status.code

        started = time.monotonic()
        assert server.stop() == 0
        # Both calls end at once (not after --grace), UNAVAILABLE, saying why.
        assert time.monotonic() - started < 4
        for call in (watch, stream):
            with pytest.raises(grpc.RpcError) as ended:
                for _ in call:
                    pass
            assert ended.value.code() is grpc.StatusCode.UNAVAILABLE, ended.value
            assert "shutting down" in (ended.value.details() or "")
        requests.put(None)
    finally:
        api.close()
        if server.process is not None:
            server.kill()


class Follower:
    """A sync or async client watching with follow=True, on a thread of its own."""

    def __init__(self, target: str, asynchronous: bool) -> None:
        self.events: list[events_pb2.Event] = []
        self.error: BaseException | None = None
        self.client: Client | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(
            target=self._run_async if asynchronous else self._run, args=(target,), daemon=True)
        self.thread.start()

    def _run(self, target: str) -> None:
        self.client = Client(target, timeout_s=1.0)
        try:
            for event in self.client.watch(follow=True):
                self.events.append(event)
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error

    def _run_async(self, target: str) -> None:
        async def follow() -> None:
            async with AsyncClient(target, timeout_s=1.0) as client:
                async for event in client.watch(follow=True):
                    self.events.append(event)

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.task = asyncio.create_task(follow())
            await self.task

        try:
            asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error

    def close(self) -> None:
        """Ends the watch (it never ends by itself): closes the client, cancels the task."""
        if self.client is not None:
            self.client.close()
        if self.loop is not None and self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)


def test_a_followed_watch_sees_every_event_once_across_kill_9_and_sigterm_restarts(
    tmp_path: Path, gateways: int,
) -> None:
    port = free_port()
    server = AtpdProcess(tmp_path / "data", "--listen", f"127.0.0.1:{port}",
                         gateways=gateways).start()
    target = server.target
    assert target.endswith(f":{port}")
    followers = [Follower(target, asynchronous=False), Follower(target, asynchronous=True)]
    stop_writing = threading.Event()
    written: list[str] = []
    try:
        api = Api(server.channel())
        sku, node = stocked(api, 10**6)
        api.close()

        def keep_reserving() -> None:
            # Writes before, during (refused) and after each restart, on a channel that
            # reconnects to the same port.
            own = Api(server.channel())
            while not stop_writing.is_set():
                try:
                    written.append(reserve(own, line("l1", sku, node, 1)).reservation_id)
                except grpc.RpcError:
                    time.sleep(0.02)
            own.close()

        writer = threading.Thread(target=keep_reserving, daemon=True)
        writer.start()
        def twenty_more_written() -> None:
            seen = len(written)
            wait_for(lambda: len(written) >= seen + 20)

        for restart in (server.kill, server.stop):
            twenty_more_written()
            restart()
            server.start()
            twenty_more_written()
        stop_writing.set()
        writer.join(10)

        api = Api(server.channel())
        events: Any = events_pb2_grpc.EventsStub(api.channel)  # type: ignore[no-untyped-call]
        journal = list(events.Watch(
            events_pb2.WatchRequest(stop_at_head=True), timeout=CALL_TIMEOUT))
        api.close()
        head = journal[-1].sequence
        assert [event.sequence for event in journal] == list(range(1, head + 1))
        created = {event.reservation_id for event in journal
                   if event.type == "RESERVATION_CREATED"}
        assert set(written) <= created
        for follower in followers:
            def caught_up(follower: Follower = follower) -> bool:
                return follower.error is not None or bool(
                    follower.events and follower.events[-1].sequence >= head)

            wait_for(caught_up)
            assert follower.error is None, follower.error
            # Exactly the journal: no gap, no duplicate, in order, across both restarts.
            assert follower.events[:len(journal)] == journal
    finally:
        stop_writing.set()
        for follower in followers:
            follower.close()
        if server.process is not None:
            server.stop()


def test_follow_retries_unavailable_on_one_member_forever_and_nothing_else() -> None:
    with Client("127.0.0.1:1", timeout_s=0.0) as client:
        unavailable = AtpError(grpc.StatusCode.UNAVAILABLE, "down")
        assert _Rewatch(client, 0).next_member(unavailable) is None  # today's behaviour
        rewatch = _Rewatch(client, 7, follow=True)
        rewatch.failing_since = time.monotonic() - 3600
        delays = [rewatch.next_member(unavailable) for _ in range(20)]
        assert all(delay is not None and 0 < delay <= 1.0 for delay in delays)
        assert rewatch.after == 7
        assert rewatch.next_member(AtpError(grpc.StatusCode.OUT_OF_RANGE, "trimmed")) is None
        assert rewatch.after_clean_end() is not None
        assert _Rewatch(client, 0).after_clean_end() is None
