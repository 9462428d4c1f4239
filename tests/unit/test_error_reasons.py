"""Every ErrorInfo.reason the server can send is registered in `atp.ledger.errors.REASONS`,
and documented, with its status code and metadata keys, in the README's error table and in
the error model comment of protos/atp/v1/common.proto.

The reasons are found in the code, not listed here: every class of the LedgerError family
(its `reason`), and by an AST scan of src/atp every refusal built by hand
(`FailedPrecondition(reason, message, metadata)`, the authorization's `Refusal(code,
reason, message, metadata)`), with the keys of the metadata dicts they carry.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import atp
from atp.ledger import errors
from atp.ledger.errors import REASONS, LedgerError

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "atp"
# Generated stubs, and the callers' side (they read reasons, they do not send them).
SKIPPED = ("v1", "cluster/etcdpb", "cli", "client.py")
# Where the reason is the n-th positional argument, and the metadata dict the m-th.
REFUSALS = {"FailedPrecondition": (0, 2), "Refusal": (1, 3)}


def _sources() -> list[Path]:
    return [path for path in sorted(SRC.rglob("*.py"))
            if not any(str(path.relative_to(SRC)).startswith(skip) for skip in SKIPPED)]


def _module_of(path: Path) -> object:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return importlib.import_module(".".join(p for p in parts if p != "__init__"))


def _values(node: ast.expr, module: object, local: dict[str, ast.expr]) -> list[str] | None:
    """The strings a reason expression can be: a literal, a module-level constant, a local
    assigned one of those (also through `a if c else b`). None if it is a parameter or an
    attribute of an object (a class's reason: checked through the classes)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _values(node.body, module, local), _values(node.orelse, module, local)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.Name):
        if node.id in local:
            return _values(local[node.id], module, {})
        value = getattr(module, node.id, None)
        return [value] if isinstance(value, str) else None
    return None


def _keys(node: ast.expr | None, local: dict[str, ast.expr]) -> set[str]:
    if isinstance(node, ast.Name) and node.id in local:
        node = local[node.id]
    if isinstance(node, ast.Dict):
        return {key.value for key in node.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    return set()


def _locals(function: ast.AST) -> dict[str, ast.expr]:
    return {target.id: statement.value
            for statement in ast.walk(function) if isinstance(statement, ast.Assign)
            for target in statement.targets if isinstance(target, ast.Name)}


def _sent_in_code() -> dict[str, set[str]]:
    """reason -> the metadata keys the code sends with it, from every source file."""
    found: dict[str, set[str]] = {}
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        module = _module_of(path)
        scopes: list[ast.AST] = [
            node for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for scope in scopes:
            local = _locals(scope)
            for call in ast.walk(scope):
                if not isinstance(call, ast.Call):
                    continue
                name = getattr(call.func, "id", getattr(call.func, "attr", ""))
                if name not in REFUSALS:
                    continue
                at, metadata_at = REFUSALS[name]
                if len(call.args) <= at:
                    continue
                values = _values(call.args[at], module, local)
                if values is None:
                    continue  # a parameter (Refusal's own), or a class's self.reason
                metadata = call.args[metadata_at] if len(call.args) > metadata_at else None
                for value in values:
                    found.setdefault(value, set()).update(_keys(metadata, local))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            reason = next((s.value for s in cls.body if isinstance(s, ast.Assign)
                           and any(getattr(t, "id", "") == "reason" for t in s.targets)), None)
            if reason is None:
                continue
            values = _values(reason, module, {}) or []
            keys = {key for node in ast.walk(cls) if isinstance(node, ast.Assign)
                    and any(getattr(t, "attr", "") == "metadata" for t in node.targets)
                    for key in _keys(node.value, {})}
            for value in values:
                found.setdefault(value, set()).update(keys)
    return found


def _error_classes() -> set[type[LedgerError]]:
    for info in pkgutil.walk_packages(atp.__path__, "atp."):
        if not info.name.startswith(("atp.v1", "atp.cluster.etcdpb", "atp.cli.__main__")):
            importlib.import_module(info.name)
    seen: set[type[LedgerError]] = set()
    todo: list[type[LedgerError]] = [LedgerError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo.extend(sub for sub in cls.__subclasses__() if sub not in seen)
    return seen


SENT = _sent_in_code()


def test_the_scan_finds_the_refusals() -> None:
    """The scan itself works: it finds reasons built by hand in the domain, the engine, the
    replication servicer and the authorization."""
    for reason in ("NODE_INACTIVE", "QUANTITY_EXCEEDS_OPEN", "NOT_LEADER", "STALE_TERM",
                   "PERMISSION_DENIED", "UNAUTHENTICATED", "SEQUENCE_NOT_RETAINED"):
        assert reason in SENT
    assert {"open_quantity", "backordered_quantity"} <= SENT["QUANTITY_EXCEEDS_OPEN"]
    assert SENT["RESERVATION_EXPIRED"] == {"reservation_id", "state"}


def test_every_reason_sent_is_registered_with_its_metadata_keys() -> None:
    for reason, keys in SENT.items():
        assert reason in REASONS, f"{reason} is sent but missing from errors.REASONS"
        assert keys <= set(REASONS[reason].metadata), (
            f"{reason} carries {sorted(keys - set(REASONS[reason].metadata))} "
            "not listed in errors.REASONS")


def test_every_error_class_has_a_registered_reason() -> None:
    for cls in _error_classes():
        if cls.reason:
            assert cls.reason in REASONS, f"{cls.__name__}.reason {cls.reason}"


def test_every_registered_reason_is_a_constant_of_the_errors_module() -> None:
    for reason in REASONS:
        assert getattr(errors, reason) == reason


def _readme_error_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**Errors** (status code"):text.index("Limits (in [")]
    return [line for line in section.splitlines() if line.startswith("| ")]


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_readme_error_table_names_each_reason(reason: str) -> None:
    info = REASONS[reason]
    rows = [row for row in _readme_error_rows() if re.search(rf"\b{reason}\b", row)
            and f"`{info.code}`" in row]
    assert rows, f"no row of the README's error table names {reason} with `{info.code}`"
    missing = [key for key in info.metadata if not any(f"`{key}`" in row for row in rows)]
    assert not missing, f"README: metadata {missing} of {reason}"


def _proto_entries() -> dict[str, tuple[str, str]]:
    """reason -> (code, its text) from the error model comment of common.proto."""
    text = (ROOT / "protos" / "atp" / "v1" / "common.proto").read_text()
    entries: dict[str, tuple[str, str]] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"//   ([A-Z_]+) \(([A-Z_]+)\): (.*)", line)
        if match:
            current = match[1]
            entries[current] = (match[2], match[3])
        elif current and line.startswith("//     "):
            code, body = entries[current]
            entries[current] = (code, body + " " + line[7:])
        else:
            current = ""
    return entries


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_proto_error_model_names_each_reason(reason: str) -> None:
    entries = _proto_entries()
    assert reason in entries, f"common.proto's error model lacks {reason}"
    code, body = entries[reason]
    assert code == REASONS[reason].code
    assert "Metadata:" in body
    metadata = body[body.index("Metadata:"):]
    missing = [key for key in REASONS[reason].metadata if not re.search(rf"\b{key}\b", metadata)]
    assert not missing, f"common.proto: metadata {missing} of {reason}"


def test_documentation_names_no_reason_the_code_lacks() -> None:
    assert set(_proto_entries()) == set(REASONS)
