"""The master's `c['db']`: the database URL, and for SQLite (the embedded default) engine settings
that keep one connection open.

Buildbot 4.3 opens SQLite through SQLAlchemy's `NullPool`: every transaction connects, and
closing the only connection of a WAL database checkpoints it and deletes the WAL, so each
write costs a checkpoint plus two fsyncs (~25 ms here). All of the master's database work
runs on one thread for SQLite, so at ~40 writes a second the log chunks of eight parallel
checks queued step starts, git checkouts and REST reads behind them (the pipeline benchmark
measured 6 s per checkout step and a 850 ms REST p95). A pool that keeps one connection
(more only if Buildbot ever asks for them concurrently) and `synchronous = NORMAL` (SQLite's
recommended setting for WAL: a crash of the master loses nothing, a power loss at worst the
last transactions, and never corrupts the database) make a write ~0.1 ms. Other databases
(PostgreSQL in production) keep Buildbot's defaults.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy.pool import QueuePool

SQLITE_POOL_SIZE = 1
SQLITE_MAX_OVERFLOW = 4  # Buildbot's thread pool for other databases has 5 threads


class NormalSyncConnection(sqlite3.Connection):
    """A sqlite3 connection with `synchronous = NORMAL` (the journal mode stays Buildbot's WAL)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.execute("pragma synchronous = normal")


def make_db_config(database_url: str) -> dict[str, Any]:
    """`c['db']` for a database URL: pooled, relaxed-sync connections for a SQLite file."""
    config: dict[str, Any] = {"db_url": database_url}
    if database_url.startswith("sqlite:///") and database_url != "sqlite://":
        config["engine_kwargs"] = {
            "poolclass": QueuePool,
            "pool_size": SQLITE_POOL_SIZE,
            "max_overflow": SQLITE_MAX_OVERFLOW,
            # a pooled connection is handed back on Buildbot's database thread, not the one that made it
            "connect_args": {"factory": NormalSyncConnection, "check_same_thread": False},
        }
    return config
