"""Transport security: atpd serving TLS and mutual TLS, certificate reload without a restart,
the loopback-only rule for plaintext, and a follower replicating over mutual TLS. The
certificates are made by each run (tests/support/certs.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from atp import daemon
from atp.client import AsyncClient, AtpError, Client
from atp.cluster.etcd import EtcdClient, EtcdUnavailable
from atp.tls import TlsOptions, is_loopback
from atp.v1 import replication_pb2, replication_pb2_grpc
from tests.integration.helpers import Api, line, reserve, snapshot, stocked, wait_for
from tests.support.atpd import AtpdProcess, free_port
from tests.support.certs import CertificateAuthority, Issued
from tests.support.etcd import EtcdProcess, EtcdTls, etcd_binary

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    """CA `a` signs the server and the good clients; CA `b` is a stranger."""

    a: CertificateAuthority
    b: CertificateAuthority
    server: Issued
    client: Issued
    stranger: Issued
    expired: Issued

    def mtls_args(self, own: Issued | None = None) -> tuple[str, ...]:
        own = own or self.server
        return ("--tls-cert", str(own.cert), "--tls-key", str(own.key),
                "--client-ca", str(self.a.cert))

    def client_tls(self, issued: Issued | None = None) -> TlsOptions:
        issued = issued or self.client
        return TlsOptions(ca=str(self.a.cert), cert=str(issued.cert), key=str(issued.key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    a, b = CertificateAuthority(directory, "a"), CertificateAuthority(directory, "b")
    return Pki(a, b, a.issue("server"), a.issue("client"), b.issue("stranger"),
               a.issue("expired", expired=True))


@pytest.fixture(scope="module")
def mtls_atpd(pki: Pki, tmp_path_factory: pytest.TempPathFactory, gateways: int,
              ) -> Iterator[AtpdProcess]:
    data = tmp_path_factory.mktemp("mtls") / "data"
    with AtpdProcess(data, "--sync", "off", *pki.mtls_args(), tls=pki.client_tls(),
                     gateways=gateways) as server:
        yield server


def health(target: str, tls: TlsOptions | None) -> str:
    with Client(target, timeout_s=3, retries=0, tls=tls) as client:
        return client.health()


def refused(target: str, tls: TlsOptions | None) -> AtpError:
    with pytest.raises(AtpError) as failure:
        health(target, tls)
    return failure.value


def test_mutual_tls_admits_only_a_valid_client_certificate_of_its_ca(
    mtls_atpd: AtpdProcess, pki: Pki
) -> None:
    target = mtls_atpd.target
    assert health(target, pki.client_tls()) == "SERVING"
    # No client certificate, one from another CA, an expired one: the handshake fails.
    for tls in (TlsOptions(ca=str(pki.a.cert)), pki.client_tls(pki.stranger),
                pki.client_tls(pki.expired)):
        assert refused(target, tls).code is grpc.StatusCode.UNAVAILABLE
    # A plaintext client on the TLS port, and a client that does not trust the server's CA.
    assert refused(target, None).code is grpc.StatusCode.UNAVAILABLE
    untrusting = TlsOptions(ca=str(pki.b.cert), cert=str(pki.client.cert),
                            key=str(pki.client.key))
    assert refused(target, untrusting).code is grpc.StatusCode.UNAVAILABLE


def test_every_member_channel_of_a_multi_target_client_uses_the_credentials(
    mtls_atpd: AtpdProcess, pki: Pki
) -> None:
    """The first member is down: the call moves on to the second, over mutual TLS too."""
    port = mtls_atpd.target.rsplit(":", 1)[1]
    target = f"127.0.0.1:{free_port()},localhost:{port}"
    with Client(target, timeout_s=5, retries=2, tls=pki.client_tls()) as client:
        assert client.health() == "SERVING" and client.target == f"localhost:{port}"

    async def asynchronously() -> str:
        async with AsyncClient(target, timeout_s=5, retries=2, tls=pki.client_tls()) as client:
            return await client.health()

    assert asyncio.run(asynchronously()) == "SERVING"


def test_a_replaced_certificate_is_served_to_new_connections_without_a_restart(
    pki: Pki, tmp_path: Path, gateways: int,
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    trusts_a, trusts_b = TlsOptions(ca=str(pki.a.cert)), TlsOptions(ca=str(pki.b.cert))
    metrics = free_port()
    with AtpdProcess(tmp_path / "data", "--sync", "off", "--tls-cert", str(cert),
                     "--tls-key", str(key), "--metrics-port", str(metrics),
                     tls=trusts_a, gateways=gateways) as server:
        assert health(server.target, trusts_a) == "SERVING"
        refused(server.target, trusts_b)
        # /metrics is served over HTTPS with the same certificate (--metrics-tls auto).
        assert "atp_rpc_total" in scrape(metrics, pki.a.cert)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5)
        # A broken file: logged, and the certificate in force stays.
        cert.write_text("not a certificate\n")
        assert health(server.target, trusts_a) == "SERVING"
        # A new certificate from CA b, naming only "localhost".
        pki.b.issue("rotated", ("localhost",), cert=cert, key=key)
        by_name = TlsOptions(ca=str(pki.b.cert), server_name="localhost")
        wait_for(lambda: _answers(server.target, by_name), timeout_s=10)
        refused(server.target, trusts_a)
        # With gateways the supervisor serves /metrics, and looks at the files each second.
        wait_for(lambda: _scrapes(metrics, pki.b.cert, "localhost"), timeout_s=10)
        assert server.process is not None and server.process.poll() is None  # no restart
    log = server.log_path.read_text()
    assert "cannot be used" in log and "still serving the certificate loaded before" in log


def scrape(port: int, ca: Path, host: str = "127.0.0.1") -> str:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://{host}:{port}/metrics", timeout=5,
                                context=context) as answer:
        return str(answer.read().decode())


def _scrapes(port: int, ca: Path, host: str) -> bool:
    try:
        return "atp_rpc_total" in scrape(port, ca, host)
    except OSError:  # urllib's URLError: the certificate in force is not yet the new one
        return False


def _answers(target: str, tls: TlsOptions) -> bool:
    try:
        return health(target, tls) == "SERVING"
    except AtpError:
        return False


def test_a_follower_replicates_from_its_leader_over_mutual_tls(
    mtls_atpd: AtpdProcess, pki: Pki, tmp_path: Path
) -> None:
    own = pki.a.issue("follower")
    leader_api = Api(mtls_atpd.channel())
    sku, node = stocked(leader_api, 10)
    reserve(leader_api, line("l1", sku, node, 3))
    # The leader runs in both modes; a follower is one process (--gateways refuses --follow).
    with AtpdProcess(tmp_path / "follower", "--sync", "off", "--follow", mtls_atpd.target,
                     *pki.mtls_args(own), tls=pki.client_tls(), gateways=0) as follower:
        follower_api = Api(follower.channel())
        wait_for(lambda: _same(leader_api, follower_api, [sku]), timeout_s=15)
        follower_api.close()
    leader_api.close()


def _same(leader: Api, follower: Api, skus: list[str]) -> bool:
    try:
        return snapshot(leader, skus) == snapshot(follower, skus)
    except grpc.RpcError:
        return False


def test_a_follower_with_a_certificate_of_another_ca_is_not_let_in(
    mtls_atpd: AtpdProcess, pki: Pki, tmp_path: Path
) -> None:
    """The leader refuses a follower whose certificate another CA signed: it stays
    unconnected, and says why in its log."""
    stranger = ("--tls-cert", str(pki.stranger.cert), "--tls-key", str(pki.stranger.key),
                "--client-ca", str(pki.b.cert), "--peer-ca", str(pki.a.cert))
    with AtpdProcess(tmp_path / "follower", "--sync", "off", "--follow", mtls_atpd.target,
                     *stranger, tls=TlsOptions(ca=str(pki.b.cert), cert=str(pki.stranger.cert),
                                               key=str(pki.stranger.key)),
                     gateways=0) as follower:  # one process: --gateways refuses --follow
        time.sleep(1.0)
        with follower.channel() as channel:
            status = replication_pb2_grpc.ReplicationStub(channel).Status(
                replication_pb2.ReplicationStatusRequest(), timeout=5)
        assert status.role == "follower" and not status.connected


# ---------------------------------------------------------------------------------------------
# Plaintext is for loopback only, unless --insecure


def run_atpd(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "atp.daemon", "--data-dir", "/nonexistent/never-created",
         *arguments], capture_output=True, text=True, timeout=30)


def refusal(arguments: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    """atpd's flag check in this process: the one line it prints, after asserting exit 2."""
    with pytest.raises(SystemExit) as exit_request:
        daemon.parse_args(list(arguments), environ={})
    assert exit_request.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1, stderr
    return stderr


