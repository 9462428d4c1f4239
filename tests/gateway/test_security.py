"""`atpd --gateways 2` as secure as one process: mutual TLS on the public port, bearer tokens
and the policy enforced by the gateways with the codes, messages and details one process
gives, the caller's principal recorded by the writer (and never one a client names itself),
GetServerInfo describing the public port, and the writer's socket kept to its user."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from atp.client import make_channel
from atp.server.authorization import (
    PRINCIPAL_KEY,
    READER,
    hash_token,
    role_needed,
)
from atp.tls import TlsOptions
from atp.v1 import (
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    replication_pb2,
    replication_pb2_grpc,
    reservations_pb2,
    server_pb2,
    server_pb2_grpc,
)
from tests.gateway.support import GATEWAYS, children, supervisor_pid
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    failure_of,
    line,
    movement,
    reserve_request,
    uid,
    wait_for,
)
from tests.support.atpd import AtpdProcess
from tests.support.certs import CertificateAuthority, Issued

pytestmark = pytest.mark.integration

# A client certificate's principal (its URI SAN) has the reader role; tokens name the rest.
CERTIFICATE_PRINCIPAL = "spiffe://atp.test/dashboard"
POLICY = {
    "deny": [{"principals": ["denied-p"]}],
    "allow": [{"role": "reader", "principals": [CERTIFICATE_PRINCIPAL]},
              {"role": "service", "principals": ["service-p"]},
              {"role": "ops", "principals": ["ops-p"]},
              {"role": "replica", "principals": ["replica-p"]},
              {"role": "admin", "principals": ["admin-p", "denied-p"]}],
}
TOKEN_PRINCIPALS = ("service-p", "ops-p", "replica-p", "admin-p", "denied-p")
# Channels with a connection each: the kernel spreads them over the gateways.
CHANNELS = 4


def token_of(principal: str) -> str:
    return f"secret-of-{principal}"


def bearer(principal: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token_of(principal)}"),)


@dataclass(frozen=True)
class Deployment:
    """An atpd with mutual TLS, a policy and tokens; and how a client reaches it."""

    server: AtpdProcess
    client_tls: TlsOptions
    stranger_tls: TlsOptions

    def channels(self, count: int = CHANNELS) -> list[grpc.Channel]:
        return [grpc.secure_channel(self.server.target, self.client_tls.credentials(),
                                    options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(count)]


@dataclass(frozen=True)
class Files:
    ca: CertificateAuthority
    server: Issued
    client: Issued
    stranger: Issued
    policy: Path
    tokens: Path

    def flags(self) -> tuple[str, ...]:
        return ("--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key),
                "--client-ca", str(self.ca.cert), "--auth-policy", str(self.policy),
                "--auth-tokens", str(self.tokens), "--sync", "off")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    directory = tmp_path_factory.mktemp("gateway-pki")
    ca, other = CertificateAuthority(directory, "a"), CertificateAuthority(directory, "b")
    policy, tokens = directory / "policy.json", directory / "tokens.json"
    policy.write_text(json.dumps(POLICY))
    tokens.write_text(json.dumps({"tokens": [
        {"sha256": hash_token(token_of(name)), "principal": name} for name in TOKEN_PRINCIPALS]}))
    return Files(ca, ca.issue("server"), ca.issue("dashboard", uris=(CERTIFICATE_PRINCIPAL,)),
                 other.issue("stranger", uris=(CERTIFICATE_PRINCIPAL,)), policy, tokens)


def deployment(files: Files, data_dir: Path, gateways: int) -> AtpdProcess:
    client = TlsOptions(ca=str(files.ca.cert), cert=str(files.client.cert),
                        key=str(files.client.key))
    return AtpdProcess(data_dir, "--gateways", str(gateways), *files.flags(), tls=client)


@pytest.fixture(scope="module")
def secured(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    server = deployment(files, tmp_path_factory.mktemp("gw-secure") / "data", GATEWAYS)
    with server:
        assert server.tls is not None
        yield Deployment(server, server.tls, TlsOptions(
            ca=str(files.ca.cert), cert=str(files.stranger.cert), key=str(files.stranger.key)))


# Calls whose answer (allowed, or the refusal's code, message and details) must be the same
# with gateways as with one process: (method, request, caller's metadata).
def _probes() -> list[tuple[str, str, bytes, tuple[tuple[str, str], ...]]]:
    list_nodes = inventory_pb2.ListNodesRequest().SerializeToString()
    adjust = inventory_pb2.AdjustStockRequest(
        request_id="probe-adjust", movements=[movement("SKU-P", "NODE-P", 1, 1)],
    ).SerializeToString()
    dry_run = reservations_pb2.ReallocateRequest(dry_run=True).SerializeToString()
    reallocate = reservations_pb2.ReallocateRequest().SerializeToString()
    return [
        ("certificate reads", "/atp.v1.Inventory/ListNodes", list_nodes, ()),
        ("certificate writes", "/atp.v1.Inventory/AdjustStock", adjust, ()),
        ("unknown token", "/atp.v1.Inventory/ListNodes", list_nodes,
         (("authorization", "Bearer nope"),)),
        ("not a bearer", "/atp.v1.Inventory/ListNodes", list_nodes, (("authorization", "x"),)),
        ("denied", "/atp.v1.Inventory/ListNodes", list_nodes, bearer("denied-p")),
        ("service adjusts", "/atp.v1.Inventory/AdjustStock", adjust, bearer("service-p")),
        ("reader plans a dry run", "/atp.v1.Reservations/Reallocate", dry_run, ()),
        ("reader reallocates", "/atp.v1.Reservations/Reallocate", reallocate, ()),
        ("replication status", "/atp.v1.Replication/Status", b"", bearer("service-p")),
    ]


def _answer(channel: grpc.Channel, method: str, request: bytes,
            metadata: tuple[tuple[str, str], ...]) -> tuple[str, str, str, list[str]]:
    """'allowed', or the refusal's code, message, reason and ErrorInfo metadata."""
    try:
        channel.unary_unary(method)(request, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        if code not in (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED):
            return ("allowed", "", "", [])  # past authorization: the ledger answered
        failure = failure_of(error)
        details = failure.error_info.metadata if failure.error_info is not None else {}
        return (code.name, failure.message, failure.reason,
                sorted(f"{key}={value}" for key, value in details.items()))
    return ("allowed", "", "", [])


def test_gateways_refuse_and_admit_exactly_as_one_process(
    secured: Deployment, files: Files, tmp_path: Path,
) -> None:
    with deployment(files, tmp_path / "single", 0) as single, \
            make_channel(single.target, secured.client_tls) as channel:
        expected = {name: _answer(channel, method, request, metadata)
                    for name, method, request, metadata in _probes()}
    assert expected["certificate writes"][0] == "PERMISSION_DENIED"
    assert expected["unknown token"][0] == "UNAUTHENTICATED"
    assert expected["reader plans a dry run"][0] == "allowed"
    for channel in secured.channels():  # each gateway in turn, as the kernel spreads them
        with channel:
            got = {name: _answer(channel, method, request, metadata)
                   for name, method, request, metadata in _probes()}
        assert got == expected


def test_mutual_tls_admits_only_client_certificates_of_its_ca(secured: Deployment) -> None:
    request = inventory_pb2.ListNodesRequest()
    for channel in secured.channels():
        with channel:
            Api(channel).inventory.ListNodes(request, timeout=CALL_TIMEOUT)
    strangers = [secured.stranger_tls, TlsOptions(ca=secured.client_tls.ca)]  # none at all
    for tls in strangers:
        with make_channel(secured.server.target, tls) as channel, \
                pytest.raises(grpc.RpcError) as refused:
            Api(channel).inventory.ListNodes(request, timeout=5)
        assert refused.value.code() is Code.UNAVAILABLE  # type: ignore[attr-defined]
    with grpc.insecure_channel(secured.server.target) as plaintext, \
            pytest.raises(grpc.RpcError) as refused:
        Api(plaintext).inventory.ListNodes(request, timeout=5)
    assert refused.value.code() is Code.UNAVAILABLE  # type: ignore[attr-defined]


def test_the_journal_records_the_callers_principal_never_one_it_names_itself(
    secured: Deployment,
) -> None:
    sku, node = uid("SKU"), uid("NODE")
    claims_admin = ((PRINCIPAL_KEY, b"admin-p"),)
    channels = secured.channels()
    ops, service, reader = (Api(channel) for channel in channels[:3])
    ops.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
        node=common_pb2.Node(node_id=node)), metadata=bearer("ops-p"),
        timeout=CALL_TIMEOUT)
    ops.inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
        request_id=uid("adj"), movements=[movement(sku, node, 1, 5)]),
        metadata=bearer("ops-p") + claims_admin, timeout=CALL_TIMEOUT)
    for _ in range(GATEWAYS * 2):  # through each gateway, each claiming to be admin
        service.reservations.Reserve(reserve_request(None, [line("l1", sku, node, 1)]),
                                     metadata=bearer("service-p") + claims_admin,
                                     timeout=CALL_TIMEOUT)
    # Naming a principal is no credential: a reader's certificate still may not write.
    with pytest.raises(grpc.RpcError) as refused:
        reader.reservations.Reserve(reserve_request(None, [line("l1", sku, node, 1)]),
                                    metadata=claims_admin, timeout=CALL_TIMEOUT)
    assert refused.value.code() is Code.PERMISSION_DENIED  # type: ignore[attr-defined]
    events = list(events_pb2_grpc.EventsStub(channels[3]).Watch(
        events_pb2.WatchRequest(sku=sku, stop_at_head=True), timeout=CALL_TIMEOUT))
    made = [(event.type, event.principal) for event in events
            if event.type in ("STOCK_MOVED", "RESERVATION_CREATED")]
    assert made == [("STOCK_MOVED", "ops-p")] + [
        ("RESERVATION_CREATED", "service-p")] * (GATEWAYS * 2)
    for channel in channels:
        channel.close()


