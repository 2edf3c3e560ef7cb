"""End to end (local mode): a job's environment made by `install:` (issue 23 item 4): uv, poetry, pip specs.

One real master builds the fixture repository `tests/fixtures/install_projects` (one pipeline, three
jobs, each in its project's directory): `backend/` with `uv.lock` (`install: {uv: {}}`) and no pytest
configuration, whose app reads POSTGRES_SERVER/PORT/USER/PASSWORD/DB of the job's PostgreSQL
(`{name: postgres, database: app_test, user: app}`) and whose coverage report has its own `min`, `poetry_app/`
with `poetry.lock` and an optional group (`install: {poetry: {with: [test]}}`), `extras_pkg/` a
setup.py package with a `test` extra (`install: {pip: [".[test]"]}`). Each job runs pytest from its
venv (first on PATH) and again through `uv run` / `poetry run`; its results equal the same commands
run by hand here (the pinned uv or poetry from the package index, pytest in that environment), and its
project is imported from the build's checkout, not a copy in site-packages.
"""

from __future__ import annotations

import contextlib
import glob
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import ROOT, commit_file, make_fixture_repo, running, start_master, wait_for
from namaskah_ci.helpers.ci_install import VERSIONS
from namaskah_ci.jobs.hostenv import host_ca_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
FIXTURE = ROOT / "tests" / "fixtures" / "install_projects"
SERVICES = ROOT / "master" / "namaskah_ci" / "helpers" / "ci_services.py"
CA = dict(host_ca_env())  # what a local job's environment has
JOBS = {"uv-tests": "backend", "poetry-tests": "poetry_app", "extras-tests": "extras_pkg"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The fixture's pipeline, run once: {builder: (build, its logs' text, its junit counts)}."""
    tmp = tmp_path_factory.mktemp("install")
    repo = make_fixture_repo(tmp / "repo", "install_projects")
    with running(lambda: start_master(tmp, repo)) as master:
        revision = commit_file(repo, "README", "install: uv, poetry, pip\n", "a push")
        master.pipeline_of(revision)
        found = {}
        for builder in JOBS:
            build = wait_for(f"the {builder} build", first_build(master, builder, revision), 60)
            reports = glob.glob(str(master.basedir / "workers" / "*" / builder / "build" / "reports" / "*.xml"))
            [report] = [path for path in reports if not path.endswith("coverage.xml")]  # the JUnit one
            found[builder] = (build, master.build_text(build), junit_counts(Path(report).read_text()))
        yield found


def first_build(master, builder: str, revision: str) -> Callable[[], dict | None]:
    def first() -> dict | None:
        return next(iter(master.builds_of(builder, revision)), None)

    return first


def junit_counts(text: str) -> tuple[int, int]:
    """(tests, failures + errors) of a JUnit report."""
    root = ET.fromstring(text)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, text[:200]
    return int(suite.get("tests", "0")), int(suite.get("failures", "0")) + int(suite.get("errors", "0"))


def by_hand(tmp: Path, project: str, make: list[list[str]], env: dict) -> tuple[int, int]:
    """The project copied, its environment made with `make` (run there), pytest run in it: its counts."""
    where = tmp / project
    shutil.copytree(FIXTURE / project, where)
    for command in make:
        subprocess.run(command, cwd=where, env=env, check=True, capture_output=True, timeout=600)
    report = tmp / f"{project}.xml"
    subprocess.run(
        [str(tmp / "venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=where,
        env=env,
        check=False,
        capture_output=True,
        timeout=300,
    )
    return junit_counts(report.read_text())


@contextlib.contextmanager
def postgres_variables(tmp: Path, *flags: str) -> Iterator[dict[str, str]]:
    """The POSTGRES_* variables of a PostgreSQL that ci_services.py, run here, starts with `flags`."""
    state = tmp / "services"
    command = [sys.executable, str(SERVICES), "start", "--state-dir", str(state), "--postgres", *flags]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        yield {k: v for k, v in values.items() if k.startswith("POSTGRES_")}
    finally:
        subprocess.run([sys.executable, str(SERVICES), "stop", "--state-dir", str(state)], timeout=120, check=False)


def tool_venv(tmp: Path, name: str) -> str:
    """The pinned tool (ci_install.VERSIONS) from the package index, in a venv of its own."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp / name)], check=True, timeout=300)
    pip = [str(tmp / name / "bin" / "python"), "-m", "pip", "install", "-q", f"{name}=={VERSIONS[name]}"]
    subprocess.run(pip, check=True, capture_output=True, timeout=600)
    return str(tmp / name / "bin" / name)


def assert_passed(found: tuple, expected: tuple[int, int]) -> None:
    build, logs, counts = found
    assert build["results"] == 0, logs[-4000:]
    assert counts == expected and counts[1] == 0, logs[-4000:]


def test_uv_sync_frozen_makes_the_jobs_venv_and_uv_run_uses_it(pipeline, tmp_path):
    uv = tool_venv(tmp_path, "uv")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"), **CA}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_SYSTEM_CERTS="1")
    with postgres_variables(tmp_path, "--postgres-database", "app_test", "--postgres-user", "app") as postgres:
        expected = by_hand(tmp_path, "backend", [[uv, "sync", "--frozen", "--python", sys.executable]], env | postgres)
    assert expected == (4, 0)
    assert_passed(pipeline["uv-tests"], expected)
    logs = pipeline["uv-tests"][1]
    assert f"uv {VERSIONS['uv']}" in logs or f"tool-uv-{VERSIONS['uv']}" in logs, logs[-4000:]
    assert "uv sync --frozen" in logs
    assert re.search(r"1 passed, 3 deselected", logs), logs[-4000:]  # `uv run pytest -k read`, no sync
    assert float(pipeline["uv-tests"][0]["properties"]["coverage"][0]) >= 15, logs[-4000:]  # its report's min


def test_poetry_sync_makes_the_jobs_venv_and_poetry_run_uses_it(pipeline, tmp_path):
    poetry = tool_venv(tmp_path, "poetry")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    env = {
        "PATH": f"{tmp_path / 'venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "VIRTUAL_ENV": str(tmp_path / "venv"),
        "POETRY_VIRTUALENVS_CREATE": "false",
        "POETRY_CACHE_DIR": str(tmp_path / "poetry-cache"),
        **CA,
    }
    expected = by_hand(tmp_path, "poetry_app", [[poetry, "install", "--sync", "--with", "test"]], env)
    assert expected == (3, 0)
    assert_passed(pipeline["poetry-tests"], expected)
    logs = pipeline["poetry-tests"][1]
    assert "sync --no-interaction --with test" in logs
    assert re.search(r"1 passed, 2 deselected", logs), logs[-4000:]  # `poetry run pytest -k hello`


def test_pip_specs_install_the_project_editable_with_its_extra(pipeline, tmp_path):
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    pip = [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "-e", ".[test]"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **CA}
    expected = by_hand(tmp_path, "extras_pkg", [pip], env)
    assert expected == (2, 0)
    assert_passed(pipeline["extras-tests"], expected)
    assert "-e .[test]" in pipeline["extras-tests"][1]
