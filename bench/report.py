"""Merging worker results into workload figures, and writing the JSON, markdown and PNG."""

from __future__ import annotations

import collections
import json
import math
import os
from array import array
from typing import Any

PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


def percentile(sorted_values: Any, q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(values: Any) -> dict[str, float]:
    ordered = sorted(values)
    summary = {name: round(percentile(ordered, q), 3) for name, q in PERCENTILES}
    summary["max"] = round(ordered[-1], 3) if ordered else 0.0
    summary["mean"] = round(sum(ordered) / len(ordered), 3) if ordered else 0.0
    return summary


def merge(
    name: str, description: str, unit: str, worker_results: list[dict[str, Any]],
    server_cpu_s: float,
) -> dict[str, Any]:
    """One workload's figures from its workers' results (latencies kept separately)."""
    ops: dict[str, dict[str, Any]] = {}
    counters: collections.Counter[str] = collections.Counter()
    all_latencies = array("d")
    errors: collections.Counter[str] = collections.Counter()
    item_errors: collections.Counter[str] = collections.Counter()
    ok = units = 0
    for result in worker_results:
        counters.update(result["counters"])
        for op, stats in result["ops"].items():
            merged = ops.setdefault(op, {"ok": 0, "units": 0, "errors": collections.Counter(),
                                         "item_errors": collections.Counter(),
                                         "latencies": array("d")})
            merged["ok"] += stats["ok"]
            merged["units"] += stats["units"]
            merged["errors"].update(stats["errors"])
            merged["item_errors"].update(stats["item_errors"])
            merged["latencies"].extend(stats["latencies_ms"])
            ok += stats["ok"]
            units += stats["units"]
            errors.update(stats["errors"])
            item_errors.update(stats["item_errors"])
            all_latencies.extend(stats["latencies_ms"])
    elapsed = (
        max(r["ended"] for r in worker_results) - min(r["started"] for r in worker_results)
        if worker_results else 0.0
    )
    rate = (lambda n: n / elapsed if elapsed > 0 else 0.0)
    figures: dict[str, Any] = {
        "description": description,
        "unit": unit,
        "elapsed_s": round(elapsed, 3),
        "ok_calls": ok,
        "ok_units": units if unit != "calls" else ok,
        "calls_per_s": round(rate(ok), 1),
        "throughput_per_s": round(rate(units if unit != "calls" else ok), 1),
        "latency_ms": latency_summary(all_latencies),
        "errors": dict(errors),
        "item_errors": dict(item_errors),
        "errors_total": sum(errors.values()) + sum(item_errors.values()),
        "server_cpu_s": round(server_cpu_s, 3),
        "server_cpu_share": round(server_cpu_s / elapsed, 3) if elapsed > 0 else 0.0,
        "client_cpu_s": round(sum(r["client_cpu_s"] for r in worker_results), 3),
        "calls_started": sum(r["calls_started"] for r in worker_results),
        "counters": dict(counters),
        "ops": {
            op: {
                "ok": stats["ok"],
                "units": stats["units"],
                "per_s": round(rate(stats["ok"]), 1),
                "latency_ms": latency_summary(stats["latencies"]),
                "errors": dict(stats["errors"]),
                "item_errors": dict(stats["item_errors"]),
            }
            for op, stats in sorted(ops.items())
        },
    }
    figures["_latencies"] = all_latencies  # for the plot; dropped from the JSON
    return figures


def add_ratios(workloads: dict[str, dict[str, Any]], baseline_runs: list[float]) -> float:
    """Sets ratio_to_baseline (throughput / baseline calls/s) on every workload, each against
    its own baseline_calls_per_s when it has one (the baselines run around it), else against
    the mean of all baseline runs; returns that mean."""
    mean = sum(baseline_runs) / len(baseline_runs) if baseline_runs else 0.0
    for name, figures in workloads.items():
        base = figures["calls_per_s"] if name == "baseline" else figures.get(
            "baseline_calls_per_s", mean)
        figures["ratio_to_baseline"] = (
            round(figures["throughput_per_s"] / base, 3) if base else None
        )
        figures["calls_ratio_to_baseline"] = (
            round(figures["calls_per_s"] / base, 3) if base else None
        )
    return round(mean, 1)


def write_json(path: str, result: dict[str, Any]) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not str(k).startswith("_")}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    with open(path, "w", encoding="utf-8") as out:
        json.dump(clean(result), out, indent=2, sort_keys=False)
        out.write("\n")


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def errors_text(figures: dict[str, Any]) -> str:
    parts = [f"{code} {count}" for code, count in sorted(figures["errors"].items())]
    parts += [f"{code} {count} (items)" for code, count in sorted(figures["item_errors"].items())]
    return ", ".join(parts) if parts else "0"


def _baseline_line(result: dict[str, Any]) -> str:
    runs = result.get("baseline_runs_calls_per_s") or []
    line = f"- baseline (Health/Check): **{_fmt(result['baseline_calls_per_s'])} calls/s**"
    if len(runs) > 1:
        return (line + f", mean of {len(runs)} runs ({_fmt(min(runs))} .. {_fmt(max(runs))}: "
                + ", ".join(_fmt(run, 0) for run in runs) + "), one before each workload and "
                "one after the last; ratio = workload throughput / the mean of the baselines "
                "just before and after it (the table's baseline row is the first run)")
    return line + "; ratio = workload throughput / baseline calls/s"


