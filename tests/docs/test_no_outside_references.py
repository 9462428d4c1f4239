"""The repository documents itself: nothing in it sends a reader to the design document we
were once given, which lives outside it. docs/contract.md (the contract) and
docs/architecture.md (how it is kept) hold what it said. A line may still name it as
history when it says so ("historical")."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_DOCUMENT = "DESIGN" + ".md"  # spelled apart so that this file does not match itself
PLACES = ("README.md", "Makefile", "docs", "src", "examples", "bench", "protos", "scripts",
          "tests")
SUFFIXES = {".md", ".py", ".pyi", ".proto", ".js", ".mjs", ".ts", ".json", ".toml", ".txt",
            ".sh", ".yaml", ".yml", ""}

# Made by tools from tracked files (pip copies the README into PKG-INFO), not written by us.
GENERATED = {"node_modules", "results", "__pycache__"}


def files() -> list[Path]:
    found: list[Path] = []
    for place in PLACES:
        path = ROOT / place
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [item for item in sorted(path.rglob("*"))
                      if item.is_file() and item.suffix in SUFFIXES
                      and not any(part in GENERATED or part.endswith(".egg-info")
                                  for part in item.parts)]
    return found


def test_no_file_sends_readers_outside_the_repository() -> None:
    offending = []
    for path in files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_DOCUMENT in line and "historical" not in line.lower():
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, (
        f"these lines refer to {OUTSIDE_DOCUMENT}, which is not in the repository; point "
        "them to docs/contract.md or docs/architecture.md:\n" + "\n".join(offending))
