"""GetServerInfo against a real atpd started with non-default flags, through the client and
through `atpctl server info` (text and --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atp.client import Client
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("atpctl")
ATPCTL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "atp.cli"]


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory, gateways: int,
               ) -> Iterator[AtpdProcess]:
    directory = tmp_path_factory.mktemp("info")
    with AtpdProcess(directory / "data", "--sync", "off", "--default-ttl", "2h",
                     "--safety-stock-priority", "50", "--journal-retention", "2d",
                     "--journal-retention-events", "5000", "--closed-retention", "3d",
                     "--idempotency-window", "12h", "--concurrent-rpcs-max", "64",
                     env={"ATP_BUILD_COMMIT": "0123abcd"}, gateways=gateways) as server:
        yield server


def test_the_flags_come_back(configured: AtpdProcess) -> None:
    with Client(configured.target) as client:
        info = client.get_server_info()
    assert (info.default_ttl_seconds, info.ttl_seconds_max) == (7200, 7 * 86400)
    assert info.safety_stock_priority_min == 50
    assert (info.journal_retention_seconds, info.journal_retention_events) == (2 * 86400, 5000)
    assert (info.closed_retention_seconds, info.idempotency_window_seconds) == (
        3 * 86400, 12 * 3600)
    assert info.limits.concurrent_rpcs_max == 64
    assert (info.limits.lines_max, info.limits.id_bytes_max) == (500, 128)
    assert (info.role, info.cluster, info.authentication) == ("standalone", "", "none")
    assert info.build.git_commit == "0123abcd"
    assert info.build.version and info.build.grpc_version and info.build.python_version


def test_a_reservation_without_ttl_gets_the_default_reported(configured: AtpdProcess) -> None:
    with Client(configured.target) as client:
        ttl = client.get_server_info().default_ttl_seconds
        client.upsert_node({"node_id": "DC1"})
        client.adjust_stock([{"sku": "A", "node_id": "DC1", "type": "RECEIPT", "quantity": 5}],
                            request_id="info-stock")
        held = client.reserve("info-r1", [{"line_id": "l1", "sku": "A", "quantity": 1,
                                           "node_id": "DC1"}])
    assert held.expire_time.ToSeconds() - held.create_time.ToSeconds() == ttl


def atpctl(target: str, *arguments: str) -> str:
    result = subprocess.run(
        [*ATPCTL, "--target", target, *arguments], capture_output=True, text=True,
        timeout=60, check=False, env=os.environ)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_atpctl_server_info(configured: AtpdProcess, gateways: int) -> None:
    text = atpctl(configured.target, "server", "info")
    assert "version:" in text and "(commit 0123abcd)" in text
    assert "default TTL:        2h (7200 s)" in text
    assert "safety stock:       usable by priority >= 50" in text
    assert "role:               standalone" in text
    assert ("processes:          " + (f"a writer and {gateways} gateways (" if gateways
                                       else "one\n")) in text
    assert "journal retention:  2d (172800 s), at least the newest 5000 events" in text
    assert "authentication:     none" in text
    document = json.loads(atpctl(configured.target, "server", "info", "--json"))
    assert document["default_ttl_seconds"] == 7200
    assert document["safety_stock_priority_min"] == 50
    assert document["limits"]["lines_max"] == 500
    assert document["build"]["git_commit"] == "0123abcd"
