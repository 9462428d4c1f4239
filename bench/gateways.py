"""Gateway counts side by side: the same workloads against `atpd --gateways N` for each N
given, one fresh server per count, in one run; each workload's throughput with N gateways
as a ratio to its throughput with the first count, and the CPU per call by role.

    python -m bench.gateways                     # 0 and 1, reserve/stream/availability/promise
    python -m bench.gateways --rounds 3 --workloads stream   # ABA BAB...: medians of 3 rounds
    python -m bench.gateways --counts 0,7 --processes 8 --concurrency 64   # a 16-core machine

The first count is the reference (0: one process). Every run is a full bench.run (seed,
workloads, audit); its figures are in bench/results/ as usual, and this run's comparison in
bench/results/<stamp>-gateways.json. On a machine with many cores this is the script that
measures gateways for real (bench/README.md, "Gateways"): give the load generator enough
processes that it is not what limits the rate.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import statistics
import sys
import tempfile
from typing import Any

from bench import report, run, writer_cap

DEFAULT_WORKLOADS = "reserve,stream,availability,promise"
# The 2-core rule: no workload more than this much slower with gateways.
SLOWER_MOST = 0.15


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Run the same workloads against atpd --gateways N for each N; compare.")
    parser.add_argument("--counts", default="0,1",
                        help="gateway counts, the first the reference (0,1)")
    parser.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                        help=f"workloads ({DEFAULT_WORKLOADS})")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per workload (8)")
    parser.add_argument("--results-dir", default=os.path.join(os.path.dirname(__file__),
                                                              "results"))
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the counts this many times, in turn forwards and backwards "
                             "(0,1 then 1,0 ...), and report each figure's median: a ratio "
                             "is taken within its round, on a machine that drifts (1)")
    parser.add_argument("--writer-seconds", type=float, default=6.0,
                        help="after the counts, when reserve is among the workloads: the "
                             "writer driven at full speed for this long (bench.writer_cap; "
                             "0: skip) (6)")
    args, passed_on = parser.parse_known_args(argv)
    try:
        args.count_list = [int(count) for count in args.counts.split(",")]
    except ValueError:
        parser.error("--counts: comma-separated integers, e.g. 0,1")
    if len(args.count_list) < 2 or any(count < 0 for count in args.count_list):
        parser.error("--counts: at least two counts, each 0 or more")
    if args.rounds < 1:
        parser.error("--rounds: 1 or more")
    return args, passed_on


def run_count(count: int, args: argparse.Namespace, passed_on: list[str]) -> dict[str, Any]:
    """One full bench run with `count` gateways; its result document."""
    results_dir = tempfile.mkdtemp(prefix=f"atp-bench-g{count}-")
    print(f"bench.gateways: --gateways {count}", flush=True)
    code = run.main(["--workloads", args.workloads, "--duration", str(args.duration),
                     "--baseline", "once", "--skip-restart-check", "--gateways", str(count),
                     "--results-dir", results_dir, *passed_on])
    files = sorted(glob.glob(os.path.join(results_dir, "*.json")))
    if not files:
        raise SystemExit(f"bench.gateways: the run with --gateways {count} wrote no result "
                         f"(exit {code})")
    with open(files[-1], encoding="utf-8") as file:
        document: dict[str, Any] = json.load(file)
    document["exit_code"] = code
    return document


def compare(documents: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per workload: calls/s and CPU by role for each count, and the ratio to the first."""
    counts = list(documents)
    reference = documents[counts[0]]["workloads"]
    table: dict[str, Any] = {}
    for name, figures in reference.items():
        if name == "baseline":
            continue
        row: dict[str, Any] = {}
        for count in counts:
            other = documents[count]["workloads"].get(name)
            if other is None:
                continue
            row[str(count)] = {
                "calls_per_s": other["calls_per_s"],
                "ratio": round(other["calls_per_s"] / figures["calls_per_s"], 3)
                if figures["calls_per_s"] else None,
                "cpu_us_per_unit_by_role": other.get("cpu_us_per_unit_by_role", {}),
                "follow_cpu_us_per_unit": other.get("follow_cpu_us_per_unit", 0.0),
                "projected_per_s_at_cores": other.get("projected_per_s_at_cores", {}),
            }
        table[name] = row
    return table


