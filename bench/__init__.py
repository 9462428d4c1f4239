"""Load generator and bench runner for atpd (`python -m bench.run`, `make bench`).

bench/ is a plain top-level package, not installed. The engine (`atp`) is normally
installed editable in the venv; when it is not importable (a checkout run with another
interpreter that has the dependencies) the source tree is put on sys.path instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if importlib.util.find_spec("atp") is None:  # pragma: no cover - depends on the environment
    sys.path.insert(0, os.path.join(REPO_ROOT, "src"))
