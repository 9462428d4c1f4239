"""atp.v1.Server/GetServerInfo, in process: the flags' values come back, the role follows
the writer, the authentication mode names kinds of credentials, never a secret."""

from __future__ import annotations

import asyncio
import gc
import platform

import grpc
import pytest

from atp import __version__, limits
from atp.bootstrap import AtpServer, ServerConfig
from atp.client import AsyncClient
from atp.ledger import LedgerConfig
from atp.server import server_info
from atp.server.server_info import authentication_mode, git_commit
from atp.v1 import server_pb2

NOW = 1_800_000_000.0


def served_info(config: ServerConfig) -> server_pb2.ServerInfo:
    async def scenario() -> server_pb2.ServerInfo:
        server = AtpServer(config)
        await server.start()
        try:
            async with AsyncClient(f"127.0.0.1:{server.port}") as client:
                return await client.get_server_info()
        finally:
            await server.stop()
            gc.unfreeze()

    return asyncio.run(scenario())


def test_the_configuration_comes_back() -> None:
    config = ServerConfig(
        listen="127.0.0.1:0", data_dir=None, clock=lambda: NOW,
        ledger=LedgerConfig(default_ttl_seconds=1234, safety_stock_priority_min=7,
                            closed_retention_s=3 * 86400, idempotency_window_s=7200),
        journal_retention_s=5 * 86400, journal_retention_events=99, concurrent_rpcs_max=42)
    info = served_info(config)
    assert (info.default_ttl_seconds, info.ttl_seconds_max) == (1234, limits.ttl_seconds_max)
    assert info.safety_stock_priority_min == 7
    assert (info.journal_retention_seconds, info.journal_retention_events) == (5 * 86400, 99)
    assert (info.closed_retention_seconds, info.idempotency_window_seconds) == (3 * 86400, 7200)
    assert (info.role, info.cluster, info.leader, info.sync_replicas) == ("standalone", "", "", 0)
    assert (info.gateways, info.gateways_following) == (0, 0)  # one process
    assert (info.authentication, info.tls, info.client_certificates_required) == (
        "none", False, False)
    assert info.start_time.ToSeconds() == int(NOW)
    assert info.limits == server_pb2.ServerLimits(
        id_bytes_max=128, lines_max=500, quantity_max=10**12, batch_requests_max=1000,
        message_bytes_max=4 * 1024 * 1024, page_size_max=1000, page_size_default=100,
        reason_bytes_max=1024, concurrent_rpcs_max=42, pending_mutations_max=20_000,
        days_max=365, horizon_days_max=3660, stream_in_flight_max=1000)
    assert info.build.version == __version__
    assert info.build.python_version == platform.python_version()
    assert info.build.grpc_version == grpc.__version__
    assert info.build.protobuf_version


def test_a_follower_names_its_leader_and_sync_replicas_make_a_leader() -> None:
    follower = served_info(ServerConfig(listen="127.0.0.1:0", data_dir=None,
                                        follow="127.0.0.1:1"))
    assert (follower.role, follower.leader) == ("follower", "127.0.0.1:1")
    leader = served_info(ServerConfig(listen="127.0.0.1:0", data_dir=None, sync_replicas=1))
    assert (leader.role, leader.sync_replicas) == ("leader", 1)


@pytest.mark.parametrize(("policy", "tokens", "client_ca", "mode"), [
    ("", "tokens.json", True, "none"),
    ("policy.json", "tokens.json", False, "token"),
    ("policy.json", "", True, "mtls"),
    ("policy.json", "tokens.json", True, "token+mtls"),
])
def test_authentication_mode(policy: str, tokens: str, client_ca: bool, mode: str) -> None:
    assert authentication_mode(policy, tokens, client_ca) == mode


def test_the_git_commit_comes_from_the_environment_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git_commit.cache_clear()
    monkeypatch.setenv(server_info.BUILD_COMMIT_ENV, "abc123")
    try:
        assert git_commit() == "abc123"
        monkeypatch.delenv(server_info.BUILD_COMMIT_ENV)
        git_commit.cache_clear()
        found = git_commit()  # this checkout's HEAD, or empty outside a git checkout
        assert found == "" or len(found) == 40
    finally:
        git_commit.cache_clear()
