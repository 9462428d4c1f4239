"""Rebuilding a grpc method handler with its behaviour wrapped, whatever its kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

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
) -> grpc.RpcMethodHandler:
    """A handler of the same kind whose behaviour is wrap(kind, behaviour), with the same
    serializer and the given deserializer (by default the same)."""
    for kind, make in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return make(wrap(kind, behaviour),
                        request_deserializer or handler.request_deserializer,
                        handler.response_serializer)
    return handler
