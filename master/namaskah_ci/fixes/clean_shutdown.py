"""Stopping during a clean shutdown: a SIGTERM stops the builds the clean shutdown waits for.

The bug (Buildbot 4.3.0, `buildbot/process/botmaster.py` `BotMaster.cleanShutdown`):
`buildbot stop --clean` (SIGUSR1) starts a clean shutdown: no new builds
(except jobs a running build waits for: buildbot#3383, fixed by #7689) and
a wait for every running build, however long. A pipeline waiting on jobs
that run for an hour keeps the master up for that hour, so `make down`
follows it with SIGTERM after a few seconds (scripts/master_ctl.sh). A
SIGTERM makes `BuildMaster.stopService` call `cleanShutdown(quickMode=True)`,
which should stop the running builds (RETRY, run again at the next start;
jobs a build waits for CANCELLED, as their parent triggers them anew), but
it returns at once because a shutdown is already in progress. The master
then tears its workers down under the running builds: every build ends
RETRY by "lost remote", the triggered jobs included, so at the next start
those jobs run once more besides the retried pipeline's own new ones.

Not filed upstream; reproduction: a builder whose build triggers another
with `waitForFinish=True`, the triggered build running `sleep 600`; `buildbot
stop --clean --no-wait <basedir>`; after "Waiting for 2 build(s) to finish",
`kill -TERM $(cat <basedir>/twistd.pid)`: twistd.log shows `lostRemote` for
both builds and no "Master Shutdown", both end RETRY in the database, and the
triggered build's request runs again at the next start.

The fix (`apply()`): `cleanShutdown(quickMode=True)` while a clean (not
quick) shutdown waits becomes the quick shutdown it asks for. The waiting
clean shutdown is told it is over first, so it returns without stopping the
reactor itself (the SIGTERM handler stops it once the master's services
are stopped), and its distributor stops starting the jobs a build waits
for; the quick one stops the builds and waits for them as usual. With
fixes/shutdown_retry.py the stopped pipeline ends RETRY (run again at the
next start) and its triggered jobs CANCELLED; fixes/mq_delivery.py keeps
the two shutdowns' waits for the same build from hiding its end from one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python import log

MODE = "_namaskah_shutdown"  # BotMaster attribute: ("clean" | "quick", token) of the shutdown in progress
_ORIGINALS: dict[str, Callable[..., defer.Deferred[Any]]] = {}


def _clean_shutdown(original: Callable[..., defer.Deferred[Any]]) -> Callable[..., defer.Deferred[Any]]:
    def cleanShutdown(self: Any, quickMode: bool = False, stopReactor: bool = True) -> defer.Deferred[Any]:
        if self.shuttingDown:
            if not (quickMode and getattr(self, MODE, ("", None))[0] == "clean"):
                return original(self, quickMode=quickMode, stopReactor=stopReactor)  # returns at once
            log.msg(
                "clean shutdown: the master is being stopped while builds still run: stopping them "
                "(RETRY, run again at the next start; triggered jobs CANCELLED)"
            )
            self.shuttingDown = False  # the clean shutdown's wait ends without stopping the reactor
            self.brd.distribute_only_waited_childs = False  # no job starts once the distributor is gone
        this = ("quick" if quickMode else "clean", object())
        setattr(self, MODE, this)
        done = original(self, quickMode=quickMode, stopReactor=False)

        @done.addCallback
        def stop_reactor(result: Any) -> Any:
            # what upstream does with stopReactor, unless this shutdown was cancelled or taken over
            if stopReactor and self.shuttingDown and getattr(self, MODE, None) is this:
                log.msg("Stopping reactor")
                self.master.reactor.stop()
            return result

        return done

    cleanShutdown.namaskah_original = original  # type: ignore[attr-defined]  # a marker on the replacement function
    return cleanShutdown


def apply() -> None:
    """Install the escalating `BotMaster.cleanShutdown` (idempotent)."""
    from buildbot.process.botmaster import BotMaster

    if hasattr(BotMaster.cleanShutdown, "namaskah_original"):
        return
    _ORIGINALS["cleanShutdown"] = BotMaster.cleanShutdown
    BotMaster.cleanShutdown = _clean_shutdown(BotMaster.cleanShutdown)
