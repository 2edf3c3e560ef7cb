"""Throughput figures (`pipeline_bench.py --throughput`): reuse by inputs, a tested tree on main,
four branches at once. One master in local mode, reuse on, deploying `main` to the Render stand-in.

Every round, on the reference service's scratch repository:
  1. a full pipeline: a commit under app/ (an input of every job), pushed to main (signed webhook);
  2. a docs-only commit on main after it: its pipeline's wall over the full one's (target <= 0.1);
  3. an empty commit on main (its tree equals the tested one): push -> deploy build started
     (target <= 5 s);
  4. four branches, each with its own change under app/, announced together: push -> the last
     verdict, against the machine floor: the jobs' CPU-seconds (every process's CPU over the run
     minus the master process's own) over the measured parallel capacity, or the longest job if
     that is larger (target <= 1.15).
`security` and `container-scan` are disabled here: their databases cannot be reached from this
machine, so they fail, and a failure is never reused (docs/throughput.md).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import stats
from bench.session import BUILD_TIMEOUT, ROOT, BenchMaster, machine_cpu_seconds
from harness import wait_for  # tests/support: on sys.path once bench.session is imported
from www_support import api

UNREACHABLE = ("security", "container-scan")
TARGETS = (
    ("docs_over_full", 0.1, "docs-only commit's pipeline wall / a full pipeline's"),
    ("tree_equal_push_to_deploy_s", 5.0, "tree-equal revision on main: push -> deploy started (s)"),
    ("four_branches_over_floor", 1.15, "four branches at once: wall / machine floor"),
    ("full_over_critical_path", 1.1, "one full pipeline: wall / critical path"),
)


def throughput_master(work: Path, cache_root: Path, poll_interval: int, tree_stable: int):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from deploy_story import stand_in_secrets, stand_in_settings
    from render_standin import RenderStandin

    render = RenderStandin(build_seconds=0.5, update_seconds=0.2).start()
    required = [c for c in stats_required() if c not in UNREACHABLE]
    env = {
        **stand_in_settings(render),
        "PIPELINE_CHECKS_REQUIRED": ",".join(required),
        "PIPELINE_CHECKS_DISABLED": ",".join(UNREACHABLE),
        "PIPELINE_PIPELINE_REUSE": "true",
    }
    try:
        bm = BenchMaster(
            work, "local", cache_root, poll_interval, tree_stable, env=env, secrets=stand_in_secrets(render)
        )
    except BaseException:
        render.stop()
        raise
    return bm, render


def stats_required() -> list[str]:
    from bench.session import pipeline_defaults

    return list(pipeline_defaults()["checks"]["required"])


def timed_pipeline(bm: BenchMaster, sha: str, t0: float, branch: str = "main", announce: bool = True) -> dict:
    """Announce `sha`, wait for its verdict: the pipeline's wall and its jobs (seconds from t0)."""
    if announce:
        bm.announce(sha, branch)
    verdict = bm.wait_verdict(sha)
    builds = bm.collect(sha, t0)["builds"]
    pipeline = builds[verdict["buildid"]]
    jobs = {
        b["builder"]: b
        for b in builds.values()
        if b["builder"] != "pipeline" and not b["builder"].startswith(("deploy-", "rollback-"))
    }
    name, critical = stats.critical_path(jobs)
    return {
        "revision": sha,
        "result": verdict["results"],
        "wall": pipeline["end"],
        "critical_path": name,
        "critical_path_s": critical,
        "state": verdict["state_string"],
        "jobs": {n: {"start": b["start"], "end": b["end"], "results": b["results"]} for n, b in jobs.items()},
    }


def deploy_started(bm: BenchMaster, sha: str, t0: float) -> float:
    def started():
        for build in api(bm.master, "builders/deploy-production/builds", property="deploy_revision")["builds"]:
            if (build.get("properties") or {}).get("deploy_revision", [None])[0] == sha:
                return build
        return None

    build = wait_for(f"the deploy of {sha[:8]}", started, 300, 0.2)
    timeline = stats.build_timeline(bm.events.snapshot(), {build["buildid"]: "deploy-production"}, t0)
    return timeline[build["buildid"]]["start"]


