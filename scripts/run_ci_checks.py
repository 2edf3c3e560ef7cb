#!/usr/bin/env python3
"""Run the pipeline's checks locally, one after another, without Buildbot.

    scripts/run_ci_checks.sh [JOB ...] [--json results.json]

The jobs, their commands, services and tools come from the same job table as
the Buildbot builders (`master/namaskah_ci/jobs.py`), so what runs here is what
CI runs. Each job gets its own cached virtualenv under `.state/local-checks/`,
its PostgreSQL/Redis when it needs them (stopped afterwards whatever happens),
and its reports under `reports/<job>/`. Exits non-zero when any job fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "master"))

from namaskah_ci.jobs import REPORTS_DIR, Job, make_jobs  # noqa: E402

STATE = ROOT / ".state" / "local-checks"


def interpreter_for(version: str) -> str:
    """As the master finds it (namaskah_ci.workers): PATH without pyenv shims (a shim fails outside a
    selected version), then pyenv's installs."""
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if not d.rstrip("/").endswith("/shims")
    )
    found = shutil.which(f"python{version}", path=path)
    if found:
        return found
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"))
    return str(candidates[-1]) if candidates else f"python{version}"


def run(command: list[str], env: dict) -> int:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def capture(command: list[str], env: dict) -> tuple[int, dict]:
    """Run a helper that prints KEY=VALUE lines; return its exit code and those values."""
    print("+", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    values = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            values[key] = value.strip()
    return done.returncode, values


def run_job(job: Job, cache_root: Path) -> dict:
    started = time.monotonic()
    env = dict(os.environ, PIP_CACHE_DIR=str(cache_root / f"pip-{job.python}"), PYTHONUNBUFFERED="1")
    failed: list[str] = []
    shutil.rmtree(ROOT / REPORTS_DIR, ignore_errors=True)
    (ROOT / REPORTS_DIR).mkdir()
    services_dir = STATE / f"services-{job.name}"
    try:
        if job.tools and run([sys.executable, "scripts/ci_require_tools.py", *job.tools], env):
            return {"job": job.name, "result": "failure", "failed": ["required tools"], "seconds": time.monotonic() - started}
        venv_cmd = [sys.executable, "scripts/ci_venv.py", "--python", interpreter_for(job.python)]
        venv_cmd += ["--cache-root", str(cache_root)]
        for requirement in job.requirements:
            venv_cmd += ["-r", requirement]
        rc, values = capture(venv_cmd, env)
        if rc or "VENV" not in values:
            return {"job": job.name, "result": "failure", "failed": ["virtualenv"], "seconds": time.monotonic() - started}
        env["PATH"] = f"{values['VENV']}/bin{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = values["VENV"]
        if job.services:
            run(["python", "scripts/ci_services.py", "stop", "--state-dir", str(services_dir)], env)
            start_cmd = ["python", "scripts/ci_services.py", "start", "--state-dir", str(services_dir)]
            rc, values = capture(start_cmd + [f"--{name}" for name in job.services], env)
            if rc:
                return {"job": job.name, "result": "failure", "failed": ["services"], "seconds": time.monotonic() - started}
            env.update({k: v for k, v in values.items() if k in ("DATABASE_URL", "REDIS_URL")})
        for command in job.commands:
            if run(list(command.argv), env):
                failed.append(command.name)
                if command.halt_on_failure:
                    break
    finally:
        if job.services:
            run(["python", "scripts/ci_services.py", "stop", "--state-dir", str(services_dir)], env)
        target = ROOT / REPORTS_DIR
        if target.exists():
            final = ROOT / ".state" / "local-checks" / "reports" / job.name
            shutil.rmtree(final, ignore_errors=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(target), str(final))
    seconds = time.monotonic() - started
    return {"job": job.name, "result": "failure" if failed else "success", "failed": failed, "seconds": seconds}


def main(argv: list[str]) -> int:
    jobs = [job for job in make_jobs() if job.in_pipeline]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="*", help=f"jobs to run (default: all of {', '.join(j.name for j in jobs)})")
    parser.add_argument("--json", help="write per-job results and durations here")
    parser.add_argument("--cache-root", default=str(STATE / "cache"), help="pip caches and virtualenvs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.jobs if name not in {job.name for job in jobs}]
    if unknown:
        parser.error(f"unknown job(s): {', '.join(unknown)}")
    selected = [job for job in jobs if not args.jobs or job.name in args.jobs]
    STATE.mkdir(parents=True, exist_ok=True)
    results = [run_job(job, Path(args.cache_root)) for job in selected]
    print("\nsummary:")
    for item in results:
        print(f"  {item['job']:<16} {item['result']:<8} {item['seconds']:7.1f}s {', '.join(item['failed'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(item["result"] != "success" for item in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
