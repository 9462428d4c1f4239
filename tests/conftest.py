"""Shared fixtures: a live atpd per test (integration) and grpc stubs bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.atpd import AtpdProcess


@pytest.fixture
def atpd(tmp_path: Path) -> Iterator[AtpdProcess]:
    """A fresh atpd on a free loopback port with its own LMDB data dir."""
    with AtpdProcess(tmp_path / "data") as server:
        yield server