def test_plaintext_on_a_non_loopback_address_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str]
) -> None:
    for arguments in (("--listen", "[::]:0"),
                      ("--metrics-port", "9999", "--metrics-host", "0.0.0.0")):
        stderr = refusal(arguments, capsys)
        assert "not a loopback address" in stderr and "--insecure" in stderr
    # And the real thing: atpd exits 2 with that one line, before opening anything.
    result = run_atpd("--listen", "0.0.0.0:0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a loopback address" in result.stderr and "--insecure" in result.stderr


def test_non_loopback_listening_is_allowed_with_insecure_or_tls(
    pki: Pki, tmp_path: Path, gateways: int,
) -> None:
    tls = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key))
    for arguments in (
        ("--listen", "0.0.0.0:0", "--insecure"),
        ("--listen", "0.0.0.0:0", *tls),
        ("--listen", "0.0.0.0:0", *tls, "--metrics-port", "1", "--metrics-host", "0.0.0.0"),
        ("--listen", "127.0.0.1:0", "--metrics-port", "1", "--metrics-host", "0.0.0.0",
         "--insecure"),
    ):
        assert daemon.tls_conflict(daemon.parse_args(list(arguments), environ={})) == ""
    assert daemon.parse_args(["--listen", "0.0.0.0:0"], environ={"ATP_INSECURE": "1"}).insecure
    # And it serves: plaintext on every address with --insecure.
    with AtpdProcess(tmp_path / "data", "--sync", "off", "--listen", "0.0.0.0:0",
                     "--insecure", gateways=gateways) as server:
        port = server.target.rsplit(":", 1)[1]
        assert health(f"127.0.0.1:{port}", None) == "SERVING"


