"""bench.run's projection of a workload's rate on machines with more cores, from the CPU per
unit measured here: the writer caps it, and every gateway pays for its copy of each write."""

from __future__ import annotations

import pytest

from bench.run import PROJECTED_CORES, projected_throughput


def test_without_copies_the_gateways_scale_with_the_cores_up_to_the_writer() -> None:
    rates = projected_throughput({"writer": 40.0, "gateway": 400.0})
    assert rates == {4: 7_500, 8: 17_500, 16: 25_000, 32: 25_000}  # 1e6 / 40 at most


def test_each_gateway_pays_its_copy_of_every_write() -> None:
    # Measured with 1 gateway: 400 µs a reserve, 20 of them keeping its copy. With g
    # gateways a reserve costs them 380 + g * 20 µs.
    rates = projected_throughput({"writer": 10.0, "gateway": 400.0}, follow_us=20.0,
                                 gateways=1)
    for cores in PROJECTED_CORES:
        gateways = cores - 1
        assert rates[cores] == round(gateways * 1e6 / (380 + gateways * 20))
    # The same copies measured with 2 gateways (40 µs for both): the same projection.
    assert projected_throughput({"writer": 10.0, "gateway": 420.0}, follow_us=40.0,
                                gateways=2) == rates
    # More cores add less and less: never past one copy's rate, 1e6 / 20.
    assert rates[32] < 1e6 / 20
    assert (rates[32] - rates[16]) / 16 < (rates[16] - rates[8]) / 8  # per core added


def test_reads_keep_no_copies_and_the_writer_still_caps() -> None:
    assert projected_throughput({"writer": 0.0, "gateway": 300.0}, follow_us=0.0,
                                gateways=3)[16] == round(15 * 1e6 / 300)
    assert projected_throughput({"writer": 100.0, "gateway": 10.0}, follow_us=5.0,
                                gateways=1)[32] == pytest.approx(10_000)
