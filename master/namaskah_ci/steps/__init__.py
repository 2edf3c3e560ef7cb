"""Custom build steps: fan-out, per-build services, reports, secret-gated commands."""

from __future__ import annotations

from typing import Any

from namaskah_ci.steps.results import SKIPPED


def hide_skipped(results: int | None, step: Any) -> bool:
    """`hideStepIf` for steps that only sometimes apply: shown when they ran, hidden when skipped."""
    return results == SKIPPED
