"""Watching a running build's containers: one that dies ends the build at once, saying which.

A service container (PostgreSQL, Redis) killed or crashed during a build
would otherwise leave the build running until one of its steps happens to
fail, maybe much later, maybe with a misleading message. A worker container
that dies is normally noticed by its lost connection, but not always (on a
per-build network nobody tells the master), so it is watched too.

- `ContainerWatch`: every `interval` seconds (a `LoopingCall` on the
  master's reactor) inspects the build's containers in a thread
  (`deferToThread`, one docker.APIClient per watch, closed in a thread when
  the watch stops); the first container found exited or removed calls
  `on_fault(role, reason)` once, in the reactor, and the watch stops.
  `check_now()` looks at once (the worker's connection just dropped: the
  summary can then say why). An engine that does not answer is logged, not a
  fault: the containers may well be fine.
- `fault_reason`: the sentence a build's summary gets, e.g. "service
  container postgres exited (code 137) during the build".
- `stop_build`: `build.stopBuild(reason, results)` such that the build ends
  with those results, not "cancelled" (see its docstring).

`ServiceDockerWorker` (`workers/docker/service_worker.py`) starts a watch once its worker
container runs and stops it before anything is removed. See docs/docker.md.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from buildbot.process.results import CANCELLED, EXCEPTION, RETRY
from twisted.internet import defer, task, threads
from twisted.python import log
from twisted.python.failure import Failure

CHECK_INTERVAL = 2.0  # seconds between two looks at a build's containers
WORKER = "worker"  # the role of the worker container among the watched ones


def is_missing(exc: Exception) -> bool:
    """True when a docker error says the container does not exist (any more)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status == 404 or "No such container" in str(exc)


def fault_reason(role: str, state: dict[str, Any] | None) -> str | None:
    """Why a container no longer serves its build (`state`: docker's State; None: removed), or None."""
    what = "worker container" if role == WORKER else f"service container {role}"
    if state is None:
        return f"{what} was removed during the build"
    if state.get("Running", False) and not state.get("Restarting", False):
        return None
    details = f"code {state.get('ExitCode')}"
    if state.get("OOMKilled"):
        details += ", out of memory"
    return f"{what} exited ({details}) during the build"


def results_for(role: str) -> int:
    """A dead service fails the build (EXCEPTION: the job's code is not to blame); a dead worker
    retries it, as Buildbot does when it loses a worker's connection."""
    result: int = RETRY if role == WORKER else EXCEPTION  # (Buildbot's result codes are untyped)
    return result


def thd_check(client: Any, containers: dict[str, str]) -> tuple[str, str] | None:
    """In a thread: (role, reason) for the first container {id: role} that is gone, else None."""
    for container_id, role in containers.items():
        state: dict[str, Any] | None
        try:
            state = (client.inspect_container(container_id) or {}).get("State") or {}
        except Exception as exc:
            if not is_missing(exc):
                raise
            state = None
        reason = fault_reason(role, state)
        if reason:
            return role, reason
    return None


def _log_failure(failure: Failure, why: str) -> None:
    """An errback: log the failure, saying what failed."""
    log.err(failure, why)  # type: ignore[no-untyped-call]  # Twisted's legacy log.err is unannotated


class ContainerWatch:
    """Checks a build's containers every `interval` seconds until `stop()`; see the module docstring."""

    def __init__(
        self,
        reactor: Any,
        open_client: Callable[[], Any],
        containers: dict[str, str],
        on_fault: Callable[[str, str], object],
        interval: float = CHECK_INTERVAL,
        name: str = "",
    ) -> None:
        self.reactor = reactor
        self.open_client = open_client  # called in a thread: a blocking docker.APIClient
        self.containers = dict(containers)
        self.on_fault = on_fault
        self.interval = interval
        self.name = name
        self.fault: str | None = None
        self._client: Any = None  # a docker.APIClient, used (and closed) in threads only
        self._loop: task.LoopingCall | None = None
        self._busy: defer.Deferred[tuple[str, str] | None] | None = None  # the check running in a thread
        self._stopped = False
        self._engine_error_logged = False

    def start(self) -> None:
        self._loop = task.LoopingCall(self._check)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False).addErrback(_log_failure, f"{self.name}: container watch")

    def check_now(self) -> None:
        """Look at the containers at once (unless a look is under way), not waiting for the next tick."""
        self._check().addErrback(_log_failure, f"{self.name}: container watch")

    @defer.inlineCallbacks
    def _check(self) -> Generator[Any, Any, None]:
        if self._stopped or self._busy is not None:
            return
        self._busy = threads.deferToThread(self._thd_check)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        try:
            found = yield self._busy
        except Exception as exc:
            if not self._engine_error_logged:  # once per build: the engine may be busy or restarting
                log.msg(f"{self.name}: could not inspect the build's containers (will retry): {exc}")
                self._engine_error_logged = True
            return
        finally:
            self._busy = None
        if found and not self._stopped:
            role, reason = found
            self.fault = reason
            log.msg(f"{self.name}: {reason}: stopping the build")
            yield self.stop()
            # not waited for: stopping a build whose worker is dead may take as long as its connection
            defer.maybeDeferred(self.on_fault, role, reason).addErrback(
                _log_failure, f"{self.name}: could not stop the build after: {reason}"
            )

    def _thd_check(self) -> tuple[str, str] | None:
        if self._client is None:
            self._client = self.open_client()
        return thd_check(self._client, self.containers)

    def stop(self) -> defer.Deferred[None]:
        """Stop checking (idempotent); the client is closed in a thread once no check runs."""
        if self._stopped:
            return defer.succeed(None)
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        busy: defer.Deferred[Any] = self._busy if self._busy is not None else defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()

        def release(result: object) -> object:
            done.callback(None)
            return result

        def close(_: None) -> defer.Deferred[None]:
            closing: defer.Deferred[None] = threads.deferToThread(self._thd_close)  # type: ignore[no-untyped-call]  # unannotated in Twisted
            return closing

        busy.addBoth(release)
        done.addCallback(close)
        done.addErrback(_log_failure, f"{self.name}: closing the container watch's client")
        return done

    def _thd_close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def stop_build(build: Any, reason: str, results: int) -> defer.Deferred[Any]:
    """`build.stopBuild(reason, results)`, and the build really ends with `results`.

    Buildbot's stopBuild interrupts the running step, which then ends
    CANCELLED, and a build's result is the worst of its steps' (CANCELLED the
    worst of all): a build stopped because its database died would read
    "cancelled", as if someone had pressed Stop. So, in this build only, a
    step the stop cancels counts as `results`. The summary reads e.g.
    "exception (service container postgres exited (code 137) during the build)".
    """
    original = build.stepDone

    def step_done(step_results: int, step: Any) -> Any:
        return original(results if step_results == CANCELLED else step_results, step)

    build.stepDone = step_done
    return defer.maybeDeferred(build.stopBuild, reason, results=results)
