"""Change sources: the git poller on `[repo] url`: `[repo] branches`, or every branch with `all_branches`."""

from __future__ import annotations

from buildbot.plugins import changes

from namaskah_ci import names
from namaskah_ci.settings import Settings


def make_change_sources(settings: Settings) -> list:
    return [
        changes.GitPoller(
            repourl=settings.repo_url,
            branches=True if settings.repo.all_branches else list(settings.repo.branches),
            pollInterval=settings.repo.poll_interval,
            pollAtLaunch=True,
            workdir=str(settings.basedir / names.POLLER_DIR),
            project="namaskah",
        )
    ]
