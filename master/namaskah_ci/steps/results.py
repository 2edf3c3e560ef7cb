"""Buildbot's build results, typed: what a step's `run()` returns and what a build ends with.

Buildbot publishes no type information, so imported from `buildbot.process.results` its result
codes are `Any` to mypy, and a step declared to return an `int` could return anything unnoticed.
The steps import them from here: Buildbot's own values and list, checked as `int`s and the names in
`Results` as strings.
"""

from __future__ import annotations

from typing import Final

from buildbot.process import results as buildbot_results

SUCCESS: Final[int] = buildbot_results.SUCCESS
WARNINGS: Final[int] = buildbot_results.WARNINGS
FAILURE: Final[int] = buildbot_results.FAILURE
SKIPPED: Final[int] = buildbot_results.SKIPPED
EXCEPTION: Final[int] = buildbot_results.EXCEPTION
RETRY: Final[int] = buildbot_results.RETRY
CANCELLED: Final[int] = buildbot_results.CANCELLED
Results: Final[list[str]] = buildbot_results.Results  # a result's name: Results[SUCCESS] == "success"


def worst_status(a: int, b: int) -> int:
    """Buildbot's `worst_status`: the worse of two results (CANCELLED the worst, then RETRY, ...)."""
    worst: int = buildbot_results.worst_status(a, b)
    return worst
