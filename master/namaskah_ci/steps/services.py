"""Per-build PostgreSQL and Redis for local mode, as build steps.

`StartServices` runs the master's `ci_services.py start` (its argv from
`job_commands.services_argv`: the services, their versions, database and user),
which writes the servers' variables (DATABASE_URL, PG*, POSTGRES_*, REDIS_URL,
REDIS_HOST/PORT/PASSWORD, with their passwords) into `<job dir>/services.env`
for `ci_step.py` to hand to the job's commands, and prints only where they are.
A password the pipeline file gives reaches the script in the step's environment
(`job_commands.services_password_env`; the step never logs it), never in its
argv. So the passwords are never a build property, a log line or anything the
master keeps: every job's
servers listen on 127.0.0.1, and their passwords are what keep another job (a
branch's, reading the REST API over loopback) out. The step's summary names
the addresses (`started postgres 127.0.0.1:PORT, redis 127.0.0.1:PORT`).
`StopServices` runs `stop` on the same state directory; the job adds it twice:
before start (to reap what a crashed build left) and as an `alwaysRun` teardown.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from buildbot.process import buildstep
from buildbot.steps.shell import ShellCommand
from twisted.internet import defer

STATE_DIR = "../services"  # beside the checkout, in the builder directory
PROBLEM = "ci_services: "  # ci_services.py's messages (stderr); its failure is the last one
ADDRESS = re.compile(r"^(postgres|redis): (\S+)")  # ci_services.py start --env-file: where each server is


def service_addresses(stdout: str) -> list[str]:
    """`postgres 127.0.0.1:PORT`, ... from the script's output (which holds no password)."""
    return [" ".join(found.groups()) for found in map(ADDRESS.match, stdout.splitlines()) if found]


def service_problem(stderr: str) -> str:
    """The script's last `ci_services: ...` line (its one-line reason), without the prefix."""
    lines = [line[len(PROBLEM) :] for line in stderr.splitlines() if line.startswith(PROBLEM)]
    return lines[-1][:300] if lines else ""


class StartServices(buildstep.ShellMixin, buildstep.BuildStep):
    """Start the job's servers; their URLs stay on the worker (see the module docstring)."""

    def __init__(self, services: tuple[str, ...], command: list[str], **kwargs: Any) -> None:
        kwargs.setdefault("name", f"start {' + '.join(services)}")
        kwargs.setdefault("haltOnFailure", True)
        kwargs.setdefault("logEnviron", False)
        kwargs = self.setupShellMixin({**kwargs, "command": command})
        super().__init__(**kwargs)
        self.services_started = services
        self.addresses: list[str] = []
        self.problem = ""  # the script's one line when it fails, e.g. "postgres 16: not on this host (...)"

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        cmd = yield self.makeRemoteShellCommand(collectStdout=True, collectStderr=True)
        yield self.runCommand(cmd)
        self.addresses = service_addresses(cmd.stdout)
        results: int = cmd.results()
        if results != buildstep.SUCCESS:
            self.problem = service_problem(cmd.stderr)
        return results

    def getResultSummary(self) -> dict[str, str]:
        if self.results == buildstep.SUCCESS:
            return {"step": f"started {', '.join(self.addresses or self.services_started)}"}
        if self.problem:
            return {"step": self.problem, "build": self.problem}
        summary: dict[str, str] = super().getResultSummary()
        return summary


class StopServices(ShellCommand):
    """Stop the servers and remove their data; harmless when nothing runs."""

    def __init__(self, command: list[str], **kwargs: Any) -> None:
        kwargs.setdefault("name", "stop services")
        kwargs.setdefault("logEnviron", False)
        super().__init__(command=command, **kwargs)
