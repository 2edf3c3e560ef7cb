"""ci_venv.py with `--install` (ci_install.py, issue 23 item 4), run for real on tiny projects.

The fixture's projects (`tests/fixtures/install_projects`) copied into a scratch directory: uv
(`uv sync --frozen` from uv.lock), poetry (`poetry sync --with test` from poetry.lock) and pip specs
(`pip install -e ".[test]"`). The pinned uv and poetry come from the package index into the cache once
for the module. What is checked: the venv works (the project's tests pass in it, the project imported
from the checkout), it is keyed by the files the install reads, the interpreter and the project's
directory, a second build reuses it and re-installs the project from the current checkout, `uv run`
uses it read-only, a missing lock file is one line naming it, a tool in the default branch's cache
(the seed) is used read-only. The tests that download (the tools, the projects' dependencies: ~2
minutes on a loaded machine) are marked e2e, out of the fast tier; the lock file check is not.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci.helpers import ci_install
from namaskah_ci.jobs.hostenv import host_ca_env

ROOT = Path(__file__).resolve().parents[3]
HELPERS = ROOT / "master" / "namaskah_ci" / "helpers"
FIXTURE = ROOT / "tests" / "fixtures" / "install_projects"
PYTHON = sys.executable
UV = {"tool": "uv"}
POETRY = {"tool": "poetry", "groups": ["test"]}
PIP = {"tool": "pip", "specs": [".[test]"]}
CA = dict(host_ca_env())  # a job's CA bundle variables (PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, ...)


DOWNLOADS = pytest.mark.e2e


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A scratch directory with the fixture's projects and one cache for the module's venvs and tools."""
    tmp = tmp_path_factory.mktemp("install")
    shutil.copytree(FIXTURE, tmp / "repo", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


def ci_venv(work: Path, install: dict, project: str, cache: str = "cache", seed: str = ""):
    argv = [PYTHON, str(HELPERS / "ci_venv.py"), "--python", PYTHON, "--cache-root", str(work / cache)]
    argv += ["--install", json.dumps(install), "--project-dir", str(work / "repo" / project)]
    argv += ["--seed", str(work / seed)] if seed else []
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "PIP_CACHE_DIR": str(work / "pip-cache"), **CA}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, check=False)
    venv = [line[5:] for line in done.stdout.splitlines() if line.startswith("VENV=")]
    return done, (venv[0] if venv else "")


def pytest_in(venv: str, where: Path, *args: str, env: dict | None = None, program: tuple = ()) -> str:
    command = [*program] or [f"{venv}/bin/python", "-m", "pytest"]
    environ = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(where), "VIRTUAL_ENV": venv, **(env or {})}
    done = subprocess.run(
        [*command, "-q", "-p", "no:cacheprovider", *args],
        cwd=where,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def uv_venv(work):
    done, venv = ci_venv(work, UV, "backend")
    assert done.returncode == 0, done.stderr
    return venv, done


@DOWNLOADS
def test_uv_sync_frozen_builds_a_venv_whose_tests_pass_from_the_checkout(work, uv_venv):
    venv, done = uv_venv
    assert "sync --frozen --python" in done.stderr and "ci_venv: built" in done.stderr
    assert Path(venv).parent == work / "cache" / "venvs"
    # tests/test_config.py (one asserts `app` is the checkout's); the database tests need the job's
    # PostgreSQL (tests/e2e/test_install.py runs them)
    out = pytest_in(venv, work / "repo" / "backend", "tests/test_config.py")
    assert "2 passed" in out and "failed" not in out and "error" not in out, out
    link = Path(venv) / "bin" / "uv"  # the pinned uv beside the venv's programs (PATH has them first)
    assert link.is_symlink() and "tool-uv-" in os.readlink(link)


@DOWNLOADS
def test_uv_run_uses_the_read_only_venv_and_never_syncs(work, uv_venv):
    venv, _ = uv_venv
    step = ci_install.step_env({"install": UV}, venv)
    modes = {}
    for path in [Path(venv), *Path(venv).rglob("*")]:
        if not path.is_symlink():
            modes[path] = path.stat().st_mode
            path.chmod(stat.S_IMODE(modes[path]) & ~0o222)
    try:
        out = pytest_in(
            venv, work / "repo" / "backend", "-k", "read", env=step, program=(f"{venv}/bin/uv", "run", "pytest")
        )
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))
    assert "1 passed, 3 deselected" in out, out  # `-k read`: test_read alone of the four


