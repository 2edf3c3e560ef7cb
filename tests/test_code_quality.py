"""The CI package's own checks, in make test's fast tier: its import layers (import-linter contracts in
pyproject.toml: no cycle, no import running back up), ruff's lint and format over the package, the tests,
the benchmarks and the scripts, strict mypy over the package and mypy over the rest (every function body
checked, annotations optional: pyproject.toml's [tool.mypy]). `make lint` runs the same commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKED = ["master", "tests", "bench", "scripts"]
# --config-file: the repository root's mypy.ini is the reference service's, and would win without it
MYPY = [str(BIN / "mypy"), "--config-file", "pyproject.toml"]


def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "master"))
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout[-6000:] + done.stderr[-2000:]


def test_the_import_graph_keeps_its_layers() -> None:
    done = run(str(BIN / "lint-imports"), "--no-cache")
    assert done.returncode == 0, said(done)


def test_ruff_finds_nothing() -> None:
    done = run(str(BIN / "ruff"), "check", "--no-cache", *CHECKED)
    assert done.returncode == 0, said(done)


def test_every_file_is_formatted() -> None:
    done = run(str(BIN / "ruff"), "format", "--check", "--no-cache", *CHECKED)
    assert done.returncode == 0, said(done)


# mypy keeps its cache in .mypy_cache/ (gitignored): ~25 s cold on this machine, a few seconds warm
@pytest.mark.timeout(900)
def test_the_package_passes_strict_mypy() -> None:
    done = run(*MYPY, "master/namaskah_ci", timeout=800)
    assert done.returncode == 0, said(done)


@pytest.mark.timeout(900)
def test_tests_benchmarks_and_scripts_pass_mypy() -> None:
    done = run(*MYPY, "tests", "bench", "scripts", timeout=800)
    assert done.returncode == 0, said(done)
