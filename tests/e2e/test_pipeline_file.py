"""End to end: a real master builds a repository unlike the reference service, from its own pipeline file.

One master, started with a token-shaped GITHUB_TOKEN and a PYTHONPATH marker in its environment, polls
a scratch copy of `tests/fixtures/foreign_service` (a `src/` package that refuses to import without
its environment, `requirements/`, `alembic/alembic.ini`, tests in `tests/unit` and
`tests/integration`, black at 100 columns). Its job builders do not exist when the master starts:
its first run (the newest revision of main) gives them their builders. The tests then check, on that one master:
- every job ran that file's commands and each result matches the local runner on the same revision;
- no job sees the master's environment, in its output or any step's log header;
- a commit that adds a job (with an allowed secret) runs it; a branch without it does not;
- every kind of bad file (over a limit of `[limits]` too) fails its pipeline at once, in one line, with
  no job and no deploy;
- the deploy gate, with no `[checks] required`, requires the file's verdict jobs and names them; the
  deploy build carries the first run's revision; a report's own coverage floor (`min:`) applies.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets as pysecrets
import shutil
import string
import subprocess

import pytest

from harness import ROOT, SHARED_CACHE, commit_file, git, make_fixture_repo, running, start_master, wait_for
from namaskah_ci.steps.results import FAILURE, SKIPPED, SUCCESS
from namaskah_ci.text import short

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

JOBS = ["unit-py3.9", "unit-py3.11", "integration", "migrations", "lint", "environment", "history"]
TOKEN = "ghp_" + pysecrets.token_hex(18)  # token-shaped; no secret provider knows it
PYTHONPATH_MARKER = f"/tmp/master-pythonpath-{pysecrets.token_hex(4)}"
FIXTURE_SECRET = "fxs-" + pysecrets.token_hex(12)
BUILD_TIMEOUT = 900


@pytest.fixture(scope="module")
def fixture_master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline-file")
    repo = make_fixture_repo(tmp / "repo")
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "fixture_token").write_text(FIXTURE_SECRET + "\n")
    (secrets / "fixture_token").chmod(0o600)
    extra = '[pipeline]\njob_secrets = ["codecov_token", "fixture_token"]\nmax_file_bytes = 4096\n'
    env = {"GITHUB_TOKEN": TOKEN, "PYTHONPATH": PYTHONPATH_MARKER, "PIPELINE_PIPELINE_FIRST_RUN": "true"}
    with running(lambda: start_master(tmp, repo, extra, env=env, seed=False), idle_timeout=600) as master:
        yield master, repo, tmp


def logs_of(master, build: dict) -> str:
    return master.build_text(build)


@pytest.fixture(scope="module")
def first_run(fixture_master):
    """The pipeline a new master runs by itself: the newest revision of main, nobody committing."""
    master, repo, tmp = fixture_master
    revision = git(repo, "rev-parse", "HEAD")
    pipeline = master.pipeline_of(revision, BUILD_TIMEOUT, only=True)
    return master, repo, tmp, revision, pipeline


def test_a_new_master_builds_the_newest_revision_of_main_once_by_itself(first_run):
    master, _, _, _revision, pipeline = first_run
    buildset = master.api(f"buildrequests/{pipeline['buildrequestid']}")["buildrequests"][0]["buildsetid"]
    assert master.api(f"buildsets/{buildset}")["buildsets"][0]["reason"] == "first run: the newest revision of main"
    assert len(master.finished_builds("pipeline")) >= 1


def test_every_job_runs_the_files_commands_as_they_run_by_hand(first_run):
    master, repo, tmp, revision, pipeline = first_run
    results = {}
    for job in JOBS:
        (build,) = wait_for(f"{job} of {revision[:8]}", functools.partial(master.builds_of, job, revision), 120)
        results[job] = build
    failed = {job: logs_of(master, b)[-3000:] for job, b in results.items() if b["results"] != 0}
    assert not failed, failed
    fanout = next(s for s in master.steps(pipeline) if s["name"] == "checks")
    assert all(f"{job}: success" in fanout["state_string"] for job in JOBS), fanout["state_string"]
    # the same revision through the local runner, "by hand"
    clone = tmp / "by-hand"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, timeout=120)
    git(clone, "checkout", "-q", revision)
    out = tmp / "by-hand.json"
    command = [
        str(ROOT / "scripts" / "run_ci_checks.sh"),
        "--repo",
        str(clone),
        "--json",
        str(out),
        "--cache-root",
        str(SHARED_CACHE),
        "--state",
        str(tmp / "by-hand-state"),
    ]  # the master's job caches: the same virtualenvs
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    by_hand = {item["job"]: item["result"] for item in json.loads(out.read_text())}
    assert by_hand == dict.fromkeys(JOBS, "success"), done.stdout[-3000:]
    for job in ("unit-py3.9", "unit-py3.11"):
        props = results[job]["properties"]
        junit = props["junit"][0]
        local = ET_counts(tmp / "by-hand-state/reports" / job / "build-reports/unit.xml")
        assert junit["tests"] == local["tests"] >= 5 and junit["failures"] == 0
        python = job.split("-py")[1]
        assert props["coverage"][0] > 40 and props["status_context"][0] == f"unit tests (Python {python})"
    assert "INVENTORY_ENV=test" in logs_of(master, results["environment"])
    migrations = logs_of(master, results["migrations"])
    assert "Running downgrade 0002 -> 0001" in migrations


def ET_counts(path) -> dict:
    from namaskah_ci.reports.kinds import junit_counts

    counts, problem = junit_counts(str(path))
    assert counts is not None, problem
    return counts


def test_the_job_builders_appeared_without_a_restart_with_force_buttons(first_run):
    master = first_run[0]
    builders = {b["name"] for b in master.api("builders")["builders"]}
    assert set(JOBS) <= builders and "test-py3.9" not in builders  # the repository's jobs, not the default's
    forces = {s["name"]: s["builder_names"] for s in master.api("forceschedulers")["forceschedulers"]}
    assert forces["force_unit_py3_9"] == ["unit-py3.9"]
    assert "new builders:" in logs_of(master, first_run[4])


def test_no_job_sees_the_masters_environment(first_run):
    master, _, _, revision, _ = first_run
    (environment,) = master.builds_of("environment", revision)
    printed = logs_of(master, environment)
    assert "INVENTORY_SECRET_KEY=fixture-only" in printed and "NAMASKAH_CI_BUILDER=environment" in printed
    every_log = "\n".join(logs_of(master, b) for job in JOBS for b in master.builds_of(job, revision))
    for leaked in (TOKEN, PYTHONPATH_MARKER, "GITHUB_TOKEN", "PIPELINE_CONFIG"):
        assert leaked not in every_log, leaked
    assert TOKEN not in master.twistd_log()


def test_the_gate_requires_the_files_verdict_jobs_and_deploys_the_pinned_revision(first_run):
    """No `[checks] required`: the gate requires the file's verdict jobs and names them (not the seed's
    eight "not defined"); the deploy build it triggers carries the first run's revision (a first run's
    stamp has none) and never ends FAILURE for it (here no deploy hook: SKIPPED, not configured)."""
    master, _, _, revision, pipeline = first_run
    gate = next(s for s in master.steps(pipeline) if s["name"] == "deploy gate")["state_string"]
    assert gate.endswith("required (the pipeline file's verdict jobs): " + ", ".join(JOBS)), gate
    assert gate.startswith(f"all {len(JOBS)} required checks passed: deploy of {short(revision)} requested"), gate
    (deploy,) = wait_for("the deploy build", lambda: master.finished_builds("deploy-production"), 120)
    assert deploy["properties"]["revision"][0] == revision
    assert deploy["results"] == SKIPPED and "not configured" in deploy["state_string"], deploy["state_string"]


LOW_FLOOR_JOB = """
  floor-{name}:
    requirements: []
    steps:
      - name: coverage at 28 %
        run: |
          mkdir -p out
          echo '<coverage line-rate="0.2802" version="7"></coverage>' > out/coverage.xml
    reports:
      - {{path: out/coverage.xml, kind: coverage{floor}}}
