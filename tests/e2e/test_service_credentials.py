"""End to end (local mode): a job's PostgreSQL and Redis passwords are the job's alone (issue 21).

Every job's servers listen on 127.0.0.1, so their passwords are all that keeps one job (a branch's:
an attacker) out of another running job's database. A real master runs a job with `services:
[postgres, redis]` whose steps record DATABASE_URL and REDIS_URL in the checkout, connect with them
(psql, redis-cli) and try Redis without the password. Afterwards neither password is in anything
the master shows or writes: the build's REST answer with every property (`builds/<id>?property=*`),
its steps and every step log, the master's twistd.log; the job still connected, and Redis refused
the client without the password (NOAUTH).
"""

from __future__ import annotations

import glob
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import commit_file, git, running, start_master, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
PIPELINE = """\
version: 1
jobs:
  svc:
    requirements: []
    services: [postgres, redis]
    steps:
      - name: record
        run: printf '%s\\n' "$DATABASE_URL" "$REDIS_URL" > urls.txt
      - name: connect
        run: |
          echo "postgres says $(psql "$DATABASE_URL" -tAc 'select 40 + 2')"
          echo "redis says $(redis-cli --no-auth-warning -u "$REDIS_URL" ping)"
      - name: no password
        run: |
          port=$(python3 -c 'import os, urllib.parse; print(urllib.parse.urlsplit(os.environ["REDIS_URL"]).port)')
          echo "redis without the password says $(redis-cli -h 127.0.0.1 -p "$port" ping 2>&1)"
"""


def raw(master, path: str) -> str:
    with urllib.request.urlopen(f"{master.url}api/v2/{path}", timeout=10) as response:
        return response.read().decode("utf-8", "replace")


def everything_shown(master, build: dict) -> dict[str, str]:
    """{where: text}: the build's whole REST answer (every property), its steps, every step log and the
    master's twistd.log."""
    shown = {
        "the build's properties": raw(master, f"builds/{build['buildid']}?property=*"),
        "its steps": raw(master, f"builds/{build['buildid']}/steps"),
        "the master's twistd.log": master.twistd_log(),
    }
    for step in master.steps(build):
        shown[f"step {step['name']!r}"] = raw(master, f"steps/{step['stepid']}/logs")
        for log in master.api(f"steps/{step['stepid']}/logs")["logs"]:
            shown[f"log {step['name']}/{log['name']}"] = master.log_text(log["logid"])
    return shown


def test_no_property_log_or_rest_answer_holds_a_service_password(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_file(repo, "README", "services\n", "initial")
    with running(lambda: start_master(tmp_path, repo, seed=False)) as master:
        revision = commit_file(repo, ".namaskah-ci.yml", PIPELINE, "ci: a job with services")
        build = wait_for("the svc build", lambda: next(iter(master.builds_of("svc", revision)), None), 420, 2)
        steps = {step["name"]: step for step in master.steps(build)}
        logs = master.build_text(build)
        assert build["results"] == 0, logs[-3000:]
        [recorded] = glob.glob(str(master.basedir / "workers" / "*" / "svc" / "build" / "urls.txt"))
        database_url, redis_url = Path(recorded).read_text().split()
        assert "postgres says 42" in logs and "redis says PONG" in logs, logs[-3000:]
        passwords = {
            "postgres": urllib.parse.urlsplit(database_url).password,
            "redis": urllib.parse.urlsplit(redis_url).password,
        }
        shown = everything_shown(master, build)
        start = next(name for name in steps if name.startswith("start "))
        port = urllib.parse.urlsplit(database_url).port
        problems = [f"the job's {name} has no password" for name, password in passwords.items() if not password]
        problems += [
            f"the job's {name} password is in {where}"
            for name, password in passwords.items()
            for where, text in shown.items()
            if password and password in text
        ]
        answered = [line for line in logs.splitlines() if line.startswith("redis without the password says ")]
        if not answered or "NOAUTH" not in answered[0]:
            problems.append(f"redis answered a client without the password: {answered}")
        if f"127.0.0.1:{port}" not in steps[start]["state_string"]:
            problems.append(f"the {start!r} summary names no address: {steps[start]['state_string']!r}")
        print(f"{start}: {steps[start]['state_string']}; searched {len(shown)} answers and logs")
        assert not problems, "; ".join(problems)
