"""End to end: job results reused by their inputs, on one real master polling one scratch repository.

The repository's pipeline has four quick jobs: `app` (inputs `src/` minus `src/**/*.md`), `docs`
(inputs `docs/`), `whole` (no `inputs:`: the whole tree) and `gate` (inputs `flag`: fails while
the file `flag` exists). Each test commits one change on `feature/reuse`, waits for its pipeline and
reads which jobs ran and which showed an earlier SUCCESS. In order: the first pipeline runs
everything; a README-only commit reuses `app` and `docs`; a changed input file, a changed step, a
changed env value and a different interpreter for the jobs' Python each make the jobs they concern
run; a failure is never reused; a restart keeps the records; a forced "run everything" reuses
nothing; and a revision whose tree equals a tested one, pushed to `main`, reuses every job, passes
the deploy gate and deploys to the Render stand-in.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from deploy_story import Story, stand_in_secrets, stand_in_settings
from harness import ROOT, commit_file, git, running, start_master, wait_for, wait_poller_ready
from jobs_support import job_python
from render_standin import RenderStandin
from www_support import ADMIN_USER, force, force_answer, outside_urls_env, write_secrets

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

BRANCH = "feature/reuse"
MARKERS = ROOT / ".state" / "rerun-markers"
JOBS = ("app", "docs", "whole", "gate")
PIPELINE = """\
version: 1
python: "3.11"
requirements: []
jobs:
  app:
    inputs: ["src/", "!src/**/*.md"]
    env: {{MODE: "{mode}"}}
    steps:
      - cat src/app.txt
      - {app_step}
  docs:
    inputs: [docs/]
    steps: [ls docs]
  whole:
    steps: ["true"]
  gate:
    inputs: [flag]
    steps: ["test ! -e flag"]
"""


def pipeline_text(mode: str = "a", app_step: str = 'echo "mode $MODE"') -> str:
    return PIPELINE.format(mode=mode, app_step=app_step)


def make_repo(path: Path) -> Path:
    path.mkdir()
    (path / "src").mkdir()
    (path / "docs").mkdir()
    (path / "src" / "app.txt").write_text("app 1\n")
    (path / "src" / "notes.md").write_text("notes 1\n")
    (path / "docs" / "index.md").write_text("docs 1\n")
    (path / "README.md").write_text("readme 1\n")
    (path / ".namaskah-ci.yml").write_text(pipeline_text())
    git(path, "init", "-q", "-b", BRANCH)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def other_interpreter(tmp: Path) -> Path:
    """A second install of the jobs' Python (a copied binary: another real path, as after an upgrade)."""
    target = tmp / "python-copy"
    subprocess.run([job_python(), "-m", "venv", "--copies", "--without-pip", str(target)], check=True, timeout=120)
    return target / "bin" / "python3"


