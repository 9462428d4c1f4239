"""`python -m bench.scale --smoke` end to end: every figure is measured and the audit passes.

No assertion on the targets themselves (PASS/MISS depends on the machine and, at smoke size,
means nothing): this proves the scenario — two servers, seeding of stock and open lines,
SIGTERM + restart, both reserve runs, offline verify, the result files — works.
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
@pytest.mark.timeout(120)
def test_scale_smoke(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from bench.scale import FIGURES
    finally:
        sys.path.remove(str(REPO_ROOT))
    results_dir = tmp_path / "results"
    command = [sys.executable, "-m", "bench.scale", "--smoke", "--results-dir", str(results_dir)]
    completed = subprocess.run(
        command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=90,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, output

    json_files = sorted(results_dir.glob("scale-*.json"))
    assert len(json_files) == 1, output
    assert completed.stdout.strip().splitlines()[-1] == f"results: {json_files[0]}"
    assert json_files[0].with_suffix(".md").exists()
    result = json.loads(json_files[0].read_text())
    assert result["exit_code"] == 0
    assert result["config"]["smoke"] is True

    figures = result["figures"]
    assert set(figures) == set(FIGURES), output
    missing = [name for name in FIGURES if figures[name] is None]
    assert not missing, (missing, output)
    assert figures["positions"] == 2_000 * 5
    assert figures["open_lines"] == 4_000
    assert figures["reservations"] == 2_000
    for name in ("rss_after_seed_bytes", "rss_after_restart_bytes", "rss_after_reserve_bytes",
                 "restart_to_serving_s", "reserve_small_per_s", "reserve_big_per_s",
                 "reserve_ratio", "seed_seconds"):
        assert figures[name] > 0, name
    assert figures["peak_after_seed_bytes"] >= figures["rss_after_seed_bytes"]
    assert figures["verify_problems"] == 0

    for key in ("rss", "restart", "reserve", "peak_rss"):
        assert result["targets"][key]["status"] in ("PASS", "MISS"), result["targets"]

    for ledger in ("small", "big"):
        for name in ("baseline", "reserve"):
            workload = result[ledger][name]
            assert workload["ok_calls"] > 0, (ledger, name)
            assert workload["errors_total"] == 0, (ledger, name, workload["errors"])

    audit = result["audit"]
    assert audit["passed"] is True, audit
    assert audit["problems"] == []
    assert [stop["exit_code"] for stop in audit["stops"]] == [0, 0, 0]
