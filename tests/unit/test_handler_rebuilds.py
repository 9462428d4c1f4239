"""An interceptor's rebuilt handlers are kept per method, and rebuilt when the inner handler
changes (an inner interceptor answered with another one: a refusal, say)."""

from __future__ import annotations

from typing import Any

import grpc

from atp.server.handlers import Rebuilds, rebuilt


async def _answer(request: Any, context: Any) -> str:
    return f"answer to {request}"


def test_a_method_gets_the_handler_built_for_it_as_long_as_its_inner_handler_is_the_same() -> None:
    builds: list[str] = []

    def build(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        builds.append(method)
        return rebuilt(handler, lambda _kind, behaviour: behaviour)

    rebuilds = Rebuilds(build)
    inner = grpc.unary_unary_rpc_method_handler(_answer)
    other = grpc.unary_unary_rpc_method_handler(_answer)
    first = rebuilds.of("/atp.v1.Availability/GetAvailability", inner)
    assert rebuilds.of("/atp.v1.Availability/GetAvailability", inner) is first
    assert builds == ["/atp.v1.Availability/GetAvailability"]
    # Another inner handler for the method (an inner interceptor's refusal): built anew.
    changed = rebuilds.of("/atp.v1.Availability/GetAvailability", other)
    assert changed is not first and changed.unary_unary is _answer
    # Methods are kept apart.
    assert rebuilds.of("/atp.v1.Reservations/GetReservation", inner) is not first
    assert builds == ["/atp.v1.Availability/GetAvailability"] * 2 + [
        "/atp.v1.Reservations/GetReservation"]