def four_branches(bm: BenchMaster, capacity: float, label: str) -> dict:
    from harness import git

    revisions = {}
    for index in range(4):
        branch = f"feature/bench-{index}"
        git(bm.repo, "checkout", "-q", "-B", branch, "main")
        revisions[branch] = bm.commit(f"{label} branch {index}", path="app/BENCH_BRANCH.txt")
    git(bm.repo, "checkout", "-q", "main")
    cpu_before, master_before = machine_cpu_seconds(), bm.master_cpu_seconds()
    t0 = time.time()
    for branch, sha in revisions.items():
        bm.announce(sha, branch)
    runs = [timed_pipeline(bm, sha, t0, branch, announce=False) for branch, sha in revisions.items()]
    jobs_cpu = (machine_cpu_seconds() - cpu_before) - (bm.master_cpu_seconds() - master_before)
    longest = max(j["end"] - j["start"] for r in runs for j in r["jobs"].values() if j["end"] is not None)
    floor = max(longest, jobs_cpu / capacity)
    wall = max(r["wall"] for r in runs)
    return {
        "wall": wall,
        "jobs_cpu_s": round(jobs_cpu, 1),
        "capacity": capacity,
        "longest_job_s": round(longest, 2),
        "floor_s": round(floor, 2),
        "over_floor": round(wall / floor, 3),
        "pipelines": runs,
    }


def throughput_round(bm: BenchMaster, capacity: float, index: int, log) -> dict:
    from harness import git

    bm.wait_idle()
    t0 = time.time()
    full = timed_pipeline(bm, bm.commit(f"full {index}"), t0)
    bm.wait_idle()
    t0 = time.time()
    docs = timed_pipeline(bm, bm.commit(f"docs {index}", path="docs/BENCH.md"), t0)
    log(
        f"round {index}: full {full['wall']:.1f}s (critical path {full['critical_path']} "
        f"{full['critical_path_s']:.1f}s), docs-only {docs['wall']:.2f}s"
    )
    bm.wait_idle()
    git(bm.repo, "commit", "-q", "--allow-empty", "-m", f"bench: same tree {index}")
    same = git(bm.repo, "rev-parse", "HEAD").strip()
    t0 = time.time()
    bm.announce(same)
    to_deploy = deploy_started(bm, same, t0)
    log(f"round {index}: tree-equal revision on main: deploy started {to_deploy:.2f}s after the push")
    bm.wait_idle()
    branches = four_branches(bm, capacity, f"round {index}")
    log(
        f"round {index}: four branches {branches['wall']:.1f}s, floor {branches['floor_s']:.1f}s "
        f"(jobs {branches['jobs_cpu_s']} CPU-s / capacity {capacity}, longest job {branches['longest_job_s']}s)"
    )
    return {
        "round": index,
        "full": full,
        "docs": docs,
        "tree_equal_to_deploy_s": round(to_deploy, 3),
        "four_branches": branches,
        "ratios": {
            "docs_over_full": round(docs["wall"] / full["wall"], 4),
            "full_over_critical_path": round(full["wall"] / full["critical_path_s"], 3),
            "four_branches_over_floor": branches["over_floor"],
            "tree_equal_push_to_deploy_s": round(to_deploy, 3),
        },
    }


def figures_of(rounds: list[dict]) -> list[dict]:
    result = []
    for key, target, what in TARGETS:
        values = [r["ratios"][key] for r in rounds]
        summary = stats.summary(values)
        result.append(
            {
                "what": what,
                "key": key,
                "target": target,
                **summary,
                "met": summary["median"] is not None and summary["median"] <= target,
            }
        )
    return result


def run_throughput(
    rounds: int, cache_root: Path, work: Path, poll_interval: int, tree_stable: int, capacity: float, log
) -> dict:
    bm, render = throughput_master(work, cache_root, poll_interval, tree_stable)
    try:
        log("throughput: warm-up pipeline (not measured)")
        bm.wait_idle()
        timed_pipeline(bm, bm.commit("warm-up"), time.time())
        results = [throughput_round(bm, capacity, index + 1, log) for index in range(rounds)]
    finally:
        bm.stop()
        render.stop()
    return {
        "rounds": results,
        "figures": figures_of(results),
        "timeout_s": BUILD_TIMEOUT,
        "disabled": list(UNREACHABLE),
    }
