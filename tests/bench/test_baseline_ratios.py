"""Ratios against the baselines run around each workload (bench.run --baseline each)."""

from __future__ import annotations

import argparse

from bench import report
from bench.run import _compare_rules, _rate_against_adjacent, _schedule


def _args(selected: list[str], baseline: str) -> argparse.Namespace:
    return argparse.Namespace(selected=["baseline", *selected], baseline=baseline)


def test_each_runs_a_baseline_before_every_workload_and_after_the_last() -> None:
    assert _schedule(_args(["reserve", "stream"], "each")) == [
        "baseline", "reserve", "baseline", "stream", "baseline"]
    assert _schedule(_args(["reserve", "stream"], "once")) == ["baseline", "reserve", "stream"]
    assert _schedule(_args([], "each")) == ["baseline"]


def test_a_workload_is_rated_against_the_mean_of_the_baselines_around_it() -> None:
    workloads = {
        "baseline": {"calls_per_s": 1000.0, "throughput_per_s": 1000.0},
        "reserve": {"calls_per_s": 600.0, "throughput_per_s": 600.0, "_baseline_before": 0},
    }
    runs = [1000.0, 1400.0]
    _rate_against_adjacent(workloads, runs)
    mean = report.add_ratios(workloads, runs)
    assert workloads["reserve"]["baseline_calls_per_s"] == 1200.0
    assert workloads["reserve"]["ratio_to_baseline"] == 0.5
    assert workloads["baseline"]["ratio_to_baseline"] == 1.0
    assert mean == 1200.0


def test_without_adjacent_baselines_the_mean_of_all_runs_is_used() -> None:
    workloads = {"batch": {"calls_per_s": 10.0, "throughput_per_s": 5000.0}}
    assert report.add_ratios(workloads, [2000.0, 3000.0]) == 2500.0
    assert workloads["batch"]["ratio_to_baseline"] == 2.0
    assert workloads["batch"]["calls_ratio_to_baseline"] == 0.004


def test_reserve_under_rules_is_compared_with_reserve_by_their_ratios() -> None:
    """Each against its own baselines: a noisy machine moves both halves alike."""
    result = {"workloads": {"reserve": {"ratio_to_baseline": 0.5},
                            "reserve_rules": {"ratio_to_baseline": 0.47}}}
    _compare_rules(result)
    assert result["rules_throughput_change"] == -0.06
    without = {"workloads": {"reserve": {"ratio_to_baseline": 0.5}}}
    _compare_rules(without)
    assert "rules_throughput_change" not in without