"""


def test_a_repositorys_own_coverage_floor_beats_the_masters_default(first_run):
    """`min: 15` on the report: 28 % passes; the same report without it fails under the master's 40."""
    master, repo, _, _, _ = first_run
    text = "version: 1\njobs:" + LOW_FLOOR_JOB.format(name="own", floor=", min: 15")
    text += LOW_FLOOR_JOB.format(name="default", floor="")
    revision = commit_file(repo, ".namaskah-ci.yml", text, "ci: our own coverage floor", branch="low-floor")
    git(repo, "checkout", "-q", "main")
    master.pipeline_of(revision, BUILD_TIMEOUT, only=True)
    (own,) = wait_for("floor-own", lambda: master.builds_of("floor-own", revision), 120)
    (default,) = wait_for("floor-default", lambda: master.builds_of("floor-default", revision), 120)
    assert own["results"] == SUCCESS and own["properties"]["coverage"][0] == 28.02, logs_of(master, own)
    assert default["results"] == FAILURE
    assert "coverage 28.02% is under [checks] coverage_min (40%)" in logs_of(master, default)


def test_a_commit_that_adds_a_job_runs_it_and_a_branch_without_it_does_not(first_run):
    master, repo, _, _, _ = first_run
    text = (
        (repo / ".namaskah-ci.yml").read_text()
        + """
  docs:
    requirements: []
    secrets: [fixture_token]
    steps:
      - name: use the secret
        run: |
          printf '%s' "$FIXTURE_TOKEN" | sha256sum
          echo "the token is $FIXTURE_TOKEN"
"""
    )
    added = commit_file(repo, ".namaskah-ci.yml", text, "ci: a docs job", branch="docs-job")
    git(repo, "checkout", "-q", "main")
    plain = commit_file(repo, "docs/NOTES.md", "second\n", "docs: another note")
    master.pipeline_of(added, BUILD_TIMEOUT, only=True)
    (docs,) = wait_for("the docs build", lambda: master.builds_of("docs", added), 120)
    assert docs["results"] == 0
    log = logs_of(master, docs)
    assert hashlib.sha256(FIXTURE_SECRET.encode()).hexdigest() in log  # the job had the value ...
    assert "the token is <fixture_token>" in log  # ... and the log shows its name instead
    assert "docs" in {b["name"] for b in master.api("builders")["builders"]}
    master.pipeline_of(plain, BUILD_TIMEOUT, only=True)
    assert master.builds_of("docs", plain) == []
    everything = json.dumps(master.api("builds", property="*")) + master.twistd_log()
    everything += "\n".join(logs_of(master, b) for b in master.finished_builds("pipeline"))
    assert FIXTURE_SECRET not in everything and FIXTURE_SECRET not in log


