"""Namaskah CI's helpers: ci_venv.py (shared venvs keyed by interpreter and requirements),
ci_require_tools.py (missing tools named); and scripts/run_ci_checks.py, the local runner of a
repository's pipeline file (the same jobs, environment and settings as the master's)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci import workdirs

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "scripts"
HELPERS = ROOT / "master" / "namaskah_ci" / "helpers"
PYTHON = sys.executable


def run_script(name: str, *args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    where = SCRIPTS if name == "run_ci_checks.py" else HELPERS
    return subprocess.run(
        [PYTHON, str(where / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )


def load_script(name: str):
    where = SCRIPTS if name == "run_ci_checks.py" else HELPERS
    spec = importlib.util.spec_from_file_location(f"script_{name.replace('.', '_')}", where / name)
    assert spec is not None and spec.loader is not None, where / name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def venv_of(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("VENV=")]
    return line[len("VENV=") :]


# --- ci_venv.py -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_venv(tmp_path_factory):
    """One real venv (no packages: an empty requirements file, so no network), built once for the module."""
    tmp = tmp_path_factory.mktemp("venvs")
    requirements = tmp / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    cache = tmp / "cache"
    offline = dict(os.environ, PIP_NO_INDEX="1")  # pip may upgrade only from what is already here
    done = run_script(
        "ci_venv.py", "--python", PYTHON, "--cache-root", str(cache), "-r", str(requirements), env=offline
    )
    assert done.returncode == 0, done.stderr
    return tmp, requirements, cache, done


def test_builds_a_working_venv_under_the_cache(built_venv):
    _tmp, _, cache, done = built_venv
    venv = Path(venv_of(done.stdout))
    assert venv.parent == cache / "venvs"
    assert venv.name.startswith(f"py{sys.version_info.major}.{sys.version_info.minor}-")
    assert "ci_venv: built" in done.stderr
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.strip() == str(venv)
    assert (venv / ".namaskah-stamp").is_file()


def test_a_second_call_reuses_the_venv(built_venv):
    _tmp, requirements, cache, first = built_venv
    again = run_script("ci_venv.py", "--python", PYTHON, "--cache-root", str(cache), "-r", str(requirements))
    assert again.returncode == 0, again.stderr
    assert venv_of(again.stdout) == venv_of(first.stdout)
    assert "reusing" in again.stderr and "built" not in again.stderr


def test_a_venv_without_its_stamp_is_not_reused(built_venv, monkeypatch):
    """A crash half-way leaves no stamp: the next call must rebuild (here: calls `build`, faked)."""
    _tmp, requirements, cache, first = built_venv
    ci_venv = load_script("ci_venv.py")
    stamp = Path(venv_of(first.stdout)) / ci_venv.STAMP
    saved = stamp.read_text()
    stamp.write_text("something else\n")
    calls = []

    def fake_build(python, venv, reqs, stamp_value):
        calls.append(venv)
        Path(venv, ci_venv.STAMP).write_text(stamp_value + "\n")
        return 0

    monkeypatch.setattr(ci_venv, "build", fake_build)
    try:
        assert ci_venv.main(["--python", PYTHON, "--cache-root", str(cache), "-r", str(requirements)]) == 0
        assert calls == [venv_of(first.stdout)]
    finally:
        stamp.write_text(saved)


def test_changing_a_requirements_file_gives_a_new_venv_path(tmp_path, monkeypatch, capsys):
    ci_venv = load_script("ci_venv.py")
    built = []

    def build(python, venv, reqs, stamp):
        built.append(venv)
        return 0

    monkeypatch.setattr(ci_venv, "build", build)
    main_req = tmp_path / "requirements-dev.txt"
    base = tmp_path / "requirements.txt"
    base.write_text("flask==3.0.0\n")
    main_req.write_text("-r requirements.txt\npytest==8.0.0\n")
    args = ["--python", PYTHON, "--cache-root", str(tmp_path / "cache"), "-r", str(main_req)]

    def venv_path() -> str:
        assert ci_venv.main(args) == 0
        return venv_of(capsys.readouterr().out)

    first = venv_path()
    assert venv_path() == first  # same inputs, same path
    main_req.write_text("-r requirements.txt\npytest==8.1.0\n")
    second = venv_path()
    base.write_text("flask==3.0.1\n")  # an included file counts too
    third = venv_path()
    assert len({first, second, third}) == 3
    assert built == [first, first, second, third]  # (no stamp is written by the fake build)
    assert ci_venv.requirement_files([str(main_req)]) == [str(main_req), str(tmp_path / "requirements.txt")]


def test_a_missing_interpreter_exits_2_naming_it(tmp_path):
    done = run_script("ci_venv.py", "--python", "python3.99", "--cache-root", str(tmp_path))
    assert done.returncode == 2
    assert "interpreter 'python3.99' not found" in done.stderr and "install" in done.stderr
    assert "VENV=" not in done.stdout and not (tmp_path / "venvs").exists()


def test_a_missing_requirements_file_exits_2_naming_it(tmp_path):
    done = run_script("ci_venv.py", "--python", PYTHON, "--cache-root", str(tmp_path), "-r", "nope.txt")
    assert done.returncode == 2 and "requirements file not found: nope.txt" in done.stderr


# --- ci_require_tools.py --------------------------------------------------------------------------


def fake_tool(directory: Path, name: str, body: str = "exit 0") -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_a_missing_tool_exits_1_naming_what_to_install(tmp_path):
    fake_tool(tmp_path / "bin", "trivy")
    done = run_script("ci_require_tools.py", "gitleaks", "trivy", env={"PATH": str(tmp_path / "bin")})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("missing tool: gitleaks: not found on PATH: install gitleaks")
    assert "trivy" not in done.stderr


def test_present_tools_pass(tmp_path):
    fake_tool(tmp_path / "bin", "gitleaks")
    done = run_script("ci_require_tools.py", "gitleaks", env={"PATH": str(tmp_path / "bin")})
    assert done.returncode == 0 and "required tools present: gitleaks" in done.stdout


def test_docker_needs_an_answering_engine(tmp_path):
    fake_tool(tmp_path / "bin", "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    done = run_script("ci_require_tools.py", "docker", env={"PATH": str(tmp_path / "bin")})
    assert done.returncode == 1
    assert "docker: the client is installed but no engine answers (Cannot connect to the Docker daemon)" in done.stderr


# --- run_ci_checks.py -----------------------------------------------------------------------------


LOCAL_FILE = """
version: 1
env: {GREETING: hello}
jobs:
  report:
    requirements: []
    steps:
      - {name: env, run: "env | sort > env.txt"}
      - name: coverage
        run: |
          mkdir -p out
          echo '<coverage line-rate="0.35"></coverage>' > out/coverage.xml
    reports: [{path: out/coverage.xml, kind: coverage}]
  lint:
    requirements: []
    steps:
      - {name: first, run: "false", continue: true}
      - {name: second, run: "touch second-ran"}
  later:
    verdict: false
    requirements: []
    steps: ["true"]
