"""Database engine and sessions, created on demand: importing this module connects nowhere.

`make_engine` builds a pooled engine with bounded connect timeouts for PostgreSQL
(psycopg 3); `ping` runs `SELECT 1` for the health and diagnostics probes.
"""

from __future__ import annotations

from typing import Any, Dict

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, timeout_seconds: int = 3) -> Engine:
    """A lazily-connecting engine for `url`; PostgreSQL connections and statements are time-bounded."""
    kwargs: Dict[str, Any] = {"pool_pre_ping": True, "future": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {
            "connect_timeout": timeout_seconds,
            "options": f"-c statement_timeout={timeout_seconds * 1000}",
        }
        kwargs["pool_timeout"] = timeout_seconds
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 10
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> "sessionmaker[Session]":
    return sessionmaker(bind=engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise if the database does not answer `SELECT 1`."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
