"""A step's working directory, its own `env`, `${NAME}` expansion and `$NAMASKAH_CI_ENV` (`ci_step.py` +
`ci_env.py`), run for real: the job directory as the master writes it (`job_document`), a services file
as ci_services.py writes it, `ci_step.py run` started from the checkout root as the worker starts it;
then, as root, the same in the bubblewrap sandbox as the job user (skipped, saying why, otherwise).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_env import EnvProblem, read_env_file
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.specs import JobSpec

ROOT = Path(__file__).resolve().parents[3]
USER = "namaskah-job"
FILE = """
version: 1
requirements: []
env: {APP_HOST: "${NAMASKAH_CI_JOB}", LITERAL: "$${NOT_EXPANDED} $HOME", DB: "${DATABASE_URL}"}
jobs:
  api:
    services: [postgres]
    working_directory: backend
    env: {APP_DB: "${DB}/app", APP_BUILDER: "${NAMASKAH_CI_BUILDER}"}
    steps:
      - name: version
        run: 'pwd > "$TMPDIR/where"; echo "VERSION=1.2" >> "$NAMASKAH_CI_ENV"'
      - name: use
        run: 'echo "$APP_HOST|$LITERAL|$APP_DB|$APP_BUILDER|$VERSION|$TAG" > out.txt'
        env: {TAG: "v${VERSION}-${APP_HOST}"}
      - name: at the root
        working_directory: .
        run: pwd > "$TMPDIR/root"
"""
SERVICES = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:5999/app"}


def the_job(text: str = FILE) -> JobSpec:
    job = load_pipeline(text, ".namaskah-ci.yml").job("api")
    assert job is not None
    return job


class Build:
    """A builder directory as a worker leaves it: `build/` (the checkout, with `backend/`) and `.namaskah-ci/`."""

    def __init__(self, top: Path, job: JobSpec, user: str = "", sandbox: bool = False):
        self.job, self.builder = job, top / "lint"
        self.checkout, self.job_dir = self.builder / "build", self.builder / ".namaskah-ci"
        (self.checkout / "backend").mkdir(parents=True)
        (self.job_dir / "secrets").mkdir(parents=True)
        layout = job_commands.JobLayout(
            runner=sys.executable,
            helpers_dir=HELPERS_DIR,
            cache_root=str(top / "cache"),
            user=user,
            sandbox=sandbox,
            hidden=(str(top / "cache"),),
        )
        self.layout = layout
        document = job_commands.job_document(
            job, layout, interpreter="/usr/bin/python3", base_path="/usr/bin:/bin", worker_env={}, branch="main"
        )
        (self.job_dir / "job.json").write_text(json.dumps(document))
        services = self.job_dir / job_commands.SERVICES_FILE
        services.write_text("".join(f"{k}={v}\n" for k, v in SERVICES.items()))
        services.chmod(0o600)

    def step(self, index: int) -> subprocess.CompletedProcess[str]:
        return self.argv(job_commands.step_argv(self.layout, self.job.steps[index]))

    def argv(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.checkout,
            env={"PATH": "/usr/bin:/bin", "HOME": "/root"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @property
    def tmp(self) -> Path:
        return self.job_dir / "tmp"


def test_steps_run_in_the_working_directory_with_expanded_env_and_what_earlier_steps_passed(tmp_path):
    build = Build(tmp_path, the_job())
    for index in range(3):
        done = build.step(index)
        assert done.returncode == 0, done.stderr
    assert (build.tmp / "where").read_text().strip() == str(build.checkout / "backend")
    assert (build.tmp / "root").read_text().strip() == str(build.checkout)
    fields = (build.checkout / "backend" / "out.txt").read_text().strip().split("|")
    assert fields == [
        "api",
        "${NOT_EXPANDED} $HOME",  # `$${` is a literal `${`; `$HOME` is left to the shell (quoted: as is)
        "postgresql://app:pw@127.0.0.1:5999/app/app",
        "api",
        "1.2",
        "v1.2-api",
    ]


def test_a_reference_to_a_name_not_defined_before_fails_the_step_naming_it(tmp_path):
    text = FILE.replace("services: [postgres]", "services: []")  # no DATABASE_URL: the top level's DB fails
    build = Build(tmp_path, the_job(text))
    done = build.step(0)
    assert done.returncode == 2 and not (build.tmp / "where").exists()
    assert done.stderr.strip() == (
        "ci_step: env DB uses ${DATABASE_URL}, which is not defined before it "
        "(a service the job lacks, a secret not configured, a name set later or misspelt?)"
    )


def test_namaskahs_own_commands_before_the_services_leave_such_a_variable_out(tmp_path):
    """The virtualenv, required tools and report directories run before the services start: a file
    variable using the services' is left out of their environment, never a failure; the steps get it."""
    build = Build(tmp_path, the_job())
    (build.job_dir / job_commands.SERVICES_FILE).unlink()  # not started yet
    done = build.argv(build.layout.wrap(["env"]))
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert "DB" not in env and "APP_DB" not in env and env["APP_HOST"] == "api"
    assert build.step(0).returncode == 2  # a step of the file: defined, or it fails naming it


