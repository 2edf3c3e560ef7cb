"""Change sources: the git poller on `[repo] url`: `[repo] branches`, or every branch with `all_branches`.

A branch that appears at a commit the poller already knows (`develop` created
from `main`) has no new commit: `buildPushesWithNoCommits` records its head
once, so it is built (and deployed, for a deploy branch) without waiting for a
new commit. A branch moved to another known commit is recorded the same way.
`wanted(change)`: what the push scheduler builds: not a commit whose message
says `[skip ci]` / `[ci skip]` (pull requests are checked when recorded).
"""

from __future__ import annotations

from twisted.internet import defer

from buildbot.plugins import changes

from namaskah_ci import names
from namaskah_ci.settings import Settings
from namaskah_ci.github.payloads import skips_ci


def wanted(change) -> bool:
    """Does the push scheduler build this change? Not when its commit says [skip ci]."""
    return change.category == "pull" or not skips_ci(change.comments)


class SteadyGitPoller(changes.GitPoller):
    """Buildbot 4.3's GitPoller sets `lastRev = None` when a reconfiguration activates it again; a
    poll running then (one the webhook forced) failed on it and its commits waited for the next poll.
    The known heads are read back from the database instead."""

    @defer.inlineCallbacks
    def _process_changes(self, newRev, branch):
        if self.lastRev is None:
            self.lastRev = yield self.getState("lastRev", {})
        result = yield super()._process_changes(newRev, branch)
        return result


def make_change_sources(settings: Settings) -> list:
    return [
        SteadyGitPoller(
            repourl=settings.repo_url,
            branches=True if settings.repo.all_branches else list(settings.repo.branches),
            pollInterval=settings.repo.poll_interval,
            pollAtLaunch=True,
            buildPushesWithNoCommits=True,
            workdir=str(settings.basedir / names.POLLER_DIR),
            project="namaskah",
        )
    ]
