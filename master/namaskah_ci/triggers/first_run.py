"""The first run: a new master builds the newest revision of the default branch once, by itself.

Without it a newcomer sees nothing after `make up` until someone commits (the
git poller records the heads it finds at launch without building them). The
scheduler fires once per master database: it remembers in its state that it
did (and does nothing when the `pipeline` builder has builds already), so a
restart, a reconfig or an upgrade never builds again. `[pipeline] first_run =
false` turns it off.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from buildbot.schedulers import base
from twisted.internet import defer
from twisted.python import log

from namaskah_ci import names

STATE_KEY = "first_run_done"


class FirstRunScheduler(base.ReconfigurableBaseScheduler):
    """Starts one `pipeline` build of `branch` (its newest revision) the first time a master runs."""

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
        try:
            yield self.run_once()
        except Exception as exc:  # never keep the master from starting
            log.err(exc, "first run: could not start the first pipeline")  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated

    @defer.inlineCallbacks
    def run_once(self) -> Generator[Any, Any, Any]:
        done = yield self.getState(STATE_KEY, False)
        if done:
            return None
        builds = yield self.master.data.get(("builders", names.PIPELINE, "builds"), limit=1)
        yield self.setState(STATE_KEY, True)  # before the buildset: a crash in between builds nothing twice
        if builds:
            return None
        log.msg(f"first run: building the newest revision of {self.branch}")
        result = yield self.addBuildsetForSourceStamps(
            sourcestamps=[
                {
                    "codebase": "",
                    "repository": self.repository,
                    "branch": self.branch,
                    "revision": None,
                    "project": names.PROJECT,
                }
            ],
            reason=f"first run: the newest revision of {self.branch}",
            builderNames=self.builderNames,
        )
        return result
