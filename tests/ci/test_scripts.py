"""Helper scripts: ci_venv.py (shared venvs keyed by interpreter and requirements), ci_require_tools.py
(missing tools named), run_ci_checks.py (arguments, and the same job list as the pipeline)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PYTHON = sys.executable


def run_script(name: str, *args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    return subprocess.run(
        [PYTHON, str(SCRIPTS / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    )


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name.replace('.', '_')}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def venv_of(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("VENV=")]
    return line[len("VENV="):]


# --- ci_venv.py -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_venv(tmp_path_factory):
    """One real venv (no packages: an empty requirements file, so no network), built once for the module."""
    tmp = tmp_path_factory.mktemp("venvs")
    requirements = tmp / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    cache = tmp / "cache"
    offline = dict(os.environ, PIP_NO_INDEX="1")  # pip may upgrade only from what is already here
    done = run_script("ci_venv.py", "--python", PYTHON, "--cache-root", str(cache), "-r", str(requirements),
                      env=offline)
    assert done.returncode == 0, done.stderr
    return tmp, requirements, cache, done


def test_builds_a_working_venv_under_the_cache(built_venv):
    tmp, _, cache, done = built_venv
    venv = Path(venv_of(done.stdout))
    assert venv.parent == cache / "venvs"
    assert venv.name.startswith(f"py{sys.version_info.major}.{sys.version_info.minor}-")
    assert "ci_venv: built" in done.stderr
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == str(venv)
    assert (venv / ".namaskah-stamp").is_file()


def test_a_second_call_reuses_the_venv(built_venv):
    tmp, requirements, cache, first = built_venv
    again = run_script("ci_venv.py", "--python", PYTHON, "--cache-root", str(cache), "-r", str(requirements))
    assert again.returncode == 0, again.stderr
    assert venv_of(again.stdout) == venv_of(first.stdout)
    assert "reusing" in again.stderr and "built" not in again.stderr


def test_a_venv_without_its_stamp_is_not_reused(built_venv, monkeypatch):
    """A crash half-way leaves no stamp: the next call must rebuild (here: calls `build`, faked)."""
    tmp, requirements, cache, first = built_venv
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
    monkeypatch.setattr(ci_venv, "build", lambda python, venv, reqs, stamp: built.append(venv) or 0)
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


def test_run_ci_checks_refuses_an_unknown_job():
    done = run_script("run_ci_checks.py", "lint", "no-such-job", timeout=120)
    assert done.returncode == 2
    assert "unknown job(s): no-such-job" in done.stderr and "lint" not in done.stderr.split("unknown job(s):")[1]


def test_run_ci_checks_runs_the_pipeline_checks(tmp_path, monkeypatch):
    from namaskah_ci import workers
    from namaskah_ci.config import build_config
    from namaskah_ci.settings import load_settings
    from namaskah_ci.steps.fanout import FanOut

    monkeypatch.setattr(workers, "_usable", lambda candidate: True, raising=False)  # no interpreter probing
    config = build_config(load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path / "m"),
                                         "PIPELINE_SECRETS_DIR": str(tmp_path / "s")}))
    (pipeline,) = [b for b in config["builders"] if b.name == "pipeline"]
    (fanout,) = [f.buildStep() for f in pipeline.factory.steps if issubclass(f.step_class, FanOut)]
    triggerables = {s.name: s.builderNames for s in config["schedulers"]}
    pipeline_checks = [b for name in fanout.schedulerNames for b in triggerables[name]]

    runner = load_script("run_ci_checks.py")
    ran = []
    monkeypatch.setattr(runner, "STATE", tmp_path / "state")
    monkeypatch.setattr(runner, "run_job", lambda job, cache: ran.append(job.name) or
                        {"job": job.name, "result": "success", "failed": [], "seconds": 0.0})
    assert runner.main(["--json", str(tmp_path / "results.json")]) == 0
    assert ran == pipeline_checks
    ran.clear()
    assert runner.main(["integration", "lint"]) == 0
    assert ran == ["lint", "integration"]  # table order, whatever the order asked


def test_run_ci_checks_fails_when_a_job_fails(tmp_path, monkeypatch):
    runner = load_script("run_ci_checks.py")
    monkeypatch.setattr(runner, "STATE", tmp_path / "state")
    monkeypatch.setattr(runner, "run_job", lambda job, cache: {
        "job": job.name, "result": "failure" if job.name == "lint" else "success",
        "failed": ["flake8"] if job.name == "lint" else [], "seconds": 1.0})
    assert runner.main(["lint", "security"]) == 1
    assert runner.main(["security"]) == 0


def test_run_ci_checks_sh_passes_arguments_through():
    done = subprocess.run([str(SCRIPTS / "run_ci_checks.sh"), "no-such-job"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHON=PYTHON))
    assert done.returncode == 2 and "unknown job(s): no-such-job" in done.stderr
