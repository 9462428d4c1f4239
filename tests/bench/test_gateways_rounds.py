"""bench.gateways --rounds: each count runs once a round, and the comparison takes each
figure's median over the rounds, each ratio taken within its own round."""

from __future__ import annotations

from typing import Any

import pytest

from bench import gateways


def _cell(calls: float, ratio: float | None, writer: float, copy: float,
          projected: int) -> dict[str, Any]:
    return {"calls_per_s": calls, "ratio": ratio,
            "cpu_us_per_unit_by_role": {"writer": writer, "gateway": 2 * writer},
            "follow_cpu_us_per_unit": copy, "projected_per_s_at_cores": {"16": projected}}


def _round(reference: float, split: float, writer: float) -> dict[str, Any]:
    return {"stream": {"0": _cell(reference, 1.0, 0.0, 0.0, 0),
                       "1": _cell(split, round(split / reference, 3), writer, writer / 5,
                                  int(1e6 / writer))}}


def test_each_figure_is_the_median_of_its_rounds_and_ratios_stay_within_a_round() -> None:
    # The machine slows down over the run: both counts' rates fall, their ratio holds.
    rounds = [_round(4000, 3400, 100), _round(3000, 2700, 120), _round(2000, 1600, 110)]
    cell = gateways.merged(rounds)["stream"]["1"]
    assert cell["ratios_by_round"] == [0.85, 0.9, 0.8]
    assert cell["ratio"] == 0.85  # not 2700 / 3000, the medians' ratio
    assert cell["calls_per_s"] == 2700
    assert cell["cpu_us_per_unit_by_role"] == {"writer": 110, "gateway": 220}
    assert cell["follow_cpu_us_per_unit"] == 22
    assert cell["projected_per_s_at_cores"] == {"16": 9090}
    assert gateways.merged(rounds)["stream"]["0"]["ratio"] == 1.0


def test_one_round_is_its_own_table() -> None:
    table = _round(4000, 3400, 100)
    assert gateways.merged([table]) is table


@pytest.mark.parametrize("rounds", ["0", "-1"])
def test_rounds_must_be_one_or_more(rounds: str) -> None:
    with pytest.raises(SystemExit):
        gateways.parse_args(["--rounds", rounds])
