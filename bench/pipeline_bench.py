#!/usr/bin/env python3
"""Benchmark of the pipeline itself: how soon a push gets its verdict, against the critical path
(the longest single check) and against running the checks one after another.

    pip install -r bench/requirements.txt        # once, into .venv (matplotlib, websocket-client)
    .venv/bin/python bench/pipeline_bench.py [--rounds 3] [--mode local|docker|both]

Per mode, on a scratch repository holding the reference service, with a real master on free ports
and warm caches (one unmeasured warm-up pipeline first), every round measures:
  1. signed webhook push -> `pipeline` verdict (wall time), each check job's duration, the
     critical path, Buildbot's overhead per step (step duration - the command's `elapsedTime=`);
  2. `scripts/run_ci_checks.sh` running the same checks sequentially (same machine and caches);
  3. a push found by the git poller (poll mode -> first step) while 20 REST clients GET
     /api/v2/builds and /api/v2/builders back to back (p50/p95);
  4. (local mode) cold vs warm dependency installation of test-py3.9: its caches emptied, then
     two forced builds.
and, at the end, the master's peak RSS (VmHWM). Results: bench/results/<date>-<mode>.json and a
timeline chart bench/results/<date>-<mode>.png (the median round).

`--throughput` measures reuse, a tested tree on main and four branches at once instead
(bench/throughput.py): bench/results/<date>-throughput.json and .png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import stats  # noqa: E402 (after the sys.path insert)

RESULTS = ROOT / "bench" / "results"
DEFAULT_CACHE = ROOT / ".state" / "bench-cache"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def docker_problem() -> str | None:
    """Why docker mode cannot be measured here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer"
    if info.returncode != 0:
        return "no Docker engine answers"
    sys.path.insert(0, str(ROOT / "tests" / "docker"))
    from docker_harness import IMAGES, image_exists

    missing = [image for image in IMAGES if not image_exists(image)]
    return f"images missing ({', '.join(missing)}): make images" if missing else None


def command_version(*command: str) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else None


SPIN = (
    "import time\nt = time.perf_counter()\nx = 0\n"
    "for i in range(20_000_000):\n    x += i\nprint(time.perf_counter() - t)\n"
)


def parallel_capacity(processes: int) -> dict:
    """How much CPU-bound work `processes` side-by-side processes get done against one alone: the
    machine's real parallel capacity (SMT siblings, other tenants), the floor of pipeline/sequential."""

    def spin(count: int) -> list[float]:
        running = [
            subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True) for _ in range(count)
        ]
        return [float(p.communicate()[0]) for p in running]

    alone = min(spin(1)[0] for _ in range(2))
    together = max(spin(processes))
    return {
        "processes": processes,
        "alone_s": round(alone, 3),
        "together_s": round(together, 3),
        "capacity": round(processes * alone / together, 3),
    }


def machine_info() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        None,
    )
    memory = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 1024 / 1024, 1),
        "load_average": None,  # filled in per run: before and after
    }


