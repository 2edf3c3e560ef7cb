#!/usr/bin/env python3
"""A job's `install:` (uv, poetry, pip specs): the pinned tools, the files that key the venv, the commands.

ci_venv.py builds and caches the job's virtualenv; for a job with `install:` (job.json `install`, passed
on as `--install`) it asks this module:

- `files(install, project)`: what the environment is made from, the venv's key with the interpreter
  and the project's directory: uv.lock + pyproject.toml (uv), poetry.lock + pyproject.toml (poetry),
  pyproject.toml / setup.py / setup.cfg of each local pip spec (`.`, `./sub[extra]`); a missing lock
  file is one line naming it and the command that makes it;
- `tool(name, python, cache_root, seed)`: uv or poetry at the version pinned here (`VERSIONS`, the one
  place: the helpers come with the master, so a new pin changes every job's reuse key), installed once
  from the package index into its own virtualenv `<cache>/venvs/tool-<name>-<version>-<digest>` under a
  lock; the ref's own cache (local mode: the branch's, written only by its venv step; docker mode: its
  volume), or the default branch's read-only when it has one: a branch never writes a tool main uses;
- `commands(...)`: `uv sync --frozen` / `poetry sync` (= `poetry install --sync`) / `pip install -e`,
  run in the project's directory (job.json `working_directory`, else the checkout root);
- `step_env(job, venv)`: what the job's commands get beside VIRTUAL_ENV so that `uv run` / `poetry run`
  use the cached venv and never sync into it (it is read-only to them).

The project itself is installed editable from the build's checkout, so its venv is keyed by the
project's directory too (a venv never points at another builder's checkout), and the install runs
again each build in the job's own cache (cheap when the dependencies are there: the current code's
entry points and packages). Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import Any

VERSIONS = {"uv": "0.13.10", "poetry": "2.5.1"}  # installed from the package index (PyPI: uv, poetry)
TOOLS = tuple(VERSIONS)
KINDS = ("uv", "poetry", "pip")
LOCKS = {"uv": "uv.lock", "poetry": "poetry.lock"}
MAKE_LOCK = {"uv": "uv lock", "poetry": "poetry lock"}
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
STAMP = ".namaskah-stamp"


class Problem(Exception):
    """The install cannot be done as asked; the message is one line naming the input and the fix."""


def parse(text: str) -> dict[str, Any]:
    """The `--install` JSON (job.json's `install`: {"tool", "groups", "extras", "all_extras", "specs"})."""
    install: dict[str, Any] = json.loads(text)
    if install.get("tool") not in KINDS:
        raise Problem(f"ci_venv: unknown install tool {install.get('tool')!r} (known: {', '.join(KINDS)})")
    return install


def local_spec(spec: str) -> bool:
    """A spec naming a directory of the repository (`.`, `./sub`, `.[test]`): installed editable."""
    return spec.startswith(".")


def spec_dir(project: str, spec: str) -> str:
    return os.path.normpath(os.path.join(project, spec.split("[", 1)[0]))


def files(install: dict[str, Any], project: str) -> list[str]:
    """The files the environment is made from (they key the venv with the interpreter and `project`)."""
    tool = install["tool"]
    if tool in LOCKS:
        lock = os.path.join(project, LOCKS[tool])
        if not os.path.isfile(lock):
            raise Problem(
                f"ci_venv: install: {tool} needs {LOCKS[tool]} in {project}: run `{MAKE_LOCK[tool]}` there "
                "and commit it (or set the job's working_directory to the project's directory)"
            )
        return [lock, os.path.join(project, "pyproject.toml")]
    found = []
    for spec in install.get("specs", []):
        if local_spec(spec):
            where = spec_dir(project, spec)
            if not os.path.isdir(where):
                raise Problem(f"ci_venv: install: pip spec {spec!r}: no directory {where}")
            found += [os.path.join(where, name) for name in PROJECT_FILES if os.path.isfile(os.path.join(where, name))]
    return found


def describe(install: dict[str, Any]) -> str:
    """The spec as it enters the venv's key (and its log line)."""
    return json.dumps(install, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ready(venv: str, stamp: str) -> bool:
    try:
        with open(os.path.join(venv, STAMP), encoding="utf-8") as handle:
            if handle.read().strip() != stamp:
                return False
        done = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "pass"], capture_output=True, check=False)
    except OSError:
        return False
    return done.returncode == 0


