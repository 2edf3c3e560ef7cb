"""The measured runs of one round: a pipeline run (webhook or poll, optionally under REST load),
the sequential run of `scripts/run_ci_checks.sh`, and cold vs warm dependency installation.
Each returns plain data (seconds relative to its own start); `pipeline_bench.py` aggregates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import stats
from bench.load import RestLoad
from bench.session import ROOT, BenchMaster, machine_cpu_seconds
from harness import wait_for  # tests/support: on sys.path once bench.session is imported


def pipeline_run(bm: BenchMaster, checks: list[str], webhook: bool, rest_clients: int = 0) -> dict:
    """Commit, announce it (signed webhook) or let the poller find it, wait for the verdict."""
    bm.wait_idle()
    sha = bm.commit("webhook" if webhook else "poll")
    cpu_before, machine_before = bm.master_cpu_seconds(), machine_cpu_seconds()
    t0 = time.time()
    if webhook:
        bm.announce(sha)
    load = None
    if rest_clients:
        wait_for("the pipeline build to start", lambda: bm.pipeline_build(sha, complete=False), 600, 0.2)
        load = RestLoad(bm.master.www_port, rest_clients).start()
    try:
        verdict = bm.wait_verdict(sha)
    finally:
        if load is not None:
            load.stop()
    cpu = bm.master_cpu_seconds() - cpu_before
    machine_cpu = machine_cpu_seconds() - machine_before
    data = bm.collect(sha, t0)
    builds, events = data["builds"], data["events"]
    pipeline = builds[verdict["buildid"]]
    jobs = {b["builder"]: b for b in builds.values() if b["builder"] in checks}
    critical_name, critical = stats.critical_path(jobs)
    check_steps = [s["start"] for b in jobs.values() for s in b["steps"] if s["start"] is not None]
    # the pipeline's own first step: read .namaskah-ci.yml at the revision, validate it, pin the jobs
    file_step = next((s for s in pipeline["steps"] if s["name"] == "pipeline file"), None)
    run = {
        "revision": sha,
        "trigger": "webhook" if webhook else "poll",
        "result": verdict["results"],
        "master_cpu_s": round(cpu, 2),  # the master process's own CPU (reactor, database, local workers)
        "machine_cpu_s": round(machine_cpu, 2),  # every process's, push to verdict (and a bit past it)
        "wall": pipeline["end"],
        "detection": {
            "change_recorded": stats.first_event(events, "changes", "new", t0, revision=sha),
            "buildset_created": stats.first_event(events, "buildsets", "new", t0),
            "pipeline_build_started": pipeline["start"],
            "first_step_started": min((s["start"] for s in pipeline["steps"] if s["start"] is not None), default=None),
            "first_check_step_started": min(check_steps, default=None),
        },
        "pipeline_file_s": (file_step["end"] - file_step["start"]) if file_step and file_step["end"] else None,
        "critical_path": critical_name,
        "critical_path_s": critical,
        "jobs": {
            name: {
                "start": b["start"],
                "end": b["end"],
                "results": b["results"],
                **stats.job_overhead(b),
                "step_overheads": stats.step_overheads(b["steps"]),
            }
            for name, b in sorted(jobs.items())
        },
        # builds of the same push outside the verdict (codeql on main) that share the machine
        "other_builds": {
            b["builder"]: {"start": b["start"], "end": b["end"], "results": b["results"]}
            for b in builds.values()
            if b["builder"] not in [*checks, "pipeline"]
        },
    }
    run["first_step"] = run["detection"]["first_step_started"]
    if load is not None:
        run["rest"] = {
            "clients": rest_clients,
            "seconds": round(load.seconds, 2),
            "errors": load.errors,
            "endpoints": stats.rest_stats(load.latencies),
        }
    return run


def sequential_run(repo: Path, cache_root: Path, checks: list[str], log_path: Path, niceness: int = 0) -> dict:
    """`scripts/run_ci_checks.sh <checks>` in the scratch checkout, with the master's cache root.

    The checkout is cleaned first (`git clean -fdx`: no mypy cache or reports of an earlier round;
    a check build starts from a fresh checkout too), and the script runs at the niceness most of the
    pipeline's checks run at, so both yield alike to whatever else runs on the machine."""
    out = log_path.with_suffix(".json")
    subprocess.run(["git", "clean", "-q", "-f", "-f", "-d", "-x"], cwd=repo, check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PYTHON=sys.executable)
    command = [
        "bash",
        str(ROOT / "scripts" / "run_ci_checks.sh"),
        *checks,
        "--repo",
        str(repo),
        "--json",
        str(out),
        "--cache-root",
        str(cache_root),
    ]
    if niceness:
        command = ["nice", "-n", str(niceness), *command]
    started, machine_before = time.monotonic(), machine_cpu_seconds()
    with open(log_path, "w") as log:
        done = subprocess.run(
            command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=3600, check=False
        )
    wall = time.monotonic() - started
    machine_cpu = machine_cpu_seconds() - machine_before
    jobs = json.loads(out.read_text()) if out.exists() else []
    return {
        "wall": round(wall, 3),
        "machine_cpu_s": round(machine_cpu, 2),
        "exit_code": done.returncode,
        "jobs": jobs,
        "bars": stats.sequential_bars(jobs),
    }


def install_step(timeline: dict) -> dict:
    step = next((s for s in timeline["steps"] if (s["name"] or "").startswith("virtualenv")), None)
    return {
        "install_command_s": None if step is None else step.get("elapsed"),
        "install_step_s": None if step is None else stats.duration(step),
        "build_s": stats.duration(timeline),
        "result": timeline["results"],
    }


def cold_warm(bm: BenchMaster, cache_root: Path, builder: str = "test-py3.9", python: str = "3.9") -> dict:
    """Empty the job's caches (its virtualenvs and pip downloads), force two builds: cold, then warm."""
    bm.wait_idle()
    venvs = cache_root / "venvs"
    for path in venvs.glob(f"py{python}-*"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(cache_root / f"pip-{python}", ignore_errors=True)
    cold = install_step(bm.run_forced(builder))
    bm.wait_idle()
    warm = install_step(bm.run_forced(builder))
    return {"builder": builder, "cold": cold, "warm": warm}
