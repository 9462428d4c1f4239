"""atp.v1.Server: what this server is and how it is configured (GetServerInfo).

Everything it answers is fixed at start (version, flags, limits) but the role, which follows
the writer: a cluster member turns leader or follower as elections go. No secret is in it:
the authentication mode says which kinds of credentials identify callers, not which.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import __version__ as protobuf_version
from google.protobuf import timestamp_pb2

from atp import __version__, limits
from atp.engine.replication import ReplicationLog
from atp.engine.writer import Writer
from atp.server.gateway import is_gateway
from atp.server.replication import role_of
from atp.v1 import server_pb2, server_pb2_grpc

# The build's git commit, when the build (or the deployment) knows it.
BUILD_COMMIT_ENV = "ATP_BUILD_COMMIT"
GIT_TIMEOUT_S = 2.0

STANDALONE, LEADER = "standalone", "leader"
AUTH_NONE, AUTH_TOKEN, AUTH_MTLS = "none", "token", "mtls"


@dataclass(frozen=True)
class ServerSettings:
    """The configuration GetServerInfo reports (the composition root fills it from flags)."""

    default_ttl_seconds: int = 900
    safety_stock_priority_min: int = 100
    concurrent_rpcs_max: int = limits.concurrent_rpcs_max
    journal_retention_s: float = 0.0
    journal_retention_events: int = 0
    closed_retention_s: float = 0.0
    idempotency_window_s: float = 0.0
    cluster: str = ""
    # One of AUTH_NONE, AUTH_TOKEN, AUTH_MTLS or "token+mtls" (see authentication_mode).
    authentication: str = AUTH_NONE
    tls: bool = False
    client_certificates_required: bool = False
    start_time: float = 0.0
    # The gateway processes of `atpd --gateways N` in front of this writer (0: one process).
    gateways: int = 0


def authentication_mode(auth_policy: str, auth_tokens: str, client_ca: bool) -> str:
    """How callers are identified: nothing without a policy; else bearer tokens (a tokens
    file), client certificates (a client CA), or either."""
    if not auth_policy:
        return AUTH_NONE
    kinds = [kind for kind, given in ((AUTH_TOKEN, auth_tokens), (AUTH_MTLS, client_ca)) if given]
    return "+".join(kinds) or AUTH_NONE


@functools.cache
def git_commit() -> str:
    """ATP_BUILD_COMMIT if set; else HEAD of the git checkout this package runs from (only
    if that checkout is this source tree, not some repository it is installed inside);
    else empty."""
    given = os.environ.get(BUILD_COMMIT_ENV, "").strip()
    if given:
        return given
    package = Path(__file__).resolve().parent.parent  # src/atp
    try:
        found = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = found.stdout.split()
    if found.returncode != 0 or len(lines) != 2:
        return ""
    top, head = lines
    return head if Path(top).resolve() / "src" / "atp" == package else ""


def build_info() -> server_pb2.BuildInfo:
    return server_pb2.BuildInfo(
        version=__version__, git_commit=git_commit(), python_version=platform.python_version(),
        grpc_version=grpc.__version__, protobuf_version=protobuf_version)


def server_limits(concurrent_rpcs_max: int) -> server_pb2.ServerLimits:
    return server_pb2.ServerLimits(
        id_bytes_max=limits.id_bytes_max, lines_max=limits.lines_max,
        quantity_max=limits.quantity_max, batch_requests_max=limits.batch_requests_max,
        message_bytes_max=limits.message_bytes_max, page_size_max=limits.page_size_max,
        page_size_default=limits.page_size_default, reason_bytes_max=limits.reason_bytes_max,
        concurrent_rpcs_max=concurrent_rpcs_max,
        pending_mutations_max=limits.pending_mutations_max, days_max=limits.days_max,
        horizon_days_max=limits.horizon_days_max,
        stream_in_flight_max=limits.stream_in_flight_max)


def server_role(writer: Writer, replication_log: ReplicationLog, clustered: bool) -> str:
    """follower or candidate (replication's own words); a writer that leads is a leader in a
    cluster or with followers (known to its replication log, or required), else standalone."""
    role = role_of(writer)
    if role != LEADER:
        return role
    # The gateways of `atpd --gateways` follow their writer, but it stands alone all the same.
    followers = [name for name in replication_log.acknowledged if not is_gateway(name)]
    if clustered or writer.sync_replicas or followers:
        return LEADER
    return STANDALONE


class ServerServicer(server_pb2_grpc.ServerServicer):
    def __init__(self, writer: Writer, replication_log: ReplicationLog,
                 settings: ServerSettings) -> None:
        self.writer = writer
        self.replication_log = replication_log
        self.settings = settings
        self._build = build_info()

    async def GetServerInfo(
        self, request: server_pb2.GetServerInfoRequest, context: Any
    ) -> server_pb2.ServerInfo:
        return self.info()

    def info(self) -> server_pb2.ServerInfo:
        settings = self.settings
        start = timestamp_pb2.Timestamp()
        start.FromMicroseconds(round(settings.start_time * 1e6))
        return server_pb2.ServerInfo(
            build=self._build,
            default_ttl_seconds=settings.default_ttl_seconds,
            ttl_seconds_max=limits.ttl_seconds_max,
            safety_stock_priority_min=settings.safety_stock_priority_min,
            limits=server_limits(settings.concurrent_rpcs_max),
            role=server_role(self.writer, self.replication_log, bool(settings.cluster)),
            cluster=settings.cluster,
            leader=self.writer.leader_address or "",
            sync_replicas=self.writer.sync_replicas,
            journal_retention_seconds=round(settings.journal_retention_s),
            journal_retention_events=settings.journal_retention_events,
            closed_retention_seconds=round(settings.closed_retention_s),
            idempotency_window_seconds=round(settings.idempotency_window_s),
            authentication=settings.authentication,
            tls=settings.tls,
            client_certificates_required=settings.client_certificates_required,
            start_time=start,
            gateways=settings.gateways,
            gateways_following=sum(1 for name in self.replication_log.connected
                                   if is_gateway(name)),
        )