class ReuseStory(Story):
    python_link: Path  # the jobs' Python 3.11, by a path of this test's own
    tmp: Path  # where the test's interpreters live (every user may enter it)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reuse")
    # the jobs' interpreters where the job user can always reach them: not under pytest's basetemp, whose
    # /tmp/pytest-of-root another xdist worker closes again (0700) whenever it starts: the master's lookup
    # then found the link unusable for the job user and keyed that pipeline on the fallback interpreter
    pythons = Path(tempfile.mkdtemp(prefix="namaskah-reuse-pythons-", dir="/tmp"))
    pythons.chmod(0o755)
    python_link = pythons / "py" / "python3.11"
    python_link.parent.mkdir(mode=0o755)
    python_link.symlink_to(job_python())
    render = RenderStandin(build_seconds=0.5, update_seconds=0.2).start()
    write_secrets(tmp / "secrets", stand_in_secrets(render))
    repo = make_repo(tmp / "repo")
    env = {
        **outside_urls_env(),
        **stand_in_settings(render),
        "PIPELINE_WWW_ADMINS": ADMIN_USER,
        "PIPELINE_CHECKS_REQUIRED": ",".join(JOBS),
        "PIPELINE_CHECKS_DISABLED": "",
        "PIPELINE_WORKERS_INTERPRETERS": f"3.11={python_link}",
        # the rerun test's marker directory: on the jobs' base PATH, which their sandbox shows read-only
        "PIPELINE_WORKERS_JOB_PATH": f"{MARKERS}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    try:
        with running(lambda: start_master(tmp, repo, env=env, seed=False), render) as master:
            story = ReuseStory(master, repo, render)
            story.python_link, story.tmp = python_link, pythons
            yield story
    finally:
        shutil.rmtree(pythons, ignore_errors=True)


def job_builds(story: Story, pipeline: dict) -> dict[str, dict]:
    """The pipeline's job builds by builder (the newest build of each builder for its revision)."""
    revision = story.prop(pipeline, "revision")
    found = {}
    for job in JOBS:
        builds = [
            b
            for b in story.master.finished_builds(job)
            if story.prop(b, "namaskah_revision") == revision and b["started_at"] >= pipeline["started_at"]
        ]
        assert builds, f"no {job} build of {revision[:8]}"
        found[job] = builds[-1]
    return found


def reused(story: Story, pipeline: dict) -> dict[str, bool]:
    """{job: whether it showed an earlier result}, after checking each reused build says so and links."""
    result = {}
    for job, build in job_builds(story, pipeline).items():
        record = story.prop(build, "namaskah_reused")
        result[job] = bool(record)
        if record:
            assert build["results"] == 0, build
            assert f"reused from {job}/{record['number']} (" in build["state_string"], build["state_string"]
            steps = [s for s in story.master.steps(build) if s["name"] != "worker_preparation"]
            assert [s["name"] for s in steps] == ["job definition"], steps  # no checkout, no command
            assert steps[0]["urls"][0]["url"] == record["url"]
            assert story.master.api(f"workers/{build['workerid']}")["workers"][0]["name"] == "reuse"
    return result


def commit_and_wait(story: Story, relative: str, content: str, branch: str = BRANCH) -> dict:
    revision = commit_file(story.repo, relative, content, f"change {relative}", branch=branch)
    return story.master.pipeline_of(revision)


@pytest.fixture(scope="module")
def first(story):
    return commit_and_wait(story, "src/app.txt", "app 2\n")


def test_the_first_pipeline_runs_every_job(story, first):
    assert reused(story, first) == dict.fromkeys(JOBS, False)
    assert first["results"] == 0, first["state_string"]


def test_a_readme_only_commit_reuses_the_jobs_whose_inputs_it_leaves_alone(story, first):
    pipeline = commit_and_wait(story, "README.md", "readme 2\n")
    assert reused(story, pipeline) == {"app": True, "docs": True, "whole": False, "gate": True}
    assert pipeline["results"] == 0
    assert "(3 reused)" in story.step_states(pipeline)["checks"]


def test_a_changed_input_file_runs_its_job_and_an_excluded_one_does_not(story, first):
    pipeline = commit_and_wait(story, "src/app.txt", "app 3\n")
    assert reused(story, pipeline)["app"] is False and reused(story, pipeline)["docs"] is True
    pipeline = commit_and_wait(story, "src/notes.md", "notes 2\n")  # `!src/**/*.md`
    assert reused(story, pipeline)["app"] is True


def test_a_changed_step_runs_the_job(story, first):
    pipeline = commit_and_wait(story, ".namaskah-ci.yml", pipeline_text(app_step='echo "step two $MODE"'))
    assert reused(story, pipeline) == {"app": False, "docs": True, "whole": False, "gate": True}


def test_a_changed_env_value_runs_the_job(story, first):
    pipeline = commit_and_wait(story, ".namaskah-ci.yml", pipeline_text(mode="b", app_step='echo "step two $MODE"'))
    assert reused(story, pipeline) == {"app": False, "docs": True, "whole": False, "gate": True}
    assert "step two b" in story.master.build_text(job_builds(story, pipeline)["app"])


def test_a_different_interpreter_for_the_python_version_runs_every_job(story, first):
    copy = other_interpreter(story.tmp)
    story.python_link.unlink()
    story.python_link.symlink_to(copy)
    pipeline = commit_and_wait(story, "README.md", "readme 3\n")
    assert reused(story, pipeline) == dict.fromkeys(JOBS, False)


def test_a_failure_is_never_reused(story, first):
    failed = commit_and_wait(story, "flag", "stop\n")
    assert job_builds(story, failed)["gate"]["results"] == 2  # FAILURE
    again = commit_and_wait(story, "README.md", "readme 4\n")
    assert reused(story, again)["gate"] is False
    assert job_builds(story, again)["gate"]["results"] == 2
    git(story.repo, "rm", "-q", "flag")
    git(story.repo, "commit", "-q", "-m", "no flag")
    revision = git(story.repo, "rev-parse", "HEAD").strip()
    cleared = story.master.pipeline_of(revision)
    assert reused(story, cleared)["gate"] is True  # the tree before the flag passed with these inputs
    assert cleared["results"] == 0


def test_records_survive_a_restart(story, first):
    story.master.stop()
    story.master.launch()
    wait_poller_ready(story.master)
    pipeline = commit_and_wait(story, "README.md", "readme 5\n")
    assert reused(story, pipeline) == {"app": True, "docs": True, "whole": False, "gate": True}


def test_a_forced_run_everything_reuses_nothing(story, first):
    revision = git(story.repo, "rev-parse", "HEAD").strip()
    before = len(story.master.finished_builds("pipeline"))
    force(story.admin, "pipeline", branch=BRANCH, revision=revision, run_everything=True, reason="everything")
    builds = story.master.wait_builds("pipeline", before + 1, 300)
    pipeline = builds[before]
    assert "run everything" in story.master.build_text(pipeline)
    assert reused(story, pipeline) == dict.fromkeys(JOBS, False)


def test_a_tested_tree_pushed_to_main_reuses_every_job_and_deploys(story, first):
    head = git(story.repo, "rev-parse", f"{BRANCH}").strip()
    git(story.repo, "checkout", "-q", "-B", "main", head)
    git(story.repo, "commit", "-q", "--allow-empty", "-m", "release: same tree")
    revision = git(story.repo, "rev-parse", "HEAD").strip()
    git(story.repo, "checkout", "-q", BRANCH)
    pipeline = story.master.pipeline_of(revision)
    assert reused(story, pipeline) == dict.fromkeys(JOBS, True)
    assert pipeline["results"] == 0, pipeline["state_string"]
    deploy = story.wait_deploy(1)
    assert story.prop(deploy, "deploy_revision") == revision
    assert deploy["results"] == 0, deploy["state_string"]


def test_rerun_failed_runs_exactly_the_failed_jobs_then_deploys(story, first):
    """`gate` fails on main for a reason outside the repository (a marker file is missing); once it is
    there, "Re-run failed jobs" runs `gate` alone and the pipeline deploys the same revision."""
    # a job sees only what its sandbox mounts: this directory is on its base PATH (the story's job_path)
    markers = MARKERS
    markers.mkdir(parents=True, exist_ok=True)
    markers.chmod(0o755)
    marker = markers / f"namaskah-rerun-{os.getpid()}-{secrets.token_hex(4)}"
    git(story.repo, "checkout", "-q", "main")
    gate_step = f"test ! -e flag && test -e {marker}"
    text = pipeline_text(mode="b", app_step='echo "step two $MODE"').replace(
        'steps: ["test ! -e flag"]', f"steps: [{json.dumps(gate_step)}]"
    )
    revision = commit_file(story.repo, ".namaskah-ci.yml", text, "gate needs the marker", branch="main")
    git(story.repo, "checkout", "-q", BRANCH)
    failed = story.master.pipeline_of(revision)
    assert failed["results"] == 2 and "failed: gate" in failed["state_string"], failed["state_string"]
    assert "not deploying: gate: failure" in story.step_states(failed)["deploy gate"]
    counts = {job: len(story.master.builds(job)) for job in JOBS}
    deploys = len(story.deploys())

    status, answer = rerun(story, failed["number"] - 1)  # the tested tree on main: all green
    assert status != 200 and "has no failed or cancelled jobs" in json.dumps(answer), answer
    status, answer = rerun(story, 9999)
    assert status != 200 and "there is no pipeline build #9999" in json.dumps(answer), answer

    marker.write_text("present\n")
    try:
        status, answer = rerun(story, failed["number"])
        assert status == 200, answer
        again = wait_for(
            "the re-run pipeline",
            lambda: [
                b
                for b in story.master.finished_builds("pipeline")
                if b["number"] > failed["number"] and story.prop(b, "rerun_of") == failed["number"]
            ],
            300,
            2,
        )[0]
    finally:
        marker.unlink()
    assert story.prop(again, "revision") == revision and story.prop(again, "branch") == "main"
    assert again["results"] == 0, again["state_string"]
    assert story.prop(again, "check_results") == dict.fromkeys(JOBS, "success")
    assert {job: len(story.master.builds(job)) for job in JOBS} == {**counts, "gate": counts["gate"] + 1}
    assert "re-run of #" in story.step_states(again)["checks"]
    deploy = story.wait_deploy(deploys + 1)
    assert story.prop(deploy, "deploy_revision") == revision and deploy["results"] == 0, deploy["state_string"]


def rerun(story: Story, number: int):
    return force_answer(story.admin, "pipeline", "rerun_failed", rerun_of=number, reason="flaky infrastructure")
