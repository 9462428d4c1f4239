"""The authorization table covers every RPC atpd serves; policy and tokens files; reloads."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool

from atp import bootstrap
from atp.bootstrap import AtpServer, ServerConfig
from atp.server import authorization
from atp.server.authorization import (
    ADMIN,
    ANY_ROLE,
    INCLUDES,
    METHOD_ROLES,
    OPEN,
    OPS,
    READER,
    REPLICA,
    ROLES,
    SERVICE,
    AuthFileError,
    Authorization,
    Refusal,
    Reloading,
    certificate_names,
    hash_token,
    parse_policy,
    parse_tokens,
    role_needed,
)
from atp.v1 import reservations_pb2


def registered_services(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The services an AtpServer registers on its grpc server, as it registers them."""
    names: set[str] = set()
    make_server = grpc.aio.server

    def recording_server(*args: Any, **kwargs: Any) -> Any:
        server = make_server(*args, **kwargs)
        add_registered, add_generic = (server.add_registered_method_handlers,
                                       server.add_generic_rpc_handlers)

        def registered(service: str, handlers: Any) -> Any:
            names.add(service)
            return add_registered(service, handlers)

        def generic(handlers: Any) -> Any:
            names.update(handler.service_name() for handler in handlers
                         if hasattr(handler, "service_name"))
            return add_generic(handlers)

        server.add_registered_method_handlers = registered
        server.add_generic_rpc_handlers = generic
        return server

    monkeypatch.setattr(bootstrap.grpc.aio, "server", recording_server)

    async def build() -> None:
        server = AtpServer(ServerConfig(listen="127.0.0.1:0", data_dir=None))
        server.store.close()

    asyncio.run(build())
    return names


