"""Commands about the server itself: info (version, defaults, limits, role)."""

from __future__ import annotations

import argparse

from atp.cli.outcome import CommandTree, Outcome
from atp.client import Client
from atp.v1 import server_pb2


def add_server_commands(tree: CommandTree) -> None:
    server = tree.group("server", "the server itself: version, defaults, limits, role")
    server.command(
        "info", "version and build, default and largest reservation TTL, the safety-stock "
        "priority, request limits, role, processes (gateways), cluster, retention, "
        "authentication mode", _info)


def _info(client: Client, arguments: argparse.Namespace) -> Outcome:
    info = client.get_server_info()
    return Outcome(info, info_text(info))


def info_text(info: server_pb2.ServerInfo) -> str:
    build, limits = info.build, info.limits
    role = info.role + (f" of cluster {info.cluster}" if info.cluster else "")
    if info.leader:
        role += f", following {info.leader}"
    rows = [
        ("version", build.version + (f" (commit {build.git_commit})" if build.git_commit else "")),
        ("runtime", (f"Python {build.python_version}, grpcio {build.grpc_version}, "
                     f"protobuf {build.protobuf_version}")),
        ("started", info.start_time.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("role", role),
        ("processes", _processes(info.gateways, info.gateways_following)),
        ("sync replicas", str(info.sync_replicas)),
        ("default TTL", _duration(info.default_ttl_seconds)),
        ("largest TTL", _duration(info.ttl_seconds_max)),
        ("safety stock", f"usable by priority >= {info.safety_stock_priority_min}"),
        ("journal retention", _retention(info.journal_retention_seconds,
                                         info.journal_retention_events)),
        ("closed retention", _duration(info.closed_retention_seconds)),
        ("idempotency window", _duration(info.idempotency_window_seconds)),
        ("authentication", info.authentication),
        ("transport", ("mutual TLS" if info.client_certificates_required
                       else "TLS" if info.tls else "plaintext")),
        ("limits", (f"ids <= {limits.id_bytes_max} bytes, <= {limits.lines_max} lines a "
                    f"request, quantity <= {limits.quantity_max}, <= "
                    f"{limits.batch_requests_max} requests a batch, message <= "
                    f"{limits.message_bytes_max} bytes, page <= {limits.page_size_max}, "
                    f"<= {limits.concurrent_rpcs_max} calls at once")),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows)


def _processes(gateways: int, following: int) -> str:
    """How the server runs: one process, or a writer behind its gateways (atpd --gateways)."""
    if not gateways:
        return "one"
    plural = "s" if gateways != 1 else ""
    return f"a writer and {gateways} gateway{plural} ({following} following the writer)"


def _duration(seconds: int) -> str:
    if seconds == 0:
        return "0 s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit} ({seconds} s)"
    return f"{seconds} s"


def _retention(seconds: int, events: int) -> str:
    age = _duration(seconds) if seconds else "no age limit"
    count = f", at least the newest {events} events" if events else ""
    return age + count
