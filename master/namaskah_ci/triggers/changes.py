"""Change sources: the git poller on `[repo] url`: `[repo] branches`, or every branch with `all_branches`.

A branch that appears at a commit the poller already knows (`develop` created
from `main`) has no new commit: `buildPushesWithNoCommits` records its head
once, so it is built (and deployed, for a deploy branch) without waiting for a
new commit. A branch moved to another known commit is recorded the same way.
`wanted(change)`: what the push scheduler builds: not a commit whose message
says `[skip ci]` / `[ci skip]` (pull requests are checked when recorded).
"""

from __future__ import annotations

from typing import Any

from namaskah_ci import names
from namaskah_ci.fixes.poller_reconfig import SteadyGitPoller
from namaskah_ci.settings import Settings

SKIP_MARKERS = ("[skip ci]", "[ci skip]")  # as GitHub Actions: in the head commit's message


def skips_ci(message: str | None) -> bool:
    """Does a commit message ask for no pipeline (`[skip ci]` / `[ci skip]`, any case)?"""
    text = (message or "").lower()
    return any(marker in text for marker in SKIP_MARKERS)


def wanted(change: Any) -> bool:
    """Does the push scheduler build this change? Not when its commit says [skip ci]."""
    return change.category == "pull" or not skips_ci(change.comments)


def make_change_sources(settings: Settings) -> list[Any]:
    return [
        SteadyGitPoller(
            repourl=settings.repo_url,
            branches=True if settings.repo.all_branches else list(settings.repo.branches),
            pollInterval=settings.repo.poll_interval,
            pollAtLaunch=True,
            buildPushesWithNoCommits=True,
            workdir=str(settings.basedir / names.POLLER_DIR),
            project=names.PROJECT,
        )
    ]
