"""Integration fixtures: one real atpd per test module (tests use unique ids, so they share it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.helpers import Api
from tests.support.atpd import AtpdProcess


@pytest.fixture(scope="module")
def module_atpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtpdProcess]:
    """A real atpd shared by the tests of one module; SIGTERM at the end must exit 0."""
    server = AtpdProcess(tmp_path_factory.mktemp("atpd") / "data").start()
    try:
        yield server
    finally:
        if server.process is not None:
            code = server.stop()
            assert code == 0, f"atpd exited {code}; see {server.log_path}"


@pytest.fixture(scope="module")
def api(module_atpd: AtpdProcess) -> Iterator[Api]:
    client = Api(module_atpd.channel())
    try:
        yield client
    finally:
        client.close()
