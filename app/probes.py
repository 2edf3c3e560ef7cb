"""Dependency probes for `/api/v1/health` and `/api/diagnostics`: PostgreSQL and Redis.

Each probe is bounded by the clients' timeouts and reports `ok` or `error` with the
latency in milliseconds and, on failure, the exception's class name only (no URLs,
so no credentials, reach the answer).
"""

from __future__ import annotations

import time
from typing import Callable, Dict

from app import db, redis_client
from app.container import Container
from app.schemas import DependencyStatus


def _timed(check: Callable[[], None]) -> DependencyStatus:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure of a dependency is a failed probe, never a 500
        elapsed = (time.perf_counter() - started) * 1000
        return DependencyStatus(status="error", latency_ms=round(elapsed, 2), error=type(exc).__name__)
    elapsed = (time.perf_counter() - started) * 1000
    return DependencyStatus(status="ok", latency_ms=round(elapsed, 2))


def probe_all(container: Container) -> Dict[str, DependencyStatus]:
    """{"database": ..., "redis": ...}, probed one after the other."""
    return {
        "database": _timed(lambda: db.ping(container.engine)),
        "redis": _timed(lambda: redis_client.ping(container.redis)),
    }
