"""Local jobs of a root master run as an unprivileged user (`[workers] job_user`, ci_step.py).

The privilege tests run real child processes through ci_step.py as root, with `nobody` as the job
user, in a scratch directory every user can enter (pytest's own temporary directories are private
to root); they are skipped, saying why, when the tests do not run as root. The rest is plain data:
the plan, job.json, the job's steps, the start-up notice.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci import workers
from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_job_user import private_dir
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.job import PinnedGit
from namaskah_ci.steps.job_steps import JobSetup, job_steps
from namaskah_ci.steps.reports import PublishReports
from namaskah_ci.workers import local
from pipeline_support import job_of

ROOT = Path(__file__).resolve().parents[3]
STEP = str(Path(HELPERS_DIR) / "ci_step.py")
FILE = """
version: 1
requirements: [requirements.txt]
jobs:
  unit:
    secrets: [codecov_token]
    steps: [pytest]
    reports: [{path: out/junit.xml, kind: junit}]
"""
JOB = job_of(load_pipeline(FILE, ".namaskah-ci.yml"), "unit")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (the tests run as a user)")


def public_python() -> str:
    """A python3 that `nobody` can run (the tests' own may live under /root, e.g. pyenv's)."""
    nobody = pwd.getpwnam("nobody")
    for path in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if os.path.isfile(path) and not private_dir(path, nobody):
            return path
    pytest.skip("no python3 that every user can run on this machine")


def setup_for(user: str) -> JobSetup:
    layout = JobLayout(runner="/opt/master/bin/python", helpers_dir="/opt/helpers", cache_root="/c", user=user)
    return JobSetup(
        mode="local",
        layout=layout,
        repo_url="/srv/app.git",
        base_path="/usr/bin:/bin",
        reports_root="/m/reports",
        reports_url="http://ci/r/",
    )


# --- data: the plan, job.json, the steps -------------------------------------------------------------


def test_a_root_master_names_the_job_user_and_docker_mode_never_does(monkeypatch):
    settings = load_settings({})
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert workers.make_plan(settings).job_user == "namaskah-job"
    assert workers.make_plan(load_settings({"PIPELINE_WORKERS_JOB_USER": ""})).job_user == ""
    docker = load_settings({"PIPELINE_WORKERS_MODE": "docker", "PIPELINE_REPO_URL": "https://example.invalid/a.git"})
    assert workers.make_plan(docker).job_user == ""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert workers.make_plan(settings).job_user == ""


def test_job_json_names_the_user_only_when_there_is_one():
    def document(user):
        return job_commands.job_document(
            JOB, setup_for(user).layout, interpreter="/usr/bin/python3", base_path="/bin", worker_env={}
        )

    assert document("namaskah-job")["user"] == "namaskah-job" and "user" not in document("")


def test_a_job_user_gets_a_root_only_clone_its_own_checkout_and_reports_collected_by_root():
    plain = job_steps(JOB, setup_for(""), "/usr/bin/python3")
    steps = job_steps(JOB, setup_for("namaskah-job"), "/usr/bin/python3")
    assert [s.name for s in steps if s.name not in {p.name for p in plain}] == ["job user", "collect reports"]
    names = [s.name for s in steps]
    assert names.index("job user") < names.index("virtualenv (Python 3.11)")
    assert names.index("pytest") < names.index("collect reports") < names.index("publish reports")
    (git,) = [s for s in steps if isinstance(s, PinnedGit)]
    assert git.method == "copy" and next(s for s in plain if isinstance(s, PinnedGit)).method == "fresh"
    by_name = {s.name: s for s in steps}
    assert by_name["job user"].command[-3:] == ["--job-dir", "../.namaskah-ci", "own"]
    assert by_name["job user"].haltOnFailure and by_name["collect reports"].alwaysRun
    assert by_name["collect reports"].command[-3:] == ["collect-reports", "--", "out/junit.xml"]
    (publish,) = [s for s in steps if isinstance(s, PublishReports)]
    assert publish.workdir == ".namaskah-ci/reports"


def test_the_start_up_notice_says_what_the_sandbox_keeps_from_a_branch_and_what_not():
    for notice in (local.trust_notice(1000, ""), local.trust_notice(0, "")):
        assert "\n" not in notice and "bubblewrap sandbox" in notice
        assert "[secrets] dir" in notice and "no other job's processes" in notice  # what it keeps them from
        assert "can read" not in notice and "trusts every branch" not in notice  # no longer true
        assert "`tools: [docker]`" in notice and "docker mode" in notice  # what it does not, and the way out
    assert "not root" in local.trust_notice(1000, "") and "job_user" in local.trust_notice(1000, "")
    assert "uid 0" in local.trust_notice(0, "") and "create_job_user.sh" in local.trust_notice(0, "")
    assert local.trust_notice(0, "namaskah-job") == ""


def test_create_job_user_does_nothing_for_an_existing_or_empty_name():
    for name in ("root", ""):
        done = subprocess.run(
            [str(ROOT / "scripts" / "create_job_user.sh"), name],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0 and done.stdout == "", done.stderr


# --- real processes, as root --------------------------------------------------------------------------


def job_dir_in(builder: Path, user: str = "nobody", interpreter: str = "") -> tuple[Path, Path]:
    """A builder directory as a worker leaves it after the checkout: root's job dir, root's checkout."""
    builder.mkdir(mode=0o755)
    job_dir, checkout = builder / ".namaskah-ci", builder / "build"
    (job_dir / "secrets").mkdir(parents=True, mode=0o755)
    checkout.mkdir()
    layout = JobLayout(runner=sys.executable, helpers_dir=HELPERS_DIR, cache_root=str(builder / "cache"), user=user)
    document = job_commands.job_document(
        JOB, layout, interpreter=interpreter or public_python(), base_path="/usr/bin:/bin", worker_env={}
    )
    (job_dir / "job.json").write_text(json.dumps(document))
    secret = job_dir / "secrets" / "CODECOV_TOKEN"
    secret.write_text("tok-7c1e\n")
    secret.chmod(0o600)
    return job_dir, checkout


def ci_step(checkout: Path, *args: str, runner: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(
        [runner, STEP, "--job-dir", "../.namaskah-ci", *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/root"},
        check=False,
    )


PROBE = """
import json, os, sys
out = {"ids": os.getresuid(), "groups": os.getgroups(), "home": os.environ["HOME"],
       "token": os.environ.get("CODECOV_TOKEN")}
