"""Shared fixtures: a live atpd per test (integration) and grpc stubs bound to it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.atpd import AtpdProcess


@pytest.fixture
def atpd(tmp_path: Path) -> Iterator[AtpdProcess]:
    """A fresh atpd on a free loopback port with its own LMDB data dir."""
    with AtpdProcess(tmp_path / "data") as server:
        yield server


# atpd's default is `--gateways auto` (a writer and a gateway per core but one). Tests that
# start atpd without saying how many gateways mean one process, as they were written for:
# the integration tier says it (0 and 2, a fixture parameter), and tests/gateway/ checks
# the default itself with this variable removed.
os.environ.setdefault("ATP_GATEWAYS", "0")
