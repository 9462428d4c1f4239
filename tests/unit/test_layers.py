"""The layers a reader sees in src/atp are the ones the imports keep: each package imports
only the layers beneath it, and no module reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "atp"

# Package -> the atp packages (and top-level modules) it may import, besides itself.
ALLOWED: dict[str, set[str]] = {
    "ledger": {"limits"},
    # tls: transport security (TlsOptions for channels), a leaf module like limits.
    "cluster": {"limits", "tls"},
    "store": set(),
    "persistence": {"ledger", "store", "limits"},
    "engine": {"ledger", "persistence", "store", "limits"},
    "server": {"engine", "ledger", "persistence", "store", "limits", "v1", "flags", "tls"},
}
# Private names of other libraries that are their public API in practice.
FOREIGN_PRIVATE = {"os._exit", "lmdb._Database"}


def atp_imports(path: Path) -> set[str]:
    """The first component under atp of everything the file imports (atp.ledger.x -> ledger)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "atp" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_beneath_it(package: str) -> None:
    known = {p.stem if p.is_file() else p.name for p in SOURCE.iterdir()}
    for path in sorted((SOURCE / package).rglob("*.py")):
        imported = atp_imports(path) & known - {package}
        assert imported <= ALLOWED[package], (
            f"{path.relative_to(SOURCE)} imports {sorted(imported - ALLOWED[package])}")


def test_the_domain_core_imports_neither_grpc_nor_lmdb() -> None:
    for path in sorted((SOURCE / "ledger").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                assert not any(n.split(".")[0] in ("grpc", "lmdb") for n in names), path


def test_no_module_reaches_into_another_ones_private_names() -> None:
    reaches = []
    for path in sorted(SOURCE.rglob("*.py")):
        if "v1" in path.parts or "etcdpb" in path.parts:
            continue  # generated
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("atp"):
                reaches += [f"{path.name}: from {node.module} import {alias.name}"
                            for alias in node.names if _is_private(alias.name)]
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                text = ast.unparse(node)
                if text not in FOREIGN_PRIVATE:
                    reaches.append(f"{path.name}:{node.lineno}: {text}")
    assert reaches == []


def _is_private(name: str) -> bool:
    """_name, but not __dunder__ nor an enum's documented _sunder_ (_value_)."""
    return name.startswith("_") and not name.startswith("__") and not name.endswith("_")