def test_every_rpc_of_every_registered_service_is_in_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = registered_services(monkeypatch)
    assert {"atp.v1.Inventory", "atp.v1.Availability", "atp.v1.Reservations",
            "atp.v1.Events", "atp.v1.Replication", "atp.v1.Server", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    missing = [
        f"/{service}/{method.name}"
        for service in sorted(services)
        for method in descriptor_pool.Default().FindServiceByName(service).methods
        if f"/{service}/{method.name}" not in METHOD_ROLES
    ]
    assert missing == [], f"RPCs without a role in authorization.METHOD_ROLES: {missing}"
    assert set(METHOD_ROLES.values()) <= {*ROLES, OPEN, ANY_ROLE}


def test_roles_are_ordered_and_replica_stands_aside() -> None:
    assert INCLUDES[READER] < INCLUDES[SERVICE] < INCLUDES[OPS] < INCLUDES[ADMIN]
    assert INCLUDES[REPLICA] == {REPLICA} and REPLICA in INCLUDES[ADMIN]


def test_a_reallocate_dry_run_needs_only_the_reader_role() -> None:
    method = "/atp.v1.Reservations/Reallocate"
    assert role_needed(method, reservations_pb2.ReallocateRequest(dry_run=True)) == READER
    assert role_needed(method, reservations_pb2.ReallocateRequest()) == OPS
    assert role_needed(method) == OPS
    assert role_needed("/atp.v1.Nope/Nope") is None


def test_policy_deny_beats_allow_and_roles_accumulate() -> None:
    policy = parse_policy(
        '{"deny": [{"principals": ["mallory"]}], "allow": ['
        '{"role": "reader", "principals": ["*"]},'
        '{"role": "service", "principals": ["spiffe://shop/*", "capture-svc"]},'
        '{"role": "replica", "principals": ["capture-svc"]}]}')
    assert policy.roles_of(["mallory"]) is None
    assert policy.roles_of(["someone"]) == {READER}
    assert policy.roles_of(["spiffe://shop/capture"]) == {READER, SERVICE}
    assert policy.roles_of(["capture-svc"]) == {READER, SERVICE, REPLICA}
    assert parse_policy('{"allow": []}').roles_of(["anyone"]) == frozenset()


@pytest.mark.parametrize(("text", "complaint"), [
    ("{", "not JSON"),
    ("[]", "must be a JSON object"),
    ('{"allows": []}', "unknown keys"),
    ('{"allow": [{"role": "root", "principals": ["a"]}]}', "allow[0].role"),
    ('{"allow": [{"role": "ops", "principals": []}]}', "allow[0].principals"),
    ('{"deny": [{"principals": "a"}]}', "deny[0].principals"),
])
def test_a_bad_policy_is_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(AuthFileError, match=complaint.replace("[", r"\[")):
        parse_policy(text)


def test_tokens_are_stored_as_sha256_hashes() -> None:
    digest = hash_token("s3cret")
    assert len(digest) == 64
    assert parse_tokens(f'{{"tokens": [{{"sha256": "{digest.upper()}", "principal": "p"}}]}}'
                        ) == {digest: "p"}
    for bad in ('{"tokens": [{"sha256": "abc", "principal": "p"}]}',
                f'{{"tokens": [{{"sha256": "{digest}", "principal": ""}}]}}',
                (f'{{"tokens": [{{"sha256": "{digest}", "principal": "p"}},'
                f'{{"sha256": "{digest}", "principal": "q"}}]}}')):
        with pytest.raises(AuthFileError):
            parse_tokens(bad)


def test_certificate_names_follow_a43_uri_then_dns_then_cn() -> None:
    full = {"peer_uri": [b"spiffe://shop/capture"], "peer_dns": [b"capture.internal"],
            "x509_common_name": [b"capture"]}
    assert certificate_names(full) == ("spiffe://shop/capture",)
    assert certificate_names({**full, "peer_uri": []}) == ("capture.internal",)
    assert certificate_names({"x509_common_name": [b"capture"]}) == ("capture",)
    assert certificate_names({"transport_security_type": [b"insecure"]}) == ()


def test_a_changed_file_is_reloaded_and_a_broken_one_keeps_the_last(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"allow": [{"role": "reader", "principals": ["a"]}]}')
    now = [0.0]
    policy = Reloading(str(path), parse_policy, "policy file", 1.0, clock=lambda: now[0])
    assert policy.current().roles_of(["a"]) == {READER}
    path.write_text('{"allow": [{"role": "ops", "principals": ["a"]}]}')
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    now[0] = 0.5
    assert policy.current().roles_of(["a"]) == {READER}  # not checked again within a second
    now[0] = 1.0
    assert policy.current().roles_of(["a"]) == INCLUDES[OPS]
    path.write_text('{"allow": [')
    now[0] = 2.0
    assert policy.current().roles_of(["a"]) == INCLUDES[OPS]
    assert "cannot be used" in caplog.text
    path.unlink()
    now[0] = 3.0
    assert policy.current().roles_of(["a"]) == INCLUDES[OPS]


def test_authorize_names_the_role_needed_and_the_principal(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(
        '{"deny": [{"principals": ["bad"]}], '
        '"allow": [{"role": "reader", "principals": ["r", "bad"]}]}')
    (tmp_path / "tokens.json").write_text(
        f'{{"tokens": [{{"sha256": "{hash_token("t-r")}", "principal": "r"}},'
        f'{{"sha256": "{hash_token("t-bad")}", "principal": "bad"}}]}}')
    gate = Authorization(str(tmp_path / "policy.json"), str(tmp_path / "tokens.json"))
    read, write = "/atp.v1.Availability/GetAvailability", "/atp.v1.Inventory/AdjustStock"
    principal = gate.authorize(read, [("authorization", "Bearer t-r")], {})
    assert (principal.name, principal.source, principal.roles) == ("r", "token", {READER})
    with pytest.raises(Refusal) as refused:
        gate.authorize(write, [("authorization", "bearer t-r")], {})
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Refusal, match="denied by the policy"):
        gate.authorize(read, [("authorization", "Bearer t-bad")], {})
    for metadata in ([], [("authorization", "Bearer nope")], [("authorization", "Basic x")]):
        with pytest.raises(Refusal) as refused:
            gate.authorize(read, metadata, {})
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
    by_certificate = gate.authorize(read, [], {"x509_common_name": [b"r"]})
    assert (by_certificate.name, by_certificate.source) == ("r", "certificate")
    # A method the table lacks needs admin.
    with pytest.raises(Refusal, match="needs the role admin"):
        gate.authorize("/atp.v1.New/Thing", [("authorization", "Bearer t-r")], {})
    assert authorization.current_principal() is None  # outside a call


def test_server_info_is_for_any_principal_with_a_role(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(
        '{"allow": [{"role": "reader", "principals": ["r"]}, '
        '{"role": "replica", "principals": ["member"]}]}')
    gate = Authorization(str(tmp_path / "policy.json"))
    info = "/atp.v1.Server/GetServerInfo"
    for name in ("r", "member"):
        assert gate.authorize(info, [], {"x509_common_name": [name.encode()]}).name == name
    with pytest.raises(Refusal, match="needs a role, and nobody has none") as refused:
        gate.authorize(info, [], {"x509_common_name": [b"nobody"]})
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Refusal) as refused:
        gate.authorize(info, [], {})
    assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
