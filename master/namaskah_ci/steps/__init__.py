"""Custom build steps: fan-out, per-build services, reports, secret-gated commands."""

from __future__ import annotations

from buildbot.process.results import SKIPPED


def hide_skipped(results, step) -> bool:
    """`hideStepIf` for steps that only sometimes apply: shown when they ran, hidden when skipped."""
    return results == SKIPPED
