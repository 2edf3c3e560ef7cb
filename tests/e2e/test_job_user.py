"""End to end: a root master in local mode runs its jobs as the unprivileged job user.

One real master (as root, `[workers] job_user` at its default, the user created by
scripts/create_job_user.sh as `make up` does) builds a scratch repository whose pipeline file has
a job that tries to read a deploy secret from the master's `[secrets] dir`, the master's
state.sqlite and twistd.log, and to publish a "report" that is a symlink to that secret; it
prints `id`. Its log must show the job user and that none of those files is even there (each
command's sandbox shows only the job's own directory of the basedir), the secret's
value must appear in no log, report or property, and the job's own secret and checkout must still
work (a file at the top of the checkout, `git log`, a virtualenv in main's cache).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pwd
import secrets as pysecrets
import stat
import subprocess

import pytest

from harness import ROOT, git, running, start_master, step_logs, wait_for
from jobs_support import JOB_USER as USER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="the job user is used by a master running as root"),
]

DEPLOY_SECRET = "rnd-" + pysecrets.token_hex(16)
JOB_SECRET = "cov-" + pysecrets.token_hex(12)
PIPELINE = """\
version: 1
python: "3.11"
requirements: []
jobs:
  probe:
    tools: [git]
    secrets: [codecov_token]
    steps:
      - {{name: who, run: id}}
      - {{name: deploy secret, run: "if cat '{secret}'; then exit 1; fi"}}
      - {{name: database, run: "if head -c 64 '{basedir}/state.sqlite'; then exit 1; fi"}}
      - {{name: master log, run: "if head -c 64 '{basedir}/twistd.log'; then exit 1; fi"}}
      - {{name: master basedir, run: "ls -A '{basedir}'; if ls -A '{basedir}' | grep -q state.sqlite; then exit 1; fi"}}
      - {{name: job secret, run: 'printf %s "$CODECOV_TOKEN" | sha256sum'}}
      - name: own checkout
        run: |
          mkdir -p out && echo '<testsuite tests="1" failures="0"/>' > out/junit.xml
          touch top-level-file && git log -1 --format=commit=%H
      - {{name: symlinked report, run: "ln -s '{secret}' out/leak.txt"}}
    reports:
      - {{path: out/junit.xml, kind: junit}}
      - {{path: out/leak.txt, kind: text}}
  venv:
    requirements: [requirements.txt]
    steps:
      - {{name: venv, run: 'python -c "import os, sys; print(sys.prefix, os.getuid())"'}}
