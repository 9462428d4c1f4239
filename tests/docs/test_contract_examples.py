"""Every ```python block of docs/contract.md, run in order against a live atpd; and its
```js blocks too, when node and the Node.js packages of examples/node are installed.

The python blocks form one session, as a reader would paste them: the first reads the
server's address from ATP_ADDRESS, later ones use the names earlier ones defined. A block
that fails is named by its line and first line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.atpd import AtpdProcess
from tests.support.node import node_with_packages

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block."""
    return [(text.count("\n", 0, match.start()) + 1, match.group(1))
            for match in _PYTHON_BLOCK.finditer(text)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtpdProcess]:
    with AtpdProcess(tmp_path_factory.mktemp("contract") / "data", "--sync", "off") as atpd:
        yield atpd


def test_the_guide_has_python_examples() -> None:
    assert len(python_blocks(CONTRACT.read_text())) >= 5


def test_python_examples_run(server: AtpdProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_ADDRESS", server.target)
    namespace: dict[str, object] = {"__name__": "contract_examples"}
    for line, code in python_blocks(CONTRACT.read_text()):
        try:
            # Padded so that a traceback names the line of docs/contract.md.
            exec(compile("\n" * line + code, str(CONTRACT), "exec"), namespace)  # noqa: S102
        except Exception as error:
            first = code.strip().splitlines()[0]
            raise AssertionError(
                f"the python block at docs/contract.md line {line} ({first!r}) failed: "
                f"{type(error).__name__}: {error}") from error


_JS_BLOCK = re.compile(r"^```js\n(.*?)^```", re.DOTALL | re.MULTILINE)
NODE_MODULES = ROOT / "examples" / "node" / "node_modules"
BUNDLER = ROOT / "scripts" / "proto_bundle.py"


def test_node_examples_run(tmp_path: Path) -> None:
    """The ```js blocks, joined into one program as the page presents them, against a fresh
    atpd, with the packages examples/node installed (`npm ci` there) and a proto bundle."""
    node = node_with_packages()
    blocks = _JS_BLOCK.findall(CONTRACT.read_text())
    assert blocks, "docs/contract.md has no ```js blocks"
    subprocess.run([sys.executable, str(BUNDLER), str(tmp_path / "build" / "proto-bundle")],
                   check=True, capture_output=True, timeout=120)
    program = tmp_path / "contract_examples.js"
    program.write_text("\n".join(blocks))
    with AtpdProcess(tmp_path / "data", "--sync", "off") as atpd:
        run = subprocess.run(
            [node, str(program)], check=False, cwd=tmp_path, capture_output=True, text=True,
            timeout=60,
            env={**os.environ, "ATP_ADDRESS": atpd.target, "NODE_PATH": str(NODE_MODULES)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "INSUFFICIENT_AVAILABILITY" in run.stdout and "caught up to" in run.stdout
