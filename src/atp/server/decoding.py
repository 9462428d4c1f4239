"""Request bytes that are not a valid message are bad input: INVALID_ARGUMENT with a BadRequest.

grpc decodes each request before a handler runs, and a DecodeError there (corrupt wire format,
invalid UTF-8 in a string field) becomes UNKNOWN, with a Python class name in the message and
a traceback in the log. Here every handler of our services gets a deserializer that returns an
`Undecodable` marker instead of raising, and a behaviour that refuses the marker: a unary or
server-streaming call fails with INVALID_ARGUMENT; in ReserveStream only that message fails.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import DecodeError

from atp.ledger.errors import InvalidArgument
from atp.server.handlers import Behaviour, rebuilt, written
from atp.server.status import abort


class Undecodable(NamedTuple):
    """What a request's bytes decoded to when they are not a valid message of its type."""

    type_name: str
    problem: str

    def error(self) -> InvalidArgument:
        return InvalidArgument.single("request", f"not a valid {self.type_name}: {self.problem}")


def tolerant(deserializer: Callable[[bytes], Any], type_name: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as error:
            return Undecodable(type_name, str(error) or "the bytes do not decode")

    return deserialize


def guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same handler with a tolerant deserializer; a request-unary behaviour refuses the
    marker before it runs (a request-streaming one gets markers among its messages)."""
    deserialize = tolerant(handler.request_deserializer, _type_name(handler.request_deserializer))
    return rebuilt(handler, _refusing, deserialize)


def _refusing(kind: str, behaviour: Behaviour) -> Behaviour:
    if kind == "unary_unary":
        return _refusing_unary(behaviour)
    if kind == "unary_stream":
        return _refusing_unary_stream(behaviour)
    return _writing_stream(behaviour)


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    """atp.v1.ReserveRequest for ReserveRequest.FromString (a classmethod of the message)."""
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request message"


def _refusing_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def refusing(request: Any, context: Any) -> Any:
        if type(request) is Undecodable:
            await abort(context, request.error())
        return await behaviour(request, context)

    return refusing


def _refusing_unary_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def refusing(request: Any, context: Any) -> bool:
        if type(request) is Undecodable:
            await abort(context, request.error())
        return bool(await written(behaviour(request, context), context))

    return refusing


def _writing_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A request-streaming behaviour whose responses are written (see handlers.written)."""
    if not inspect.isasyncgenfunction(behaviour):
        return behaviour

    async def writing(requests: Any, context: Any) -> bool:
        return bool(await written(behaviour(requests, context), context))

    return writing


class GuardingRegistrar:
    """Stands in for the server in the generated `add_*Servicer_to_server` functions and
    registers every handler guarded."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: the generated code registers the same handlers by name right after."""

    def add_registered_method_handlers(
        self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        guarded = {name: guard(handler) for name, handler in handlers.items()}
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, guarded),)
        )
        self.server.add_registered_method_handlers(service_name, guarded)


# ReadConsistency's values (atp.v1 common.proto): UNSPECIFIED, LINEARIZABLE, STALE.
READ_CONSISTENCY_STALE = 2
_READ_CONSISTENCIES = range(3)


def read_options(request: Any) -> int:
    """A read request's min_sequence (0 when it has none), once its consistency is checked
    (an unknown value is INVALID_ARGUMENT, as every unknown enum is)."""
    if request is None:
        return 0
    consistency = getattr(request, "consistency", 0)
    if consistency not in _READ_CONSISTENCIES:
        raise InvalidArgument.single("consistency", f"unknown ReadConsistency {consistency}")
    return int(getattr(request, "min_sequence", 0))


def is_stale_read(request: Any) -> bool:
    """Whether a read asked to skip the gateway's read-index wait (checked: read_options)."""
    return getattr(request, "consistency", 0) == READ_CONSISTENCY_STALE
