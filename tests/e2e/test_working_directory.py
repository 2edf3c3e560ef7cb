"""End to end: a project in a subdirectory builds as it is, from its own pipeline file (local mode).

One master (as root, jobs as `[workers] job_user`, each command in its sandbox) builds a copy of
`tests/fixtures/subdir_project` on its first run: code in `backend/`, its tests run by `pytest` from
`backend/` with no `cd` (`working_directory: backend`), a job `env` made of the file's, Namaskah CI's
and the redis service's variables with `${NAME}` (its virtualenv step runs before the service starts), a
step passing `APP_VERSION` to the next through `$NAMASKAH_CI_ENV`, a step `env` using it, a report path
relative to the repository's root. The tests check that the job's results match the same tests run by
hand here in the fixture's `backend/` (and through the local runner), and that a working directory the
repository lacks fails its step in one line naming it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    ROOT,
    SHARED_CACHE,
    VENV_BIN,
    RunningMaster,
    git,
    make_fixture_repo,
    running,
    start_master,
    step_logs,
    wait_for,
)
from jobs_support import JOB_USER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.geteuid() != 0, reason="the job user is used by a master running as root"),
]
BUILD_TIMEOUT = 900


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningMaster, Path, Path, dict[str, Any]]]:
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), JOB_USER], check=True, timeout=60)
    tmp = tmp_path_factory.mktemp("working-directory")
    repo = make_fixture_repo(tmp / "repo", "subdir_project")
    env = {"PIPELINE_PIPELINE_FIRST_RUN": "true"}
    with running(lambda: start_master(tmp, repo, env=env, seed=False), poller=False) as master:
        revision = git(repo, "rev-parse", "HEAD")
        builds = {}
        for builder in ("test", "missing-directory"):
            (builds[builder],) = wait_for(
                f"the {builder} build", functools.partial(master.builds_of, builder, revision), BUILD_TIMEOUT, 3
            )
        yield master, repo, tmp, builds


def passed(text: str) -> int:
    found = re.findall(r"\b(\d+) passed\b", text)
    assert found, text[-2000:]
    return int(found[-1])


def test_the_jobs_tests_run_in_backend_as_by_hand_with_the_variables_made_for_them(built: Any) -> None:
    master, repo, _tmp, builds = built
    build = builds["test"]
    assert build["results"] == 0, master.build_text(build)[-4000:]
    logs = step_logs(master, build)
    assert re.search(r"^/\S+/build/backend$", logs["version"][1], re.M), logs["version"][1][-1500:]
    assert re.search(r"^/\S+/build$", logs["at the root"][1], re.M), logs["at the root"][1][-1500:]
    # by hand: pytest in the fixture's backend/, with what the file's env, the first step and the service give
    by_hand = subprocess.run(
        [str(VENV_BIN / "pytest"), "-p", "no:cacheprovider"],
        cwd=repo / "backend",
        env={
            "PATH": os.environ["PATH"],
            "APP_LABEL": "calc-test",
            "APP_RELEASE": "v" + (repo / "backend" / "VERSION").read_text().strip(),
            "APP_CACHE_URL": "redis://127.0.0.1:6379/0",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert by_hand.returncode == 0, by_hand.stdout[-2000:]
    assert passed(logs["tests"][1]) == passed(by_hand.stdout) == 5
    junit = build["properties"]["junit"][0]  # reports/junit.xml, relative to the root, published
    assert junit["tests"] == 5 and junit["failures"] == 0 and junit["errors"] == 0


def test_the_local_runner_gives_the_same_result(built: Any) -> None:
    master, repo, tmp, builds = built
    out = tmp / "local.json"
    command = [str(ROOT / "scripts" / "run_ci_checks.sh"), "test", "--repo", str(repo), "--json", str(out)]
    command += ["--state", str(tmp / "local-state"), "--cache-root", str(SHARED_CACHE)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert [item["result"] for item in json.loads(out.read_text())] == ["success"], done.stdout[-3000:]
    assert passed(done.stdout) == passed(step_logs(master, builds["test"])["tests"][1])


def test_a_working_directory_the_repository_lacks_fails_its_step_naming_it(built: Any) -> None:
    master, _repo, _tmp, builds = built
    build = builds["missing-directory"]
    assert build["results"] == 2
    logs = step_logs(master, build)
    step, text = logs["ls"]
    assert step["results"] == 2
    assert "ci_step: working_directory frontend/: no such directory in the checkout" in text
    assert "Traceback" not in master.build_text(build)
