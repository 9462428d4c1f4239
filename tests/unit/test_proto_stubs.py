"""The committed stubs in src/atp/v1 and src/atp/cluster/etcdpb are exactly what `make protos`
generates from protos/."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Each package of generated stubs, as a path under src/.
STUB_PACKAGES = ["atp/v1", "atp/cluster/etcdpb"]


@pytest.mark.parametrize("package", STUB_PACKAGES)
def test_committed_stubs_match_the_protos(tmp_path: pathlib.Path, package: str) -> None:
    _generator().generate(tmp_path)  # type: ignore[attr-defined]
    generated = {
        p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / package).glob("*.py*")
    }
    committed_dir = ROOT / "src" / package
    committed = {
        p.relative_to(ROOT / "src"): p.read_bytes()
        for p in committed_dir.glob("*.py*")
        if p.name != "__init__.py"
    }
    assert generated, "protoc generated nothing"
    assert sorted(generated) == sorted(committed), "stub files differ: run `make protos`"
    drifted = [str(name) for name in generated if generated[name] != committed[name]]
    assert not drifted, f"stubs drifted from protos/ (run `make protos`): {drifted}"


def test_every_service_of_the_contract_is_generated() -> None:
    from atp.v1 import availability_pb2, events_pb2, inventory_pb2, reservations_pb2

    services = {
        name
        for module in (inventory_pb2, availability_pb2, reservations_pb2, events_pb2)
        for name in module.DESCRIPTOR.services_by_name
    }
    assert services == {"Inventory", "Availability", "Reservations", "Events"}


def test_the_etcd_stubs_keep_etcds_packages_and_method_paths() -> None:
    """etcd routes by the full method name: the trimmed protos keep etcd's package names."""
    from atp.cluster.etcdpb import kv_pb2, rpc_pb2

    assert kv_pb2.DESCRIPTOR.package == "mvccpb"
    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"
    methods = {
        f"/{service.full_name}/{method.name}"
        for service in rpc_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods == {
        "/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange",
        "/etcdserverpb.KV/Txn", "/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Lease/LeaseRevoke", "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Lease/LeaseTimeToLive", "/etcdserverpb.Maintenance/Status",
    }
