"""The reports janitor: removes uploaded reports older than `[checks] report_retention_days`.

Runs in a thread (disk I/O stays off the reactor) once at start and then
every hour.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from buildbot import config
from buildbot.util import service
from twisted.internet import defer, task, threads
from twisted.python import log
from twisted.python.failure import Failure


def remove_old_reports(root: str, max_age_days: int, now: float | None = None) -> list[str]:
    """Delete `<root>/<builder>/<build>` directories older than the limit; return what was removed."""
    now = time.time() if now is None else now
    limit = now - max_age_days * 86400
    removed: list[str] = []
    if not os.path.isdir(root):
        return removed
    for builder in sorted(os.listdir(root)):
        builder_dir = os.path.join(root, builder)
        if not os.path.isdir(builder_dir):
            continue
        for build in sorted(os.listdir(builder_dir)):
            path = os.path.join(builder_dir, build)
            if os.path.isdir(path) and os.path.getmtime(path) < limit:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _log_failure(failure: Failure) -> None:
    log.err(failure, "reports janitor failed")  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated


class ReportsJanitor(service.BuildbotService):
    name = "reports-janitor"
    _loop: task.LoopingCall | None = None

    def checkConfig(self, root: str, max_age_days: int, interval_seconds: float = 3600) -> None:
        if max_age_days < 1:
            config.error("report retention must be at least one day")

    def reconfigService(self, root: str, max_age_days: int, interval_seconds: float = 3600) -> Any:
        self.root = root
        self.max_age_days = max_age_days
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = task.LoopingCall(self.sweep)
        self._loop.start(interval_seconds, now=True)
        return super().reconfigService()

    def stopService(self) -> Any:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return super().stopService()

    def sweep(self) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = threads.deferToThread(remove_old_reports, self.root, self.max_age_days)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        d.addCallback(lambda removed: removed and log.msg(f"reports janitor: removed {len(removed)} old report(s)"))
        d.addErrback(_log_failure)
        return d