for name, path in (("private", sys.argv[1]), ("secret", sys.argv[2])):
    try:
        open(path).read(); out[name] = "read"
    except PermissionError:
        out[name] = "Permission denied"
try:
    os.setuid(0); out["back"] = "root again"
except PermissionError:
    out["back"] = "refused"
print(json.dumps(out))
"""


@as_root
def test_a_command_runs_as_the_job_user_with_its_secrets_and_cannot_read_roots_files(scratch):
    nobody = pwd.getpwnam("nobody")
    job_dir, checkout = job_dir_in(scratch / "b")
    private = scratch / "state.sqlite"
    private.write_text("the master's database\n")
    private.chmod(0o600)
    assert ci_step(checkout, "own").returncode == 0
    secret = job_dir / "secrets" / "CODECOV_TOKEN"
    done = ci_step(checkout, "run", "--", public_python(), "-c", PROBE, str(private), str(secret))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ids"] == [nobody.pw_uid] * 3 and set(out["groups"]) <= {nobody.pw_gid}
    assert out["token"] == "tok-7c1e"  # read as root before the switch, handed over in the environment
    assert out["private"] == out["secret"] == "Permission denied" and out["back"] == "refused"
    assert out["home"] == str(job_dir / "tmp" / "home")  # nobody's home does not exist: a per-build one


@as_root
def test_own_hands_over_the_checkout_without_following_a_link_out_of_it(scratch):
    nobody = pwd.getpwnam("nobody")
    _, checkout = job_dir_in(scratch / "b")
    outside = scratch / "outside"
    outside.write_text("root's\n")
    (checkout / "src").mkdir()
    (checkout / "src" / "app.py").write_text("print(1)\n")
    (checkout / "src" / "link").symlink_to(outside)
    done = ci_step(checkout, "own")
    assert done.returncode == 0, done.stderr
    assert "run as nobody" in done.stdout
    for path in (checkout, checkout / "src", checkout / "src" / "app.py", checkout / "src" / "link"):
        assert os.lstat(path).st_uid == nobody.pw_uid, path
    assert outside.stat().st_uid == 0


@as_root
def test_collect_reports_copies_files_and_never_a_link_to_a_secret(scratch):
    job_dir, checkout = job_dir_in(scratch / "b")
    secret = job_dir / "secrets" / "CODECOV_TOKEN"
    (checkout / "out" / "html").mkdir(parents=True)
    (checkout / "out" / "junit.xml").write_text("<testsuite tests='1'/>\n")
    (checkout / "out" / "leak.txt").symlink_to(secret)
    (checkout / "out" / "html" / "index.html").write_text("<html/>\n")
    (checkout / "out" / "html" / "token.html").symlink_to(secret)
    (checkout / "linked").symlink_to(job_dir / "secrets")
    paths = ("out/junit.xml", "out/leak.txt", "out/html", "linked/CODECOV_TOKEN", "out/none.xml")
    done = ci_step(checkout, "collect-reports", "--", *paths)
    assert done.returncode == 0, done.stderr
    collected = job_dir / "reports"
    assert (collected / "out" / "junit.xml").read_text() == "<testsuite tests='1'/>\n"
    assert (collected / "out" / "html" / "index.html").is_file()
    copied = [p for p in collected.rglob("*") if p.is_file()]
    assert sorted(p.name for p in copied) == ["index.html", "junit.xml"]
    assert all("tok-7c1e" not in p.read_text() for p in copied)
    assert "skipped out/leak.txt: a symlink (never followed)" in done.stdout
    assert "skipped out/html/token.html: a symlink" in done.stdout and "skipped linked/CODECOV_TOKEN" in done.stdout
    assert (collected.stat().st_mode & 0o777) == 0o700


@as_root
def test_a_missing_job_user_fails_naming_it_and_the_fix(scratch):
    _, checkout = job_dir_in(scratch / "b", user="namaskah-no-such-user")
    for action in (["own"], ["run", "--", "true"]):
        done = ci_step(checkout, *action)
        assert done.returncode == 2
        assert "the job user 'namaskah-no-such-user' does not exist" in done.stderr
        assert "scripts/create_job_user.sh namaskah-no-such-user" in done.stderr and 'job_user = ""' in done.stderr


@as_root
def test_a_helper_on_the_masters_python_runs_on_the_jobs_when_the_user_cannot_run_the_masters(scratch):
    """The master's Python may live where only root goes (e.g. pyenv under /root)."""
    _job_dir, checkout = job_dir_in(scratch / "b")
    fake_runner = scratch / "private" / "python"  # a Python only root can reach, as the master's may be
    fake_runner.parent.mkdir(mode=0o700)
    fake_runner.symlink_to(public_python())
    assert ci_step(checkout, "own").returncode == 0
    done = ci_step(
        checkout, "run", "--", str(fake_runner), "-c", "import os; print(os.getuid())", runner=str(fake_runner)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(pwd.getpwnam("nobody").pw_uid)


@as_root
def test_an_interpreter_the_user_cannot_reach_fails_the_virtualenv_naming_where(scratch):
    _, checkout = job_dir_in(scratch / "b")
    private = scratch / "private"
    private.mkdir(mode=0o700)
    (private / "python3.11").symlink_to(public_python())
    (checkout / "requirements.txt").write_text("")
    assert ci_step(checkout, "own").returncode == 0
    done = ci_step(
        checkout,
        "venv",
        "--python",
        str(private / "python3.11"),
        "--cache-root",
        str(scratch / "cache"),
        "-r",
        "requirements.txt",
    )
    assert done.returncode == 2
    assert f"the job user nobody cannot run {private}/python3.11 ({private} is private to its owner)" in done.stderr
    assert "[workers] interpreters" in done.stderr