@DOWNLOADS
def test_a_second_build_reuses_the_venv_and_installs_the_project_again(work, uv_venv):
    venv, _ = uv_venv
    done, again = ci_venv(work, UV, "backend")
    assert done.returncode == 0, done.stderr
    assert again == venv and f"reusing {venv}" in done.stderr
    assert "sync --frozen" in done.stderr  # the project itself, from this checkout


@DOWNLOADS
def test_the_venv_is_keyed_by_the_lock_the_project_and_its_directory(work, uv_venv):
    venv, _ = uv_venv
    moved = work / "repo" / "backend-copy"
    shutil.copytree(work / "repo" / "backend", moved)
    done, elsewhere = ci_venv(work, UV, "backend-copy")
    assert done.returncode == 0 and elsewhere != venv  # never a venv pointing at another checkout
    with open(moved / "pyproject.toml", "a") as handle:
        handle.write("\n# changed\n")
    done, changed = ci_venv(work, UV, "backend-copy")
    assert done.returncode == 0 and changed not in (venv, elsewhere)
    done, grouped = ci_venv(work, {"tool": "uv", "groups": ["dev"]}, "backend-copy")
    assert done.returncode == 0 and grouped not in (venv, elsewhere, changed)


def test_a_missing_lock_file_is_one_line_naming_it(work):
    (work / "repo" / "no-lock").mkdir()
    (work / "repo" / "no-lock" / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    done, venv = ci_venv(work, UV, "no-lock")
    assert done.returncode == 2 and not venv
    assert done.stderr.strip().splitlines() == [
        f"ci_venv: install: uv needs uv.lock in {work / 'repo' / 'no-lock'}: run `uv lock` there and commit it "
        "(or set the job's working_directory to the project's directory)"
    ]
    done, _ = ci_venv(work, UV, "nowhere")
    assert done.returncode == 2 and "the project directory" in done.stderr and "does not exist" in done.stderr


@DOWNLOADS
def test_a_tool_of_the_default_branchs_cache_is_used_read_only(work, uv_venv):
    done, venv = ci_venv(work, UV, "backend", cache="branch-cache", seed="cache")
    assert done.returncode == 0, done.stderr
    assert venv.startswith(str(work / "cache" / "venvs"))  # the seed's venv, as for requirement files
    assert "installing uv" not in done.stderr
    assert not list((work / "branch-cache" / "venvs").glob("tool-uv-*/bin"))


@DOWNLOADS
def test_poetry_sync_with_a_group_builds_a_venv_whose_tests_pass(work):
    done, venv = ci_venv(work, POETRY, "poetry_app")
    assert done.returncode == 0, done.stderr
    assert "sync --no-interaction --with test" in done.stderr
    assert "3 passed" in pytest_in(venv, work / "repo" / "poetry_app")
    step = {"POETRY_VIRTUALENVS_CREATE": "false"}
    out = pytest_in(
        venv, work / "repo" / "poetry_app", "-k", "hello", env=step, program=(f"{venv}/bin/poetry", "run", "pytest")
    )
    assert "1 passed, 2 deselected" in out, out


@DOWNLOADS
def test_pip_specs_install_the_project_editable_and_again_each_build(work):
    done, venv = ci_venv(work, PIP, "extras_pkg")
    assert done.returncode == 0, done.stderr
    assert "-e .[test]" in done.stderr
    project = work / "repo" / "extras_pkg"
    assert "2 passed" in pytest_in(venv, project)
    (project / "src" / "extra_module").mkdir()  # a new top-level package: seen after the next build
    (project / "src" / "extra_module" / "__init__.py").write_text("VALUE = 7\n")
    done, again = ci_venv(work, PIP, "extras_pkg")
    assert done.returncode == 0 and again == venv, done.stderr
    probe = subprocess.run(
        [f"{venv}/bin/python", "-c", "import extra_module, shapes; print(extra_module.VALUE)"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.strip() == "7", probe.stderr
