"""The reports janitor: removes uploaded reports older than `[checks] report_retention_days`.

Runs in a thread (disk I/O stays off the reactor) once at start and then
every hour.
"""

from __future__ import annotations

import os
import shutil
import time

from twisted.internet import task, threads
from twisted.python import log

from buildbot import config
from buildbot.util import service


def remove_old_reports(root: str, max_age_days: int, now: float | None = None) -> list[str]:
    """Delete `<root>/<builder>/<build>` directories older than the limit; return what was removed."""
    now = time.time() if now is None else now
    limit = now - max_age_days * 86400
    removed = []
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


class ReportsJanitor(service.BuildbotService):
    name = "reports-janitor"

    def checkConfig(self, root, max_age_days, interval_seconds=3600):
        if max_age_days < 1:
            config.error("report retention must be at least one day")

    def reconfigService(self, root, max_age_days, interval_seconds=3600):
        self.root = root
        self.max_age_days = max_age_days
        if getattr(self, "_loop", None) is not None and self._loop.running:
            self._loop.stop()
        self._loop = task.LoopingCall(self.sweep)
        self._loop.start(interval_seconds, now=True)
        return super().reconfigService()

    def stopService(self):
        if getattr(self, "_loop", None) is not None and self._loop.running:
            self._loop.stop()
        return super().stopService()

    def sweep(self):
        d = threads.deferToThread(remove_old_reports, self.root, self.max_age_days)
        d.addCallback(lambda removed: removed and log.msg(f"reports janitor: removed {len(removed)} old report(s)"))
        d.addErrback(log.err, "reports janitor failed")
        return d