def merged(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """One table from the rounds' tables: each figure the median over the rounds that have
    it, and each cell's ratios by round (a ratio is a count's rate over the reference's in
    the same round)."""
    if len(tables) == 1:
        return tables[0]
    table: dict[str, Any] = {}
    for name in tables[0]:
        row: dict[str, Any] = {}
        for count in tables[0][name]:
            cells = [t[name][count] for t in tables if count in t.get(name, {})]
            ratios = [cell["ratio"] for cell in cells if cell["ratio"] is not None]
            row[count] = {
                "calls_per_s": round(_median(cell["calls_per_s"] for cell in cells), 1),
                "ratio": round(_median(ratios), 3) if ratios else None,
                "ratios_by_round": [cell["ratio"] for cell in cells],
                "cpu_us_per_unit_by_role": _medians(
                    [cell["cpu_us_per_unit_by_role"] for cell in cells], 1),
                "follow_cpu_us_per_unit": round(
                    _median(cell["follow_cpu_us_per_unit"] for cell in cells), 1),
                "projected_per_s_at_cores": {
                    cores: int(rate) for cores, rate in _medians(
                        [cell["projected_per_s_at_cores"] for cell in cells], 0).items()},
            }
        table[name] = row
    return table


def _median(values: Any) -> float:
    return float(statistics.median(list(values)))


def _medians(mappings: list[dict[str, float]], digits: int) -> dict[str, float]:
    keys = [key for key in mappings[0] if all(key in mapping for mapping in mappings)]
    return {key: round(_median(mapping[key] for mapping in mappings), digits) for key in keys}


def writer_capacity(args: argparse.Namespace, passed_on: list[str],
                    table: dict[str, Any]) -> dict[str, Any] | None:
    """The writer at full speed (bench.writer_cap) and what its cost per reserve allows with
    the gateways' measured cost per Reserve: the projection bench.run makes from the writer's
    cost at this machine's small groups, made again from its cost when saturated, as the
    writer of a many-core machine is."""
    if args.writer_seconds <= 0 or "reserve" not in table:
        return None
    smoke = "--smoke" in passed_on
    figures = writer_cap.measure(drivers=1 if smoke else 2, in_flight=16 if smoke else 256,
                                 seconds=args.writer_seconds)
    writer_us = max(figures["writer_cpu_us_per_reserve"], 1e-3)
    copy_us = figures["copy_cpu_us_per_reserve"]
    # bench.run's projection from each count's gateway cost per call (its copy's cost taken
    # out) with the writer's and a copy's costs at full speed, as on a machine whose
    # gateways saturate the writer; the lowest of them, as the cautious figure.
    projections = [
        run.projected_throughput(
            {"writer": writer_us, "gateway": _per_call_us(cell) + copy_us},
            follow_us=copy_us, gateways=1)
        for count, cell in table["reserve"].items()
        if int(count) and cell["cpu_us_per_unit_by_role"].get("gateway")]
    figures["projected_reserve_per_s_at_cores"] = {
        cores: min(projection[cores] for projection in projections)
        for cores in run.PROJECTED_CORES} if projections else {}
    print(f"bench.gateways: the writer at full speed: {figures['reserves_per_s']:,} reserves/s "
          f"at {figures['writer_cpu_cores']:.2f} cores, {writer_us:,.1f} µs per reserve "
          f"({figures['reserves_per_frame']:.0f} per frame), a gateway's copy "
          f"{figures['copy_cpu_us_per_reserve']:,.1f} µs per reserve; Reserve projected "
          f"with them: " +
          ", ".join(f"{cores} cores {rate:,}" for cores, rate in
                    figures["projected_reserve_per_s_at_cores"].items()), flush=True)
    return figures


def _per_call_us(cell: dict[str, Any]) -> float:
    """A Reserve's gateway CPU paid once, by the gateway that took the call: the gateways'
    CPU per reserve less what all their copies spent on it."""
    return max(cell["cpu_us_per_unit_by_role"]["gateway"]
               - cell.get("follow_cpu_us_per_unit", 0.0), 0.0)


def print_table(table: dict[str, Any], counts: list[int]) -> list[str]:
    """Prints the comparison; returns the workloads more than SLOWER_MOST slower than the
    reference with any count."""
    slower: list[str] = []
    header = "".join(f"{f'--gateways {count}':>22}" for count in counts)
    print(f"bench.gateways: calls/s (ratio to --gateways {counts[0]})\n  {'workload':<14}{header}")
    for name, row in table.items():
        cells = []
        for count in counts:
            cell = row.get(str(count))
            if cell is None:
                cells.append(f"{'-':>22}")
                continue
            cells.append(f"{cell['calls_per_s']:>13,.0f} ({cell['ratio']:.2f})")
            if cell["ratio"] is not None and cell["ratio"] < 1 - SLOWER_MOST:
                slower.append(f"{name} with --gateways {count}")
        print(f"  {name:<14}{''.join(cells)}")
        for count in counts[1:]:
            cell = row.get(str(count))
            if cell and len(cell.get("ratios_by_round", ())) > 1:
                print(f"  {'':<14}--gateways {count} ratio by round: " + ", ".join(
                    "-" if ratio is None else f"{ratio:.2f}"
                    for ratio in cell["ratios_by_round"]) + " (the median above)")
        for count in counts[1:]:
            cell = row.get(str(count))
            if cell and cell["cpu_us_per_unit_by_role"]:
                roles = ", ".join(f"{role} {us:,.0f} µs" for role, us in
                                  cell["cpu_us_per_unit_by_role"].items())
                print(f"  {'':<14}--gateways {count} CPU per call: {roles} (of the "
                      f"gateways', their copies {cell.get('follow_cpu_us_per_unit', 0):,.1f} µs)")
    return slower


def main(argv: list[str] | None = None) -> int:
    args, passed_on = parse_args(argv)
    rounds = []
    for number in range(args.rounds):
        # Forwards, then backwards: a machine drifting one way over the run favours neither.
        order = args.count_list if number % 2 == 0 else args.count_list[::-1]
        if args.rounds > 1:
            print(f"bench.gateways: round {number + 1} of {args.rounds}", flush=True)
        documents = {count: run_count(count, args, passed_on) for count in order}
        rounds.append({count: documents[count] for count in args.count_list})
    table = merged([compare(documents) for documents in rounds])
    slower = print_table(table, args.count_list)
    capacity = writer_capacity(args, passed_on, table)
    failed = sorted({count for documents in rounds for count, document in documents.items()
                     if document["exit_code"] != 0})
    summary = {
        "schema": "atp-bench-gateways/1",
        "finished_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "counts": args.count_list,
        "rounds": args.rounds,
        "workloads": table,
        "slower_than_allowed": slower,
        "writer_at_full_speed": capacity,
        "failed_counts": failed,
    }
    report.ensure_dir(args.results_dir)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.results_dir, f"{stamp}-gateways.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)
    print(f"bench.gateways: written {path}")
    if slower:
        print(f"bench.gateways: more than {SLOWER_MOST:.0%} slower: {', '.join(slower)}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
