"""buildbot#7527: the GitPoller forgets its known heads when a reconfiguration activates it again.

Buildbot 4.3's `GitPoller` sets `lastRev = None` (then reads it back) when a
reconfiguration activates it; a poll running at that moment (one the webhook
forced) failed with `TypeError: 'NoneType' object does not support item
assignment` and its commits waited for the next poll. `SteadyGitPoller`
overrides the private `_process_changes` to read the known heads back from
the database when they are gone. A subclass, not a patch: there is nothing
to `apply()`; triggers/changes.py uses it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from buildbot.plugins import changes
from twisted.internet import defer


class SteadyGitPoller(changes.GitPoller):
    """A GitPoller whose poll survives a reconfiguration that resets `lastRev`."""

    lastRev: dict[str, str] | None  # GitPoller's: the last revision polled on each branch

    @defer.inlineCallbacks
    def _process_changes(self, newRev: str, branch: str) -> Generator[Any, Any, Any]:
        if self.lastRev is None:
            self.lastRev = yield self.getState("lastRev", {})
        result = yield super()._process_changes(newRev, branch)
        return result
