"""`python -m bench.soak --smoke` end to end: the load runs, samples are taken, both restarts
are timed, and the result files hold the samples and the summary.

No assertion on the targets (PASS/FAIL at smoke size means nothing: the retention windows
are barely reached): this proves the soak's machinery works against a real atpd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LIFECYCLES = 1_500


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_soak_smoke(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    command = [sys.executable, "-m", "bench.soak", "--smoke", "--lifecycles", str(LIFECYCLES),
               "--skus", "50", "--results-dir", str(results_dir)]
    completed = subprocess.run(
        command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=40,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, output

    json_files = sorted(results_dir.glob("soak-*.json"))
    assert len(json_files) == 1, output
    assert completed.stdout.strip().splitlines()[-1] == f"results: {json_files[0]}"
    result = json.loads(json_files[0].read_text())
    assert result["exit_code"] == 0
    assert result["config"]["smoke"] is True
    assert result["sanity_problems"] == [], output

    tally = result["tally"]
    assert tally["lifecycles_done"] == LIFECYCLES
    assert set(tally["outcomes_ok"]) == {"fulfill", "release", "expire"}, tally
    for method in ("ReserveBatch", "Commit", "Fulfill", "Release", "AdjustStock"):
        assert tally["calls_ok"][method] > 0, (method, tally)

    samples = result["samples"]
    assert len(samples) >= 4, output
    assert {sample["phase"] for sample in samples} == {"warm-up", "main"}
    assert samples[-1]["lifecycles"] == LIFECYCLES
    for sample in samples:
        assert sample["rss_bytes"] > 0, sample
        assert sample["data_file_allocated_bytes"] > 0, sample
        assert sample["map_used_bytes"] > 0, sample
        assert sample["lmdb"]["entries"]["positions"] == 50 * 3, sample

    for which in ("first", "last"):
        restart = result["restarts"][which]
        assert restart["median_s"] > 0, restart
        assert [stop["exit_code"] for stop in restart["stops"]] == [0], restart
    assert result["final_stop"]["exit_code"] == 0

    assert result["summary"]["lifecycles_done"] == LIFECYCLES
    assert set(result["targets"]) == {"rss", "map_used", "throughput", "restart"}
    for entry in result["targets"].values():
        assert entry["status"] in ("PASS", "FAIL", "n/a"), entry
    assert result["targets"]["restart"]["status"] in ("PASS", "FAIL")
    png = result["files"]["png"]
    assert png is None or Path(png).stat().st_size > 0
