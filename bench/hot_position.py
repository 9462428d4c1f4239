"""The per-command audit on a hot position: Reserve + Release pairs on one position that
already holds --lines open lines, with the line recount on every touch (the budget made
unlimited) against limits.audit_lines_per_touch, alternating in one process.

    python -m bench.hot_position                  # 64 lines, 3,000 pairs, 3 rounds

CPU µs per command (time.process_time); compare the two columns of a round, not rounds."""

from __future__ import annotations

import argparse
import time

from atp import limits
from atp.ledger import Ledger, LedgerConfig, commands
from bench.micro import NOW

EVERY_TOUCH = 10**9  # a budget no position outgrows: recounted after every command


def cpu_us_per_command(budget: int, lines: int, pairs: int) -> float:
    kept = limits.audit_lines_per_touch
    limits.audit_lines_per_touch = budget
    try:
        ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
        ledger.execute(commands.UpsertNode("DC1"), NOW)
        ledger.execute(commands.AdjustStock("seed", (
            commands.Movement("A", "DC1", "RECEIPT", 10**6),)), NOW)
        for index in range(lines):
            ledger.execute(_reserve(f"open{index}"), NOW)
        work = [(_reserve(f"r{index}"), commands.Release(f"r{index}", f"q{index}"))
                for index in range(pairs)]
        started = time.process_time()
        for reserve, release in work:
            ledger.apply(reserve, NOW)
            ledger.apply(release, NOW)
        return (time.process_time() - started) / (2 * pairs) * 1e6
    finally:
        limits.audit_lines_per_touch = kept


def _reserve(reservation_id: str) -> commands.Reserve:
    return commands.Reserve(reservation_id, (commands.LineRequest("l1", "A", 1, "DC1"),))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_position", description=__doc__)
    parser.add_argument("--lines", type=int, default=64, help="open lines on the position")
    parser.add_argument("--pairs", type=int, default=3_000, help="Reserve + Release pairs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.lines < 0 or args.pairs < 1 or args.rounds < 1:
        parser.error("--lines must be 0 or more, --pairs and --rounds at least 1")
    for _ in range(args.rounds):
        every = cpu_us_per_command(EVERY_TOUCH, args.lines, args.pairs)
        budget = cpu_us_per_command(limits.audit_lines_per_touch, args.lines, args.pairs)
        print(f"{args.lines} lines: recount every touch {every:.1f} us/command, "
              f"budget {limits.audit_lines_per_touch} lines a touch {budget:.1f} us/command",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
