"""Commands on a cluster of atpd members: status."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import grpc

from atp.cli.outcome import CommandTree, Outcome, error_of_call
from atp.cli.views import format_table
from atp.client import Client
from atp.v1 import replication_pb2, replication_pb2_grpc

# The generated stub's constructor is unannotated: typed here, once.
_replication_stub: Callable[[grpc.Channel], Any] = replication_pb2_grpc.ReplicationStub
STATUS_TIMEOUT_S = 10.0


def add_cluster_commands(tree: CommandTree) -> None:
    cluster = tree.group("cluster", "replication: leader, followers, lag")
    cluster.command(
        "status", "this member's role, commit and term; with --cluster, every member etcd "
        "knows; on a leader, each follower's progress and lag", _status)


def _status(client: Client, arguments: argparse.Namespace) -> Outcome:
    stub = _replication_stub(arguments.grpc_channel)
    try:
        status: replication_pb2.ReplicationStatus = stub.Status(
            replication_pb2.ReplicationStatusRequest(), timeout=STATUS_TIMEOUT_S)
    except grpc.RpcError as error:
        raise error_of_call(error) from None
    return Outcome(status, _text(status))


def _text(status: replication_pb2.ReplicationStatus) -> str:
    parts = [_role_line(status)]
    if status.cluster:
        parts.append(_members_table(status))
    if status.role == "leader":
        parts.append(_followers_table(status))
    return "\n".join(parts)


def _role_line(status: replication_pb2.ReplicationStatus) -> str:
    where = f"cluster {status.cluster}: " if status.cluster else ""
    if status.role == "follower":
        state = "streaming" if status.connected else "NOT CONNECTED"
        if status.installing_snapshot:
            state = "installing a snapshot"
        return (f"{where}follower of {status.leader} ({state}), holding commit {status.commit}, "
                f"term {status.term}")
    if status.role == "candidate":
        return (f"{where}candidate (no leader known; confirms no writes), holding commit "
                f"{status.commit}, term {status.term}")
    standbys = f", standbys {', '.join(status.sync_standbys)}" if status.sync_standbys else ""
    return (f"{where}leader, commit {status.commit}, term {status.term}, "
            f"sync replicas {status.sync_replicas}{standbys}")


def _members_table(status: replication_pb2.ReplicationStatus) -> str:
    rows = [
        (member.address, member.role, str(member.commit), str(member.term),
         "yes" if member.eligible else "no", f"{member.published_seconds_ago:.1f}")
        for member in status.members
    ]
    lease = f"lease renewed {status.lease_renewed_seconds_ago:.1f} s ago"
    table = format_table(("MEMBER", "ROLE", "COMMIT", "TERM", "ELIGIBLE", "SEEN S AGO"), rows)
    return f"{lease}\n{table}"


def _followers_table(status: replication_pb2.ReplicationStatus) -> str:
    if not status.followers:
        return "no follower has connected"
    rows = [
        (follower.follower_id, "yes" if follower.connected else "no",
         str(follower.acknowledged_commit), str(follower.lag_commits),
         f"{follower.lag_seconds:.3f}")
        for follower in status.followers
    ]
    return format_table(("FOLLOWER", "CONNECTED", "ACKNOWLEDGED", "LAG", "LAG SECONDS"), rows)
