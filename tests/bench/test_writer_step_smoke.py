"""bench.writer_step runs every part for both kinds of Reserve and reports each figure, and
its callgrind workloads run (here without valgrind).

No timing assertions: they only keep the tool that bench/README.md cites working.
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
        [sys.executable, "-m", "bench.writer_step", *args], check=False, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.timeout(300)
def test_every_part_reports_cpu_per_command_for_both_kinds() -> None:
    output = _run("--commands", "64", "--repeats", "1", "--groups", "1", "16")
    parts = ["ledger apply_batch", "writer\\+commit G=1", "writer\\+commit G=16",
             "pickle in\\+out G=1", "pickle in\\+out G=16", "follow G=1", "follow G=16"]
    for kind in ("node", "sourced"):
        for part in parts:
            match = re.search(rf"^{kind}\s+{part}\s+([\d.]+) us CPU per command$", output,
                              re.MULTILINE)
            assert match, (kind, part, output)
            assert float(match.group(1)) > 0, output


@pytest.mark.timeout(300)
def test_the_follow_part_runs_under_a_gateways_collector() -> None:
    output = _run("--parts", "follow", "--kinds", "node", "--commands", "64", "--repeats", "1",
                  "--groups", "16", "--collector", "gateway")
    match = re.search(r"^node\s+follow G=16, collector gateway\s+([\d.]+) us CPU per command$",
                      output, re.MULTILINE)
    assert match and float(match.group(1)) > 0, output


@pytest.mark.timeout(300)
def test_the_follow_part_reports_the_memory_the_copy_keeps() -> None:
    output = _run("--parts", "follow", "--kinds", "node", "--commands", "64", "--repeats", "1",
                  "--groups", "16", "--memory")
    match = re.search(r"^node\s+follow G=16\s+([\d.]+) MB kept by the copy \(([\d,]+) bytes "
                      r"per command\)$", output, re.MULTILINE)
    assert match and int(match.group(2).replace(",", "")) > 0, output


@pytest.mark.timeout(300)
def test_the_callgrind_workloads_run() -> None:
    for part in ("ledger", "commit", "pickle", "follow"):
        _run("--workload", f"node:{part}:96:vetted")
    _run("--workload", "sourced:ledger:96:unvetted")


def test_bad_sizes_are_refused() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.writer_step", "--commands", "0"], check=False,
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2 and "at least 1" in completed.stderr
