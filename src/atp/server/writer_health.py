"""A gateway's health for the names only its writer can answer (`atp.v1.Writes`: whether
writes that add data are accepted), kept equal to the writer's.

A gateway of `atpd --gateways N` holds a health Watch on its writer for each such name and
sets its own status from every answer, so that a Watch on the gateway follows the writer:
NOT_SERVING the moment the writer's stream breaks (it died, or is stopping) and while it
cannot be reached, SERVING again once it answers so. (A Check of such a name on a gateway
asks the writer directly: server/gateway.py.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.server.health import CountedHealthServicer

log = logging.getLogger("atp.gateway")

# How long after a broken or refused Watch the writer is asked again.
RETRY_S = 0.2
_health_stub: Callable[[grpc.aio.Channel], Any] = health_pb2_grpc.HealthStub
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def follow_writer_health(channel: grpc.aio.Channel, health: CountedHealthServicer,
                               name: str, retry_s: float = RETRY_S) -> None:
    """Keeps `health`'s status of `name` equal to the writer's at the end of `channel`
    (runs until cancelled)."""
    stub = _health_stub(channel)
    while True:
        try:
            async for answer in stub.Watch(health_pb2.HealthCheckRequest(service=name)):
                await health.set(name, answer.status)
        except grpc.aio.AioRpcError as error:
            log.debug("the writer's health of %s is not known (%s)", name, error.code().name)
        # Ended or never begun: the writer is gone or stopping, so it takes no writes now.
        await health.set(name, NOT_SERVING)
        await asyncio.sleep(retry_s)


def following(channel: grpc.aio.Channel, health: CountedHealthServicer,
              names: tuple[str, ...]) -> list[asyncio.Task[None]]:
    """A task following the writer's health of each of `names`."""
    return [asyncio.create_task(follow_writer_health(channel, health, name),
                                name=f"writer-health-{name}") for name in names]
