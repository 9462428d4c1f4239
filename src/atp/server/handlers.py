"""Rebuilding a grpc method handler with its behaviour wrapped, whatever its kind."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import grpc
from grpc._cython import cygrpc  # the one error type a write to a vanished peer raises

log = logging.getLogger("atp.server")

Behaviour = Callable[..., Any]
# A handler's kinds, each with the attribute holding its behaviour and the factory making one.
_KINDS: tuple[tuple[str, Callable[..., grpc.RpcMethodHandler]], ...] = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def rebuilt(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[str, Behaviour], Behaviour],
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind whose behaviour is wrap(kind, behaviour), with the given
    deserializer and serializer (by default the same)."""
    for kind, make in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return make(wrap(kind, behaviour),
                        request_deserializer or handler.request_deserializer,
                        response_serializer or handler.response_serializer)
    return handler


class Rebuilds:
    """The handlers an interceptor rebuilt, kept per method: a server interceptor runs for
    every call, and rebuilding (closures, a new handler) was a tenth of a gateway's own work
    on a read. A handler is reused only for the very inner handler it was built from; an
    interceptor whose wrapping depends on the call (its metadata, the load) cannot use this."""

    def __init__(self, build: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]
                 ) -> None:
        self._build = build
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def of(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        kept = self._by_method.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        built = self._build(method, handler)
        # Only methods a handler exists for get here: their number is the services' size.
        self._by_method[method] = (handler, built)
        return built


def passing_bytes(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    """`serializer`, but a response that is bytes already (relayed as another server
    encoded it) is sent as it is."""
    def serialize(response: Any) -> bytes:
        if isinstance(response, bytes) or serializer is None:
            return bytes(response)
        return serializer(response)

    return serialize


def written(responses: AsyncGenerator[Any, None], context: grpc.aio.ServicerContext) -> Any:
    """Sends a stream's responses with context.write, so that a write to a client that went
    away ends the call quietly: when grpc writes what a handler yields, that failure is logged
    by grpc itself as an ERROR with a traceback (one per vanished watcher). The coroutine
    returns False when the client went away."""

    async def write_all() -> bool:
        async with aclosing(responses) as items:  # a cancelled call closes the generator now
            async for item in items:
                try:
                    await context.write(item)
                except cygrpc.ExecuteBatchError:
                    log.debug("a stream's client went away; ending its call")
                    return False
        return True

    return write_all()


async def responses_of(behaviour: Behaviour, request: Any, context: Any) -> bool:
    """Runs a streaming behaviour of either style to its end: one that writes (a coroutine)
    or one that yields (an async generator, whose responses are then written here); False
    when the client went away."""
    if inspect.iscoroutinefunction(behaviour):
        return await behaviour(request, context) is not False
    return bool(await written(behaviour(request, context), context))
