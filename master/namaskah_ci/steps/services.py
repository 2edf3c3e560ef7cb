"""Per-build PostgreSQL and Redis for local mode, as build steps.

`StartServices` runs the master's `ci_services.py start` (its argv from
`job_commands.services_argv`) and turns the `KEY=VALUE` lines it prints
(DATABASE_URL, REDIS_URL) into build properties that the job's steps get in
their environment. `StopServices` runs `stop` on the same state directory; the
job adds it twice: before start (to reap what a crashed build left) and as an
`alwaysRun` teardown.
"""

from __future__ import annotations

from buildbot.process import buildstep
from buildbot.steps.shell import SetPropertyFromCommand, ShellCommand

SERVICE_PROPERTIES = ("DATABASE_URL", "REDIS_URL")
STATE_DIR = "../services"  # beside the checkout, in the builder directory


def parse_service_env(rc: int, stdout: str, stderr: str) -> dict[str, str]:
    """Pick DATABASE_URL / REDIS_URL out of the script's output."""
    found = {}
    for line in stdout.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key in SERVICE_PROPERTIES:
            found[key] = value
    return found


class StartServices(SetPropertyFromCommand):
    """Start the job's servers and publish their URLs as properties."""

    def __init__(self, services: tuple[str, ...], command: list[str], **kwargs):
        kwargs.setdefault("name", f"start {' + '.join(services)}")
        kwargs.setdefault("haltOnFailure", True)
        kwargs.setdefault("logEnviron", False)
        super().__init__(command=command, extract_fn=parse_service_env, **kwargs)
        self.services_started = services

    def getResultSummary(self):
        if self.results == buildstep.SUCCESS:
            return {"step": f"started {', '.join(self.services_started)}"}
        return super().getResultSummary()


class StopServices(ShellCommand):
    """Stop the servers and remove their data; harmless when nothing runs."""

    def __init__(self, command: list[str], **kwargs):
        kwargs.setdefault("name", "stop services")
        kwargs.setdefault("logEnviron", False)
        super().__init__(command=command, **kwargs)
