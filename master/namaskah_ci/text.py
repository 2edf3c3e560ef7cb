"""How every page, step and answer shows a revision, HTML text and a time: one definition each.

Pure functions of their argument (no Buildbot): `short` (a revision's short
form, git's default abbreviation length), `same_revision` (two ids of one
commit, one possibly abbreviated), `esc` (text for HTML, `None` as
nothing) and `epoch` (seconds since the epoch from a datetime — naive ones are
UTC, as Buildbot's database stores them — or a number; anything else is None).
"""

from __future__ import annotations

import datetime
import html
from typing import Any

SHORT_REVISION = 7  # characters of a revision shown (git's default abbreviation)


def short(revision: Any) -> str:
    """`1a2b3c4` for a full revision; "?" when there is none."""
    return (str(revision) if revision else "?")[:SHORT_REVISION]


def same_revision(a: str | None, b: str | None) -> bool:
    """Equal commits, one possibly abbreviated (at least 7 characters)."""
    if not a or not b:
        return False
    a, b = a.strip().lower(), b.strip().lower()
    if len(a) < 7 or len(b) < 7:
        return a == b
    return a.startswith(b) or b.startswith(a)


def esc(value: object) -> str:
    """Text for HTML (content and attribute values alike); None is nothing."""
    return html.escape("" if value is None else str(value), quote=True)


def epoch(value: object) -> float | None:
    """Seconds since the epoch of a datetime (naive: UTC) or a number; None for anything else."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
