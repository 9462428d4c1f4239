"""What the writer does per Reserve command, in process: the part of a unary reservation that
stays on the one writer core when gateways decode, validate and answer.

    python -m bench.writer_step                       # every part, both kinds, 20,000 commands
    python -m bench.writer_step --parts ledger --profile   # one part, with cProfile's top
    python -m bench.writer_step --instructions        # the in-process parts under callgrind

Commands are 1-3 line Reserves (one unit each) over 2,000 SKUs stocked at 5 nodes with lanes
to region EU; `node` names a node on every line, `sourced` names none (the planner chooses).
They are what a gateway sends the writer (prechecks.precheck: vetted, with their digest, so
the writer neither validates nor digests them); --unvetted gives the bare Reserves, as a
single process (`--gateways 0`) applies them. Sourced ones come without a gateway's plan.
Parts, each in microseconds of process CPU (time.process_time: the commit thread included)
per command, best of --repeats runs on a fresh ledger:

  ledger   Ledger.apply_batch alone, in batches of 64 (taking the changes between batches is
           not timed: the writer's commit loop does that, and `commit` counts it)
  commit   Writer.apply of groups of G commands, then until_durable: the commit loop encodes
           the group's changes and commits them to a real LmdbStore (synced) in a temp dir;
           one group commit per group (G = --groups)
  pickle   pickle.loads of the commands and pickle.dumps of their outcomes, one pickle per
           group of G (the link to the gateways)
  follow   what every gateway pays per command to keep its copy of the ledger, whichever
           gateway took the command: pickle.loads of each committed batch as the commit feed
           sends it, and Writer.commit_replicated on a live copy (MemoryStore.live_copy),
           one batch per group of G (bench.run's projections multiply it by the gateways)

CPU time on a shared machine drifts 10-20% between runs; --instructions counts instructions
instead (valgrind's callgrind, two sizes, the difference per command), which do not drift;
there `commit` is unsynced (an fsync's instructions are the kernel's) and G is 16.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pickle
import pstats
import random
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from atp import limits
from atp.bootstrap import (
    AUTOMATIC_FULL_COLLECTIONS_OFF,
    AUTOMATIC_MIDDLE_COLLECTIONS_OFF,
    GC_FREEZE_INTERVAL_S,
)
from atp.engine.events import EventHub
from atp.engine.writer import Writer
from atp.ledger import Ledger, Outcome, Refused, commands
from atp.ledger.model import Lane
from atp.ledger.prechecks import precheck
from atp.ledger.state import NoExpiryQueue
from atp.store import LmdbStore, MemoryStore
from atp.store.base import WriteBatch
from bench.instructions import callgrind_instructions
from bench.micro import NOW

KINDS = ("node", "sourced")
PARTS = ("ledger", "commit", "pickle", "follow")
SKUS = 2_000
NODES = 5
REGION = "EU"
LEDGER_BATCH = 64
INSTRUCTION_SIZES = (960, 2_880)  # multiples of 16  # commands in callgrind's small and large runs


def network_ledger() -> Ledger:
    """N0..N4 with a lane to EU each (1-3 transit days, handling 0-1), S0..S1999 stocked
    with 10^9 units at every node; the changes already taken, as after a restart."""
    ledger = Ledger()
    for node in range(NODES):
        lane = Lane(REGION, 1 + node % 3, 5 + node)
        ledger.execute(commands.UpsertNode(f"N{node}", kind="DC", region=REGION,
                                           handling_days=node % 2, lanes=(lane,)), NOW)
    for chunk in range(0, SKUS, 100):
        movements = tuple(
            commands.Movement(f"S{sku}", f"N{node}", "RECEIPT", 10**9)
            for sku in range(chunk, chunk + 100)
            for node in range(NODES)
        )
        ledger.execute(commands.AdjustStock(f"seed-{chunk}", movements), NOW)
    ledger.take_changes()
    return ledger


def reserve_commands(count: int, kind: str, seed: int = 1,
                     vetted: bool = True) -> list[commands.Command]:
    """`count` Reserves of 1-3 one-unit lines to EU: at a node each (`node`) or sourced;
    vetted as a gateway sends them, or bare."""
    rng = random.Random(seed)
    reserves = [
        commands.Reserve(f"r{index}", tuple(
            commands.LineRequest(f"l{line}", f"S{rng.randrange(SKUS)}", 1,
                                 f"N{rng.randrange(NODES)}" if kind == "node" else "")
            for line in range(rng.randint(1, 3))
        ), destination_region=REGION)
        for index in range(count)
    ]
    return [precheck(reserve) for reserve in reserves] if vetted else list(reserves)


def _quiet_gc() -> None:
    """As atpd after its periodic freeze: the collector nearly idle (GC is the gRPC bench's)."""
    gc.collect()
    gc.freeze()
    gc.disable()


def run_ledger(batch: Sequence[commands.Command]) -> tuple[float, list[Outcome]]:
    """CPU seconds of Ledger.apply_batch over the commands in groups of LEDGER_BATCH."""
    ledger = network_ledger()
    _quiet_gc()
    outcomes: list[Outcome] = []
    spent = 0.0
    for start in range(0, len(batch), LEDGER_BATCH):
        group = batch[start:start + LEDGER_BATCH]
        began = time.process_time()
        outcomes += ledger.apply_batch(group, NOW)
        spent += time.process_time() - began
        ledger.forget_durable(ledger.take_changes())
    gc.enable()
    _check_placed(outcomes)
    return spent, outcomes


def run_commit(batch: Sequence[commands.Command], group_size: int, sync: bool = True) -> float:
    """CPU seconds of Writer.apply + until_durable per group of `group_size` commands, on an
    LmdbStore in a temp dir (its commit thread's CPU included: process time)."""
    return asyncio.run(_commit_groups(batch, group_size, sync))


async def _commit_groups(batch: Sequence[commands.Command], group_size: int,
                         sync: bool) -> float:
    with tempfile.TemporaryDirectory() as data_dir:
        store = LmdbStore(data_dir, sync=sync)
        writer = Writer(network_ledger(), store, clock=lambda: NOW)
        writer.start()
        _quiet_gc()
        outcomes: list[Outcome] = []
        began = time.process_time()
        for start in range(0, len(batch), group_size):
            applied, durable = writer.apply(batch[start:start + group_size])
            await writer.until_durable(durable, len(applied))
            outcomes += applied
        spent = time.process_time() - began
        gc.enable()
        await writer.close()
        store.close()
    _check_placed(outcomes)
    return spent


def run_pickle(batch: Sequence[commands.Command], outcomes: Sequence[Outcome],
               group_size: int) -> float:
    """CPU seconds of pickle.loads of the commands and pickle.dumps of their outcomes, one
    pickle per group of `group_size` (a gateway sends commands and gets outcomes in batches)."""
    return _load_and_answer(*_pickle_groups(batch, outcomes, group_size))


def _pickle_groups(batch: Sequence[commands.Command], outcomes: Sequence[Outcome],
                   group_size: int) -> tuple[list[bytes], list[list[Outcome]]]:
    """The commands as a gateway sends them (a pickle per group), and the outcome groups."""
    groups = range(0, len(batch), group_size)
    wire = [pickle.dumps(list(batch[start:start + group_size]), pickle.HIGHEST_PROTOCOL)
            for start in groups]
    return wire, [list(outcomes[start:start + group_size]) for start in groups]


def _load_and_answer(wire: Sequence[bytes], answers: Sequence[list[Outcome]]) -> float:
    _quiet_gc()
    loads, dumps, protocol = pickle.loads, pickle.dumps, pickle.HIGHEST_PROTOCOL
    began = time.process_time()
    for data, answer in zip(wire, answers):
        loads(data)
        dumps(answer, protocol)
    spent = time.process_time() - began
    gc.enable()
    return spent


def committed_feed(batch: Sequence[commands.Command], group_size: int) -> list[bytes]:
    """The commit feed's frames: each group commit's WriteBatch pickled as the link sends it
    (the leader commits to a MemoryStore: the records are those LMDB would get)."""
    return asyncio.run(_committed_feed(batch, group_size))


async def _committed_feed(batch: Sequence[commands.Command], group_size: int) -> list[bytes]:
    frames: list[bytes] = []
    writer = Writer(network_ledger(), MemoryStore(), clock=lambda: NOW)

    def sent(commit: int, committed: WriteBatch, term: int) -> None:
        frames.append(pickle.dumps(committed, pickle.HIGHEST_PROTOCOL))

    writer.on_durable_batch = sent
    writer.start()
    outcomes: list[Outcome] = []
    for start in range(0, len(batch), group_size):
        applied, durable = writer.apply(batch[start:start + group_size])
        await writer.until_durable(durable, len(applied))
        outcomes += applied
    await writer.close()
    _check_placed(outcomes)
    return frames


def gateways_copy(ledger: Ledger, clock: Callable[[], float] = time.time) -> Writer:
    """A copy of `ledger` kept as a gateway keeps it (bootstrap.open_store's store, an
    EventHub with no Watch open), fed by Writer.commit_replicated."""
    store = MemoryStore.live_copy(limits.gateway_journal_events)
    # As bootstrap.load_ledger makes a gateway's: the ledger is the copy from here on, and
    # it expires nothing itself.
    store.loaded()
    ledger.expiries = NoExpiryQueue()
    copy = Writer(ledger, store, clock=clock)
    copy.on_durable_events = EventHub(copy.store).publish
    return copy


async def _follow(frames: Sequence[bytes], collector: str = "off") -> float:
    """CPU seconds a gateway's copy spends on the commit feed: loading each frame and
    applying it (store and memory), as the gateway does. `collector`: "off" (the other
    parts' regime) or "gateway" (as in a gateway: young collections alone, a
    collection and a freeze every GC_FREEZE_INTERVAL_S)."""
    copy = gateways_copy(network_ledger(), clock=lambda: NOW)
    copy.start()
    _quiet_gc()
    thresholds = gc.get_threshold()
    if collector == "gateway":
        gc.set_threshold(thresholds[0], AUTOMATIC_MIDDLE_COLLECTIONS_OFF,
                         AUTOMATIC_FULL_COLLECTIONS_OFF)
        gc.enable()
    loads = pickle.loads
    began = time.process_time()
    frozen = time.monotonic()
    for commit, frame in enumerate(frames, start=1):
        await copy.commit_replicated(commit, loads(frame))
        if collector == "gateway" and time.monotonic() - frozen >= GC_FREEZE_INTERVAL_S:
            gc.collect()
            gc.freeze()
            frozen = time.monotonic()
    spent = time.process_time() - began
    gc.set_threshold(*thresholds)
    gc.enable()
    await copy.close()
    return spent


async def _copy_memory(frames: Sequence[bytes]) -> int:
    """Bytes a gateway's copy holds after applying the feed, beyond the seeded ledger it
    started with (tracemalloc, after a collection: what it keeps, not what it passed
    through)."""
    copy = gateways_copy(network_ledger(), clock=lambda: NOW)
    copy.start()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for commit, frame in enumerate(frames, start=1):
            await copy.commit_replicated(commit, pickle.loads(frame))
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    await copy.close()
    return kept


def _check_placed(outcomes: Sequence[Outcome]) -> None:
    refused = [outcome for outcome in outcomes if isinstance(outcome, Refused)]
    if refused:
        raise SystemExit(f"{len(refused)} reserves refused, first: {refused[0].message}")


def measure(kind: str, parts: Sequence[str], count: int, groups: Sequence[int], repeats: int,
            profile: bool, vetted: bool = True, collector: str = "off",
            memory: bool = False) -> None:
    batch = reserve_commands(count, kind, vetted=vetted)
    best_ledger, outcomes = min((run_ledger(batch) for _ in range(repeats)),
                                key=lambda timed: timed[0])
    if "ledger" in parts:
        _report(kind, "ledger apply_batch", best_ledger, count)
        if profile:
            _profiled(lambda: run_ledger(batch))
    if "commit" in parts:
        for group_size in groups:
            spent = min(run_commit(batch, group_size) for _ in range(repeats))
            _report(kind, f"writer+commit G={group_size}", spent, count)
            if profile:
                _profiled(lambda size=group_size: run_commit(batch, size))  # type: ignore[misc]
    if "pickle" in parts:
        for group_size in groups:
            spent = min(run_pickle(batch, outcomes, group_size) for _ in range(repeats))
            _report(kind, f"pickle in+out G={group_size}", spent, count)
    if "follow" in parts:
        for group_size in groups:
            frames = committed_feed(batch, group_size)
            spent = min(asyncio.run(_follow(frames, collector)) for _ in range(repeats))
            label = "" if collector == "off" else f", collector {collector}"
            _report(kind, f"follow G={group_size}{label}", spent, count)
            if profile:  # the copy's work alone, not the leader's that made the frames
                _profiled(lambda frames=frames: asyncio.run(_follow(frames)))  # type: ignore[misc]
            if memory:
                kept = asyncio.run(_copy_memory(frames))
                print(f"{kind:8s} {f'follow G={group_size}':22s} {kept / 1e6:8.1f} MB kept by "
                      f"the copy ({kept / count:,.0f} bytes per command)", flush=True)


def _report(kind: str, part: str, seconds: float, count: int) -> None:
    print(f"{kind:8s} {part:22s} {seconds / count * 1e6:8.1f} us CPU per command", flush=True)


def _profiled(run: Callable[[], object]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


# ----- instructions (callgrind) ---------------------------------------------------------------

def workload(kind: str, part: str, count: int, vetted: bool = True) -> None:
    """The part over the first `count` of a fixed set of commands, untimed: what callgrind
    counts. Everything else (the ledger, the commands, their pickles and outcomes) is the same
    in both sizes, so it cancels out."""
    everything = reserve_commands(INSTRUCTION_SIZES[1], kind, vetted=vetted)
    if part == "ledger":
        run_ledger(everything[:count])
    elif part == "commit":
        run_commit(everything[:count], 16, sync=False)  # an fsync's instructions are the kernel's
    elif part == "follow":
        asyncio.run(_follow(committed_feed(everything, 16)[:count // 16]))
    else:
        wire, answers = _pickle_groups(everything, run_ledger(everything)[1], 16)
        _load_and_answer(wire[:count // 16], answers[:count // 16])


def count_instructions(kind: str, part: str, count: int, vetted: bool) -> int:
    form = "vetted" if vetted else "unvetted"
    return callgrind_instructions(
        ["bench.writer_step", "--workload", f"{kind}:{part}:{count}:{form}"], 1800)


def instructions(kinds: Sequence[str], parts: Sequence[str], small: int, large: int,
                 vetted: bool = True) -> None:
    """Instructions per command: (large run - small run) / (large - small)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: install it (Debian: apt-get install valgrind)")
    for kind in kinds:
        for part in parts:
            with ThreadPoolExecutor(2) as pool:  # the two runs are independent: one per core
                counts = list(pool.map(count_instructions, (kind, kind), (part, part),
                                       (small, large), (vetted, vetted)))
            per_command = (counts[1] - counts[0]) / (large - small)
            label = {"commit": "writer+commit G=16", "pickle": "pickle in+out G=16",
                     "follow": "follow G=16"}.get(
                part, part)
            print(f"{kind:8s} {label:22s} {per_command:10,.0f} instructions per command",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writer_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 16, 64],
                        help="commands per group commit (commit part)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions with callgrind (960 and 2,880 commands)")
    parser.add_argument("--unvetted", action="store_true",
                        help="bare Reserves, as one process applies them (not a gateway's)")
    parser.add_argument("--collector", choices=("off", "gateway"), default="off",
                        help="the cyclic collector during the follow part: off (as for the "
                             "other parts) or as in a gateway (frozen every second)")
    parser.add_argument("--memory", action="store_true",
                        help="the follow part also reports the memory the copy keeps "
                             "(tracemalloc, one more untimed run)")
    parser.add_argument("--workload", metavar="KIND:PART:COUNT:FORM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.commands < 1 or args.repeats < 1 or min(args.groups) < 1:
        parser.error("--commands, --repeats and --groups must be at least 1")
    if args.workload:
        kind, part, count, form = args.workload.split(":")
        workload(kind, part, int(count), vetted=form == "vetted")
        return
    if args.instructions:
        instructions(args.kinds, args.parts, *INSTRUCTION_SIZES, vetted=not args.unvetted)
        return
    for kind in args.kinds:
        measure(kind, args.parts, args.commands, args.groups, args.repeats, args.profile,
                vetted=not args.unvetted, collector=args.collector, memory=args.memory)


if __name__ == "__main__":
    main()
