"""End to end: pipelines of several branches at once on one real master, never more jobs than the setting.

The master runs with `[workers] max_jobs = 2` and reuse off. Its scratch repository's pipeline has
three jobs; each sleeps and prints the start and end of its command (wall-clock time, from inside
the job: its sandbox has nothing to write to outside its build). Four branches pushed together must
give four green pipelines that run at the same time, while the spans read from the jobs' logs never
overlap more than two deep (and do reach two: the limit is used, not just respected). Then a newer
push to a branch that does not deploy cancels the older pipeline and its jobs.
"""

from __future__ import annotations

import pytest

from harness import git, running, start_master, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MAX_JOBS = 2
JOBS = ("one", "two", "three")
PIPELINE = """\
version: 1
requirements: []
jobs:
{jobs}
"""
JOB = """\
  {name}:
    steps:
      - 's=$(date +%s.%N); sleep {seconds}; echo "SPAN $s $(date +%s.%N) {name} $(git rev-parse --short HEAD)"'
"""
CANCELLED = 6


def pipeline_text(seconds: float) -> str:
    return PIPELINE.format(jobs="".join(JOB.format(name=n, seconds=seconds) for n in JOBS))


def spans_of(master, revisions: set[str]) -> list[list[str]]:
    """(start, end, job, revision) of each job command of `revisions` that ran to its end, from the logs."""
    found = []
    for name in JOBS:
        for build in master.finished_builds(name):
            if (build["properties"].get("namaskah_revision") or [None])[0] in revisions:
                lines = master.build_text(build).splitlines()
                found += [line.split()[1:] for line in lines if line.startswith("SPAN ")]
    return found


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    depth = deepest = 0
    for _, change in events:
        depth += change
        deepest = max(deepest, depth)
    return deepest


def test_max_overlap_counts_what_runs_together():
    assert max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert max_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert max_overlap([(0, 5), (1, 2), (1.5, 3)]) == 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("concurrency")
    repo = tmp / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(pipeline_text(3))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    env = {
        "PIPELINE_WORKERS_MAX_JOBS": str(MAX_JOBS),
        "PIPELINE_PIPELINE_REUSE": "false",
        "PIPELINE_CHECKS_REQUIRED": ",".join(JOBS),
        "PIPELINE_CHECKS_DISABLED": "",
        "PIPELINE_REPO_BRANCHES": "main",
    }
    with running(lambda: start_master(tmp, repo, env=env)) as master:
        yield master, repo


def pipelines_of(master, revisions: set[str]) -> list[dict]:
    def done():
        found = [
            b for b in master.finished_builds("pipeline") if (b["properties"].get("revision") or [None])[0] in revisions
        ]
        return found if len(found) == len(revisions) else None

    return wait_for(f"{len(revisions)} pipelines", done, 600, 2)


def test_four_branches_run_at_once_and_never_more_jobs_than_the_setting(setup):
    master, repo = setup
    revisions = set()
    for index in range(4):
        git(repo, "checkout", "-q", "-B", f"feature/c{index}", "main")
        (repo / "branch.txt").write_text(f"{index}\n")
        git(repo, "add", "branch.txt")
        git(repo, "commit", "-q", "-m", f"branch {index}")
        revisions.add(git(repo, "rev-parse", "HEAD").strip())
    git(repo, "checkout", "-q", "main")
    pipelines = pipelines_of(master, revisions)
    assert [p["results"] for p in pipelines] == [0] * 4, [p["state_string"] for p in pipelines]
    lines = spans_of(master, revisions)
    assert len(lines) == 4 * len(JOBS), lines
    deepest = max_overlap([(float(start), float(end)) for start, end, *_ in lines])
    assert deepest == MAX_JOBS, lines
    # the pipelines themselves overlapped: a second branch did not wait for the first one's pipeline
    intervals = sorted((p["started_at"], p["complete_at"]) for p in pipelines)
    assert max_overlap(intervals) >= 2, intervals


def test_a_newer_push_cancels_the_older_pipeline_of_a_branch_that_does_not_deploy(setup):
    master, repo = setup
    git(repo, "checkout", "-q", "-B", "feature/cancel", "main")
    (repo / ".namaskah-ci.yml").write_text(pipeline_text(60))
    git(repo, "commit", "-q", "-am", "slow jobs")
    older = git(repo, "rev-parse", "HEAD").strip()

    def job_running():
        running = [
            b
            for b in master.api("builds", complete="false", property="*")["builds"]
            if (b["properties"].get("namaskah_revision") or [None])[0] == older
            and b["started_at"]
            and "acquiring" not in (b["state_string"] or "")
        ]
        return running

    wait_for("a job of the older revision to run", job_running, 120, 1)
    (repo / ".namaskah-ci.yml").write_text(pipeline_text(0.1))
    git(repo, "commit", "-q", "-am", "quick jobs")
    newer = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    by_revision = {(p["properties"]["revision"][0]): p for p in pipelines_of(master, {older, newer})}
    assert by_revision[older]["results"] == CANCELLED, by_revision[older]["state_string"]
    assert by_revision[newer]["results"] == 0, by_revision[newer]["state_string"]
    jobs = [
        b
        for name in JOBS
        for b in master.finished_builds(name)
        if (b["properties"].get("namaskah_revision") or [None])[0] == older
    ]
    assert jobs and all(b["results"] == CANCELLED for b in jobs), [(b["builderid"], b["results"]) for b in jobs]
    assert not spans_of(master, {older})  # none ran to its end