BAD_FILES = {
    "syntax": ("jobs:\n  a:\n    steps: [x\n", r".namaskah-ci.yml:4: YAML syntax error"),
    "unknown-key": ("jobs:\n  a:\n    stepz: [x]\n    steps: [y]\n", ".namaskah-ci.yml:4: jobs.a.stepz: unknown key"),
    "wrong-type": (
        "jobs:\n  a:\n    timeout: soon\n    steps: [x]\n",
        ".namaskah-ci.yml:4: jobs.a.timeout: must be a whole number",
    ),
    "service": (
        "jobs:\n  a:\n    services: [mysql]\n    steps: [x]\n",
        ".namaskah-ci.yml:4: jobs.a.services[0]: unknown service 'mysql'",
    ),
    "no-steps": ("jobs:\n  a:\n    steps: []\n", ".namaskah-ci.yml:4: jobs.a.steps: must not be empty"),
    "duplicate": (
        "jobs:\n  t:\n    matrix: {python: ['3.11']}\n    steps: [x]\n  t-py3.11:\n    steps: [y]\n",
        ".namaskah-ci.yml:6: jobs.t-py3.11: builder 't-py3.11' is also made by job 't'",
    ),
    "reserved": ("jobs:\n  deploy-production:\n    steps: [x]\n", ".namaskah-ci.yml:3: jobs.deploy-production:"),
    "pipeline-name": (
        "jobs:\n  pipeline:\n    steps: [x]\n",
        ".namaskah-ci.yml:3: jobs.pipeline: 'pipeline' is the pipeline's",
    ),
    "secret": (
        "jobs:\n  a:\n    secrets: [render_deploy_hook]\n    steps: [x]\n",
        ".namaskah-ci.yml:4: jobs.a.secrets[0]: 'render_deploy_hook' belongs to the master",
    ),
    "too-large": (
        "jobs:\n  a:\n    steps: [x]\n" + "# padding\n" * 500,
        ".namaskah-ci.yml:1: (file): 5037 bytes is over",
    ),
    # issue 21: the limits of one file, and env values that would forge lines in the `environment` log
    "too-deep": (
        "jobs:\n  a:\n    steps: [x]\nx: " + "[" * 40 + "]" * 40 + "\n",
        ".namaskah-ci.yml:5: nesting deeper than 32 levels ([limits] file_depth)",
    ),
    "too-many-builders": (
        "jobs:\n  a:\n    matrix: {python: [" + ", ".join(f'"3.{n}"' for n in range(65)) + "]}\n    steps: [x]\n",
        ".namaskah-ci.yml:2: jobs: 65 job builders (matrix entries expanded) is "
        "over the limit of 64 ([limits] pipeline_builders)",
    ),
    "env-newline": (
        'env: {A: "one\\nINJECTED=1"}\njobs:\n  a:\n    steps: [x]\n',
        ".namaskah-ci.yml:2: env.A: holds a control character ('\\n')",
    ),
}