def markdown(result: dict[str, Any]) -> str:
    config = result["config"]
    host = result["host"]
    lines = [
        f"# atpd bench — {result['started_at']}",
        "",
        (f"- host: {host['hostname']}, {host['cpus']} CPUs, load average before the run "
         f"{host['loadavg_before']}, Python {host['python']}, grpcio {host['grpcio']}"
         + (f", commit {result['git_commit'][:12]}" if result.get("git_commit") else "")),
        (f"- server: fresh LMDB data dir, sync {config['sync']}; seeded "
         f"{result['seed']['nodes']} nodes, {result['seed']['positions']:,} positions in "
         f"{result['seed']['seconds']} s"),
        (f"- load: {config['processes']} processes x {config['concurrency']} in flight, "
         f"{config['duration']} s per workload (at most {config['max_calls']:,} calls), "
         f"{config['skus']:,} SKUs x {config['nodes']} nodes, {config['hot_share']:.0%} of "
         f"calls on the {config['hot_skus']} hottest SKUs; batch {config['batch_size']} "
         f"(x{config['batch_concurrency']} in flight), {config['streams']} streams per process"),
        _baseline_line(result),
        "",
        ("| workload | throughput /s | unit | x baseline | p50 ms | p95 ms | p99 ms | max ms "
         "| OK | errors | server CPU s (cores) | client CPU s |"),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, figures in result["workloads"].items():
        lat = figures["latency_ms"]
        ratio = figures["ratio_to_baseline"]
        unit = figures["unit"]
        throughput = _fmt(figures["throughput_per_s"])
        if unit != "calls":
            throughput += f" ({_fmt(figures['calls_per_s'])} calls/s)"
        lines.append(
            f"| {name} | {throughput} | {unit} | {'' if ratio is None else f'{ratio:.3f}'} "
            f"| {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} "
            f"| {figures['ok_calls']:,} | {errors_text(figures)} "
            f"| {figures['server_cpu_s']:.2f} ({figures['server_cpu_share']:.2f}) "
            f"| {figures['client_cpu_s']:.2f} |"
        )
    failed = result.get("workload_failures") or {}
    for name, text in failed.items():
        lines.append(f"| {name} | FAILED: {text.strip().splitlines()[-1]} | | | | | | | | | | |")
    lines += ["", "## Per operation", "",
              "| workload | operation | OK | /s | p50 ms | p99 ms | errors |",
              "|---|---|---:|---:|---:|---:|---|"]
    for name, figures in result["workloads"].items():
        for op, stats in figures["ops"].items():
            lat = stats["latency_ms"]
            errors = ", ".join(f"{c} {n}" for c, n in sorted(stats["errors"].items())) or "0"
            lines.append(f"| {name} | {op} | {stats['ok']:,} | {_fmt(stats['per_s'])} "
                         f"| {lat['p50']:.2f} | {lat['p99']:.2f} | {errors} |")
    audit = result.get("audit") or {}
    lines += ["", f"## Audit: {'PASSED' if audit.get('passed') else 'FAILED'}", ""]
    if audit:
        lines += [
            f"- server exit code on SIGTERM: {audit.get('server_exit_code')}",
            f"- `atp.persistence.verify.verify`: {audit.get('verify_problems')} problems",
            (f"- positions stored {audit.get('positions_stored', 0):,}, stocked "
             f"{audit.get('positions_stocked', 0):,}, oversold "
             f"{audit.get('positions_oversold')}"),
            (f"- reservations acknowledged {audit.get('reservations_acked', 0):,}, stored "
             f"{audit.get('reservations_stored', 0):,}"),
            (f"- units acknowledged as fulfilled {audit.get('units_fulfilled_acked', 0):,}, "
             f"on_hand shipped {audit.get('on_hand_shipped', 0):,}"),
        ]
        if "restart_positions_checked" in audit:
            lines.append(
                f"- restarted server (loaded in {audit.get('restart_seconds')} s): "
                f"{audit['restart_positions_checked']:,} positions served, equal to the records, "
                f"{audit.get('restart_positions_short', 0)} short; exit code "
                f"{audit.get('restart_exit_code')}"
            )
        for problem in audit.get("problems", []):
            lines.append(f"- PROBLEM: {problem}")
        extra = audit.get("problems_total", 0) - len(audit.get("problems", []))
        if extra > 0:
            lines.append(f"- ... and {extra} more problems")
    notes = result.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def plot(path: str, result: dict[str, Any]) -> str | None:
    """Latency percentiles and throughput ratios as a PNG; a note instead without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("matplotlib is not installed: no latency plot "
                "(pip install -e '.[bench]' to get one)")
    workloads = result["workloads"]
    names = list(workloads)
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    # Percentiles on evenly spaced ticks, so the tail gets as much room as the median.
    qs = (10, 25, 50, 75, 90, 95, 99, 99.9, 100)
    labels = ["p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "max"]
    for name in names:
        ordered = sorted(workloads[name].get("_latencies", ()))
        if not ordered:
            continue
        left.plot(range(len(qs)), [percentile(ordered, q) for q in qs], marker="o",
                  markersize=3, label=name)
    left.set_xticks(range(len(qs)), labels)
    left.set_yscale("log")
    left.set_xlabel("percentile")
    left.set_ylabel("latency (ms, log scale)")
    left.set_title("Latency by percentile (per call / stream message)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, ncol=2, loc="lower right")
    ratios = [workloads[n].get("ratio_to_baseline") or 0.0 for n in names]
    bars = right.bar(names, ratios, color="tab:blue")
    for bar, name in zip(bars, names):
        right.annotate(f"{workloads[name]['throughput_per_s']:,.0f}/s",
                       (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=7)
    right.set_ylabel("throughput / baseline calls/s")
    right.set_title("Throughput as a ratio of the empty-call baseline")
    right.tick_params(axis="x", rotation=30)
    right.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"atpd bench {result['started_at']} (sync {result['config']['sync']}, "
                    f"{result['config']['processes']}x{result['config']['concurrency']})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def ensure_dir(path: str) -> None:
    os.makedirs(path, exist_ok=True)
