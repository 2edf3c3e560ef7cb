"""Local mode keeps jobs off the Docker engine (its socket is root on the host), and says so.

As in docker mode, only builds of `[workers] docker_socket_branches` (default: the deploy branches and
the default branch) get the socket in their sandbox: any other ref's `required tools` step ends
FAILURE naming why and the setting before anything runs, and its job.json lists no `docker` for the
sandbox (`LoadJob`, through Buildbot's step harness). Where the socket is mounted, a job running as
the job user, with no group, gets "permission denied", and `ci_require_tools.py docker` names that,
the job user and docker mode, instead of "start dockerd". Real bwrap, real engine socket, real job
user (skipped, saying why, without them); the message itself also against a stand-in `docker`.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from buildbot.process import remotetransfer
from buildbot.process.results import SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectDownloadFile, ExpectMkdir, ExpectRemoteRef, ExpectRmdir, TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci import names
from namaskah_ci.builders.setup import make_job_setup
from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_sandbox import DOCKER_SOCKETS, sandbox_argv
from namaskah_ci.jobs import engine_access
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.job_steps import RequiredTools, job_steps
from namaskah_ci.steps.load import LoadJob
from namaskah_ci.workers.local import make_local_plan
from pipeline_support import job_of

TOOLS = str(Path(HELPERS_DIR) / "ci_require_tools.py")
USER = "namaskah-job"


def test_a_refused_socket_is_named_with_the_job_user_and_docker_mode(tmp_path: Path) -> None:
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(
        "#!/bin/sh\necho 'permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock: connect: permission denied' >&2\nexit 1\n"
    )
    docker.chmod(0o755)
    done = subprocess.run(
        [sys.executable, TOOLS, "docker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(docker.parent)},
        check=False,
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("missing tool: docker: this job may not use the Docker engine (permission denied")
    assert "[workers] job_user" in line and "docker mode" in line and "start dockerd" not in line


def test_the_job_user_in_its_sandbox_cannot_use_the_engine() -> None:
    if os.geteuid() != 0:
        pytest.skip("the job user and its sandbox are set up by root")
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    docker = shutil.which("docker")
    if not (bwrap and setpriv and docker):
        pytest.skip("needs bwrap, setpriv and the docker client")
    if not any(os.path.exists(path) for path in DOCKER_SOCKETS):
        pytest.skip("no Docker engine socket on this host")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no {USER} user: scripts/create_job_user.sh")
    python = shutil.which("python3", path="/usr/bin:/bin")  # the helpers are stdlib only
    if not python:
        pytest.skip("no /usr/bin/python3")
    argv = sandbox_argv(
        bwrap,
        workdir="/tmp",
        writable=[],
        readonly=[os.path.dirname(docker), HELPERS_DIR],
        tools=["docker"],
        as_root=True,
        switch_to=(setpriv, user.pw_uid, user.pw_gid),
    )
    done = subprocess.run(
        [*argv, python, TOOLS, "docker"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{os.path.dirname(docker)}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "this job may not use the Docker engine (permission denied" in done.stderr, done.stderr


DOCKER_JOB = job_of(
    load_pipeline(
        "version: 1\njobs:\n  image:\n    requirements: []\n    tools: [docker, trivy]\n    steps: [docker build .]\n",
        ".namaskah-ci.yml",
    ),
    "image",
)


def local_setup(tmp_path: Path, **env: str):
    settings = load_settings(
        {
            "PIPELINE_MASTER_BASEDIR": str(tmp_path / "master"),
            **{f"PIPELINE_WORKERS_{key.upper()}": value for key, value in env.items()},
        }
    )
    return make_job_setup(settings, make_local_plan(settings))


def test_local_mode_decides_as_docker_mode_who_gets_the_engine(tmp_path: Path) -> None:
    setup = local_setup(tmp_path)
    assert setup.mode == "local" and setup.docker_socket_branches == ("main", "develop")  # deploys + default
    assert local_setup(tmp_path, docker_socket_branches='["release"]').docker_socket_branches == ("release",)
    [tools] = [step for step in job_steps(DOCKER_JOB, setup, "python3") if step.name == "required tools"]
    assert isinstance(tools, RequiredTools) and tools.docker_branches == ("main", "develop") and tools.haltOnFailure
    assert tools.command[-3:] == [f"{HELPERS_DIR}/ci_require_tools.py", "docker", "trivy"]
    assert setup.engine_refusal("main", False) == ""
    assert setup.engine_refusal("feature/x", False) == engine_access.refusal(("main", "develop"), "feature/x", False)
    assert "fork's pull request" in setup.engine_refusal("main", True)


class LocalDockerJobTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """A local `tools: [docker]` job of another branch: job.json's sandbox gets no socket, and the
    `required tools` step refuses before anything runs; main's gets both."""

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        self.setup_test_reactor()
        yield self.setup_test_build_step()
        scratch = self.mktemp()
        self.config = PipelineConfig(
            repo_url=f"{scratch}/no-repo.git",
            poller_dir=f"{scratch}/poller",
            mirror_dir=f"{scratch}/mirror",
            default_file=f"{scratch}/default.yml",
            default_label="default.yml",
            registry_path=f"{scratch}/r.json",
            default_branch="main",
        )
        self.setup = local_setup(Path(scratch))

    @defer.inlineCallbacks
    def job_json(self, branch: str) -> Generator[Any, Any, dict]:
        """The job.json LoadJob writes for a build of `branch`; the steps it adds go to self.added."""
        self.added: list = []
        step = LoadJob(self.config, self.setup, name="job")  # the fake data API takes identifiers only
        yield self.setup_step(step)
        self.build.addStepsAfterCurrentStep = self.added.extend
        self.build.getBuilderId = lambda: defer.succeed(7)
        self.build.number = 3
        for name, value in (
            ("buildername", "image"),
            ("branch", branch),
            (names.PROP_JOB, DOCKER_JOB.to_dict()),
            (names.PROP_JOB_REVISION, "a" * 40),
        ):
            self.build.setProperty(name, value, "test")
        self.get_nth_step(0).interpreter = lambda spec: defer.succeed("/usr/bin/python3.11")
        written: dict = {}
        self.expect_commands(
            *[
                ExpectRmdir(dir=f".namaskah-ci/{part}", log_environ=False).exit(0)
                for part in ("secrets", "tmp", "venv")
            ],
            ExpectMkdir(dir="wkdir", log_environ=False).exit(0),
            ExpectDownloadFile(
                workerdest="../.namaskah-ci/job.json",
                workdir="wkdir",
                blocksize=32768,
                maxsize=None,
                mode=0o644,
                reader=ExpectRemoteRef(remotetransfer.StringFileReader),
            )
            .download_string(lambda text: written.update(job=text), size=1 << 16)
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        return json.loads(written["job"])

    @defer.inlineCallbacks
    def test_another_branchs_sandbox_gets_no_socket(self):
        document = yield self.job_json("feature/x")
        assert document["sandbox"]["tools"] == ["trivy"]
        [tools] = [step for step in self.added if step.name == "required tools"]
        assert isinstance(tools, RequiredTools) and tools.docker_branches == ("main", "develop")

    @defer.inlineCallbacks
    def test_mains_sandbox_gets_the_socket(self):
        document = yield self.job_json("main")
        assert document["sandbox"]["tools"] == ["docker", "trivy"]
