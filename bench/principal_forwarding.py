"""What naming the caller to the writer costs a gateway per forwarded call: forwarded_metadata
as it was (the caller's metadata less gRPC's headers) against as it is (also dropping a
principal a client names itself, and adding the one authorized), in one run, the two
measured in turn, best of 7.

    python -m bench.principal_forwarding
"""

from __future__ import annotations

import asyncio
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from atp.server import gateway
from atp.server.authorization import Principal, _current

CALLS = 200_000
REPEATS = 7
# A typical forwarded call's metadata: gRPC's own headers, a token, a trace id.
METADATA = ((":authority", "127.0.0.1:50051"), ("user-agent", "grpc-python/1.6"),
            ("authorization", "Bearer t"), ("x-trace", "1"), ("grpc-accept-encoding", "gzip"))


def as_it_was(metadata: Any) -> tuple[tuple[str, Any], ...]:
    return tuple((key, value) for key, value in metadata or ()
                 if not key.startswith(":") and key not in gateway._TRANSPORT_HEADERS)


def nanoseconds(first: Any, second: Any) -> tuple[float, float]:
    """Each call's best time, the two measured in turn (a busy machine slows both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _repeat in range(REPEATS):
        for call, measured in ((first, times[0]), (second, times[1])):
            measured.append(timeit.timeit(call, number=CALLS) / CALLS * 1e9)
    return min(times[0]), min(times[1])


async def main() -> None:
    for case in ("without --auth-policy", "with a principal"):
        if case == "with a principal":  # as Authorization sets it for the call
            _current.set(Principal("service-p", ("service-p",), "token"))
        before, after = nanoseconds(lambda: as_it_was(METADATA),
                                    lambda: gateway.forwarded_metadata(METADATA))
        print(f"{case:22} as it was {before:5.0f} ns, as it is {after:5.0f} ns "
              f"(+{after - before:.0f} ns per forwarded call)")


if __name__ == "__main__":
    asyncio.run(main())
