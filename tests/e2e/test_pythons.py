"""End to end: a root master in local mode runs jobs on every Python the host has, as its job user.

One master (as root, jobs as `[workers] job_user`), with pyenv's 3.11 directory first on its PATH (as a
process started through a pyenv shim has it) and its shared copies in a fresh directory, builds a
copy of `tests/fixtures/many_pythons`: `check` on 3.9, 3.10, 3.11 and 3.12 prints the version it runs
and runs a tiny pytest; `future` names 3.14, which the host lacks. Each `check` must run on its
version, as printed by the same command run by hand with the host's interpreter of that version, and
pass; 3.11 on the system's interpreter (the job user can run it), the others on copies of pyenv's
made at their first use; `future` must fail in its job definition, in one line naming the versions
there are.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import ROOT, RunningMaster, git, make_fixture_repo, running, start_master, step_logs, wait_for
from jobs_support import JOB_USER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.geteuid() != 0, reason="the job user is used by a master running as root"),
]

PYENV_ROOT = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
VERSIONS = ("3.9", "3.10", "3.11", "3.12")
SYSTEM_311 = "/usr/bin/python3.11"


def pyenv_prefix(version: str) -> str:
    found = sorted(glob.glob(os.path.join(PYENV_ROOT, "versions", f"{version}.*", "bin", f"python{version}")))
    if not found:
        pytest.skip(f"no pyenv Python {version} in {PYENV_ROOT}")
    return os.path.dirname(os.path.dirname(found[-1]))


@pytest.fixture(scope="module")
def pythons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningMaster, str, Path, dict[str, Any]]]:
    if not os.access(SYSTEM_311, os.X_OK):
        pytest.skip("needs the system's python3.11")
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), JOB_USER], check=True, timeout=60)
    tmp = tmp_path_factory.mktemp("pythons")
    repo = make_fixture_repo(tmp / "repo", "many_pythons")
    shared = Path(tempfile.mkdtemp(prefix="namaskah-test-pythons-", dir="/tmp"))  # the job user must enter it
    shared.chmod(0o755)
    env = {
        "PIPELINE_PIPELINE_FIRST_RUN": "true",
        "PIPELINE_WORKERS_CACHE_DIR": str(tmp / "cache"),
        "NAMASKAH_PYTHONS": str(shared),
        "PATH": f"{pyenv_prefix('3.11')}/bin:{os.environ['PATH']}",  # root's pyenv 3.11 first
    }
    try:
        with running(lambda: start_master(tmp, repo, env=env, seed=False), poller=False) as master:
            revision = git(repo, "rev-parse", "HEAD")
            builders = [f"check-py{version}" for version in VERSIONS] + ["future"]
            builds = {}
            for builder in builders:
                (builds[builder],) = wait_for(
                    f"the {builder} build", functools.partial(master.builds_of, builder, revision), 900, 3
                )
            yield master, str(repo), shared, builds
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def by_hand(repo: str, interpreter: str) -> str:
    """`python versions.py` in the checkout, run here with the host's interpreter."""
    done = subprocess.run([interpreter, "versions.py"], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("version", VERSIONS)
def test_each_job_runs_on_its_python_as_by_hand_and_passes(pythons: Any, version: str) -> None:
    master, repo, _shared, builds = pythons
    build = builds[f"check-py{version}"]
    logs = step_logs(master, build)
    assert build["results"] == 0, master.build_text(build)[-3000:]
    interpreter = SYSTEM_311 if version == "3.11" else f"{pyenv_prefix(version)}/bin/python{version}"
    expected = by_hand(repo, interpreter)
    assert expected.startswith(f"python {version}.")
    assert re.findall(r"^python [0-9.]+$", logs["version"][1], re.M) == [expected]
    assert re.search(r"\b2 passed\b", logs["tests"][1]), logs["tests"][1][-1500:]


def test_versions_only_pyenv_has_are_copied_at_their_first_use_and_3_11_is_the_systems(pythons: Any) -> None:
    master, _repo, shared, builds = pythons
    copied = sorted(os.listdir(shared))
    assert copied == sorted([".lock", *(os.path.basename(pyenv_prefix(v)) for v in ("3.9", "3.10", "3.12"))])
    for version in ("3.10", "3.12"):
        text = master.build_text(builds[f"check-py{version}"])
        assert f"{shared}/{os.path.basename(pyenv_prefix(version))}/bin/python{version}" in text
    text = master.build_text(builds["check-py3.11"])
    assert SYSTEM_311 in text and "cannot run" not in text  # not pyenv's, first on the master's PATH


def test_a_python_the_host_lacks_fails_its_job_naming_those_there_are(pythons: Any) -> None:
    master, _repo, _shared, builds = pythons
    build = builds["future"]
    assert build["results"] == 2
    steps = master.steps(build)
    step = steps[-1]  # after Buildbot's own (worker_preparation, locks_acquire): no step of the job
    assert step["name"] == "job definition" and step["results"] == 2, [s["name"] for s in steps]
    assert step["state_string"].startswith("python 3.14: not on this host; available: ")
    available = step["state_string"].split("available: ")[1].split(";")[0].split(", ")
    assert set(VERSIONS) <= set(available) and "3.14" not in available
    assert "[workers] interpreters" in step["state_string"] and "Traceback" not in master.build_text(build)
