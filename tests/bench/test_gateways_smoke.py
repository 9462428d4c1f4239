"""`python -m bench.gateways` end to end at smoke size: both counts run (seed, workloads,
audit), and the comparison names every workload with each count's calls/s, its ratio to the
reference, and the CPU per call of the writer and the gateways.

No assertion on the ratios themselves: at smoke size, on a shared machine, they mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_gateways_smoke(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    command = [sys.executable, "-m", "bench.gateways", "--counts", "0,1", "--duration", "0.25",
               "--workloads", "reserve,availability", "--results-dir", str(results_dir),
               "--writer-seconds", "0.5", "--smoke"]
    completed = subprocess.run(
        command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=140,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, output
    [summary_file] = results_dir.glob("*-gateways.json")
    summary = json.loads(summary_file.read_text())
    assert summary["counts"] == [0, 1] and summary["failed_counts"] == []
    assert set(summary["workloads"]) == {"reserve", "availability"}
    full_speed = summary["writer_at_full_speed"]
    assert full_speed["reserves"] > 0 and full_speed["refused"] == 0
    assert set(full_speed["projected_reserve_per_s_at_cores"]) == {"4", "8", "16", "32"}
    for name, row in summary["workloads"].items():
        assert row["0"]["ratio"] == 1.0, name
        assert row["1"]["calls_per_s"] > 0, name
        roles = row["1"]["cpu_us_per_unit_by_role"]
        assert roles["gateway"] > 0, (name, roles)
        assert set(row["1"]["projected_per_s_at_cores"]) == {"4", "8", "16", "32"}
    reserve_with_one = summary["workloads"]["reserve"]["1"]
    assert reserve_with_one["cpu_us_per_unit_by_role"]["writer"] > 0
    # The gateway's copy applied every reserve; its cost is part of the gateway's CPU.
    assert 0 < reserve_with_one["follow_cpu_us_per_unit"] < (
        reserve_with_one["cpu_us_per_unit_by_role"]["gateway"])
