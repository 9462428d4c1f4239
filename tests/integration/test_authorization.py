"""Who may do what, against a real atpd run with --auth-policy and --auth-tokens: every RPC
for a principal of every role, credentials missing or unknown, deny rules, reloads, a client
certificate's principal, and the client and atpctl token options."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool

from atp.bootstrap import AtpServer, ServerConfig
from atp.client import AsyncClient, AtpError, Client
from atp.server.authorization import (
    ANY_ROLE,
    INCLUDES,
    METHOD_ROLES,
    OPEN,
    Principal,
    current_principal,
    hash_token,
)
from atp.server.servicers import InventoryServicer
from atp.v1 import events_pb2, reservations_pb2
from tests.support.atpd import AtpdProcess
from tests.support.certs import CertificateAuthority, Issued

pytestmark = pytest.mark.integration

# A principal of each role, one that no rule allows, and one a deny rule shuts out although
# an allow rule would make it admin.
ROLE_PRINCIPALS = {"reader": "reader-p", "service": "service-p", "ops": "ops-p",
                   "replica": "replica-p", "admin": "admin-p"}
NOBODY, DENIED = "nobody-p", "denied-p"
POLICY = {
    "deny": [{"principals": [DENIED]}],
    "allow": [*({"role": role, "principals": [name]} for role, name in ROLE_PRINCIPALS.items()),
              {"role": "admin", "principals": [DENIED]}],
}


def token_of(principal: str) -> str:
    return f"token-of-{principal}"


def write_files(directory: Path, principals: list[str], policy: dict[str, Any],
                ) -> tuple[Path, Path]:
    tokens = {"tokens": [{"sha256": hash_token(token_of(name)), "principal": name}
                         for name in principals]}
    tokens_path, policy_path = directory / "tokens.json", directory / "policy.json"
    tokens_path.write_text(json.dumps(tokens))
    policy_path.write_text(json.dumps(policy))
    return tokens_path, policy_path


def auth_atpd(directory: Path, principals: list[str], policy: dict[str, Any],
              gateways: int) -> AtpdProcess:
    tokens_path, policy_path = write_files(directory, principals, policy)
    return AtpdProcess(directory / "data", "--auth-policy", str(policy_path),
                       "--auth-tokens", str(tokens_path), gateways=gateways)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, gateways: int) -> Iterator[AtpdProcess]:
    principals = [*ROLE_PRINCIPALS.values(), NOBODY, DENIED]
    with auth_atpd(tmp_path_factory.mktemp("authz"), principals, POLICY, gateways) as server:
        yield server


def bearer(principal: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token_of(principal)}"),)


def call(channel: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...],
         request: bytes = b"") -> grpc.StatusCode:
    """Makes the call with the cheapest request it takes; the status code it ends with."""
    kind = _kinds()[method]
    timeout = TIMEOUTS.get(method, 5)
    try:
        if kind == "unary_unary":
            channel.unary_unary(method)(request, metadata=metadata, timeout=timeout)
        elif kind == "unary_stream":
            for _ in channel.unary_stream(method)(request, metadata=metadata, timeout=timeout):
                pass
        else:  # a request stream that ends at once
            for _ in channel.stream_stream(method)(iter(()), metadata=metadata, timeout=timeout):
                pass
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


@functools.cache
def _kinds() -> dict[str, str]:
    """The kind of every method in the table whose service this process knows (atpd serves
    reflection v1alpha only; the table names v1 too, for when it serves both)."""
    kinds = {}
    for method in METHOD_ROLES:
        service, name = method.strip("/").split("/")
        try:
            descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[
                name]
        except KeyError:
            continue
        streams = (descriptor.client_streaming, descriptor.server_streaming)
        kinds[method] = {(False, False): "unary_unary", (False, True): "unary_stream"}.get(
            streams, "stream_stream")
    return kinds


# Requests that keep a call short: a Watch that ends at the head of the journal.
CHEAP = {"/atp.v1.Events/Watch": events_pb2.WatchRequest(stop_at_head=True).SerializeToString()}
# A health Watch never ends by itself: its deadline (once authorized) ends it.
TIMEOUTS = {"/grpc.health.v1.Health/Watch": 0.3}
REFUSED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def test_every_rpc_for_every_role_is_allowed_or_denied_as_the_table_says(
    secured: AtpdProcess,
) -> None:
    wrong = []
    with grpc.insecure_channel(secured.target) as channel:
        for method in sorted(_kinds()):
            needed = METHOD_ROLES[method]
            callers = [*ROLE_PRINCIPALS.items(), (None, NOBODY), (None, DENIED)]
            if needed == OPEN:  # no credentials at all
                callers = [(None, "")]
            for role, principal in callers:
                metadata = bearer(principal) if principal else ()
                code = call(channel, method, metadata, CHEAP.get(method, b""))
                allowed = needed == OPEN or (
                    role is not None and (needed == ANY_ROLE or needed in INCLUDES[role]))
                expected = "allowed" if allowed else "PERMISSION_DENIED"
                got = ("allowed" if code not in REFUSED
                       else "PERMISSION_DENIED" if code is grpc.StatusCode.PERMISSION_DENIED
                       else code.name)
                if got != expected:
                    wrong.append(f"{method} as {principal}: {got}, expected {expected}")
    assert wrong == []


def test_server_info_answers_every_role_and_names_the_authentication(
    secured: AtpdProcess,
) -> None:
    for role in ("reader", "replica"):
        with Client(secured.target, token=token_of(ROLE_PRINCIPALS[role])) as client:
            info = client.get_server_info()
            assert (info.authentication, info.tls) == ("token", False)
    with Client(secured.target, token=token_of(NOBODY)) as client, \
            pytest.raises(AtpError) as refused:
        client.get_server_info()
    assert (refused.value.code, refused.value.reason) == (
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


def test_a_reallocate_dry_run_is_a_read(secured: AtpdProcess) -> None:
    dry_run = reservations_pb2.ReallocateRequest(dry_run=True).SerializeToString()
    method = "/atp.v1.Reservations/Reallocate"
    with grpc.insecure_channel(secured.target) as channel:
        assert call(channel, method, bearer("reader-p"), dry_run) is grpc.StatusCode.OK
        assert call(channel, method, bearer("reader-p")) is grpc.StatusCode.PERMISSION_DENIED
        assert call(channel, method, bearer("ops-p")) is grpc.StatusCode.OK


def test_missing_or_unknown_credentials_are_unauthenticated_but_health_is_open(
    secured: AtpdProcess,
) -> None:
    method = "/atp.v1.Inventory/ListNodes"
    with grpc.insecure_channel(secured.target) as channel:
        assert call(channel, method, ()) is grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, method, (("authorization", "Bearer nope"),)) is (
            grpc.StatusCode.UNAUTHENTICATED)
        assert call(channel, method, (("authorization", "nope"),)) is (
            grpc.StatusCode.UNAUTHENTICATED)
        assert call(channel, "/atp.v1.Events/Watch", (), CHEAP["/atp.v1.Events/Watch"]) is (
            grpc.StatusCode.UNAUTHENTICATED)
    with Client(secured.target) as anonymous:
        assert anonymous.health() == "SERVING"
        with pytest.raises(AtpError) as refused:
            anonymous.list_nodes()
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.reason == "UNAUTHENTICATED"


def test_a_reader_writing_is_refused_with_details_and_changes_nothing(
    secured: AtpdProcess,
) -> None:
    with Client(secured.target, token=token_of("reader-p")) as reader, \
            Client(secured.target, token=token_of("admin-p")) as admin:
        with pytest.raises(AtpError) as refused:
            reader.adjust_stock([{"sku": "AUTHZ-1", "node_id": "N1", "type": "RECEIPT",
                                  "quantity": 5}])
        error = refused.value
        assert error.code is grpc.StatusCode.PERMISSION_DENIED
        assert error.reason == "PERMISSION_DENIED"
        assert error.metadata == {"role_needed": "ops", "principal": "reader-p"}
        with pytest.raises(AtpError) as unknown:
            admin.get_availability(["AUTHZ-1"])
        assert unknown.value.code is grpc.StatusCode.NOT_FOUND  # the receipt never happened
        with pytest.raises(AtpError) as denied:
            Client(secured.target, token=token_of(DENIED)).list_nodes()
        assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.metadata["principal"] == DENIED


def test_client_token_rides_on_streams_too(secured: AtpdProcess) -> None:
    with Client(secured.target, token=token_of("reader-p")) as reader:
        assert list(reader.watch(0, stop_at_head=True)) is not None

    async def reserve_over_a_stream(principal: str) -> Any:
        async with AsyncClient(secured.target, token=token_of(principal)) as client:
            await client.list_nodes()
            async with client.reserve_stream(timeout_s=5) as stream:
                return await stream.submit(reservations_pb2.ReserveRequest())

    with pytest.raises(AtpError) as refused:
        asyncio.run(reserve_over_a_stream("reader-p"))
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(AtpError) as invalid:  # authorized; then the empty request is bad
        asyncio.run(reserve_over_a_stream("service-p"))
    assert invalid.value.code is grpc.StatusCode.INVALID_ARGUMENT


def atpctl(target: str, *arguments: str, env: dict[str, str] | None = None,
           stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller checks the exit code
        [sys.executable, "-m", "atp.cli", "--target", target, *arguments], input=stdin,
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_atpctl_token_flag_environment_and_hash_token(secured: AtpdProcess) -> None:
    target = secured.target
    anonymous = atpctl(target, "nodes", "list")
    assert anonymous.returncode == 1 and "UNAUTHENTICATED" in anonymous.stderr
    by_flag = atpctl(target, "--token", token_of("reader-p"), "watch", "--from", "0",
                     "--until-head")
    assert by_flag.returncode == 0, by_flag.stderr
    by_environment = atpctl(target, "cluster", "status", env={"ATP_TOKEN": token_of("ops-p")})
    assert by_environment.returncode == 0, by_environment.stderr
    refused = atpctl(target, "cluster", "status", env={"ATP_TOKEN": token_of("reader-p")})
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    hashed = atpctl(target, "auth", "hash-token", stdin="s3cret\n")
    assert hashed.stdout.strip() == hash_token("s3cret")


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


def test_tokens_and_policy_are_reloaded_without_restart(tmp_path: Path, gateways: int) -> None:
    policy = {"allow": [{"role": "reader", "principals": ["first"]}]}
    with auth_atpd(tmp_path, ["first"], policy, gateways) as server, \
            grpc.insecure_channel(server.target) as channel:
        list_nodes, upsert = "/atp.v1.Inventory/ListNodes", "/atp.v1.Inventory/UpsertNode"
        assert call(channel, list_nodes, bearer("late")) is grpc.StatusCode.UNAUTHENTICATED
        # A new token, and a policy making it ops: both within a second or so.
        policy["allow"].append({"role": "ops", "principals": ["late"]})
        write_files(tmp_path, ["first", "late"], policy)
        wait_until(lambda: call(channel, upsert, bearer("late")) not in REFUSED)
        # A policy file that no longer parses: the last good one stays in force.
        (tmp_path / "policy.json").write_text('{"allow": [')
        time.sleep(1.2)
        assert call(channel, upsert, bearer("late")) not in REFUSED
        # A deny rule, once the file is good again.
        write_files(tmp_path, ["first", "late"], {**policy, "deny": [{"principals": ["late"]}]})
        wait_until(lambda: call(channel, list_nodes, bearer("late"))
                   is grpc.StatusCode.PERMISSION_DENIED)
        assert call(channel, list_nodes, bearer("first")) not in REFUSED
    assert "cannot be used" in server.log_path.read_text()


def test_a_client_certificate_names_the_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Principal | None] = []
    list_nodes = InventoryServicer.ListNodes

    async def recording(self: Any, request: Any, context: Any) -> Any:
        seen.append(current_principal())  # what the handler (and a later audit) sees
        return await list_nodes(self, request, context)

    monkeypatch.setattr(InventoryServicer, "ListNodes", recording)
    authority = CertificateAuthority(tmp_path / "certs")
    server_pair = authority.issue("localhost", ("localhost",))
    capture = authority.issue("capture-cn", ("capture.shop.internal",),
                              uris=("spiffe://shop/capture",))
    dashboard = authority.issue("dashboard", ())
    ca_pem = authority.cert.read_bytes()
    policy_path = tmp_path / "policy.json"
    policy_path.write_text(json.dumps({"allow": [
        {"role": "service", "principals": ["spiffe://shop/*"]},
        {"role": "reader", "principals": ["dashboard"]},
        # The certificate's CN and DNS SAN do not count when it has a URI SAN (A43).
        {"role": "admin", "principals": ["capture-cn", "capture.shop.internal"]},
    ]}))

    async def codes_for(pair: Issued) -> list[grpc.StatusCode]:
        server = AtpServer(ServerConfig(listen="127.0.0.1:0", data_dir=None,
                                        auth_policy=str(policy_path)))
        credentials = grpc.ssl_server_credentials(
            [(server_pair.key.read_bytes(), server_pair.cert.read_bytes())],
            root_certificates=ca_pem, require_client_auth=True)
        port = server.server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        try:
            channel_credentials = grpc.ssl_channel_credentials(
                ca_pem, pair.key.read_bytes(), pair.cert.read_bytes())
            async with grpc.aio.secure_channel(f"localhost:{port}", channel_credentials
                                               ) as channel:
                codes = []
                for method in ("/atp.v1.Inventory/ListNodes", "/atp.v1.Reservations/Reserve",
                               "/atp.v1.Inventory/AdjustStock"):
                    try:
                        await channel.unary_unary(method)(b"", timeout=5)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.aio.AioRpcError as error:
                        codes.append(error.code())
                return codes
        finally:
            await server.stop()

    denied = grpc.StatusCode.PERMISSION_DENIED
    read, reserve, adjust = asyncio.run(codes_for(capture))
    assert read not in REFUSED and reserve not in REFUSED and adjust is denied
    assert seen == [Principal("spiffe://shop/capture", ("spiffe://shop/capture",),
                              "certificate", INCLUDES["service"])]
    read, reserve, adjust = asyncio.run(codes_for(dashboard))
    assert read not in REFUSED and reserve is denied and adjust is denied


@pytest.mark.one_process_for_time(reason="time: a follower through secured gateways is "
                                   "tests/gateway/test_security.py's")
def test_a_follower_presents_its_peer_token_to_a_leader_with_a_policy(
    tmp_path: Path, gateways: int,
) -> None:
    policy = {"allow": [{"role": "replica", "principals": ["member-2"]},
                        {"role": "ops", "principals": ["ops-p"]}]}
    (tmp_path / "peer-token").write_text(token_of("member-2") + "\n")
    with auth_atpd(tmp_path, ["member-2", "ops-p"], policy, gateways) as leader:
        with Client(leader.target, token=token_of("ops-p")) as ops:
            ops.upsert_node(node_id="AUTHZ-DC", kind="DC", region="EU")
        # The leader runs in both modes; a follower is one process (--gateways refuses
        # --follow).
        follower = AtpdProcess(tmp_path / "follower", "--follow", leader.target,
                               "--peer-token-file", str(tmp_path / "peer-token"), gateways=0)
        with follower, Client(follower.target) as reader:  # the follower itself checks no one
            wait_until(lambda: [node.node_id for node in reader.list_nodes().nodes]
                       == ["AUTHZ-DC"], timeout_s=15)


def test_the_journal_records_who_made_each_change_and_watch_filters_by_it(
    secured: AtpdProcess,
) -> None:
    node, sku = f"AUD-{uuid.uuid4().hex[:6]}", f"SKU-{uuid.uuid4().hex[:6]}"
    with Client(secured.target, token=token_of("ops-p")) as ops:
        ops.upsert_node({"node_id": node})
        ops.adjust_stock([{"sku": sku, "node_id": node, "type": "RECEIPT", "quantity": 5}],
                         f"rcv-{sku}")
    with Client(secured.target, token=token_of("service-p")) as service:
        service.reserve(f"res-{sku}", [{"line_id": "l1", "sku": sku, "quantity": 2,
                                        "node_id": node}])
    with Client(secured.target, token=token_of("reader-p")) as reader:
        mine = [(event.type, event.principal)
                for event in reader.watch(0, sku=sku, stop_at_head=True)
                if event.type in ("STOCK_MOVED", "RESERVATION_CREATED")]
        assert mine == [("STOCK_MOVED", "ops-p"), ("RESERVATION_CREATED", "service-p")]
        by_service = list(reader.watch(0, sku=sku, principal="service-p", stop_at_head=True))
        assert by_service and {event.principal for event in by_service} == {"service-p"}
    shown = atpctl(secured.target, "watch", "--until-head", "--principal", "ops-p",
                   "--sku", sku, env={"ATP_TOKEN": token_of("reader-p")})
    assert "STOCK_MOVED" in shown.stdout and "by=ops-p" in shown.stdout
    assert "RESERVATION_CREATED" not in shown.stdout
