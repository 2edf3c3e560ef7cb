"""`per_master(master, key, make)`: one object per running master (kept on the master object), so
what it holds outlives reconfigurations and is never shared between two masters in one process."""

from __future__ import annotations

from typing import Any, Callable


def per_master(master: Any, key: str, make: Callable[[Any], Any]) -> Any:
    attribute = f"_namaskah_{key}"
    existing = getattr(master, attribute, None)
    if existing is None:
        existing = make(master)
        setattr(master, attribute, existing)
    return existing