def test_server_info_describes_the_public_port(secured: Deployment) -> None:
    with secured.channels(1)[0] as channel:
        info = server_pb2_grpc.ServerStub(channel).GetServerInfo(
            server_pb2.GetServerInfoRequest(), timeout=CALL_TIMEOUT)
    assert (info.tls, info.client_certificates_required) == (True, True)
    assert info.authentication == "token+mtls"


def test_the_writers_socket_is_its_users_alone(secured: Deployment) -> None:
    writer = children(supervisor_pid(secured.server))["writer"][0]
    command = Path(f"/proc/{writer}/cmdline").read_bytes().split(b"\0")
    socket_path = Path(command[command.index(b"--writer-socket") + 1].decode())
    directory = socket_path.parent.stat()
    assert stat.S_IMODE(directory.st_mode) == 0o700
    assert directory.st_uid == os.getuid() and stat.S_ISSOCK(socket_path.stat().st_mode)


def test_a_forwarded_dry_run_is_read_from_its_bytes() -> None:
    method = "/atp.v1.Reservations/Reallocate"
    assert role_needed(method, reservations_pb2.ReallocateRequest(
        dry_run=True).SerializeToString()) == READER
    assert role_needed(method, reservations_pb2.ReallocateRequest().SerializeToString()) == "ops"
    assert role_needed(method, b"\xff\xff") == "ops"  # undecodable: no read-only form


