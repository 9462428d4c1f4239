"""Bad atpd flags and ATP_* variables: one clear line on stderr, exit code 2, no traceback.

Found by a review: --listen 127.0.0.1:99999 served on port 34463, --default-ttl -5 expired
every reservation at once, --journal-retention -1 wiped the journal on every commit, other
values ended in tracebacks, and the metrics bound to the --listen host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.atpd import AtpdProcess, free_port

START_TIMEOUT_S = 60


def run_atpd(data_dir: Path, *args: str, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """atpd with a clean ATP_* environment plus `env`; it must end by itself."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("ATP_")}
    return subprocess.run(
        [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0",
         "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
        env={**environment, **(env or {})},
    )


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit code 2 and one line on stderr, naming each of `names`; returns the line."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("atpd: "), lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--listen", "127.0.0.1:99999", "0 to 65535"),
        ("--listen", "127.0.0.1", "HOST:PORT"),
        ("--listen", "::1:50051", "[::1]:50051"),
        ("--default-ttl", "-5", "1s to 7d"),
        ("--default-ttl", "0", "1s to 7d"),
        ("--default-ttl", "1000000000", "1s to 7d"),
        ("--default-ttl", "8d", "1s to 7d"),
        ("--default-ttl", "abc", "1s to 7d"),
        ("--journal-retention", "-1", "negative"),
        ("--journal-retention-events", "-1", "at least 0"),
        ("--closed-retention", "7x", "unknown unit"),
        ("--idempotency-window", "0.5.1", "not a duration"),
        ("--map-size-mb", "-1", "from 1"),
        ("--map-size-mb", "0", "from 1"),
        ("--map-size-mb", str(2**70), "from 1"),
        ("--metrics-port", "99999", "0 to 65535"),
        ("--metrics-host", "not a host", "127.0.0.1"),
        ("--log-level", "BOGUS", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("--grace", "-1", "seconds"),
        ("--grace", "nan", "seconds"),
        ("--sync", "maybe", "on nor off"),
        ("--safety-stock-priority", "high", "whole number"),
        ("--safety-stock-priority", str(2**31), "2147483647"),
        ("--data-dir", "", "directory"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_flag_value_and_what_is_allowed(
    tmp_path: Path, flag: str, value: str, allowed: str,
) -> None:
    result = run_atpd(tmp_path / "data", flag, value)
    assert_refused(result, flag, repr(value), allowed)
    assert not (tmp_path / "data").exists(), "refused before touching the data dir"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ATP_DEFAULT_TTL", "abc"),
        ("ATP_DEFAULT_TTL", "-5"),
        ("ATP_LISTEN", "127.0.0.1:99999"),
        ("ATP_JOURNAL_RETENTION", "-1"),
        ("ATP_MAP_SIZE_MB", "-1"),
        ("ATP_METRICS_PORT", "99999"),
        ("ATP_METRICS_HOST", "[nope]"),
        ("ATP_LOG_LEVEL", "BOGUS"),
        ("ATP_GRACE", "soon"),
        ("ATP_SYNC", "maybe"),
        ("ATP_SAFETY_STOCK_PRIORITY", "1.5"),
    ],
)
def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, variable: str, value: str,
) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "atp.daemon", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
        env={**os.environ, variable: value},
    )
    assert_refused(result, f"{variable}={value}: ")


def test_an_unparsable_data_dir_variable_names_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "atp.daemon", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
        env={**os.environ, "ATP_DATA_DIR": ""}, cwd=tmp_path,
    )
    assert_refused(result, "ATP_DATA_DIR=: ")


def test_a_bad_variable_is_refused_even_when_its_flag_is_given(tmp_path: Path) -> None:
    result = run_atpd(tmp_path / "data", "--default-ttl", "900", env={"ATP_DEFAULT_TTL": "abc"})
    assert_refused(result, "ATP_DEFAULT_TTL=abc: ")


def test_an_unknown_flag_is_one_line_too(tmp_path: Path) -> None:
    assert_refused(run_atpd(tmp_path / "data", "--default-tll", "900"), "--default-tll")


def test_a_busy_metrics_port_is_one_line_naming_the_metrics_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # WARNING: whatever start-up logs at INFO is not what this test is about.
        result = run_atpd(tmp_path / "data", "--metrics-port", str(port), "--log-level", "WARNING")
    line = assert_refused(result)
    assert line == f"atpd: cannot serve metrics on 127.0.0.1:{port}: the address is in use"


@pytest.mark.integration
def test_good_values_from_flags_and_variables_start_atpd(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = AtpdProcess(
        tmp_path / "data",
        "--default-ttl", "15m", "--grace", "1.5", "--journal-retention", "10m", "--journal-retention-events", "10",
        "--map-size-mb", "64", "--sync", "OFF", "--log-level", "warning",
        "--metrics-port", str(metrics_port),
        env={"ATP_SAFETY_STOCK_PRIORITY": "50", "ATP_METRICS_HOST": "127.0.0.1",
             "ATP_DEFAULT_TTL": "7d"},
    ).start()
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=10,
        ) as reply:
            assert b"atp_commit_batches_total" in reply.read()
    finally:
        assert server.stop() == 0


def _ipv6_loopback_port() -> int | None:
    """A free port on ::1, or None where this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            return int(probe.getsockname()[1])
    except OSError:
        return None


@pytest.mark.integration
def test_ipv6_addresses_serve_grpc_and_metrics(tmp_path: Path) -> None:
    metrics_port = _ipv6_loopback_port()
    if metrics_port is None:
        pytest.skip("no IPv6 loopback")
    server = AtpdProcess(
        tmp_path / "data", "--listen", "[::1]:0", "--metrics-host", "::1",
        "--metrics-port", str(metrics_port),
    ).start()
    try:
        assert server.target.startswith("[::1]:")
        with urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=10) as reply:
            assert b"atp_commit_batches_total" in reply.read()
    finally:
        assert server.stop() == 0
