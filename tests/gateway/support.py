"""What the gateway tests share: an atpd with --gateways, its children found by role, and a
load of reserves that records what was acknowledged."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from atp.v1 import reservations_pb2
from tests.integration.helpers import CALL_TIMEOUT, Api, line, reserve_request, uid, wait_for
from tests.support.atpd import AtpdProcess, children

GATEWAYS = 2


def gateway_atpd(data_dir: Path, *extra: str) -> AtpdProcess:
    return AtpdProcess(data_dir, *extra, gateways=GATEWAYS)


def supervisor_pid(server: AtpdProcess) -> int:
    assert server.process is not None
    return server.process.pid


def wait_replaced(server: AtpdProcess, role: str, killed: int, count: int) -> list[int]:
    """Waits until `count` children of `role` run again, none of them `killed`."""
    def replaced() -> list[int] | None:
        pids = children(supervisor_pid(server))[role]
        return pids if len(pids) == count and killed not in pids else None

    pids: list[int] = wait_for(replaced, timeout_s=30)
    return pids


def kill9(pid: int) -> None:
    os.kill(pid, 9)


def channels(server: AtpdProcess, count: int) -> list[grpc.Channel]:
    """Channels each with a connection of its own, so that they spread over the gateways."""
    return [grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1),
                                                          ("grpc.enable_retries", 0)])
            for _ in range(count)]


@dataclass
class Load:
    """Threads reserving one unit at a time until stopped; each call that fails UNAVAILABLE
    is retried with the same reservation id (its idempotency key) until it is answered."""

    apis: list[Api]
    sku: str
    node_id: str
    acknowledged: list[str] = field(default_factory=list)
    failures: list[grpc.StatusCode] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for api in self.apis:
            thread = threading.Thread(target=self._run, args=(api,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, api: Api) -> None:
        while not self.stop.is_set():
            request = reserve_request(uid("res"), [line("l1", self.sku, self.node_id, 1)])
            for _attempt in range(200):
                try:
                    api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
                except grpc.RpcError as error:
                    self.failures.append(error.code())  # type: ignore[attr-defined]
                    if error.code() is not grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                        return
                    self.stop.wait(0.05)
                    continue
                self.acknowledged.append(request.reservation_id)
                break

    def until_acknowledged(self, more: int) -> None:
        """Waits until `more` reservations beyond those acknowledged now are."""
        target = len(self.acknowledged) + more
        wait_for(lambda: len(self.acknowledged) >= target, timeout_s=60)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(CALL_TIMEOUT * 2)


def all_present(api: Api, reservation_ids: list[str]) -> list[str]:
    """The reservation ids a GetReservation does not find (empty: every one is there)."""
    missing = []
    for reservation_id in reservation_ids:
        try:
            api.reservations.GetReservation(
                reservations_pb2.GetReservationRequest(reservation_id=reservation_id),
                timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
            missing.append(reservation_id)
    return missing
