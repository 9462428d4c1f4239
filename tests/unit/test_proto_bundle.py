"""`make proto-bundle` (scripts/proto_bundle.py): our protos and exactly the Google/gRPC protos
they import, in one folder that protoc compiles with no other include path."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import sys
import tarfile
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundler() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "proto_bundle", ROOT / "scripts" / "proto_bundle.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_alone(bundle: pathlib.Path, out: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    """Compiles every .proto of the bundle with the bundle as the ONLY include path (no
    grpc_tools' own well-known types either); returns the descriptors."""
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*.proto"))
    descriptors = out / "bundle.pb"
    code = protoc.main(["protoc", f"-I{bundle}", f"--descriptor_set_out={descriptors}",
                        f"--python_out={out}", *files])
    assert code == 0, "the bundle does not compile on its own (protoc printed why)"
    return descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())


def api_protos(proto_root: pathlib.Path) -> set[str]:
    names = {p.relative_to(proto_root).as_posix() for p in proto_root.rglob("*.proto")}
    return {name for name in names if not name.startswith("atp/cluster/")}


def test_the_bundle_compiles_on_its_own(bundler: ModuleType, tmp_path: pathlib.Path) -> None:
    bundle = tmp_path / "proto-bundle"
    bundler.build(bundle, tar=True)
    out = tmp_path / "out"
    out.mkdir()
    compiled = compile_alone(bundle, out)
    services = {f"{f.package}.{s.name}" for f in compiled.file for s in f.service}
    assert {"atp.v1.Inventory", "atp.v1.Availability", "atp.v1.Reservations", "atp.v1.Events",
            "grpc.health.v1.Health"} <= services
    with tarfile.open(tmp_path / "proto-bundle.tar.gz") as archive:
        archived = {name for name in archive.getnames() if name.endswith(".proto")}
    assert archived == {f"proto-bundle/{p.relative_to(bundle).as_posix()}"
                        for p in bundle.rglob("*.proto")}


def test_the_bundle_is_exactly_our_protos_and_their_imports(
    bundler: ModuleType, tmp_path: pathlib.Path
) -> None:
    bundle = tmp_path / "proto-bundle"
    bundler.build(bundle)
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*.proto")}
    ours = api_protos(ROOT / "protos")
    roots = ours | {"google/rpc/error_details.proto", "grpc/health/v1/health.proto"}
    # Nothing missing: every import of every file is in the bundle...
    imported = {
        name for path in present for name in bundler.imports_of((bundle / path).read_text())
    }
    assert imported <= present
    # ...and nothing extra: every file is a root or imported by one.
    assert present == roots | imported
    # Ours are copied byte for byte; the Google protos clients read rich errors with are there.
    for name in ours:
        assert (bundle / name).read_bytes() == (ROOT / "protos" / name).read_bytes()
    assert {"google/type/date.proto", "google/rpc/status.proto", "google/protobuf/any.proto",
            "google/protobuf/timestamp.proto"} <= present
    assert not any(name.startswith("atp/cluster/") for name in present)
    sources = (bundle / "SOURCES.txt").read_text()
    assert all(f"{name}\t" in sources for name in present)


def test_health_proto_matches_the_installed_descriptor(
    bundler: ModuleType, tmp_path: pathlib.Path
) -> None:
    """health.proto is written from grpcio-health-checking's descriptor: compiled again it
    gives the same messages, enums and service (only the file name differs)."""
    from grpc_health.v1 import health_pb2

    bundle = tmp_path / "proto-bundle"
    bundler.build(bundle)
    out = tmp_path / "out"
    out.mkdir()
    compiled = {f.name: f for f in compile_alone(bundle, out).file}
    ours = compiled["grpc/health/v1/health.proto"]
    installed = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(installed)
    ours.ClearField("name")
    installed.ClearField("name")
    without_json_names(ours)  # protoc's descriptor sets fill json_name; _pb2 modules drop it
    assert ours == installed


def without_json_names(proto: descriptor_pb2.FileDescriptorProto) -> None:
    messages = list(proto.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")


def test_a_new_proto_and_its_imports_are_picked_up(
    bundler: ModuleType, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk runs over protos/ as it is when the script runs: a new file, and what it
    imports, join the bundle; nothing is listed by hand."""
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    (protos / "atp" / "v1" / "extra.proto").write_text(
        'syntax = "proto3";\npackage atp.v1;\n'
        '// import "google/type/money.proto";  (a comment: not an import)\n'
        'import "google/protobuf/empty.proto";\nimport "atp/v1/common.proto";\n'
        "service Extra { rpc Ping(google.protobuf.Empty) returns (Node); }\n"
    )
    monkeypatch.setattr(bundler, "PROTO_ROOT", protos)
    monkeypatch.setattr(sys.modules["gen_protos"], "PROTO_ROOT", protos)
    bundle = tmp_path / "proto-bundle"
    bundler.build(bundle)
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*.proto")}
    assert {"atp/v1/extra.proto", "google/protobuf/empty.proto"} <= present
    assert "google/type/money.proto" not in present
    out = tmp_path / "out"
    out.mkdir()
    compile_alone(bundle, out)


def test_an_earlier_bundle_is_replaced_but_a_foreign_folder_is_left_alone(
    bundler: ModuleType, tmp_path: pathlib.Path
) -> None:
    bundle = tmp_path / "proto-bundle"
    bundler.build(bundle, tar=True)
    (bundle / "atp" / "v1" / "gone.proto").write_text('syntax = "proto3";\n')
    bundler.build(bundle)  # an earlier bundle: emptied, rebuilt, its stale archive removed
    assert not (bundle / "atp" / "v1" / "gone.proto").exists()
    assert not (tmp_path / "proto-bundle.tar.gz").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not emptying it"):
        bundler.build(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
