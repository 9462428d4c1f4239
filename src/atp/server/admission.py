"""Admission control: a bound on the unary calls in the server at once, the excess refused.

A call beyond `limit` is answered at once with RESOURCE_EXHAUSTED, an ErrorInfo whose reason
is OVERLOADED and a RetryInfo saying when to come back; nothing of it is applied. It is our
own answer, so the metrics interceptor (outside this gate) counts it like any other.

Why not leave overload to grpc:
- grpc core parks the calls the event loop has not taken yet in a backlog, and beyond
  `grpc.server.max_pending_requests` (1,000 by default) drops them at random with a bare
  CANCELLED: no handler runs, no metric counts it, and no client retries CANCELLED. That is
  what a burst of 2,000 concurrent calls met. `backlog_options` raises the backlog so that
  every call reaches this gate, which answers the excess with a reason instead.
- grpc.aio.server(maximum_concurrent_rpcs=N) answers RESOURCE_EXHAUSTED without any detail
  (no retry hint), without running the behaviour our metrics wrap, and counts long-lived
  streams against the same bound.

A call counts from the moment the server takes it up (interceptors run in the call's own task)
until that task ends, answered, failed or cancelled. So reads, which run without awaiting
anything, count too while they queue for the event loop, and no path can leak a count.
Streams (Watch, ReserveStream) are not gated: they live long and have their own bounds. Nor
are the health and reflection services: a health check must answer while the server is busy.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from atp.ledger.errors import ResourceExhausted
from atp.server.handlers import rebuilt
from atp.server.status import rich_status, status_code, trailing_metadata

# The retry hint is the recent time an admitted call spent in the server (by then the calls
# ahead have mostly been answered), kept within these bounds.
RETRY_DELAY_MIN_S = 0.01
RETRY_DELAY_MAX_S = 2.0
# Weight of the newest call in that running average: about the last 20 calls count.
LATENCY_SMOOTHING = 0.05


class Overloaded(ResourceExhausted):
    """The server runs as many calls as it admits; the call was refused, not applied."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the server is serving {limit} calls at once, the most it admits; retry after "
            "the RetryInfo delay"
        )
        self.metadata = {"concurrent_rpcs_max": str(limit)}


def backlog_options(backlog_max: int) -> list[tuple[str, int]]:
    """grpc server options letting core hold up to `backlog_max` calls the event loop has not
    taken yet, rather than cancelling calls beyond 1,000 (see the module docstring).

    The soft and the hard bound are equal: between the two grpc drops calls at random."""
    return [
        ("grpc.server.max_pending_requests", backlog_max),
        ("grpc.server.max_pending_requests_hard_limit", backlog_max),
    ]


class AdmissionGate(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Admits at most `limit` unary calls of `services` at once and refuses the others."""

    def __init__(self, limit: int, services: Iterable[str]) -> None:
        if limit < 1:
            raise ValueError(f"the concurrent call limit must be at least 1, not {limit}")
        self.limit = limit
        self.in_flight = 0
        # Told the method of each refused call (the metrics count them by method).
        self.on_refused: Callable[[str], None] = _ignore
        self._services = frozenset(services)
        self._latency_s = RETRY_DELAY_MIN_S

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        call_task = asyncio.current_task()  # the call's own task, which ends with the call
        if call_task is None or not self._gates(handler_call_details.method, handler):
            return handler
        if self.in_flight >= self.limit:
            return self._refusal(handler_call_details.method, handler)
        self._admit(call_task)
        return handler

    @property
    def retry_delay_s(self) -> float:
        """How long a refused client should wait before trying again."""
        return min(RETRY_DELAY_MAX_S, max(RETRY_DELAY_MIN_S, self._latency_s))

    def _gates(self, method: str, handler: grpc.RpcMethodHandler | None) -> bool:
        """True for the unary calls of our services (method is /package.Service/Method)."""
        service = method.lstrip("/").rsplit("/", 1)[0]
        return (handler is not None and handler.unary_unary is not None
                and service in self._services)

    def _admit(self, call_task: asyncio.Task[Any]) -> None:
        self.in_flight += 1
        call_task.add_done_callback(functools.partial(self._release, time.monotonic()))

    def _release(self, admitted_at: float, _call_task: asyncio.Task[Any]) -> None:
        self.in_flight -= 1
        elapsed_s = time.monotonic() - admitted_at
        self._latency_s += LATENCY_SMOOTHING * (elapsed_s - self._latency_s)

    def _refusal(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler with a behaviour that refuses the call, its request left unapplied."""
        self.on_refused(method.rsplit("/", 1)[-1])
        error = Overloaded(self.limit)
        status = overload_status(error, self.retry_delay_s)

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
            await context.abort(status_code(error), status.message,
                                trailing_metadata=trailing_metadata(status))
            raise AssertionError("context.abort raises")

        return rebuilt(handler, lambda _kind, _behaviour: refuse)


def overload_status(error: Overloaded, retry_delay_s: float) -> status_pb2.Status:
    """The google.rpc.Status of a refused call: ErrorInfo OVERLOADED and a RetryInfo."""
    status = rich_status(error)
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(retry_delay_s * 1e9))
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def _ignore(method: str) -> None:
    """The default on_refused: nobody is listening."""
