"""`python -m bench.run --smoke` end to end: every workload answers OK calls and the audit passes.

No timing assertions: the figures depend on the machine. This only proves the load generator,
the runner, the result files and the audit work against a real atpd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("baseline", "availability", "promise", "reserve", "lifecycle", "mixed", "stream",
             "batch", "reserve_rules")


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_bench_smoke(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    # 0.25 s a workload (smoke: 0.5 s) is still hundreds of calls each; it saves 2 s here.
    command = [sys.executable, "-m", "bench.run", "--smoke", "--duration", "0.25",
               "--results-dir", str(results_dir)]
    completed = subprocess.run(
        command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=150,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, output

    json_files = sorted(results_dir.glob("*.json"))
    assert len(json_files) == 1, output
    result = json.loads(json_files[0].read_text())
    assert json_files[0].with_suffix(".md").exists()

    assert result["passed"] is True
    assert result["exit_code"] == 0
    assert result["workload_failures"] == {}
    assert set(result["workloads"]) == set(WORKLOADS), output
    for name in WORKLOADS:
        figures = result["workloads"][name]
        assert figures["ok_calls"] > 0, (name, figures)
        assert figures["ok_units"] > 0, (name, figures)
        assert figures["ratio_to_baseline"] is not None, name
    assert result["baseline_calls_per_s"] > 0
    # The with/without comparison of a Reserve under allocation rules (a figure, not a target).
    assert isinstance(result["rules_throughput_change"], float)

    audit = result["audit"]
    assert audit["passed"] is True, audit
    assert audit["problems_total"] == 0, audit
    assert audit["verify_problems"] == 0
    assert audit["server_exit_code"] == 0
    assert audit["positions_oversold"] == 0
    assert audit["reservations_stored"] >= audit["reservations_acked"] > 0
    assert audit["restart_positions_checked"] == audit["positions_stocked"]
