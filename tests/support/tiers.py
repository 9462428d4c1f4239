"""A pytest plugin for `make test`: a header line as the run enters each tier (each
tests/<tier>/ directory: unit, store, property, integration, crash, cli, cluster...), so that
the dots say what is running, when one pytest process runs every tier
(`TEST_WORKERS=0 make test`).

Loaded with `-p tests.support.tiers` (the Makefile does); it prints nothing under xdist (make
test's default), whose workers run the tiers interleaved."""

from __future__ import annotations

from collections import Counter

import pytest


def tier_of(nodeid: str) -> str:
    """tests/unit/test_x.py::test_y -> unit; a test file directly in tests/ -> tests."""
    parts = nodeid.split("::", 1)[0].split("/")
    if len(parts) >= 3 and parts[0] == "tests":
        return parts[1]
    return parts[0] if len(parts) > 1 else "tests"


class TierHeaders:
    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._tier: str | None = None
        self._counts: Counter[str] = Counter()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self._counts = Counter(tier_of(item.nodeid) for item in items)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        tier = tier_of(nodeid)
        if tier == self._tier:
            return
        self._tier = tier
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        count = self._counts.get(tier, 0)
        if reporter._tw.width_of_current_line:  # the dots of the tier before
            reporter.write("\n")
        reporter.write_line(f"-- {tier}: {count} test{'' if count == 1 else 's'}", bold=True)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        return
    config.pluginmanager.register(TierHeaders(config), "atp-tier-headers")
