"""`RecordReuse`: the last step of a job build that has a reuse key (see jobs/reuse.py).

A build that ended SUCCESS records its key with itself, so a later pipeline
whose job has the same key shows this result instead of running the job again.
Any other result records nothing. The step is hidden; its log says what it did.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from buildbot.process import buildstep
from buildbot.reporters.utils import getURLForBuild
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.jobs.reuse import ReuseStore
from namaskah_ci.steps.results import SKIPPED, SUCCESS, Results


class RecordReuse(buildstep.BuildStep):
    name = "record for reuse"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("flunkOnFailure", False)
        kwargs.setdefault("warnOnFailure", True)
        kwargs.setdefault("hideStepIf", True)
        super().__init__(**kwargs)

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        key = self.getProperty(names.PROP_REUSE_KEY)
        if self.build.results != SUCCESS or not key:
            self.descriptionDone = f"not recorded: the job ended {Results[self.build.results]}"
            return SKIPPED
        builderid = yield self.build.getBuilderId()
        record = {
            "builder": self.getProperty("buildername"),
            "number": self.build.number,
            "buildid": self.build.buildid,
            "revision": self.getProperty(names.PROP_JOB_REVISION) or self.getProperty("revision") or "",
            "url": getURLForBuild(self.master, builderid, self.build.number),
            "at": int(time.time()),
        }
        yield ReuseStore(self.master).remember(key, record)
        self.descriptionDone = f"recorded for reuse (key {key[:12]})"
        return SUCCESS
