"""Alembic environment: the URL comes from DATABASE_URL, the target is `app.models.Base.metadata`.

Online mode only runs against a live database; `alembic upgrade head --sql` (offline)
prints the SQL instead. A missing DATABASE_URL stops with a one-line message.
"""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.config import ConfigError, normalise_database_url
from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL", "")
    if not url:
        sys.exit("alembic: DATABASE_URL is not set (e.g. postgresql://user:password@127.0.0.1:5432/namaskah)")
    try:
        return normalise_database_url(url)
    except ConfigError as exc:
        sys.exit(f"alembic: {exc}")


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