"""


@pytest.fixture
def local_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(LOCAL_FILE)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    return repo


def run_checks(repo: Path, tmp_path: Path, *args: str, coverage_min: int | None = None, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(extra_env or {})
    env["PIPELINE_SECRETS_DIR"] = str(tmp_path / "no-secrets")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # the state root (workdirs.py): never in the repository
    if coverage_min is not None:
        settings = tmp_path / "settings.toml"
        settings.write_text(f"[checks]\ncoverage_min = {coverage_min}\n")
        env["PIPELINE_CONFIG"] = str(settings)
    results = tmp_path / "results.json"
    done = subprocess.run(
        [str(SCRIPTS / "run_ci_checks.sh"), "--repo", str(repo), "--json", str(results), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    return done, (json.loads(results.read_text()) if results.exists() else None)


def untracked_and_ignored(repo: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def test_the_local_runner_runs_the_files_checks_with_the_settings_coverage_floor(local_repo, tmp_path):
    (local_repo / ".gitignore").write_text("ignored.txt\n")
    (local_repo / "ignored.txt").write_text("")
    before = untracked_and_ignored(local_repo)
    done, results = run_checks(local_repo, tmp_path, coverage_min=30, extra_env={"GITHUB_TOKEN": "ghp_LOCALTOKEN123"})
    assert [r["job"] for r in results] == ["report", "lint"]  # the verdict on this branch; `later` is outside it
    assert {r["job"]: r["result"] for r in results} == {"report": "success", "lint": "failure"}
    # each job ran in a checkout of the working tree under the state root, outside the repository (issue 23)
    state = tmp_path / "state/namaskah-ci/local-checks" / workdirs.place_name(local_repo)
    assert f"job checkouts and reports: {state}" in done.stdout
    assert results[1]["failed"] == ["first"] and (state / "jobs/lint/build/second-ran").exists()  # continue: true
    printed = (state / "jobs/report/build/env.txt").read_text()
    assert "GREETING=hello" in printed and "NAMASKAH_CI_BUILDER=report" in printed
    assert "GITHUB_TOKEN" not in printed and "PIPELINE_CONFIG" not in printed
    assert (state / "reports/report/out/coverage.xml").is_file()
    assert not (state / "jobs/report/build/ignored.txt").exists()  # what git ignores is not the checkout's
    assert untracked_and_ignored(local_repo) == before  # nothing written into the repository
    done, results = run_checks(local_repo, tmp_path, "report", coverage_min=50)
    assert done.returncode == 1 and results[0]["failed"] == ["coverage 35.0% is under [checks] coverage_min (50%)"]


def test_the_local_runner_names_jobs_in_the_files_order_and_refuses_unknown_ones(local_repo, tmp_path):
    done, results = run_checks(local_repo, tmp_path, "later", "report", coverage_min=0)
    assert done.returncode == 0 and [r["job"] for r in results] == ["report", "later"]
    done, _ = run_checks(local_repo, tmp_path, "lint", "no-such-job")
    assert done.returncode == 2 and "unknown job(s): no-such-job (known: report, lint, later)" in done.stderr


def test_the_local_runner_reports_a_bad_file_in_one_line(local_repo, tmp_path):
    (local_repo / ".namaskah-ci.yml").write_text("version: 1\njobs:\n  a:\n    stepz: [x]\n")
    done, _ = run_checks(local_repo, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[0].startswith(".namaskah-ci.yml:4: jobs.a.stepz: unknown key")
