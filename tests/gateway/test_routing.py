"""Which calls a gateway answers and which it forwards (from authorization's one table),
the metadata it forwards, and the --gateways flag: its values, default and exclusions."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import pytest

from atp import daemon, flags, machine, supervisor
from atp.server.authorization import (
    METHOD_ROLES,
    PRINCIPAL_KEY,
    READ_ONLY_FORMS,
    READER,
    Principal,
    _current,
    trusted_principal,
)
from atp.server.gateway import forwarded_metadata, is_local, reads_ledger
from tests.support.certs import CertificateAuthority

WRITES = [
    "/atp.v1.Reservations/" + name for name in (
        "Reserve", "ReserveBatch", "ReserveStream", "Commit", "Release", "Fulfill", "Extend",
        "RecordDelivery", "Reallocate")
] + [
    "/atp.v1.Inventory/" + name for name in (
        "UpsertNode", "AdjustStock", "SetSafetyStock", "UpsertSupply", "ReceiveSupply",
        "PlaceHold", "ReleaseHold")
] + ["/atp.v1.Allocations/SetAllocationPolicy", "/atp.v1.Allocations/SetChannelAllocation"]
READS = [
    "/atp.v1.Availability/GetAvailability", "/atp.v1.Availability/Promise",
    "/atp.v1.Reservations/GetReservation", "/atp.v1.Reservations/ListReservations",
    "/atp.v1.Events/Watch", "/atp.v1.Inventory/ListNodes", "/atp.v1.Inventory/ListSupply",
    "/atp.v1.Inventory/ListHolds",
]


@pytest.mark.parametrize("method", WRITES)
def test_every_write_is_forwarded_to_the_writer(method: str) -> None:
    assert method in METHOD_ROLES
    assert not is_local(method)


@pytest.mark.parametrize("method", READS)
def test_reads_are_answered_by_the_gateway_after_the_read_index(method: str) -> None:
    assert is_local(method) and reads_ledger(method)


def test_the_table_decides_and_what_it_does_not_know_goes_to_the_writer() -> None:
    for method, role in METHOD_ROLES.items():
        assert is_local(method) == (role in (READER, "open")), method
    # Reallocate's dry run is a reader's call, but it plans on the writer (as the applying
    # form does): the table's role for the method decides, not the request.
    assert all(not is_local(method) for method in READ_ONLY_FORMS)
    assert not is_local("/atp.v1.Reservations/SomethingNew")
    # The server's own view, and replication, are the writer's.
    assert not is_local("/atp.v1.Server/GetServerInfo")
    assert not is_local("/atp.v1.Replication/Status")
    # Health is answered at once, without asking the writer.
    assert is_local("/grpc.health.v1.Health/Check")
    assert not reads_ledger("/grpc.health.v1.Health/Check")


def test_only_the_callers_own_metadata_is_forwarded() -> None:
    given = ((":authority", "x"), ("user-agent", "grpc-python"), ("grpc-timeout", "1S"),
             ("authorization", "Bearer t"), ("x-trace", "1"), ("data-bin", b"\x00"),
             (PRINCIPAL_KEY, b"admin"))  # a client naming a principal itself: dropped
    assert forwarded_metadata(given) == (("authorization", "Bearer t"), ("x-trace", "1"),
                                         ("data-bin", b"\x00"))
    assert forwarded_metadata(None) == ()


def test_the_authorized_principal_is_forwarded_and_trusted_by_the_writer_only() -> None:
    async def forwarded_as(principal: Principal) -> tuple[tuple[str, object], ...]:
        _current.set(principal)  # as Authorization sets it for the call
        return forwarded_metadata(((PRINCIPAL_KEY, b"admin"), ("x-trace", "1")))

    principal = Principal("caf\u00e9-service", ("caf\u00e9-service",), "token")
    metadata = asyncio.run(forwarded_as(principal))
    assert metadata == (("x-trace", "1"), (PRINCIPAL_KEY, "caf\u00e9-service".encode()))
    trusted = trusted_principal(metadata)
    assert trusted is not None and trusted.name == "caf\u00e9-service"
    assert trusted_principal((("x-trace", "1"),)) is None


def test_gateway_count_values() -> None:
    assert supervisor.gateway_count("auto") == supervisor.AUTO_GATEWAYS
    assert supervisor.gateway_count("AUTO") == supervisor.AUTO_GATEWAYS
    assert supervisor.auto_gateways() == max(1, supervisor.cores() - 1)
    assert supervisor.gateway_count("0") == 0
    assert supervisor.gateway_count("3") == 3
    for bad in ("-1", "two", ""):
        with pytest.raises(flags.InvalidValue, match="neither auto nor a whole number"):
            supervisor.gateway_count(bad)


def test_the_default_is_auto_a_gateway_per_core_but_one() -> None:
    assert daemon.parse_args([], environ={}).gateways == max(1, supervisor.cores() - 1)
    assert daemon.parse_args(["--gateways", "auto"], environ={}).gateways == (
        supervisor.auto_gateways())
    assert daemon.parse_args([], environ={"ATP_GATEWAYS": "2"}).gateways == 2
    assert daemon.parse_args([], environ={"ATP_GATEWAYS": "0"}).gateways == 0
    assert daemon.parse_args(["--gateways", "0"], environ={"ATP_GATEWAYS": "3"}).gateways == 0


@pytest.mark.parametrize("extra", [
    ["--follow", "127.0.0.1:1"],
    ["--cluster", "c", "--etcd", "127.0.0.1:2379", "--listen", "127.0.0.1:5000"],
])
def test_auto_is_one_process_where_gateways_cannot_run_yet(extra: list[str]) -> None:
    assert daemon.parse_args(extra, environ={}).gateways == 0
    assert daemon.parse_args(["--gateways", "auto", *extra], environ={}).gateways == 0


@pytest.mark.parametrize("extra", [
    ["--follow", "127.0.0.1:1"],
    ["--cluster", "c", "--etcd", "127.0.0.1:2379", "--listen", "127.0.0.1:5000"],
])
def test_flags_not_built_for_gateways_yet_are_refused(
    extra: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        daemon.parse_args(["--gateways", "2", *extra], environ={})
    assert exited.value.code == 2
    assert "does not work with" in capsys.readouterr().err
    # ... and accepted in one process.
    daemon.parse_args(["--gateways", "0", *extra], environ={})


def test_security_and_sync_replication_go_with_gateways(tmp_path: Path) -> None:
    policy, ca = tmp_path / "policy.json", CertificateAuthority(tmp_path)
    policy.write_text('{"allow": []}')
    issued = ca.issue("server")
    args = daemon.parse_args([
        "--gateways", "2", "--auth-policy", str(policy), "--sync-replicas", "1",
        "--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--client-ca",
        str(ca.cert), "--metrics-port", "9100"], environ={})
    assert (args.gateways, args.sync_replicas, args.metrics_port) == (2, 1, 9100)


def test_a_childs_configuration_follows_its_role(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    issued = ca.issue("server")
    args = daemon.parse_args(["--listen", "127.0.0.1:5000", "--gateways", "2",
                              "--metrics-port", "9100", "--sync-replicas", "1",
                              "--tls-cert", str(issued.cert), "--tls-key", str(issued.key)],
                             environ={})
    config = daemon.config_from(args)
    writer_args = argparse.Namespace(**{**vars(args), "gateway_role": "writer",
                                        "writer_socket": "/tmp/x/writer.sock"})
    writer = supervisor.child_config(config, writer_args)
    assert (writer.listen, writer.advertise, writer.data_dir) == (
        "unix:/tmp/x/writer.sock", "127.0.0.1:5000", "./data")
    assert writer.behind_gateways and not writer.gateway_of and writer.sync_replicas == 1
    # The public port's TLS: reported by GetServerInfo, and serving its own metrics.
    assert writer.tls == config.tls and writer.peer_tls is None
    # The supervisor serves 9100; the gateways the ports after it, the writer the next.
    assert writer.metrics_listen == "127.0.0.1:9103"
    assert writer.metrics_socket == "/tmp/x/metrics-writer.sock"
    gateway_args = argparse.Namespace(**{**vars(writer_args), "gateway_role": "gateway",
                                         "gateway_index": 1})
    gateway = supervisor.child_config(config, gateway_args)
    assert (gateway.listen, gateway.data_dir, gateway.follow, gateway.gateway_of) == (
        "127.0.0.1:5000", None, "unix:/tmp/x/writer.sock", "unix:/tmp/x/writer.sock")
    assert gateway.reuse_port and gateway.follower_id == "gateway-1"
    assert gateway.tls == config.tls and not gateway.behind_gateways
    assert gateway.sync_replicas == 0 and not gateway.peer_token
    assert gateway.metrics_listen == "127.0.0.1:9102"  # --metrics-port + 1 + index
    assert gateway.metrics_socket == "/tmp/x/metrics-gateway-1.sock"
    # Nobody replicates from a gateway: it keeps no log for followers (the writer does).
    assert gateway.replication_log_batches == 1
    assert writer.replication_log_batches == config.replication_log_batches == 10_000
    # Its copy keeps live state and this many journal events (MemoryStore.live_copy).
    assert gateway.gateway_journal_events == config.gateway_journal_events == 100_000
    plain = supervisor.child_config(
        daemon.config_from(daemon.parse_args(["--gateways", "1"], environ={})), gateway_args)
    assert plain.metrics_listen is None and plain.metrics_socket == ""


def test_the_gateways_metrics_ports_must_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        daemon.parse_args(["--gateways", "2", "--metrics-port", "65533"], environ={})
    assert "leaves no port for the metrics of 2 gateways and the writer" in (
        capsys.readouterr().err)
    daemon.parse_args(["--gateways", "1", "--metrics-port", "65533"], environ={})


def test_a_childs_log_lines_name_its_role() -> None:
    """The N + 1 processes share one log: a child's lines say who wrote them."""
    args = daemon.parse_args(["--gateways", "2"], environ={})
    assert supervisor.log_format(args) == supervisor.LOG_FORMAT  # the supervisor: as atpd
    role = {"writer": "[writer]", "gateway": "[gateway 1]"}
    for name, tag in role.items():
        child = argparse.Namespace(**{**vars(args), "gateway_role": name, "gateway_index": 1})
        line = logging.Formatter(supervisor.log_format(child)).format(logging.LogRecord(
            "atp.server", logging.INFO, __file__, 1, "atpd serving", None, None))
        assert line.endswith(f" INFO {tag} atp.server: atpd serving"), line


def test_auto_counts_the_cores_a_cpu_quota_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A container limited to 1.5 CPUs: two usable cores, whatever the affinity says.
    (tmp_path / "cgroup").mkdir()
    (tmp_path / "cgroup" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "self-cgroup").write_text("0::/\n")
    monkeypatch.setattr(machine, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(machine, "PROC_SELF_CGROUP", tmp_path / "self-cgroup")
    usable = min(2, len(os.sched_getaffinity(0)))
    assert supervisor.cores() == usable
    assert daemon.parse_args([], environ={}).gateways == max(1, usable - 1)
    if usable == 2 < len(os.sched_getaffinity(0)):
        assert machine.describe_cores().endswith("by the CPU quota 1.5)")
    else:
        assert machine.describe_cores() == f"{usable} core{'' if usable == 1 else 's'}"
