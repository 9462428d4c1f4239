"""A load-generator worker process: one asyncio loop, one grpc.aio channel per workload.

Protocol with the runner (multiprocessing queues; the process is started with `spawn`):
    runner -> worker  ("run", workload_name, Params)
    worker -> runner  ("ready", worker)                  channel connected, about to wait
    runner -> worker  ("go",) | ("skip",)
    worker -> runner  ("done", worker, result) | ("failed", worker, traceback_text)
    runner -> worker  ("exit",)
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any

import grpc
import grpc.aio

from atp import limits
from bench.context import Ctx, Params, Recorder
from bench.workloads import WORKLOADS

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", limits.message_bytes_max),
]


def main(worker: int, commands: Any, results: Any, progress: Any) -> None:
    """Entry point of a worker process."""
    try:
        asyncio.run(_serve(worker, commands, results, progress))
    except KeyboardInterrupt:
        pass


async def _serve(worker: int, commands: Any, results: Any, progress: Any) -> None:
    loop = asyncio.get_running_loop()
    while True:
        message = await loop.run_in_executor(None, commands.get)
        if message[0] == "exit":
            return
        if message[0] != "run":
            continue
        _, name, params = message
        try:
            result = await _run(worker, name, params, commands, results, progress)
        except Exception:  # noqa: BLE001 - reported to the runner, which fails the run
            results.put(("failed", worker, traceback.format_exc()))
        else:
            results.put(("done", worker, result))


async def _run(
    worker: int, name: str, params: Params, commands: Any, results: Any, progress: Any
) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    recorder = Recorder(progress, worker)
    channel = grpc.aio.insecure_channel(params.target, options=CHANNEL_OPTIONS)
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout=params.call_timeout_s)
        ctx = Ctx(params, worker, channel, recorder)
        results.put(("ready", worker))
        go = await loop.run_in_executor(None, commands.get)
        if go[0] != "go":
            return None
        cpu_before = time.process_time()
        started = time.monotonic()
        ctx.begin()
        await WORKLOADS[name].run(ctx)
        ended = time.monotonic()
        cpu = time.process_time() - cpu_before
    finally:
        await channel.close()
    return {
        "worker": worker,
        "started": started,  # time.monotonic(): one system-wide clock on Linux
        "ended": ended,
        "calls_started": ctx.started,
        "client_cpu_s": cpu,
        "ops": {op: stats.to_dict() for op, stats in recorder.ops.items()},
        "counters": dict(recorder.counters),
    }
