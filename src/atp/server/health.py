"""The standard grpc.health.v1 service, with each answer it gives counted.

grpc's own asyncio servicer answers; this one tells `on_answer` (method, service, status) for
every Check answered and every status a Watch sends, so `atp_health_checks_total` shows who
probes, how often, and what they were told. A service name the server does not serve is
reported as "unknown": clients choose the names, and a label per name would let them grow
the metric without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

UNKNOWN_SERVICE = "unknown"
# Check's answer for a service it does not know: the call ends NOT_FOUND, with no status.
NOT_FOUND = "NOT_FOUND"

HealthAnswered = Callable[[str, str, str], None]


class CountedHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]  # untyped base
    def __init__(self, services: Collection[str]) -> None:
        super().__init__()
        self.services = frozenset(services)
        self.on_answer: HealthAnswered | None = None

    def _label(self, service: str) -> str:
        return service if service in self.services else UNKNOWN_SERVICE

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self._server_status:
            self.answered("Check", request.service, NOT_FOUND)
            return await super().Check(request, context)  # aborts: the call ends NOT_FOUND
        reply: health_pb2.HealthCheckResponse = await super().Check(request, context)
        self.answered("Check", request.service,
                      health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        return reply

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> None:
        await super().Watch(request, _CountingWrites(self, request.service, context))

    def answered(self, method: str, service: str, status: str) -> None:
        if self.on_answer is not None:
            self.on_answer(method, self._label(service), status)


class _CountingWrites:
    """A Watch's context that counts each status written to the watcher."""

    def __init__(self, health: CountedHealthServicer, service: str,
                 context: grpc.aio.ServicerContext) -> None:
        self._health = health
        self._service = service
        self._context = context

    async def write(self, reply: health_pb2.HealthCheckResponse) -> None:
        # Counted before it is sent: a scrape after the watcher has it shows it.
        self._health.answered(
            "Watch", self._service,
            health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        await self._context.write(reply)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
