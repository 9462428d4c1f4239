"""The in-process benchmarks (bench.micro, bench.servicer) and the bare-gRPC floor
(bench.grpc_floor) run and report every figure.

No timing assertions: they only keep the tools that bench/README.md cites working.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", *args], check=False, cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.timeout(150)
def test_micro_reports_reserve_promise_and_server_side_times() -> None:
    output = _run("bench.micro", "--reserves", "300", "--promises", "50")
    assert re.search(r"reserve core .* us each", output), output
    assert re.search(r"promise core .* us each", output), output
    assert re.search(r"promise server-side\s+median\s+[\d.]+ us\s+p99\s+[\d.]+ us", output), output


@pytest.mark.timeout(150)
def test_servicer_bench_runs_every_mode_and_commits() -> None:
    output = _run("bench.servicer", "--reservations", "200")
    for mode in ("unary", "stream", "batch"):
        match = re.search(rf"^{mode}\s.* us CPU per reservation\s+\((\d+) group commits\)", output,
                          re.MULTILINE)
        assert match, output
        assert int(match.group(1)) >= 1, output


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_grpc_floor_measures_every_mode() -> None:
    output = _run("bench.grpc_floor", "--seconds", "1")
    for mode in ("unary", "unary-wait", "unary-reserve", "stream"):
        match = re.search(rf"^{mode}\s+([\d,]+) /s\s+server CPU\s+([\d.]+) us", output, re.MULTILINE)
        assert match, output
        assert int(match.group(1).replace(",", "")) > 0, output


@pytest.mark.timeout(150)
def test_instruction_count_workloads_run() -> None:
    """The workloads bench.instructions counts under valgrind (run here without it)."""
    output = _run("bench.instructions", "--workload", "300")
    assert "reserve: 300 of 300 answered in full" in output, output
    assert "unary: 300 of 300 answered in full" in output, output
    assert "stream: 300 of 300 answered in full" in output, output
    assert "promise: " in output, output


@pytest.mark.timeout(150)
def test_hot_position_reports_both_audits_and_restores_the_budget() -> None:
    output = _run("bench.hot_position", "--lines", "40", "--pairs", "50", "--rounds", "1")
    assert re.search(r"40 lines: recount every touch [\d.]+ us/command, budget \d+ lines a "
                     r"touch [\d.]+ us/command", output), output
