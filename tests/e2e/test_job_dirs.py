"""End to end: a local job's tools find only the repository's configuration, never one above its checkout
(issue 23, item 1).

A new user's tests collected 0 tests: job checkouts lived under `.state/master/workers/...` inside Namaskah
CI's own checkout, so pytest took this repository's pyproject.toml as its configfile (rootdir /work/main,
its `pythonpath`), ruff its settings, flake8 its .flake8. Now the master's state lives outside any project
(workdirs.py; tests/ci/test_workdirs.py checks this checkout's default and the guard).

One master, whose basedir lies under the state root a master uses by default (`workdirs.state_root()`:
/var/lib/namaskah-ci as root; not pytest's /tmp, where anyone may leave a mypy.ini), builds a copy of
`tests/fixtures/no_config_project` (a package and its tests, no configuration file at all). Its one job runs
pytest, mypy, ruff, flake8 and black, each printing what it took as its root or configuration: every one
found none, or only the checkout; and no directory above the checkout the build reports holds a project
file.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

import pytest

from harness import ROOT, git, make_fixture_repo, running, start_master, step_logs, wait_for
from namaskah_ci import workdirs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
BUILD_TIMEOUT = 900
TOOLS = ("pytest", "mypy", "ruff", "flake8", "black")  # the job's steps, each printing what its tool took


@pytest.fixture(scope="module")
def tools_build(tmp_path_factory):
    tmp = workdirs.state_root() / f"test-job-dirs-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    try:
        repo = make_fixture_repo(tmp_path_factory.mktemp("job-dirs") / "repo", "no_config_project")
        env = {"PIPELINE_PIPELINE_FIRST_RUN": "true"}
        with running(lambda: start_master(tmp, repo, env=env, seed=False), idle_timeout=BUILD_TIMEOUT) as master:
            revision = git(repo, "rev-parse", "HEAD")
            master.pipeline_of(revision, BUILD_TIMEOUT, only=True)  # the master's first run
            (build,) = wait_for("the tools job", lambda: master.builds_of("tools", revision), 120)
            yield master, build, step_logs(master, build)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkout_of(logs: dict) -> Path:
    """The directory the job's commands ran in (`pwd -P`: the real path, as the tools see it)."""
    lines = [line.strip() for line in logs["checkout"][1].splitlines()]
    found = [line for line in lines if line.startswith("/") and line.endswith("/build")]
    assert found, logs["checkout"][1]
    return Path(found[-1])


def test_the_job_passed_and_its_checkout_has_no_project_file_above_it(tools_build):
    master, build, logs = tools_build
    assert build["results"] == 0, master.build_text(build)[-4000:]
    checkout = checkout_of(logs)
    assert master.basedir.resolve() / "workers" in checkout.parents, checkout
    assert workdirs.config_ancestor(checkout.parent) is None  # nothing above it: the guarantee itself
    assert ROOT not in checkout.parents


def test_pytest_took_the_checkout_as_its_rootdir_and_no_configfile(tools_build):
    _, _, logs = tools_build
    checkout, text = checkout_of(logs), logs["pytest"][1]
    assert f"rootdir: {checkout}\n" in text and "configfile:" not in text, text
    assert "2 passed" in text, text  # before: 0 collected / No module named ... (the other project's pythonpath)


def test_mypy_ruff_flake8_and_black_found_no_configuration_above_the_checkout(tools_build):
    _, _, logs = tools_build
    checkout = checkout_of(logs)
    assert re.search(r"Config File:\s+Default", logs["mypy"][1]), logs["mypy"][1]
    ruff = logs["ruff"][1]
    assert f'Resolved settings for: "{checkout}/tinypkg/__init__.py"' in ruff and "Settings path:" not in ruff, ruff
    assert "flake8 config: None" in logs["flake8"][1], logs["flake8"][1]
    black = logs["black"][1]
    assert f"Identified `{checkout}` as project root containing a .git directory." in black, black
    for name in TOOLS:  # no tool named a configuration file anywhere else
        for path in re.findall(r"(/[\w./-]+)", logs[name][1]):
            if Path(path).name in workdirs.PROJECT_FILES:
                assert checkout in Path(path).parents, f"{name}: {path}"
