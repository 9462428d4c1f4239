"""What one worker process needs to drive one workload: parameters, a recorder, a context."""

from __future__ import annotations

import asyncio
import collections
import random
import sys
import time
import traceback
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import grpc
import grpc.aio

from atp.v1 import common_pb2, reservations_pb2
from bench.catalog import Catalog


@dataclass(frozen=True)
class Params:
    """Everything a worker needs, picklable (sent to spawned worker processes)."""

    target: str
    tag: str  # unique per run and workload: prefixes every id the bench creates
    duration_s: float
    max_calls: int  # per worker process
    concurrency: int  # in-flight calls per worker process
    batch_concurrency: int  # in-flight ReserveBatch calls per worker process
    batch_size: int
    streams: int  # ReserveStream streams per worker process
    hot_share: float
    call_timeout_s: float
    seed: int
    catalog: Catalog

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OpStats:
    """Outcomes of one kind of call (an RPC method, or one stream message)."""

    __slots__ = ("errors", "item_errors", "latencies_ms", "ok", "units")

    def __init__(self) -> None:
        self.ok = 0
        self.units = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.item_errors: collections.Counter[str] = collections.Counter()
        self.latencies_ms = array("d")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "units": self.units,
            "errors": dict(self.errors),
            "item_errors": dict(self.item_errors),
            "latencies_ms": self.latencies_ms,
        }


class Recorder:
    """Per-worker tallies; mirrors OK calls, OK units and errors into the shared progress array."""

    def __init__(self, progress: Any, slot: int) -> None:
        self.ops: dict[str, OpStats] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self._progress = progress
        self._slot = 3 * slot
        self.ok = 0
        self.units = 0
        self.errors = 0
        self._publish()

    def op(self, name: str) -> OpStats:
        stats = self.ops.get(name)
        if stats is None:
            stats = self.ops[name] = OpStats()
        return stats

    def success(self, name: str, latency_ms: float, units: int = 1) -> None:
        stats = self.op(name)
        stats.ok += 1
        stats.units += units
        stats.latencies_ms.append(latency_ms)
        self.ok += 1
        self.units += units
        self._publish()

    def failure(self, name: str, latency_ms: float | None, code: str) -> None:
        stats = self.op(name)
        stats.errors[code] += 1
        if latency_ms is not None:
            stats.latencies_ms.append(latency_ms)
        self.errors += 1
        self._publish()

    def item_failure(self, name: str, code: str, count: int = 1) -> None:
        """A failed item inside an OK call (one reservation of a ReserveBatch)."""
        self.op(name).item_errors[code] += count
        self.errors += count
        self._publish()

    def _publish(self) -> None:
        if self._progress is not None:
            self._progress[self._slot] = self.ok
            self._progress[self._slot + 1] = self.units
            self._progress[self._slot + 2] = self.errors


class Ctx:
    """One worker's view of a workload: channel, RNG, bounds, id source and recorder."""

    def __init__(
        self, params: Params, worker: int, channel: grpc.aio.Channel, recorder: Recorder
    ) -> None:
        self.params = params
        self.worker = worker
        self.channel = channel
        self.rec = recorder
        self.catalog = params.catalog
        self.rng = random.Random(f"{params.seed}/{params.tag}/{worker}")
        self.started = 0
        self.deadline = float("inf")
        self._ids = 0
        self._client_errors_shown = 0

    # -- bounds --------------------------------------------------------------------------
    def begin(self) -> None:
        self.deadline = time.monotonic() + self.params.duration_s

    def more(self) -> bool:
        """True while both bounds hold: time left and call budget left."""
        return self.started < self.params.max_calls and time.monotonic() < self.deadline

    # -- ids and choices -----------------------------------------------------------------
    def next_id(self, kind: str) -> str:
        self._ids += 1
        return f"{self.params.tag}-{kind}-w{self.worker}-{self._ids}"

    def pick_skus(self, count: int) -> list[str]:
        """`count` distinct SKUs: all hot with probability hot_share, else all from the rest."""
        catalog = self.catalog
        hot = min(catalog.hot_skus, catalog.skus)
        if hot and (hot == catalog.skus or self.rng.random() < self.params.hot_share):
            lo, hi = 0, hot
        else:
            lo, hi = hot, catalog.skus
        count = min(count, hi - lo)
        if count == 1:
            return [catalog.sku(self.rng.randrange(lo, hi))]
        return [catalog.sku(i) for i in self.rng.sample(range(lo, hi), count)]

    def reserve_request(self) -> reservations_pb2.ReserveRequest:
        """1-3 lines of 1-5 units, each at an explicit node; a fresh reservation id."""
        lines = [
            common_pb2.ReservationLine(
                line_id=f"l{index}",
                sku=sku,
                node_id=self.catalog.node(self.rng.randrange(self.catalog.nodes)),
                quantity=self.rng.randint(1, 5),
            )
            for index, sku in enumerate(self.pick_skus(self.rng.randint(1, 3)))
        ]
        return reservations_pb2.ReserveRequest(
            reservation_id=self.next_id("r"), lines=lines, channel="bench"
        )

    # -- calls ---------------------------------------------------------------------------
    async def unary(
        self,
        name: str,
        method: Any,
        request: Any,
        units: Callable[[Any], int] | None = None,
    ) -> Any:
        """One timed unary call; records OK (with its units) or the status code. None on error."""
        self.started += 1
        started = time.perf_counter()
        try:
            response = await method(request, timeout=self.params.call_timeout_s)
        except grpc.aio.AioRpcError as error:
            self.rec.failure(name, (time.perf_counter() - started) * 1e3, error.code().name)
            return None
        self.rec.success(name, (time.perf_counter() - started) * 1e3,
                         units(response) if units else 1)
        return response

    async def slots(
        self, operation: Callable[[], Awaitable[None]], concurrency: int | None = None
    ) -> None:
        """Runs `operation` back to back in `concurrency` tasks until a bound is reached."""

        async def loop() -> None:
            while self.more():
                try:
                    await operation()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - a client-side bug, not the server's
                    self.client_error(error)
                    await asyncio.sleep(0.01)

        count = concurrency or self.params.concurrency
        await asyncio.gather(*(loop() for _ in range(count)))

    def client_error(self, error: BaseException) -> None:
        self.rec.failure("client", None, f"CLIENT_{type(error).__name__}")
        if self._client_errors_shown < 3:
            self._client_errors_shown += 1
            print(f"bench worker {self.worker}: client-side error:", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)
