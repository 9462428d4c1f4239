"""Small things a newcomer met: a released hold says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atp.cli import main
from tests.cli.test_cli_live import atpctl
from tests.support.atpd import AtpdProcess


@pytest.mark.integration
def test_released_hold(tmp_path: Path) -> None:
    with AtpdProcess(tmp_path / "data", "--sync", "off") as atpd:
        target = atpd.target
        atpctl(target, "nodes", "upsert", "DC1", "--region", "EU", "--lane", "EU:2:5")
        atpctl(target, "stock", "adjust", "--sku", "SKU-1", "--node", "DC1", "--type",
               "RECEIPT", "--quantity", "20")  # fmt: skip

        placed = atpctl(target, "hold", "place", "--id", "QA-1", "--sku", "SKU-1", "--node",
                        "DC1", "--quantity", "10").stdout  # fmt: skip
        assert placed.splitlines()[0].split()[:5] == ["HOLD", "STATE", "SKU", "NODE", "QUANTITY"]
        assert placed.splitlines()[1].split()[:5] == ["QA-1", "ACTIVE", "SKU-1", "DC1", "10"]

        released = atpctl(target, "hold", "release", "QA-1").stdout
        assert released.splitlines()[1].split()[:5] == ["QA-1", "RELEASED", "SKU-1", "DC1", "10"]
        again = json.loads(atpctl(target, "hold", "release", "QA-1", "--json").stdout)
        assert again["state"] == "RELEASED" and "released_quantity" not in again


def test_help_of_hold_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hold", "release", "--help"]) == 0
    assert "RELEASED" in capsys.readouterr().out
