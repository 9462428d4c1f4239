"""A health Watch of `atp.v1.Writes` (whether writes are taken) on a gateway follows the
writer: NOT_SERVING while the writer is down, SERVING once it is back; the whole server's
health stays SERVING meanwhile (the gateways answer reads)."""

from __future__ import annotations

import os
import queue
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.gateway.support import (
    channels,
    children,
    gateway_atpd,
    kill9,
    supervisor_pid,
    wait_replaced,
)
from tests.support.atpd import AtpdProcess

pytestmark = [pytest.mark.integration, pytest.mark.crash]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WRITES = "atp.v1.Writes"
# Watches held at once, each on a connection of its own (spread over the gateways).
WATCHES = 4
# The longest a watcher waits for the next status.
NEXT_STATUS_S = 30.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AtpdProcess]:
    process = gateway_atpd(tmp_path / "data").start()
    try:
        yield process
    finally:
        if process.process is not None:
            assert process.stop() == 0


class Watcher:
    """A health Watch read by a thread of its own; statuses arrive on `statuses`."""

    def __init__(self, channel: grpc.Channel, service: str) -> None:
        self.statuses: queue.Queue[int] = queue.Queue()
        self.call = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=service), timeout=120)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for answer in self.call:
                self.statuses.put(int(answer.status))
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    def until(self, status: int) -> list[int]:
        """Statuses received until `status` (which ends the list)."""
        seen = []
        while not seen or seen[-1] != status:
            seen.append(self.statuses.get(timeout=NEXT_STATUS_S))
        return seen


def test_a_watch_of_writes_on_a_gateway_follows_the_writer(server: AtpdProcess) -> None:
    held = channels(server, WATCHES)
    writes = [Watcher(channel, WRITES) for channel in held]
    whole = Watcher(held[0], "")
    try:
        for watcher in writes:  # (NOT_SERVING first if it began before the writer answered)
            assert set(watcher.until(SERVING)) <= {NOT_SERVING, SERVING}
        assert whole.until(SERVING) == [SERVING]
        supervisor = supervisor_pid(server)
        writer = children(supervisor)["writer"][0]
        os.kill(supervisor, signal.SIGSTOP)  # the writer stays down until SIGCONT
        try:
            kill9(writer)
            for watcher in writes:
                assert watcher.until(NOT_SERVING) == [NOT_SERVING]
        finally:
            os.kill(supervisor, signal.SIGCONT)
        wait_replaced(server, "writer", writer, 1)
        for watcher in writes:
            assert watcher.until(SERVING) == [SERVING]
        assert whole.statuses.empty()  # the server as a whole served all along
    finally:
        for watcher in [*writes, whole]:
            watcher.call.cancel()
        for channel in held:
            channel.close()