@pytest.mark.parametrize(("arguments", "message"), [
    (("--tls-cert", "x.pem"), "--tls-cert and --tls-key go together"),
    (("--client-ca", "ca.pem"), "--client-ca needs --tls-cert"),
    (("--metrics-tls", "on"), "--metrics-tls on needs --tls-cert"),
    (("--tls-cert", "/missing.pem", "--tls-key", "/missing-key.pem"),
     "cannot read the certificate file /missing.pem"),
    (("--cluster", "c", "--etcd", "https://127.0.0.1:2379,127.0.0.1:2380"),
     "mixes https:// and plaintext endpoints"),
    (("--cluster", "c", "--etcd", "127.0.0.1:2379", "--etcd-ca", "/ca.pem"),
     "give https:// endpoints"),
])
def test_tls_flags_that_cannot_work_stop_atpd_in_one_line(
    arguments: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in refusal(arguments, capsys)


def test_a_key_that_is_not_the_certificates_is_refused_at_start(pki: Pki) -> None:
    result = run_atpd("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.client.key))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a PEM certificate and its private key" in result.stderr


def test_https_etcd_endpoints_are_kept_for_tls() -> None:
    args = daemon.parse_args(["--cluster", "c", "--listen", "127.0.0.1:7000", "--etcd",
                              "https://127.0.0.1:2379, https://localhost:2380"], environ={})
    config = daemon.config_from(args)
    assert config.etcd == "https://127.0.0.1:2379,https://localhost:2380"
    assert config.etcd_tls == TlsOptions()  # the system's roots
    plain = daemon.parse_args(["--cluster", "c", "--listen", "127.0.0.1:7000", "--etcd",
                               "http://127.0.0.1:2379"], environ={})
    assert plain.etcd == "127.0.0.1:2379" and daemon.config_from(plain).etcd_tls is None


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.0.0.1", "example.com")))


# ---------------------------------------------------------------------------------------------
# etcd over mutual TLS


@pytest.mark.one_process(reason="--gateways refuses --cluster (README, Gateways)")
def test_a_cluster_member_reaches_etcd_over_mutual_tls(
    pki: Pki, tmp_path: Path, gateways: int,
) -> None:
    """etcd requiring client certificates: EtcdClient gets in with one and not without; a
    one-member atpd cluster (itself serving mTLS) is elected through it."""
    try:
        binary = etcd_binary()
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)
    tls = EtcdTls(pki.server.cert, pki.server.key, pki.a.cert, pki.client.cert, pki.client.key)
    with EtcdProcess(tmp_path, binary, tls=tls) as etcd:
        async def round_trip(client_tls: TlsOptions) -> str | None:
            async with EtcdClient(etcd.url, timeout_s=2, tls=client_tls) as client:
                await client.put("atp/tls", "yes")
                stored = await client.get("atp/tls")
                return stored.value if stored is not None else None

        assert asyncio.run(round_trip(pki.client_tls())) == "yes"
        with pytest.raises(EtcdUnavailable):
            asyncio.run(round_trip(TlsOptions(ca=str(pki.a.cert))))

        port = free_port()
        address = f"127.0.0.1:{port}"
        etcd_flags = ("--etcd-ca", str(pki.a.cert), "--etcd-cert", str(pki.client.cert),
                      "--etcd-key", str(pki.client.key))
        with AtpdProcess(tmp_path / "member", "--sync", "off", "--listen", address,
                         "--cluster", "tls", "--etcd", etcd.url, *etcd_flags,
                         "--lease-ttl", "2s", *pki.mtls_args(),
                         tls=pki.client_tls(), gateways=gateways) as member:
            def leads() -> bool:
                with member.channel() as channel:
                    status = replication_pb2_grpc.ReplicationStub(channel).Status(
                        replication_pb2.ReplicationStatusRequest(), timeout=5)
                return bool(status.role == "leader" and status.cluster == "tls")

            wait_for(leads, timeout_s=15)


@pytest.mark.one_process_for_time(reason="time: principals from certificates behind "
                                   "gateways are tests/gateway/test_security.py's")
def test_mtls_certificates_name_principals_whose_roles_bound_them_and_the_journal_says_who(
    pki: Pki, tmp_path: Path, gateways: int,
) -> None:
    """TLS, roles and the audit trail together: a capture service known by the URI SAN of its
    client certificate may reserve but not adjust stock; an operator's certificate may; each
    change records the certificate's principal."""
    capture = pki.a.issue("capture", ("localhost",), uris=("spiffe://shop/capture",))
    operator = pki.a.issue("ops-alice", ())
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"allow": [
        {"role": "service", "principals": ["spiffe://shop/capture"]},
        {"role": "ops", "principals": ["ops-alice"]},
    ]}))
    sku = "AUDIT-1"
    receipt = {"sku": sku, "node_id": "DC1", "type": "RECEIPT", "quantity": 5}
    with AtpdProcess(tmp_path / "data", "--sync", "off", *pki.mtls_args(),
                     "--auth-policy", str(policy), tls=pki.client_tls(operator),
                     gateways=gateways) as server, \
            Client(server.target, tls=pki.client_tls(operator)) as ops, \
            Client(server.target, tls=pki.client_tls(capture)) as service:
        ops.upsert_node({"node_id": "DC1"})
        ops.adjust_stock([receipt], "rcv-1")
        service.reserve("order-1", [{"line_id": "l1", "sku": sku, "quantity": 2,
                                     "node_id": "DC1"}])
        with pytest.raises(AtpError) as denied:
            service.adjust_stock([receipt], "rcv-2")
        assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.metadata.get("principal") == "spiffe://shop/capture"
        who = {(event.type, event.principal)
               for event in ops.watch(0, sku=sku, stop_at_head=True)}
    assert ("STOCK_MOVED", "ops-alice") in who
    assert ("RESERVATION_CREATED", "spiffe://shop/capture") in who
    assert {principal for _, principal in who} == {"ops-alice", "spiffe://shop/capture"}
