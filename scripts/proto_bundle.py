"""Builds the proto bundle: our protos plus every Google/gRPC proto they need, in one folder.

A client in another language points `protoc -I <bundle>` (or @grpc/proto-loader's
`includeDirs`) at that folder and needs nothing else. What goes in:

- every `.proto` under `protos/` (whatever is there when this runs), but etcd's trimmed
  protos under `protos/atp/cluster/` (atpd calls etcd; they are not its API);
- the protos a client needs beside them: `google/rpc/error_details.proto` (the details of
  a failed call's `google.rpc.Status`) and `grpc/health/v1/health.proto` (atpd serves the
  standard health service);
- and, transitively, every file those import, taken from the installed packages:
  googleapis-common-protos (google/type, google/rpc), grpcio-tools (google/protobuf's
  well-known types). Nothing else: the import walk decides what is copied.

grpcio-health-checking's wheel ships no `.proto` file, only the compiled descriptor, so
health.proto is written out from that descriptor (same messages, fields, enums and service;
no comments).

Usage: python scripts/proto_bundle.py [OUT_DIR] [--tar]   (default OUT_DIR: build/proto-bundle)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pathlib
import re
import shutil
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from gen_protos import PROTO_ROOT, include_paths
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

# Not imported by our protos, but part of what a client of atpd reads.
EXTRA_ROOTS = ("google/rpc/error_details.proto", "grpc/health/v1/health.proto")

# Protos installed only as compiled descriptors: bundle name -> (module, distribution).
FROM_DESCRIPTOR = {
    "grpc/health/v1/health.proto": ("grpc_health.v1.health_pb2", "grpcio-health-checking"),
}

_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


def imports_of(text: str) -> list[str]:
    """The files a .proto imports (comments ignored; string literals never hold imports)."""
    return _IMPORT.findall(_COMMENTS.sub("", text))


# Under protos/ but not atpd's API: the trimmed etcd protos atpd itself calls as a client.
NOT_API = ("atp/cluster/",)


def our_protos() -> list[str]:
    """atpd's API: every .proto under protos/ as it is now, but etcd's."""
    names = (p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    return sorted(name for name in names if not name.startswith(NOT_API))


def _origin(path: pathlib.Path) -> str:
    """Which installed distribution a file comes from, for the bundle's SOURCES.txt."""
    if path.is_relative_to(PROTO_ROOT):
        return "atp-engine protos/"
    for dist in ("googleapis-common-protos", "protobuf", "grpcio-tools"):
        try:
            distribution = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in distribution.files or ():
            if pathlib.Path(str(distribution.locate_file(file))).resolve() == path:
                return f"{dist} {distribution.version}"
    return str(path)


def resolve(name: str, search: list[pathlib.Path]) -> tuple[bytes, str]:
    """(content, origin) of one proto by import name, from the first include path holding it."""
    for directory in search:
        candidate = directory / name
        if candidate.is_file():
            return candidate.read_bytes(), _origin(candidate.resolve())
    if name in FROM_DESCRIPTOR:
        module, dist = FROM_DESCRIPTOR[name]
        descriptor = importlib.import_module(module).DESCRIPTOR
        version = importlib.metadata.version(dist)
        header = (f"// Written by scripts/proto_bundle.py from the compiled descriptor in {dist}"
                  f" {version}\n// ({module}); the wheel ships no .proto file.\n")
        text = header + render_descriptor(descriptor)
        return text.encode(), f"{dist} {version} (from its descriptor)"
    raise SystemExit(f"proto_bundle: cannot find {name!r} in {[str(d) for d in search]}")


def collect() -> dict[str, tuple[bytes, str]]:
    """Every file of the bundle, import name -> (content, origin): the roots' import closure."""
    search = [pathlib.Path(p) for p in include_paths()]
    pending = [*our_protos(), *EXTRA_ROOTS]
    found: dict[str, tuple[bytes, str]] = {}
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found[name] = resolve(name, search)
        pending.extend(imports_of(found[name][0].decode("utf-8")))
    return dict(sorted(found.items()))


def build(out_dir: pathlib.Path, tar: bool = False) -> dict[str, tuple[bytes, str]]:
    """Writes the bundle into out_dir, and out_dir.tar.gz beside it if asked. out_dir must
    be missing, empty or an earlier bundle (it is emptied first)."""
    files = collect()
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / "SOURCES.txt").is_file():
            raise SystemExit(f"proto_bundle: {out_dir} is not empty and holds no earlier bundle"
                             " (no SOURCES.txt): not emptying it")
        shutil.rmtree(out_dir)
    for name, (content, _) in files.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    listing = "".join(f"{name}\t{origin}\n" for name, (_, origin) in files.items())
    (out_dir / "SOURCES.txt").write_text(
        "# The protos of atp-engine's gRPC API and everything they import (make proto-bundle).\n"
        "# Use this folder as the only include path:\n"
        "#   protoc -I DIR --LANG_out=OUT DIR/atp/v1/*.proto DIR/google/rpc/error_details.proto\n"
        + listing,
        encoding="utf-8",
    )
    archive = out_dir.with_name(out_dir.name + ".tar.gz")
    archive.unlink(missing_ok=True)  # never leave an archive of an older bundle beside it
    if tar:
        with tarfile.open(archive, "w:gz") as bundle:
            bundle.add(out_dir, arcname=out_dir.name)
    return files


