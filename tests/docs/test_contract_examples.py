"""Every ```python block of docs/contract.md, run in order against a live atpd.

The blocks form one session, as a reader would paste them: the first reads the server's
address from ATP_ADDRESS, later ones use the names earlier ones defined. A block that fails
is named by its number and first line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
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
