"""The Node.js example (examples/node/walkthrough.js) against a live atpd, with the protos
loaded only from the proto bundle. Skipped where node/npm are missing or `npm ci` fails."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.atpd import AtpdProcess, free_port
from tests.support.node import node_with_packages

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    return node_with_packages()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make proto-bundle` builds, into a tmp dir."""
    spec = importlib.util.spec_from_file_location(
        "proto_bundle", ROOT / "scripts" / "proto_bundle.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("bundle") / "proto-bundle"
    module.build(out)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtpdProcess]:
    with AtpdProcess(tmp_path_factory.mktemp("atpd") / "data", "--sync", "off") as atpd:
        yield atpd


def walkthrough(node: str, target: str, bundle: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATP_TOKEN", "ATP_TARGET")}
    return subprocess.run(
        [node, "walkthrough.js", "--target", target, "--bundle", str(bundle)],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def test_the_node_walkthrough_runs_against_atpd(
    node: str, bundle: Path, server: AtpdProcess
) -> None:
    done = walkthrough(node, server.target, bundle)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout
    for expected in (
        "health       SERVING",
        "complete true",
        "(same id, same request): same reservation, reserved still 3",
        "with other lines: ALREADY_EXISTS",
        "100 units: FAILED_PRECONDITION reason INSUFFICIENT_AVAILABILITY",
        "violation INSUFFICIENT_AVAILABILITY line l1:",
        "COMMITTED",
        "FULFILLED: on_hand 7, available 7",
        "RESERVATION_CREATED",
        "ok: every step behaved as expected",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    # Ids are per run: a second run on the same ledger passes too.
    again = walkthrough(node, server.target, bundle)
    assert again.returncode == 0, f"stdout:\n{again.stdout}\nstderr:\n{again.stderr}"


def test_the_node_walkthrough_fails_when_atpd_is_unreachable(node: str, bundle: Path) -> None:
    done = walkthrough(node, f"127.0.0.1:{free_port()}", bundle)
    assert done.returncode == 1
    assert "FAILED: 14 UNAVAILABLE" in done.stderr
    assert "ok:" not in done.stdout
