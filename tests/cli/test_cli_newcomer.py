"""Small things a newcomer met: a released hold says so, a promise nobody can serve says why,
node kinds and lanes are checked before they reach the server, and --help states defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atp.cli import main
from tests.cli.test_cli_live import atpctl
from tests.support.atpd import AtpdProcess


@pytest.mark.integration
def test_released_hold_and_unserved_region(tmp_path: Path) -> None:
    with AtpdProcess(tmp_path / "data", "--sync", "off") as atpd:
        target = atpd.target
        atpctl(target, "nodes", "upsert", "DC1", "--kind", "dc", "--region", "EU",
               "--lane", "EU:2:5")  # fmt: skip
        atpctl(target, "nodes", "upsert", "OLD9", "--region", "US", "--lane", "US:1",
               "--inactive")  # fmt: skip
        atpctl(target, "stock", "adjust", "--sku", "SKU-1", "--node", "DC1", "--type",
               "RECEIPT", "--quantity", "20")  # fmt: skip

        # The kind, checked on the command line, was folded to upper case by the server.
        assert json.loads(atpctl(target, "nodes", "list", "--json").stdout)["nodes"][0][
            "kind"
        ] == "DC"

        placed = atpctl(target, "hold", "place", "--id", "QA-1", "--sku", "SKU-1", "--node",
                        "DC1", "--quantity", "10").stdout  # fmt: skip
        headers = ["HOLD", "SKU", "NODE", "QUANTITY", "FORCED", "STATE"]
        assert placed.splitlines()[0].split()[:6] == headers
        assert placed.splitlines()[1].split()[:6] == ["QA-1", "SKU-1", "DC1", "10", "no", "ACTIVE"]

        released = atpctl(target, "hold", "release", "QA-1").stdout
        assert released.splitlines()[1].split()[:6] == [
            "QA-1", "SKU-1", "DC1", "10", "no", "RELEASED"
        ]  # fmt: skip
        again = json.loads(atpctl(target, "hold", "release", "QA-1", "--json").stdout)
        assert again["state"] == "RELEASED" and "released_quantity" not in again

        # No node has a lane to APAC: said without --explain.
        nowhere = atpctl(target, "promise", "--line", "l1:SKU-1:8", "--region", "APAC").stdout
        assert "complete: no" in nowhere
        assert "why: no active node has a lane to region APAC" in nowhere
        # Only an inactive node serves US: named.
        inactive = atpctl(target, "promise", "--line", "l1:SKU-1:8", "--region", "US").stdout
        assert "no active node has a lane to region US (OLD9 inactive)" in inactive
        # A served region short of stock: pointed at --explain.
        short = atpctl(target, "promise", "--line", "l1:SKU-1:80", "--region", "EU").stdout
        assert "why: the 1 node serving EU (DC1)" in short and "--explain" in short
        # With --explain (or when complete) no extra line.
        explained = atpctl(target, "promise", "--line", "l1:SKU-1:8", "--region", "APAC",
                           "--explain").stdout  # fmt: skip
        assert "why:" not in explained and "no lane to APAC" in explained
        complete = atpctl(target, "promise", "--line", "l1:SKU-1:8", "--region", "EU").stdout
        assert "why:" not in complete


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--kind", "bad kind!"], "argument --kind: expected 1..32 characters of A-Z, 0-9 and _"),
        (["--kind", "X" * 33], "argument --kind: expected 1..32"),
        (["--kind", ""], "argument --kind: expected 1..32"),
        (["--lane", "EU"], "argument --lane: expected REGION:TRANSIT_DAYS[:COST]"),
        (["--lane", "EU:2:cheap"], "argument --lane: expected REGION:TRANSIT_DAYS[:COST]"),
        (["--lane", "EU:400"], "argument --lane: transit days are 0..365"),
    ],
)
def test_node_upsert_refuses_a_bad_kind_or_lane(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["nodes", "upsert", "DC9", *arguments]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert sum(1 for line in error.splitlines() if "error:" in line) == 1


def test_help_states_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    def help_of(*command: str) -> str:
        assert main([*command, "--help"]) == 0
        return " ".join(capsys.readouterr().out.split())

    upsert = help_of("nodes", "upsert")
    assert "(default: DC)" in upsert and "folded to upper case" in upsert
    assert "(default: 0)" in upsert  # a lane's cost
    reserve = help_of("reserve")
    assert "0 (the default) means the server's default TTL" in reserve
    assert "demand priority, higher is more important (default: 0)" in reserve
    assert "(default: 0)" in help_of("promise")
    released = help_of("hold", "release")
    assert "RELEASED" in released