# --- .proto text from a compiled FileDescriptor (proto3 files without extensions) ------------

_SCALARS = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
    8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64",
    17: "sint32", 18: "sint64",
}
_MESSAGE, _ENUM, _REPEATED = 11, 14, 3


def render_descriptor(descriptor: FileDescriptor) -> str:
    """Proto source for a proto3 FileDescriptor: enough for health.proto and files like it.

    Raises on what it does not render (proto2, extensions, field or message options other
    than map entries) rather than writing something subtly different."""
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    if proto.syntax != "proto3" or proto.extension or proto.dependency:
        raise SystemExit(f"proto_bundle: cannot render {proto.name} (not a plain proto3 file)")
    lines = ['syntax = "proto3";', "", f"package {proto.package};", ""]
    for field, value in proto.options.ListFields():
        literal = ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'
        lines.append(f"option {field.name} = {literal};")
    package = f".{proto.package}."
    for enum in proto.enum_type:
        lines += ["", *_enum(enum, "")]
    for message in proto.message_type:
        lines += ["", *_message(message, "", package)]
    for service in proto.service:
        lines += ["", f"service {service.name} {{"]
        for method in service.method:
            if method.HasField("options"):
                raise SystemExit(f"proto_bundle: cannot render options of {method.name}")
            request = ("stream " if method.client_streaming else "") + _type(method.input_type,
                                                                              package)
            reply = ("stream " if method.server_streaming else "") + _type(method.output_type,
                                                                           package)
            lines.append(f"  rpc {method.name}({request}) returns ({reply});")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _type(type_name: str, package: str) -> str:
    return type_name.removeprefix(package)


def _enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    if enum.HasField("options") or enum.reserved_range or enum.reserved_name:
        raise SystemExit(f"proto_bundle: cannot render enum {enum.name}")
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  {v.name} = {v.number};" for v in enum.value]
    return lines + [f"{indent}}}"]


def _message(m: descriptor_pb2.DescriptorProto, indent: str, package: str) -> list[str]:
    if m.extension or m.extension_range or m.HasField("options") or m.reserved_range:
        raise SystemExit(f"proto_bundle: cannot render message {m.name}")
    maps = {n.name: n for n in m.nested_type if n.options.map_entry}
    lines = [f"{indent}message {m.name} {{"]
    inner = indent + "  "
    for enum in m.enum_type:
        lines += _enum(enum, inner)
    for nested in m.nested_type:
        if not nested.options.map_entry:
            lines += _message(nested, inner, package)
    real_oneofs: dict[int, list[str]] = {}
    for field in m.field:
        if field.HasField("options"):
            raise SystemExit(f"proto_bundle: cannot render options of field {field.name}")
        entry = maps.get(field.type_name.rsplit(".", 1)[-1]) if field.type == _MESSAGE else None
        if entry is not None and field.label == _REPEATED:
            key, value = entry.field
            kind = f"map<{_field_type(key, package)}, {_field_type(value, package)}>"
        else:
            kind = _field_type(field, package)
            if field.label == _REPEATED:
                kind = "repeated " + kind
            elif field.proto3_optional:
                kind = "optional " + kind
        text = f"{kind} {field.name} = {field.number};"
        if field.HasField("oneof_index") and not field.proto3_optional:
            real_oneofs.setdefault(field.oneof_index, []).append(text)
        else:
            lines.append(inner + text)
    for index, texts in sorted(real_oneofs.items()):
        lines.append(f"{inner}oneof {m.oneof_decl[index].name} {{")
        lines += [f"{inner}  {text}" for text in texts]
        lines.append(f"{inner}}}")
    return lines + [f"{indent}}}"]


def _field_type(field: descriptor_pb2.FieldDescriptorProto, package: str) -> str:
    kind = field.type
    if kind in (_MESSAGE, _ENUM):
        return _type(field.type_name, package)
    if kind not in _SCALARS:
        raise SystemExit(f"proto_bundle: cannot render field type {kind}")
    return _SCALARS[kind]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", type=pathlib.Path,
                        default=ROOT / "build" / "proto-bundle")
    parser.add_argument("--tar", action="store_true", help="also write OUT_DIR.tar.gz beside it")
    args = parser.parse_args(argv)
    files = build(args.out_dir, tar=args.tar)
    print(f"proto bundle: {len(files)} files in {args.out_dir}"
          + (f" (and {args.out_dir.name}.tar.gz)" if args.tar else ""))


if __name__ == "__main__":
    main()