"""


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), USER], check=True, timeout=60)
    tmp = tmp_path_factory.mktemp("job-user")
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    for name, value in (("render_api_key", DEPLOY_SECRET), ("codecov_token", JOB_SECRET)):
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    repo = tmp / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(PIPELINE.format(secret=secrets / "render_api_key", basedir=tmp / "master"))
    (repo / "requirements.txt").write_text("# nothing to install\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a pipeline that pokes at the master")
    env = {"PIPELINE_PIPELINE_FIRST_RUN": "true", "PIPELINE_WORKERS_CACHE_DIR": str(tmp / "cache")}
    extra = '[pipeline]\njob_secrets = ["codecov_token"]\n'
    with running(lambda: start_master(tmp, repo, extra, env=env, seed=False), poller=False) as master:
        revision = git(repo, "rev-parse", "HEAD")
        builds = {}
        for builder in ("probe", "venv"):
            builds[builder] = wait_for(
                f"the {builder} build", functools.partial(finished, master, builder, revision), 600, 3
            )
        yield master, tmp, builds


def finished(master, builder: str, revision: str):
    try:
        done = master.finished_builds(builder)
    except Exception:  # the builder appears with the first pipeline
        return None
    found = [b for b in done if b["properties"].get("revision", [None])[0] == revision]
    return found[0] if found else None


def test_the_jobs_commands_run_as_the_job_user_and_cannot_read_the_masters_files(isolated):
    master, _tmp, builds = isolated
    probe = step_logs(master, builds["probe"])
    job_user = pwd.getpwnam(USER)
    (line,) = [line for line in probe["who"][1].splitlines() if line.startswith("uid=")]
    assert line == f"uid={job_user.pw_uid}({USER}) gid={job_user.pw_gid}({USER}) groups={job_user.pw_gid}({USER})"
    for name in ("deploy secret", "database", "master log"):  # not even there: outside the job's sandbox
        step, text = probe[name]
        assert step["results"] == 0 and "No such file or directory" in text, (name, text[-800:])
    step, text = probe["master basedir"]  # only the way to the job's own directory
    assert step["results"] == 0 and "workers" in text and "twistd.log" not in text, text[-800:]
    assert probe["job user"][0]["state_string"] == f"runs as {USER}"


def test_the_jobs_own_secret_checkout_and_virtualenv_still_work(isolated):
    master, tmp, builds = isolated
    probe = step_logs(master, builds["probe"])
    assert hashlib.sha256(JOB_SECRET.encode()).hexdigest() in probe["job secret"][1]
    assert probe["own checkout"][0]["results"] == 0 and "commit=" in probe["own checkout"][1]
    assert builds["venv"]["results"] == 0, step_logs(master, builds["venv"])
    venv = step_logs(master, builds["venv"])["venv"][1]
    assert str(tmp / "cache" / "refs" / "main-") in venv and f" {pwd.getpwnam(USER).pw_uid}" in venv


def test_a_report_symlinked_to_a_secret_is_skipped_and_the_secret_is_nowhere(isolated):
    master, tmp, builds = isolated
    probe = step_logs(master, builds["probe"])
    assert "skipped out/leak.txt: a symlink (never followed)" in probe["collect reports"][1]
    assert builds["probe"]["properties"]["junit"][0]["tests"] == 1  # the real report was published
    everything = [text for build in master.api("builds")["builds"] for _, text in step_logs(master, build).values()]
    everything += [json.dumps(master.api("builds", property="*")), master.twistd_log()]
    everything += [(tmp / "master-stdout.log").read_text(errors="replace")]
    reports = tmp / "master" / "reports"
    everything += [p.read_text(errors="replace") for p in reports.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not [p for p in reports.rglob("*") if p.is_symlink()]
    assert not [text for text in everything if DEPLOY_SECRET in text]
    assert not [text for text in everything if JOB_SECRET in text]  # the job's secret is redacted


def test_the_master_closed_its_files_to_the_job_user_and_said_so(isolated):
    master, tmp, _ = isolated
    basedir = tmp / "master"

    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    assert mode(basedir) == 0o711 and mode(basedir / "workers") == 0o711
    assert mode(basedir / "state.sqlite") == 0o600 and mode(basedir / "twistd.log") == 0o600
    assert mode(tmp / "secrets") == 0o700
    text = master.twistd_log()
    assert f"local mode: jobs' commands run as {USER}" in text
    assert "LogFile not found" not in text and "does not exist" not in text


def test_a_missing_job_user_does_not_stop_the_master_and_each_job_fails_naming_it(tmp_path):
    missing = "namaskah-no-such-job-user"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text("version: 1\nrequirements: []\njobs:\n  probe:\n    steps: [id]\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one job")
    env = {
        "PIPELINE_PIPELINE_FIRST_RUN": "true",
        "PIPELINE_WORKERS_JOB_USER": missing,
        "PIPELINE_WORKERS_CACHE_DIR": str(tmp_path / "cache"),
    }
    master = start_master(tmp_path, repo, env=env, seed=False)
    try:
        assert f"the job user {missing!r} does not exist: every job fails until it does" in master.twistd_log()
        build = wait_for("the probe build", lambda: finished(master, "probe", git(repo, "rev-parse", "HEAD")), 300, 3)
        assert build["results"] == 2
        steps = step_logs(master, build)
        assert steps["job user"][0]["results"] == 2 and "id" not in steps
        assert f"the job user {missing!r} does not exist on this host" in steps["job user"][1]
        assert f"scripts/create_job_user.sh {missing}" in steps["job user"][1]
    finally:
        master.stop()