def test_every_bad_file_fails_its_pipeline_at_once_in_one_line(first_run):
    master, repo, _, _, _ = first_run
    revisions = {}
    for case, (body, _) in BAD_FILES.items():
        branch = "develop" if case == "secret" else f"bad-{case}"  # one on a deploy branch: it must not deploy
        git(repo, "checkout", "-q", "main")
        revisions[case] = commit_file(repo, ".namaskah-ci.yml", "version: 1\n" + body, f"ci: {case}", branch=branch)
    git(repo, "checkout", "-q", "main")
    for case, revision in revisions.items():
        pipeline = master.pipeline_of(revision, BUILD_TIMEOUT, only=True)
        summary = pipeline["state_string"].removeprefix("failed ")  # Buildbot's prefix of a failed build
        assert pipeline["results"] == 2 and "\n" not in summary and "Traceback" not in summary, summary
        assert summary.startswith(BAD_FILES[case][1]), (case, summary)
        steps = {s["name"]: s for s in master.steps(pipeline)}
        assert steps["pipeline file"]["results"] == 2 and "checks" not in steps  # halted: nothing fanned out
        assert steps["deploy gate"]["state_string"] in (
            "branch bad-" + case + " does not deploy",
            "not deploying: the pipeline file is unusable",
        )
    known = [b["name"] for b in master.api("builders")["builders"]]
    for builder in known:
        if builder != "pipeline":
            assert not [
                b for b in master.builds(builder) if b["properties"].get("revision", [None])[0] in revisions.values()
            ], builder
    assert not master.builds("deploy-staging") and master.api("builders")


@pytest.mark.skipif(shutil.which("gitleaks") is None, reason="gitleaks is not installed (make test installs it)")
def test_a_planted_secret_fails_the_scan_naming_its_commit_and_is_shown_nowhere(first_run):
    master, repo, _, _, _ = first_run
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", "leak")
    token = "ghp_" + "".join(pysecrets.choice(string.ascii_letters + string.digits) for _ in range(36))
    planted = commit_file(repo, "deploy/settings.env", f"GITHUB_TOKEN={token}\n", "deploy settings")
    (repo / "deploy" / "settings.env").unlink()
    text = (
        (repo / ".namaskah-ci.yml").read_text()
        + """
  secrets-scan:
    requirements: []
    tools: [gitleaks]
    history: full
    steps:
      - gitleaks detect --source . --redact --no-banner --report-format sarif --report-path out/gitleaks.sarif
    reports: [{path: out/gitleaks.sarif, kind: sarif}]
"""
    )
    (repo / ".namaskah-ci.yml").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "remove the token, scan for secrets")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    master.pipeline_of(head, BUILD_TIMEOUT, only=True)
    (scan,) = wait_for("the secrets-scan build", lambda: master.builds_of("secrets-scan", head), 300)
    assert scan["results"] == 2
    assert f"1 finding in {short(planted)}" in scan["state_string"], scan["state_string"]
    everything = logs_of(master, scan) + json.dumps(master.api("builds", property="*")) + master.twistd_log()
    assert f"gitleaks: {shutil.which('gitleaks')} (" in logs_of(master, scan)  # the tool and its version
    assert token not in everything
