"""`per_master(master, key, make)`: one object per running master (kept on the master object), so
what it holds outlives reconfigurations and is never shared between two masters in one process.

This is the one way Namaskah CI keeps state across reconfigurations (the job
reuse keys in flight, GitHub deliveries, pending pull request events, the
pipeline readers and their parsed files, the login limiter). Module-level
values are only what belongs to the process, not to a master: memo caches of
facts that cannot change for a key (`functools.cache`, an interpreter's
version by its path and mtime), the environment captured once from
`os.environ` (secrets.py), and the originals a fix in `fixes/` replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def per_master(master: Any, key: str, make: Callable[[Any], T]) -> T:
    attribute = f"_namaskah_{key}"
    existing: T | None = getattr(master, attribute, None)
    if existing is None:
        existing = make(master)
        setattr(master, attribute, existing)
    return existing
