"""GitHubStatusPush takes the repository only from the change's URL (no public setting; not filed upstream).

A master that polls a mirror or a local path has no GitHub URL on its changes,
so Buildbot 4.3's `GitHubStatusPush` cannot tell where to post. The mixin
overrides its private `_extract_github_info` to answer a configured
`owner/name` (`self.repository`, set by the subclass) and falls back to the
stock lookup otherwise. A mixin, not a patch: nothing to `apply()`;
github/reporters.py uses it.
"""

from __future__ import annotations

from typing import Any


class FixedRepositoryMixin:
    """Mix in before `GitHubStatusPush`: statuses go to `self.repository` ("owner/name") when set."""

    repository: str = ""

    def _extract_github_info(self, sourcestamp: Any) -> Any:
        if self.repository:
            owner, name = self.repository.split("/")
            return owner, name
        return super()._extract_github_info(sourcestamp)  # type: ignore[misc]  # the next class in the MRO is GitHubStatusPush
