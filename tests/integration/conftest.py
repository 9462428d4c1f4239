"""Integration fixtures: one real atpd per test module (tests use unique ids, so they share it).

Every test that takes the `gateways` argument (the shared `module_atpd` and `api` do, and so
do the servers that modules start themselves) runs twice: against one atpd process
(`[gateways-0]`) and against `atpd --gateways 2`, a writer behind two gateway processes
(`[gateways-2]`). The argument is module-scoped, so a module's shared server starts once
per mode. A test that cannot run behind gateways (or, to save time, does not) is marked
`one_process(reason)` and runs as `[gateways-0]` only; the reason is in the marker, where a
reader of the test sees it.
`-k gateways-2` runs the gateway half alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.helpers import Api
from tests.support.atpd import AtpdProcess

# The --gateways of the two modes: one process, and a writer behind two gateways.
GATEWAY_MODES = (0, 2)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gateways" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("one_process")
    if marker is not None and not (marker.args or marker.kwargs.get("reason")):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: one_process needs a reason")
    modes = (0,) if marker is not None else GATEWAY_MODES
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
