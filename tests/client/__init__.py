"""Client and CLI tests, and the fake atpd they run against: real gRPC on 127.0.0.1:0."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, NoReturn, Self

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_status import rpc_status

from atp.v1 import (
    availability_pb2_grpc,
    events_pb2_grpc,
    inventory_pb2_grpc,
    reservations_pb2_grpc,
)

Handler = Callable[[Any, grpc.ServicerContext], Any]

_REGISTRATIONS = (
    inventory_pb2_grpc.add_InventoryServicer_to_server,
    availability_pb2_grpc.add_AvailabilityServicer_to_server,
    reservations_pb2_grpc.add_ReservationsServicer_to_server,
    events_pb2_grpc.add_EventsServicer_to_server,
    health_pb2_grpc.add_HealthServicer_to_server,
)


class FakeAtpd:
    """Serves every atp.v1 service plus health; each method answers what a test told it to."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._calls: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        servicer: Any = _DispatchingServicer(self)  # Stands in for every generated servicer.
        for register in _REGISTRATIONS:
            register(servicer, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self._server.stop(grace=None).wait()

    def answer(self, method: str, answer: Handler | Message) -> None:
        """Makes `method` (e.g. "Reserve") return a fixed message or run a handler."""
        if isinstance(answer, Message):
            response = answer
            self._handlers[method] = lambda request, context: response
        else:
            self._handlers[method] = answer

    def requests(self, method: str) -> list[Any]:
        """The requests `method` received, in order."""
        with self._lock:
            return [request for name, request in self._calls if name == method]

    def handle(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._calls.append((method, request))
        handler = self._handlers.get(method)
        if handler is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
        return handler(request, context)


class _DispatchingServicer:
    """Every servicer method at once: each forwards to FakeAtpd.handle under its own name."""

    def __init__(self, fake: FakeAtpd) -> None:
        self._fake = fake

    def __getattr__(self, method: str) -> Handler:
        return lambda request, context: self._fake.handle(method, request, context)


def abort_with(
    context: grpc.ServicerContext, code: grpc.StatusCode, message: str, *details: Message
) -> NoReturn:
    """Ends the call the way atpd does: a status code with google.rpc details."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status raises")


def status_of(code: grpc.StatusCode, message: str, *details: Message) -> status_pb2.Status:
    """A google.rpc.Status as ReserveResult.status carries it."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return status


@pytest.fixture
def fake_atpd() -> Iterator[FakeAtpd]:
    """A started FakeAtpd, stopped after the test."""
    with FakeAtpd() as server:
        yield server


def unused_target() -> str:
    """A loopback address nothing listens on: a port the OS gave and took back."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"
