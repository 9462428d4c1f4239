"""Node.js for the tests that run JavaScript clients: the node binary, with
examples/node/node_modules installed from its lockfile (`npm ci`), or a skip that says why."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
NPM_CI_TIMEOUT_S = 300


def installed_packages(lockfile: Path) -> dict[str, str]:
    """node_modules/... path -> version, from a lockfile (or npm's hidden one)."""
    packages = json.loads(lockfile.read_text()).get("packages", {})
    return {
        name: str(entry.get("version"))
        for name, entry in packages.items()
        if name.startswith("node_modules/")
    }


def node_modules_current() -> bool:
    """node_modules holds exactly what package-lock.json says (npm's hidden lockfile,
    node_modules/.package-lock.json, records what the last install put there)."""
    hidden = EXAMPLE / "node_modules" / ".package-lock.json"
    if not hidden.is_file():
        return False
    try:
        return installed_packages(hidden) == installed_packages(EXAMPLE / "package-lock.json")
    except (OSError, ValueError):
        return False


def node_with_packages() -> str:
    """The node binary, with examples/node/node_modules installed from the lockfile."""
    node_binary, npm = shutil.which("node"), shutil.which("npm")
    if node_binary is None:
        pytest.skip("node not installed")
    if npm is None:
        pytest.skip("npm not installed")
    if not node_modules_current():
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True,
                text=True, timeout=NPM_CI_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install failed: npm ci took over {NPM_CI_TIMEOUT_S} s")
        if done.returncode != 0:
            pytest.skip(f"npm install failed: {npm_failure(done.stderr, done.returncode)}")
    return node_binary


def npm_failure(stderr: str, returncode: int) -> str:
    """The gist of npm's error output, e.g. 'ECONNREFUSED: FetchError: request to ...'."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.splitlines()
             if line.startswith("npm error")]
    code = next((line.split(None, 1)[1] for line in lines if line.startswith("code ")), "")
    text = next((line for line in lines if line and line.split()[0] not in
                 ("code", "syscall", "errno") and not line.startswith("A complete log")),
                f"npm ci exited {returncode}")
    return f"{code}: {text}" if code else text
