"""The cluster tests' etcd: a real member per test, on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import EtcdProcess, etcd_binary


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A running etcd; `.endpoint` is "127.0.0.1:PORT", and stop/kill/restart are for
    failover tests. No binary fails the test (never skips it): `make test` installs one."""
    try:
        binary = etcd_binary()
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)
    with EtcdProcess(tmp_path, binary) as member:
        yield member
