"""End to end (issue 21, items 2 and 6): a branch's pipeline file cannot freeze the master.

One master polls a small repository whose jobs run `true`. Branches push:
- an `inputs:` pattern a backtracking regex takes seconds on (`*a` eight times, then `b`) with a file
  named `a`x50: the fan-out's digest is made in linear time, in a thread, so its job is triggered
  at once (11 s after the `checks` step started, before);
- a 60 KB file of nested `[[[...]]]`: the pipeline fails in its `pipeline file` step within a second,
  one line naming the file, the line and `[limits] file_depth`, never a RecursionError;
- a file defining more job builders than `[limits] pipeline_builders`: refused naming the count and
  the key; then branches bringing new builders one after another: the master keeps at most
  `[limits] registered_builders` of them, retiring the longest unused.
While each pipeline runs, a thread polls `GET /api/v2/builders`: every answer comes in under a second.
Buildbot keeps step times in whole seconds: "within a second" is `complete_at - started_at <= 1`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from harness import commit_file, git, running, start_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MAIN_FILE = """version: 1
requirements: []
jobs:
  quick:
    steps: ["true"]
  probe:
    inputs: ["app/"]
    steps: ["true"]
"""
REDOS_PATTERN = "*a" * 8 + "b"  # a backtracking regex takes ~5 s on `a`x50 (x5 per more `*a`)
NESTING = 30_000  # 60 KB of `[`s and `]`s: PyYAML's composer recursed until RecursionError
LIMITS = "[limits]\npipeline_builders = 4\nregistered_builders = 6\n"
PIPELINE_TIMEOUT = 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bounded-parsing")
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_file(repo, ".namaskah-ci.yml", MAIN_FILE, "a pipeline of two quick jobs")
    with running(lambda: start_master(tmp, repo, LIMITS)) as master:  # seeded: quick and probe have builders
        yield master, repo


class RestProbe:
    """Polls GET /api/v2/builders from a thread; `slowest` is the longest answer in seconds."""

    def __init__(self, master):
        self.url = f"{master.url}api/v2/builders"
        self.times: list[float] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.done.is_set():
            start = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    json.loads(response.read())
            except OSError as exc:
                self.errors.append(str(exc))
            self.times.append(time.monotonic() - start)
            self.done.wait(0.1)

    def __enter__(self) -> RestProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=90)

    @property
    def slowest(self) -> float:
        return max(self.times)


def push(repo, branch: str, files: dict[str, str], message: str) -> str:
    git(repo, "checkout", "-q", "-B", branch, "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    revision = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return revision


def step_named(master, build: dict, name: str) -> dict:
    (step,) = [s for s in master.steps(build) if s["name"] == name]
    return step


def test_a_pattern_a_regex_backtracks_on_is_matched_at_once_and_rest_answers(setup):
    master, repo = setup
    text = MAIN_FILE.replace('inputs: ["app/"]', f'inputs: ["{REDOS_PATTERN}"]')
    with RestProbe(master) as probe:
        revision = push(repo, "redos", {".namaskah-ci.yml": text, "a" * 50: "x\n"}, "a pattern that backtracks")
        pipeline = master.pipeline_of(revision, PIPELINE_TIMEOUT, only=True)
    checks = step_named(master, pipeline, "checks")
    (job,) = [b for b in master.finished_builds("probe") if b["properties"]["revision"][0] == revision]
    request = master.api(f"buildrequests/{job['buildrequestid']}")["buildrequests"][0]
    fanned_out = request["submitted_at"] - checks["started_at"]
    print(
        f"ReDoS: checks started {checks['started_at']}, probe requested {request['submitted_at']} "
        f"(+{fanned_out}s), slowest REST answer {probe.slowest:.3f}s of {len(probe.times)}"
    )
    assert pipeline["results"] == 0 and job["results"] == 0, pipeline["state_string"]
    assert "probe: runs (key " in master.build_text(pipeline)  # its inputs' digest was made
    assert fanned_out <= 2, fanned_out  # whole seconds, and the fan-out also probes the interpreter
    assert not probe.errors and probe.slowest < 1.0, (probe.slowest, probe.errors[:3])


def test_a_deeply_nested_file_fails_its_pipeline_at_once_in_one_line(setup):
    master, repo = setup
    text = MAIN_FILE + "x: " + "[" * NESTING + "]" * NESTING + "\n"
    assert 60_000 <= len(text) <= 64 * 1024
    with RestProbe(master) as probe:
        revision = push(repo, "nested", {".namaskah-ci.yml": text}, "60 KB of nesting")
        pipeline = master.pipeline_of(revision, PIPELINE_TIMEOUT, only=True)
    step = step_named(master, pipeline, "pipeline file")
    took = step["complete_at"] - step["started_at"]
    print(
        f"nesting: step {step['state_string']!r} results {step['results']} in {took}s, "
        f"slowest REST answer {probe.slowest:.3f}s of {len(probe.times)}"
    )
    summary = step["state_string"]
    assert step["results"] == 2 and pipeline["results"] == 2, (step["results"], summary)
    assert summary.startswith(".namaskah-ci.yml:9: nesting deeper than 32 levels ([limits] file_depth)"), summary
    assert "\n" not in summary and "Recursion" not in master.build_text(pipeline)
    assert took <= 1, took
    assert not probe.errors and probe.slowest < 1.0, (probe.slowest, probe.errors[:3])


def registered(master) -> list[str]:
    path = master.basedir / "pipeline-builders.json"
    return sorted(entry["builder"] for entry in json.loads(path.read_text())["builders"])


def jobs_file(*builders: str) -> str:
    return "version: 1\nrequirements: []\njobs:\n" + "".join(f'  {name}:\n    steps: ["true"]\n' for name in builders)


def test_builders_per_file_and_registered_are_bounded(setup):
    master, repo = setup
    many = jobs_file("m1", "m2", "m3") + '  m4:\n    matrix: {python: ["3.9", "3.11"]}\n    steps: ["true"]\n'
    revision = push(repo, "many", {".namaskah-ci.yml": many}, "four jobs, five builders")
    pipeline = master.pipeline_of(revision, PIPELINE_TIMEOUT, only=True)
    summary = step_named(master, pipeline, "pipeline file")["state_string"]
    assert pipeline["results"] == 2
    assert summary.startswith(
        ".namaskah-ci.yml:3: jobs: 5 job builders (matrix entries expanded) is over the limit "
        "of 4 ([limits] pipeline_builders)"
    ), summary
    assert not {"m1", "m2", "m3", "m4-py3.9"} & set(registered(master))
    for round_, names in enumerate((("b1", "b2", "b3"), ("c1", "c2", "c3"), ("d1", "d2", "d3")), start=1):
        revision = push(repo, f"set{round_}", {".namaskah-ci.yml": jobs_file(*names)}, f"jobs {names}")
        pipeline = master.pipeline_of(revision, PIPELINE_TIMEOUT, only=True)
        assert pipeline["results"] == 0, (names, pipeline["state_string"])
        kept = registered(master)
        print(f"round {round_}: registered {kept}")
        assert len(kept) <= 6 and set(names) <= set(kept), kept
    assert registered(master) == ["c1", "c2", "c3", "d1", "d2", "d3"]  # the longest unused went first
    active = {b["name"] for b in master.api("builders")["builders"] if b["masterids"]}
    jobs = {name for name in active if not name.startswith(("deploy-", "rollback-"))}
    assert jobs == {"pipeline", "c1", "c2", "c3", "d1", "d2", "d3"}, active  # the retired ones are gone
