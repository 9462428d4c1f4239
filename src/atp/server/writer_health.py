"""A gateway's health service: the names only its writer can answer (`atp.v1.Writes`:
whether writes that add data are accepted) are the writer's, to a Check and to a Watch.

- A **Check** of such a name asks the writer (NOT_SERVING when it cannot be reached).
- A **Watch** follows the writer: the gateway holds a Watch on the writer for each such name
  and sets its own status from every answer, NOT_SERVING the moment that stream breaks (the
  writer died, or is stopping) and while the writer cannot be reached, SERVING again once
  it answers so.

Either way the answer is counted here (atp_health_checks_total), like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.server.health import CountedHealthServicer

log = logging.getLogger("atp.gateway")

# How long after a broken or refused Watch the writer is asked again.
RETRY_S = 0.2
_health_stub: Callable[[grpc.aio.Channel], Any] = health_pb2_grpc.HealthStub
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GatewayHealthServicer(CountedHealthServicer):
    """Health of a gateway whose writer is at `writer_target`; `writer_names` are its."""

    def __init__(self, services: Collection[str], writer_target: str,
                 writer_names: Collection[str]) -> None:
        super().__init__(services)
        self.writer_names = frozenset(writer_names)
        self._channel = grpc.aio.insecure_channel(writer_target)
        self._writer = _health_stub(self._channel)
        self._following: list[asyncio.Task[None]] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self.writer_names:
            return await super().Check(request, context)
        try:
            answer: health_pb2.HealthCheckResponse = await self._writer.Check(
                request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError:
            answer = health_pb2.HealthCheckResponse(status=NOT_SERVING)
        self.answered("Check", request.service,
                      health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
        return answer

    async def follow_writer(self) -> None:
        """Starts following the writer's status of each of its names (NOT_SERVING until
        the writer says otherwise)."""
        for name in self.writer_names:
            await self.set(name, NOT_SERVING)
            self._following.append(asyncio.create_task(self._follow(name),
                                                       name=f"writer-health-{name}"))

    async def _follow(self, name: str) -> None:
        while True:
            try:
                async for answer in self._writer.Watch(
                        health_pb2.HealthCheckRequest(service=name)):
                    await self.set(name, answer.status)
            except grpc.aio.AioRpcError as error:
                log.debug("the writer's health of %s is not known (%s)", name,
                          error.code().name)
            # Ended or never begun: the writer is gone or stopping; it takes no writes now.
            await self.set(name, NOT_SERVING)
            await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        """Stops following (before the shutdown sets every name NOT_SERVING)."""
        for task in self._following:
            task.cancel()
        await self._channel.close()