def versions(mode: str) -> dict:
    import buildbot
    import twisted

    found = {
        "python": platform.python_version(),
        "buildbot": buildbot.version,
        "twisted": twisted.__version__,
        "git": command_version("git", "--version"),
        "python3.9": command_version("python3.9", "--version"),
        "python3.11": command_version("python3.11", "--version"),
        "postgres": command_version("sh", "-c", "ls /usr/lib/postgresql | sort -V | tail -1"),
        "redis": command_version("redis-server", "--version"),
        "commit": command_version("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
    }
    if mode == "docker":
        found["docker"] = command_version("docker", "version", "--format", "{{.Server.Version}}")
    return found


def aggregate(rounds: list[dict], rss_kib: int | None) -> tuple[dict, dict]:
    """Figures (each min/median/max over the rounds) and per-job summaries."""

    def over(fn):
        values = []
        for r in rounds:
            try:
                values.append(fn(r))
            except (KeyError, TypeError):
                values.append(None)
        return stats.summary(values)

    def all_overheads(r):
        return [s["overhead"] for j in r["pipeline"]["jobs"].values() for s in j["step_overheads"]]

    def rest(r, endpoint, key):
        return r["poll"]["rest"]["endpoints"][endpoint][key]

    figures = {
        "pipeline_wall_s": over(lambda r: r["pipeline"]["wall"]),
        "sequential_wall_s": over(lambda r: r["sequential"]["wall"]),
        "critical_path_s": over(lambda r: r["pipeline"]["critical_path_s"]),
        "orchestration_overhead_s": over(lambda r: r["pipeline"]["wall"] - r["pipeline"]["critical_path_s"]),
        "pipeline_over_sequential": over(lambda r: stats.ratio(r["pipeline"]["wall"], r["sequential"]["wall"])),
        "pipeline_over_critical_path": over(
            lambda r: stats.ratio(r["pipeline"]["wall"], r["pipeline"]["critical_path_s"])
        ),
        "step_overhead_median_s": over(lambda r: statistics.median(all_overheads(r))),
        "step_overhead_max_s": over(lambda r: max(all_overheads(r))),
        "job_overhead_median_s": over(
            lambda r: statistics.median(j["overhead"] for j in r["pipeline"]["jobs"].values())
        ),
        "webhook_to_change_s": over(lambda r: r["pipeline"]["detection"]["change_recorded"]),
        "pipeline_file_s": over(lambda r: r["pipeline"]["pipeline_file_s"]),
        "webhook_to_first_step_s": over(lambda r: r["pipeline"]["detection"]["first_step_started"]),
        "webhook_to_first_check_step_s": over(lambda r: r["pipeline"]["detection"]["first_check_step_started"]),
        "poll_to_first_step_s": over(lambda r: r["poll"]["detection"]["first_step_started"]),
        "pipeline_wall_under_rest_load_s": over(lambda r: r["poll"]["wall"] - r["poll"]["first_step"]),
        "cold_install_s": over(lambda r: r["install"]["cold"]["install_step_s"]),
        "warm_install_s": over(lambda r: r["install"]["warm"]["install_step_s"]),
        "warm_over_cold_install": over(
            lambda r: stats.ratio(r["install"]["warm"]["install_step_s"], r["install"]["cold"]["install_step_s"])
        ),
        "master_peak_rss_mib": stats.summary([None if rss_kib is None else rss_kib / 1024]),
        "master_cpu_per_pipeline_s": over(lambda r: r["pipeline"]["master_cpu_s"]),
        # all processes' CPU: the work each way makes the machine do, the floor of its wall time
        "pipeline_machine_cpu_s": over(lambda r: r["pipeline"]["machine_cpu_s"]),
        "sequential_machine_cpu_s": over(lambda r: r["sequential"]["machine_cpu_s"]),
    }
    endpoints = sorted({e for r in rounds if "rest" in r.get("poll", {}) for e in r["poll"]["rest"]["endpoints"]})
    for endpoint in endpoints:
        for key in ("p50_ms", "p95_ms"):
            figures[f"rest_{key}:{endpoint}"] = over(lambda r, e=endpoint, k=key: rest(r, e, k))
    figures["rest_p95_ms"] = over(lambda r: max(rest(r, e, "p95_ms") for e in endpoints))
    jobs = {}
    names = sorted({name for r in rounds for name in r["pipeline"]["jobs"]})
    for name in names:
        jobs[name] = {
            "duration_s": over(lambda r, n=name: r["pipeline"]["jobs"][n]["duration"]),
            "commands_s": over(lambda r, n=name: r["pipeline"]["jobs"][n]["commands"]),
            "overhead_s": over(lambda r, n=name: r["pipeline"]["jobs"][n]["overhead"]),
            "sequential_s": over(
                lambda r, n=name: next(j["seconds"] for j in r["sequential"]["jobs"] if j["job"] == n)
            ),
        }
    return figures, jobs


def run_mode(mode: str, args: argparse.Namespace) -> Path:
    from bench import runs
    from bench.chart import render_timeline
    from bench.session import BenchMaster, pipeline_defaults
    from namaskah_ci.jobs.commands import PRIORITY_NICENESS
    from namaskah_ci.pipeline.model import load_pipeline_file

    defaults = pipeline_defaults()
    poll_interval = args.poll_interval or defaults["repo"]["poll_interval"]
    tree_stable = defaults["repo"]["tree_stable_seconds"]
    checks = [job.builder for job in load_pipeline_file(str(ROOT / ".namaskah-ci.yml")).verdict_jobs("main")]
    # what most of the pipeline's checks run at (job_commands.PRIORITY_NICENESS)
    niceness = PRIORITY_NICENESS["normal"] if mode == "local" else 0
    cache_root = Path(args.cache_root).resolve()
    cache_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"namaskah-bench-{mode}-"))
    machine = machine_info()
    load_before = os.getloadavg()
    machine["parallel_capacity"] = [parallel_capacity(machine["cores"] or 1)]
    started = time.monotonic()
    log(f"{mode}: master in {work}, caches in {cache_root}, poll {poll_interval}s, tree-stable {tree_stable}s")
    bm = BenchMaster(work, mode, cache_root, poll_interval, tree_stable)
    rounds: list[dict] = []
    try:
        log(f"{mode}: warm-up pipeline (not measured)")
        warmup = runs.pipeline_run(bm, checks, webhook=True)
        log(f"{mode}: warm-up verdict after {warmup['wall']:.1f}s")
        for index in range(args.rounds):
            r: dict = {"round": index + 1, "load_average": os.getloadavg()}
            r["pipeline"] = runs.pipeline_run(bm, checks, webhook=True)
            log(
                f"round {index + 1}: pipeline file {r['pipeline']['pipeline_file_s']}s, "
                f"pipeline {r['pipeline']['wall']:.1f}s, critical path "
                f"{r['pipeline']['critical_path']} {r['pipeline']['critical_path_s']:.1f}s, first step "
                f"{r['pipeline']['first_step']:.2f}s after the webhook"
            )
            bm.wait_idle()
            r["sequential"] = runs.sequential_run(
                bm.repo, cache_root, checks, work / f"sequential-{index + 1}.log", niceness=niceness
            )
            log(f"round {index + 1}: sequential {r['sequential']['wall']:.1f}s")
            r["poll"] = runs.pipeline_run(bm, checks, webhook=False, rest_clients=args.rest_clients)
            rest = r["poll"]["rest"]["endpoints"]
            log(
                f"round {index + 1}: poll -> first step {r['poll']['first_step']:.1f}s; REST p95 "
                + ", ".join(f"{e} {v['p95_ms']}ms ({v['requests']} req)" for e, v in rest.items())
            )
            if mode == "local" and not args.skip_install:
                r["install"] = runs.cold_warm(bm, cache_root)
                log(
                    f"round {index + 1}: install cold {r['install']['cold']['install_step_s']:.1f}s, "
                    f"warm {r['install']['warm']['install_step_s']:.2f}s"
                )
            rounds.append(r)
        rss = bm.peak_rss_kib()
    finally:
        bm.stop()
    machine["parallel_capacity"].append(parallel_capacity(machine["cores"] or 1))
    machine["load_average"] = {
        "before": list(load_before),
        "after": list(os.getloadavg()),
        "rounds": [r["load_average"] for r in rounds],
    }
    figures, jobs = aggregate(rounds, rss)
    date = datetime.date.today().isoformat()
    doc = stats.results_document(
        date=date,
        mode=mode,
        machine=machine,
        versions=versions(mode),
        settings={
            "rounds": args.rounds,
            "rest_clients": args.rest_clients,
            "poll_interval_s": poll_interval,
            "tree_stable_seconds": tree_stable,
            "checks": checks,
            "branch": "main",
            "sequential_niceness": niceness,
            "cold_warm": "not measured: docker mode caches in shared engine volumes"
            if mode == "docker"
            else ("skipped (--skip-install)" if args.skip_install else "test-py3.9: venvs/py3.9-* and pip-3.9 removed"),
            "bench_seconds": round(time.monotonic() - started, 1),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        rounds=rounds,
        figures=figures,
    )
    doc["jobs"] = jobs
    out = Path(args.output_dir) / f"{date}-{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    median_round = sorted(rounds, key=lambda r: r["pipeline"]["wall"])[len(rounds) // 2]
    chart = render_timeline(
        out.with_suffix(".png"),
        median_round["pipeline"],
        median_round["sequential"]["bars"],
        f"Namaskah CI, {mode} workers, {machine['cores']} cores: push → verdict "
        f"{median_round['pipeline']['wall']:.0f}s vs sequential {median_round['sequential']['wall']:.0f}s "
        f"(round {median_round['round']}, {date})",
    )
    log(f"{mode}: wrote {out} and {chart}")
    for target in doc["targets"]:
        state = "n/a" if target["met"] is None else ("met" if target["met"] else "MISSED")
        log(
            f"  {target['what']}: median {target['median']} (worst {target['worst']}) "
            f"target {target['target']}: {state}"
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


def run_throughput_mode(args: argparse.Namespace) -> Path:
    from bench.session import pipeline_defaults
    from bench.throughput import run_throughput

    defaults = pipeline_defaults()
    machine = machine_info()
    capacity = parallel_capacity(machine["cores"] or 1)
    work = Path(tempfile.mkdtemp(prefix="namaskah-bench-throughput-"))
    started = time.monotonic()
    result = run_throughput(
        args.rounds,
        Path(args.cache_root).resolve(),
        work,
        args.poll_interval or defaults["repo"]["poll_interval"],
        defaults["repo"]["tree_stable_seconds"],
        capacity["capacity"],
        log,
    )
    machine["parallel_capacity"] = capacity
    doc = {
        "schema": "namaskah-ci-throughput/1",
        "date": datetime.date.today().isoformat(),
        "mode": "local",
        "machine": machine,
        "versions": versions("local"),
        "settings": {
            "rounds": args.rounds,
            "bench_seconds": round(time.monotonic() - started, 1),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        **result,
    }
    out = Path(args.output_dir) / f"{doc['date']}-throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    from bench.throughput_chart import render_throughput

    log(f"throughput: wrote {out} and {render_throughput(out.with_suffix('.png'), doc)}")
    for figure in doc["figures"]:
        log(
            f"  {figure['what']}: median {figure['median']} (min {figure['min']}, max {figure['max']}) "
            f"target {figure['target']}: {'met' if figure['met'] else 'MISSED'}"
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per mode (default 3)")
    parser.add_argument("--mode", choices=("local", "docker", "both"), default="local")
    parser.add_argument("--rest-clients", type=int, default=20, help="concurrent REST clients (default 20)")
    parser.add_argument(
        "--poll-interval",
        type=int,
        default=0,
        help="[repo] poll_interval for the master (default: master/pipeline.toml's)",
    )
    parser.add_argument(
        "--cache-root", default=str(DEFAULT_CACHE), help="pip caches and job venvs of the master and the sequential run"
    )
    parser.add_argument("--output-dir", default=str(RESULTS))
    parser.add_argument("--skip-install", action="store_true", help="skip the cold vs warm install measurement")
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="measure reuse, a tested tree on main and four branches at once instead (throughput.py)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.throughput:
        run_throughput_mode(args)
        return 0
    modes = ["local", "docker"] if args.mode == "both" else [args.mode]
    written = []
    for mode in modes:
        if mode == "docker":
            problem = docker_problem()
            if problem:
                log(f"docker mode not measured: {problem}")
                if args.mode == "docker":
                    return 2
                continue
        written.append(run_mode(mode, args))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
