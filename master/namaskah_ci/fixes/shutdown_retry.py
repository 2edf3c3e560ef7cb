"""A build stopped because the master stops ends RETRY, also while it waits on triggered jobs.

The bug (Buildbot 4.3.0, the parent-build side of buildbot/buildbot#6029,
"Buildbot restart sometimes results in builds being CANCELLED instead of
RETRY"): on SIGTERM (`buildbot stop`, `make down` after its clean-stop
delay) `BotMaster.cleanShutdown(quickMode=True)` stops every running build
with `stopBuild("Master Shutdown", RETRY)` — RETRY so the build request runs
again at the next start — except triggered builds a parent waits for
(CANCELLED: the retried parent triggers them anew). But `stopBuild`
interrupts the current step first, and a `Trigger` step waiting for its
builds (the pipeline's fan-out) ends CANCELLED, which is worse than RETRY in
`worst_status`: the pipeline build ends CANCELLED, its build request is
completed, and nothing runs it again at the next start. The push that
started it is never tested or deployed unless someone pushes again.
(A SIGKILL does not lose it: the next start retries builds left running.)

Not filed upstream as this shape; reproduction: a builder whose build runs a
`Trigger(waitForFinish=True)` of a builder running `sleep 600`; while it
waits, `buildbot stop <basedir>`: twistd.log shows "stopping build: Master
Shutdown 5" (RETRY) for the parent, then "results:cancelled", and its
buildrequest row is complete with results 6 (CANCELLED).

The fix (`apply()`): a build stopped with reason "Master Shutdown" and
result RETRY keeps RETRY whatever its interrupted steps end with.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import defer

SHUTDOWN_REASON = "Master Shutdown"  # what BotMaster.cleanShutdown passes to Build.stopBuild
FLAG = "_namaskah_retry_after_shutdown"
_ORIGINALS: dict[str, Callable[..., Any]] = {}


def _stop_build(original: Callable[..., Any]) -> Callable[..., Any]:
    def stopBuild(self: Any, reason: str = "<no reason given>", results: Any = None) -> Any:
        from buildbot.process.results import CANCELLED, RETRY

        results = CANCELLED if results is None else results
        if reason == SHUTDOWN_REASON and results == RETRY:
            setattr(self, FLAG, True)
        return original(self, reason, results)

    stopBuild.namaskah_original = original  # type: ignore[attr-defined]  # a marker on the replacement function
    return stopBuild


def _step_done(original: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    @defer.inlineCallbacks
    def stepDone(self: Any, results: Any, step: Any) -> Generator[Any, Any, Any]:
        from buildbot.process.results import CANCELLED, RETRY

        terminate = yield original(self, results, step)
        if getattr(self, FLAG, False) and self.results == CANCELLED:
            self.results = RETRY  # the interrupted step's CANCELLED must not complete the build request
        return terminate

    stepDone.namaskah_original = original  # type: ignore[attr-defined]  # a marker on the replacement function
    return stepDone


def apply() -> None:
    """Install the RETRY-keeping `Build.stopBuild` / `Build.stepDone` (idempotent)."""
    from buildbot.process.build import Build

    if hasattr(Build.stopBuild, "namaskah_original"):
        return
    _ORIGINALS.update(stopBuild=Build.stopBuild, stepDone=Build.stepDone)
    Build.stopBuild = _stop_build(Build.stopBuild)
    Build.stepDone = _step_done(Build.stepDone)
