"""Generates the Python stubs of protos/ into an output folder (default: src/)."""

from __future__ import annotations

import pathlib
import sys

import google.rpc.status_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def include_paths() -> list[str]:
    """Our protos, protobuf's well-known types and googleapis' common protos."""
    googleapis = pathlib.Path(google.rpc.status_pb2.__file__).resolve().parent.parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(PROTO_ROOT), str(googleapis), str(well_known)]


def generate(out_dir: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = ["grpc_tools.protoc", *(f"-I{path}" for path in include_paths())]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + protos) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src")