def test_a_missing_working_directory_or_one_leading_out_of_the_checkout_fails_naming_it(tmp_path):
    build = Build(tmp_path, the_job())
    shutil.rmtree(build.checkout / "backend")
    done = build.step(0)
    assert (done.returncode, done.stderr.strip()) == (
        2,
        "ci_step: working_directory backend/: no such directory in the checkout",
    )
    (build.checkout / "backend").symlink_to(tmp_path)  # committed as a link out of the checkout
    done = build.step(0)
    assert done.returncode == 2 and not (build.tmp / "where").exists()
    assert done.stderr.strip() == (
        f"ci_step: working_directory backend/: leads out of the checkout through a symlink (to {tmp_path}): refused"
    )
    (build.checkout / "backend").unlink()
    (build.checkout / "src").mkdir()
    (build.checkout / "backend").symlink_to("src")  # a link inside the checkout is followed
    assert build.step(0).returncode == 0


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("PATH=/tmp/evil", "line 2: PATH is set by Namaskah CI and cannot be set here"),
        ("NAMASKAH_CI_BRANCH=main", "line 2: NAMASKAH_CI_BRANCH is set by Namaskah CI and cannot be set here"),
        ("A=x\x1b[2Jy", "line 2: A's value holds a control character ('\\x1b'): refused"),
        ("not a name=1", "line 2: 'not a name' is not a variable name (write NAME=value)"),
        ("B<<EOF\nunclosed", "line 2: B<<EOF is never closed"),
    ],
)
def test_the_env_file_refuses_namaskahs_names_and_control_characters(tmp_path, line, problem):
    build = Build(tmp_path, the_job())
    build.tmp.mkdir()
    (build.tmp / "namaskah-ci.env").write_text(f"OK=1\n{line}\n")
    done = build.step(1)
    assert done.returncode == 2 and not (build.checkout / "backend" / "out.txt").exists()
    assert done.stderr.strip().startswith(f"ci_step: $NAMASKAH_CI_ENV {problem}")


def test_the_env_file_takes_several_lines_values_and_later_lines_win(tmp_path):
    path = tmp_path / "namaskah-ci.env"
    path.write_text("A=1\nNOTES<<END\nfirst line\n\tsecond=2\nEND\nA=2\r\nEMPTY=\n")
    assert read_env_file(str(path)) == [("A", "1"), ("NOTES", "first line\n\tsecond=2"), ("A", "2"), ("EMPTY", "")]
    assert read_env_file(str(tmp_path / "none")) == []


def test_the_env_file_is_never_read_through_a_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("TOKEN=s3cret\n")
    (tmp_path / "namaskah-ci.env").symlink_to(secret)
    with pytest.raises(EnvProblem, match="cannot be read"):
        read_env_file(str(tmp_path / "namaskah-ci.env"))


# --- in the sandbox, as the job user ------------------------------------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the job user and its sandbox are set up by root")


@pytest.fixture
def sandboxed() -> Iterator[Build]:
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), USER], check=True, timeout=60)
    top = Path(tempfile.mkdtemp(prefix="namaskah-env-", dir="/tmp"))
    top.chmod(0o711)
    try:
        build = Build(top, the_job(), user=USER, sandbox=True)
        done = build.argv(job_commands.own_argv(build.layout))
        assert done.returncode == 0, done.stderr
        yield build
    finally:
        shutil.rmtree(top, ignore_errors=True)


@as_root
def test_in_the_sandbox_the_command_runs_in_the_subdirectory_and_passes_variables_on(sandboxed):
    for index in range(3):
        done = sandboxed.step(index)
        assert done.returncode == 0, done.stderr
    assert (sandboxed.tmp / "where").read_text().strip() == str(sandboxed.checkout / "backend")
    assert (sandboxed.tmp / "namaskah-ci.env").stat().st_uid == pwd.getpwnam(USER).pw_uid
    out = sandboxed.checkout / "backend" / "out.txt"
    assert out.read_text().strip().endswith("|1.2|v1.2-api")


@as_root
def test_root_never_reads_an_env_file_the_job_pointed_at_another_file(sandboxed):
    """The job user links $NAMASKAH_CI_ENV to root's services file: root (reading it) refuses it."""
    link = sandboxed.tmp / "namaskah-ci.env"
    done = sandboxed.argv(sandboxed.layout.wrap(["ln", "-s", str(sandboxed.job_dir / "services.env"), str(link)]))
    assert done.returncode == 0, done.stderr
    done = sandboxed.step(1)
    assert done.returncode == 2 and "$NAMASKAH_CI_ENV" in done.stderr and "refused" in done.stderr
    assert "pw@" not in done.stdout + done.stderr


@as_root
def test_the_loaders_variables_never_reach_what_starts_the_sandbox_as_root(tmp_path):
    """A file's `LD_PRELOAD` (here the harmless LD_DEBUG_OUTPUT: the loader writes a file as whoever it
    runs as) applies to the job's command, never to bwrap and setpriv, which start as root."""
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), USER], check=True, timeout=60)
    top = Path(tempfile.mkdtemp(prefix="namaskah-env-", dir="/tmp"))
    top.chmod(0o711)
    try:
        trace = top / "lint" / ".namaskah-ci" / "tmp" / "loader"
        text = 'version: 1\njobs:\n  api:\n    requirements: []\n    steps: ["true"]\n'
        text += f"    env: {{LD_DEBUG: files, LD_DEBUG_OUTPUT: {trace}}}\n"
        build = Build(top, the_job(text), user=USER, sandbox=True)
        assert build.argv(job_commands.own_argv(build.layout)).returncode == 0
        done = build.step(0)
        assert done.returncode == 0, done.stderr
        owners = {path.name: path.stat().st_uid for path in trace.parent.glob("loader.*")}
        assert owners and set(owners.values()) == {pwd.getpwnam(USER).pw_uid}, owners  # the command's only
    finally:
        shutil.rmtree(top, ignore_errors=True)
