#!/usr/bin/env python3
"""Run one command of a job in the job's own environment, never the worker's.

    ci_step.py --job-dir DIR venv --python python3.11 --cache-root CACHE [-r FILE ...]
    ci_step.py --job-dir DIR run -- bash -e -o pipefail -c 'pytest tests/unit'

The master writes DIR (`.namaskah-ci/` beside the checkout) before the job's
commands: `job.json` (the job's environment and base PATH), `secrets/NAME`
files (mode 0600) and `helpers/`. Every command is started with exactly:
PATH (the job's virtualenv or interpreter first, then the base PATH), HOME,
LANG, a per-build TMPDIR, the environment in `job.json` (the pipeline file's
`env` and Namaskah CI's NAMASKAH_CI_* variables), the service URLs named in
`job.json` when the worker has them (DATABASE_URL, REDIS_URL), and the job's
secrets, upper-cased. Nothing else of the worker's environment (the master's,
for local workers) reaches the command. `venv` finds or builds the job's
cached virtualenv (ci_venv.py) and records it in DIR/venv for later commands.
Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_job(job_dir: str) -> dict:
    with open(os.path.join(job_dir, "job.json"), encoding="utf-8") as handle:
        return json.load(handle)


def recorded_venv(job_dir: str) -> str:
    try:
        with open(os.path.join(job_dir, "venv"), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def read_secrets(job_dir: str) -> dict:
    found = {}
    directory = os.path.join(job_dir, "secrets")
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                found[name] = handle.read().strip()
    return found


def interpreter_dir(job: dict, base_path: str) -> str:
    found = shutil.which(job.get("interpreter", ""), path=base_path) or job.get("interpreter", "")
    return os.path.dirname(found) if os.path.isabs(found) else ""


def job_environment(job_dir: str, job: dict, environ: dict, with_venv: bool = True) -> dict:
    """The environment a job's command starts with (see the module docstring)."""
    job_dir = os.path.abspath(job_dir)
    base_path = job.get("path", os.defpath)
    venv = recorded_venv(job_dir) if with_venv else ""
    first = os.path.join(venv, "bin") if venv else interpreter_dir(job, base_path)
    env = {
        "PATH": os.pathsep.join(part for part in (first, base_path) if part),
        "HOME": environ.get("HOME") or job_dir,
        "LANG": "C.UTF-8",
        "TMPDIR": os.path.join(job_dir, "tmp"),
    }
    env.update(job.get("env", {}))
    for name in job.get("pass", []):
        if environ.get(name):
            env[name] = environ[name]
    env.update(read_secrets(job_dir))
    if venv:
        env["VIRTUAL_ENV"] = venv
    env["NAMASKAH_CI_HELPERS"] = HERE
    return env


def lower_priority(job: dict) -> None:
    niceness = int(job.get("nice", 0))
    if niceness > 0:
        try:
            os.nice(niceness)
        except OSError:
            pass


def run(job_dir: str, argv: list) -> int:
    job = read_job(job_dir)
    env = job_environment(job_dir, job, dict(os.environ))
    os.makedirs(env["TMPDIR"], exist_ok=True)
    lower_priority(job)
    program = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    try:
        os.execve(program, argv, env)
    except OSError as exc:
        print(f"ci_step: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


def version_problem(python: str, expected: str, env: dict) -> str:
    """'' when `python` is the Python version the job asks for (NAMASKAH_CI_PYTHON)."""
    program = shutil.which(python, path=env["PATH"]) or python
    try:
        done = subprocess.run([program, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, env=env)
    except OSError:
        return ""  # ci_venv.py names a missing interpreter
    found = done.stdout.strip()
    if done.returncode == 0 and expected and found != expected:
        return (f"ci_step: {python} is Python {found}, but the job asks for Python {expected} "
                "(check [workers] interpreters; in docker mode a forced build of a job whose Python changed "
                "runs in its last known image: run it through the pipeline)")
    return ""


def venv(job_dir: str, python: str, cache_root: str, requirements: list) -> int:
    job = read_job(job_dir)
    env = job_environment(job_dir, job, dict(os.environ), with_venv=False)
    os.makedirs(env["TMPDIR"], exist_ok=True)
    lower_priority(job)
    problem = version_problem(python, job.get("env", {}).get("NAMASKAH_CI_PYTHON", ""), env)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    command = [sys.executable, os.path.join(HERE, "ci_venv.py"), "--python", python, "--cache-root", cache_root]
    for path in requirements:
        command += ["-r", path]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(done.stdout)
    found = [line[len("VENV=") :].strip() for line in done.stdout.splitlines() if line.startswith("VENV=")]
    if done.returncode or not found:
        return done.returncode or 1
    with open(os.path.join(job_dir, "venv"), "w", encoding="utf-8") as handle:
        handle.write(found[-1] + "\n")
    return 0


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-dir", required=True, help="the job's directory written by the master")
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("venv", help="find or build the job's virtualenv")
    v.add_argument("--python", required=True)
    v.add_argument("--cache-root", required=True)
    v.add_argument("-r", "--requirement", action="append", default=[])
    r = sub.add_parser("run", help="run a command in the job's environment")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "venv":
        return venv(args.job_dir, args.python, args.cache_root, args.requirement)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run: no command given")
    return run(args.job_dir, command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
