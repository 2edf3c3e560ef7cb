"""The CI package's own checks, in make test's fast tier: its import layers (import-linter contracts in
pyproject.toml: no cycle, no import running back up), ruff's lint and format, and strict mypy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKED = ["master", "tests", "bench", "scripts"]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "master"))
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_import_graph_keeps_its_layers() -> None:
    done = run(str(BIN / "lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
