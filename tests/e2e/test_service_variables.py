"""End to end: services as applications expect them, in local mode.

One master builds a copy of `tests/fixtures/postgres_env_app`, whose tiny application reads
POSTGRES_SERVER/PORT/USER/PASSWORD/DB (never DATABASE_URL): `app` asks for `{name: postgres,
database: app_test, user: app}` and runs the application's tests, which must pass and print what the
same command prints when run by hand against `ci_services.py` started here with the same settings;
`given` gives its PostgreSQL a password (which must reach no step log and no build property) and
checks libpq's PG*, POSTGRES_* and REDIS_HOST/PORT/PASSWORD; `future` asks for PostgreSQL "99" and
must fail in its start step, one line naming the versions the host has.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import ROOT, RunningMaster, git, make_fixture_repo, running, start_master, step_logs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SERVICES = ROOT / "master" / "namaskah_ci" / "helpers" / "ci_services.py"
GIVEN_PASSWORD = "e2e-given-pw"  # the fixture's `given` job's
BUILDERS = ("app", "given", "future")
APP_FLAGS = ("--postgres-database", "app_test", "--postgres-user", "app")  # the fixture's `app` job's service


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningMaster, Path, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("service-variables")
    repo = make_fixture_repo(tmp / "repo", "postgres_env_app")
    env = {"PIPELINE_PIPELINE_FIRST_RUN": "true", "PIPELINE_WORKERS_CACHE_DIR": str(tmp / "cache")}
    with running(lambda: start_master(tmp, repo, env=env, seed=False), poller=False) as master:
        revision = git(repo, "rev-parse", "HEAD")
        builds = {}
        for builder in BUILDERS:
            (builds[builder],) = wait_for(
                f"the {builder} build", functools.partial(master.builds_of, builder, revision), 600, 2
            )
        yield master, repo, builds


def outcome(text: str) -> list[str]:
    """What a unittest run says, without timings: its tests' lines, what they print, the verdict (the order
    of its stdout's and stderr's lines depends on how they were read)."""
    kept = [
        line for line in text.splitlines() if re.match(r"^(test_\S+ \(.*\) \.\.\. \w+|db: \S+|Ran \d+ tests?|OK)", line)
    ]
    return [re.sub(r"^(Ran \d+ tests?) in .*", r"\1", line) for line in kept]


def by_hand(repo: Path, tmp: Path, command: list[str], *flags: str) -> str:
    """`command` in the repository with only the POSTGRES_* variables of a PostgreSQL that ci_services.py,
    run here, starts with `flags`."""
    state = tmp / "by-hand"
    done = subprocess.run(
        [sys.executable, str(SERVICES), "start", "--state-dir", str(state), "--postgres", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    try:
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in values.items() if k.startswith("POSTGRES_")}}
        ran = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
        return ran.stdout + ran.stderr
    finally:
        subprocess.run([sys.executable, str(SERVICES), "stop", "--state-dir", str(state)], timeout=120, check=False)


def test_the_application_reading_postgres_variables_passes_as_by_hand(built: Any, tmp_path: Path) -> None:
    master, repo, builds = built
    build = builds["app"]
    assert build["results"] == 0, master.build_text(build)[-3000:]
    logs = step_logs(master, build)
    (start,) = [step for name, (step, _) in logs.items() if name.startswith("start postgres")]
    assert re.fullmatch(r"started postgres 127\.0\.0\.1:\d+", start["state_string"]), start["state_string"]
    assert "version 15, database app_test, user app" in logs[start["name"]][1]
    job_run = outcome(logs["tests"][1])
    expected = outcome(by_hand(repo, tmp_path, ["python3", "-m", "unittest", "-v", "tests.test_db"], *APP_FLAGS))
    assert sorted(job_run) == sorted(expected)  # stdout and stderr: interleaved as they came
    assert {"db: app@app_test", "Ran 2 tests", "OK"} <= set(job_run) and len(job_run) == 5, job_run


def test_a_given_password_works_and_is_in_no_log_and_no_property(built: Any) -> None:
    master, _repo, builds = built
    build = builds["given"]
    assert build["results"] == 0, master.build_text(build)[-3000:]
    logs = step_logs(master, build)
    assert re.search(r"Ran 2 tests.*\n+OK", logs["variables"][1]), logs["variables"][1][-1500:]
    assert GIVEN_PASSWORD not in master.build_text(build)
    assert all(GIVEN_PASSWORD not in text for _, text in logs.values())
    properties = master.api(f"builds/{build['buildid']}/properties")
    assert GIVEN_PASSWORD not in json.dumps(properties)


def test_a_version_the_host_lacks_fails_naming_the_versions_there_are(built: Any) -> None:
    master, _repo, builds = built
    build = builds["future"]
    assert build["results"] == 2
    steps = master.steps(build)
    (start,) = [step for step in steps if step["name"].startswith("start postgres")]
    available = ", ".join(sorted((p.name for p in Path("/usr/lib/postgresql").iterdir()), key=int))
    assert start["state_string"] == f"postgres 99: not on this host (available: {available})"
    assert start["results"] == 2 and "never" not in [step["name"] for step in steps if step["results"] is not None]
    assert "Traceback" not in master.build_text(build) and os.path.isdir("/usr/lib/postgresql")