def tool(name: str, python: str, version_text: str, cache_root: str, seed: str = "") -> str:
    """The path of the pinned `name` (uv, poetry), installed on first use (see the module docstring)."""
    version = VERSIONS[name]
    venv_name = f"tool-{name}-{version}-{_digest(version_text)}"  # its Python: the sandbox shows the job's only
    stamp = f"{name}=={version}"
    program = os.path.join("bin", name)
    seeded = os.path.join(os.path.abspath(seed), "venvs", venv_name) if seed else ""
    venv = os.path.join(os.path.abspath(cache_root), "venvs", venv_name)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job may be installing the same tool
        if _ready(venv, stamp):
            return os.path.join(venv, program)
        if seeded and _ready(seeded, stamp):
            return os.path.join(seeded, program)
        print(f"ci_venv: installing {name} {version} (pinned by Namaskah CI) into {venv}", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", venv], check=True, stdout=sys.stderr)
        pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--progress-bar", "off", "-q"]
        done = subprocess.run([*pip, f"{name}=={version}"], stdout=sys.stderr, check=False)
        if done.returncode:
            raise Problem(
                f"ci_venv: could not install {name}=={version} from the package index (pip exit code "
                f"{done.returncode}): the worker must reach it (PIP_INDEX_URL, [workers] job_env)"
            )
        with open(os.path.join(venv, STAMP), "w", encoding="utf-8") as handle:
            handle.write(stamp + "\n")
    return os.path.join(venv, program)


def tool_env(install: dict[str, Any], venv: str, cache_root: str) -> dict[str, str]:
    """The install command's variables beside the job's (its caches in the ref's cache)."""
    env = {"VIRTUAL_ENV": venv}
    if install["tool"] == "uv":
        # the host's CA store, as pip's (PIP_CERT): uv's own roots miss a site's proxy CA
        env.update(UV_CACHE_DIR=os.path.join(cache_root, "uv-cache"), UV_NO_PROGRESS="1", UV_SYSTEM_CERTS="1")
    elif install["tool"] == "poetry":
        env.update(POETRY_CACHE_DIR=os.path.join(cache_root, "poetry-cache"))
    return env


def commands(install: dict[str, Any], program: str, python: str, venv: str, project: str) -> list[list[str]]:
    """The commands that make (or bring up to date) the venv, run in `project`."""
    tool_name = install["tool"]
    if tool_name == "uv":
        command = [program, "sync", "--frozen", "--python", python]
        for group in install.get("groups", []):
            command += ["--group", group]
        for extra in install.get("extras", []):
            command += ["--extra", extra]
        return [command + (["--all-extras"] if install.get("all_extras") else [])]
    if tool_name == "poetry":
        command = [program, "sync", "--no-interaction"]
        for group in install.get("groups", []):
            command += ["--with", group]
        for extra in install.get("extras", []):
            command += ["--extras", extra]
        return [command + (["--all-extras"] if install.get("all_extras") else [])]
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--progress-bar", "off"]
    specs: list[str] = []
    for spec in install.get("specs", []):
        specs += ["-e", spec] if local_spec(spec) else [spec]
    return [pip + specs]


def refresh_commands(install: dict[str, Any], program: str, python: str, venv: str, project: str) -> list[list[str]]:
    """Each build, over a venv of the job's own cache: the project itself again, from this checkout."""
    if install["tool"] != "pip":
        return commands(install, program, python, venv, project)  # the dependencies are there: fast
    local = [spec for spec in install.get("specs", []) if local_spec(spec)]
    if not local:
        return []
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--progress-bar", "off", "-q", "--no-deps"]
    return [pip + [part for spec in local for part in ("-e", spec)]]


def link_tool(program: str, venv: str) -> None:
    """The tool beside the venv's programs (PATH has the venv first), unless the project installs its own."""
    target = os.path.join(venv, "bin", os.path.basename(program))
    if not os.path.lexists(target):
        os.symlink(program, target)


def step_env(job: dict[str, Any], venv: str) -> dict[str, str]:
    """What a job's commands get with its venv: `uv run` and `poetry run` use it, never sync into it."""
    tool_name = job.get("install", {}).get("tool")
    if tool_name == "uv":
        return {"UV_PROJECT_ENVIRONMENT": venv, "UV_FROZEN": "1", "UV_NO_SYNC": "1", "UV_PYTHON_DOWNLOADS": "never"}
    if tool_name == "poetry":
        return {"POETRY_VIRTUALENVS_CREATE": "false", "POETRY_VIRTUALENVS_IN_PROJECT": "false"}
    return {}


def run_all(install: dict[str, Any], argv_list: list[list[str]], env: dict[str, str], project: str) -> int:
    """Run the install commands in `project`; the first failure's exit code, named in one line."""
    for command in argv_list:
        print(f"ci_venv: {' '.join(command)}  (in {project})", file=sys.stderr)
        done = subprocess.run(command, cwd=project, env=env, stdout=sys.stderr, check=False)
        if done.returncode:
            print(f"ci_venv: install: {install['tool']} failed with exit code {done.returncode}", file=sys.stderr)
            return done.returncode
    return 0


def base_env(install: dict[str, Any], venv: str, cache_root: str, job: dict[str, str] | None = None) -> dict[str, str]:
    """The install's whole environment: the caller's (the job's), the tool's, the venv first on PATH."""
    env = dict(os.environ if job is None else job)
    env.update(tool_env(install, venv, cache_root))
    env.update(step_env({"install": install}, venv))
    env.pop("UV_NO_SYNC", None)  # the install is the sync
    env.pop("UV_FROZEN", None)  # `--frozen` says it
    env["PATH"] = os.pathsep.join([os.path.join(venv, "bin"), env.get("PATH", os.defpath)])
    return env