def test_a_follower_replicates_through_the_gateways_with_its_role_only(
    secured: Deployment, files: Files, tmp_path: Path,
) -> None:
    """Over mutual TLS, presenting a token: the replica role lets it in; the reader role of
    its certificate alone does not."""
    api = Api(secured.channels(1)[0])
    node = uid("NODE")
    api.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(
        node=common_pb2.Node(node_id=node)), metadata=bearer("ops-p"), timeout=CALL_TIMEOUT)
    own = files.ca.issue("follower")
    flags = ("--follow", secured.server.target, "--tls-cert", str(own.cert), "--tls-key",
             str(own.key), "--client-ca", str(files.ca.cert), "--sync", "off")
    (tmp_path / "replica-token").write_text(token_of("replica-p") + "\n")
    (tmp_path / "service-token").write_text(token_of("service-p") + "\n")
    with AtpdProcess(tmp_path / "follower", *flags, "--peer-token-file",
                     str(tmp_path / "replica-token"), tls=secured.client_tls) as follower, \
            follower.channel() as channel:
        wait_for(lambda: node in _nodes(channel), timeout_s=30)
    refused = AtpdProcess(tmp_path / "refused", *flags, "--peer-token-file",
                          str(tmp_path / "service-token"), tls=secured.client_tls)
    with refused, refused.channel() as channel:
        stream = replication_pb2_grpc.ReplicationStub(api.channel).Replicate(
            iter([replication_pb2.FollowerProgress(follower_id="probe")]),
            metadata=bearer("service-p"), timeout=CALL_TIMEOUT)
        with pytest.raises(grpc.RpcError) as denied:
            next(iter(stream))
        assert denied.value.code() is Code.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert node not in _nodes(channel)  # the follower refused got nothing
    api.close()


def _nodes(channel: grpc.Channel) -> list[str]:
    listed = Api(channel).inventory.ListNodes(
        inventory_pb2.ListNodesRequest(), timeout=CALL_TIMEOUT)
    return [node.node_id for node in listed.nodes]
