"""Integration fixtures: one real atpd per test module (tests use unique ids, so they share it).

Every test that takes the `gateways` argument (the shared `module_atpd` and `api` do, and so
do the servers that modules start themselves) runs twice: against one atpd process
(`[gateways-0]`) and against `atpd --gateways 2`, a writer behind two gateway processes
(`[gateways-2]`). The argument is module-scoped, so a module's shared server starts once
per mode. `-k gateways-2` runs the gateway half alone.

Two markers keep a test to `[gateways-0]`, each with its reason where a reader sees it:
`one_process(reason)` for a test that cannot run behind gateways (a flag they refuse), and
`one_process_for_time(reason)` for one that can, but starts servers of its own to check
what tests/gateway already checks behind gateways, or a ledger rule gateways do not change:
left out of `make test` to keep it near its time budget. ATP_TEST_GATEWAYS_ALL=1 runs those
in both modes too (docs/gateways.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.helpers import Api
from tests.support.atpd import AtpdProcess

# The --gateways of the two modes: one process, and a writer behind two gateways.
GATEWAY_MODES = (0, 2)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gateways" not in metafunc.fixturenames:
        return
    modes = GATEWAY_MODES
    for name in ("one_process", "one_process_for_time"):
        marker = metafunc.definition.get_closest_marker(name)
        if marker is None:
            continue
        if not (marker.args or marker.kwargs.get("reason")):
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: {name} needs a reason")
        if name == "one_process" or not os.environ.get("ATP_TEST_GATEWAYS_ALL"):
            modes = (0,)
    metafunc.parametrize("gateways", modes, ids=lambda count: f"gateways-{count}",
                         scope="module")


@pytest.fixture(scope="module")
def module_atpd(tmp_path_factory: pytest.TempPathFactory, gateways: int,
                ) -> Iterator[AtpdProcess]:
    """A real atpd shared by the tests of one module (of one mode); SIGTERM at the end must
    exit 0."""
    server = AtpdProcess(tmp_path_factory.mktemp("atpd") / "data", gateways=gateways).start()
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
