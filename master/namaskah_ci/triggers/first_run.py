"""The first run: a new master builds the newest revision of the default branch once, by itself.

Without it a newcomer sees nothing after `make up` until someone commits (the
git poller records the heads it finds at launch without building them). The
scheduler fires once per master database: it remembers in its state that it
did (and does nothing when the `pipeline` builder has builds already), so a
restart, a reconfig or an upgrade never builds again. `[pipeline] first_run =
false` turns it off.

One pipeline per revision: the first run builds exactly the head the poller
recorded at its first poll (pinned, never "whatever is newest when the build
starts"), which the poller itself never builds; a revision the poller already
made a change of (it builds that one) is not built again. It waits for that
first poll in the background (bounded: a few poll intervals), never holding up
the master's start.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from buildbot.changes.gitpoller import GitPoller
from buildbot.data import resultspec
from buildbot.schedulers import base
from twisted.internet import defer, task
from twisted.python import log

from namaskah_ci import names

STATE_KEY = "first_run_done"
WAIT_POLLS = 3  # poll intervals the first run waits for the poller's first poll (at least MIN_WAIT_SECONDS)
MIN_WAIT_SECONDS = 120


def recorded_head(pollers: list[Any], repository: str, branch: str) -> str | None:
    """The head of `branch` a git poller of `repository` recorded at its last poll (None: not polled yet)."""
    for poller in pollers:
        if not isinstance(poller, GitPoller) or (repository and poller.repourl != repository):
            continue
        heads = poller.lastRev or {}
        head = heads.get(branch) or heads.get(f"refs/heads/{branch}")
        if head:
            return str(head)
    return None


class FirstRunScheduler(base.ReconfigurableBaseScheduler):
    """Starts one `pipeline` build of `branch` (its head at the poller's first poll) the first time a master runs."""

    stopped = False

    def checkConfig(self, builderNames: list[str], branch: str = "main", repository: str = "", **kwargs: Any) -> None:
        super().checkConfig(builderNames=builderNames, **kwargs)

    @defer.inlineCallbacks
    def reconfigService(
        self, builderNames: list[str], branch: str = "main", repository: str = "", **kwargs: Any
    ) -> Generator[Any, Any, None]:
        yield super().reconfigService(builderNames=builderNames, **kwargs)
        self.branch = branch
        self.repository = repository

    @defer.inlineCallbacks
    def activate(self) -> Generator[Any, Any, None]:
        yield super().activate()
        if not self.enabled:
            return
        self.stopped = False
        self.started = self.run_once()  # not awaited: it waits for the poller's first poll
        self.started.addErrback(self._failed)

    @staticmethod
    def _failed(failure: Any) -> None:  # never keep the master from starting
        log.err(failure, "first run: could not start the first pipeline")  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated

    @defer.inlineCallbacks
    def deactivate(self) -> Generator[Any, Any, None]:
        self.stopped = True
        yield super().deactivate()

    def pollers(self) -> list[Any]:
        return list(self.master.change_svc) if getattr(self.master, "change_svc", None) is not None else []

    @defer.inlineCallbacks
    def wait_for_head(self) -> Generator[Any, Any, str | None]:
        """The head of the branch the poller recorded, once it has polled (bounded), or None."""
        intervals = [getattr(p, "pollInterval", 0) or 0 for p in self.pollers() if isinstance(p, GitPoller)]
        budget = max(MIN_WAIT_SECONDS, WAIT_POLLS * max(intervals or [0]))
        reactor = self.master.reactor
        deadline = reactor.seconds() + budget
        while not self.stopped:
            head = recorded_head(self.pollers(), self.repository, self.branch)
            if head or reactor.seconds() >= deadline:
                return head
            yield task.deferLater(reactor, 1, lambda: None)
        return None

    @defer.inlineCallbacks
    def run_once(self) -> Generator[Any, Any, Any]:
        done = yield self.getState(STATE_KEY, False)
        if done:
            return None
        head = yield self.wait_for_head()
        if head is None or self.stopped:
            if not self.stopped:
                log.msg(
                    f"first run: the poller recorded no head of {self.branch}; nothing built (the next push builds)"
                )
            return None
        builds = yield self.master.data.get(("builders", names.PIPELINE, "builds"), limit=1)
        known = yield self.master.data.get(("changes",), filters=[resultspec.Filter("revision", "eq", [head])])
        yield self.setState(STATE_KEY, True)  # before the buildset: a crash in between builds nothing twice
        if builds or known:
            return None
        log.msg(f"first run: building {head}, the newest revision of {self.branch}")
        result = yield self.addBuildsetForSourceStamps(
            sourcestamps=[
                {
                    "codebase": "",
                    "repository": self.repository,
                    "branch": self.branch,
                    "revision": head,
                    "project": names.PROJECT,
                }
            ],
            reason=f"first run: the newest revision of {self.branch}",
            builderNames=self.builderNames,
        )
        return result
