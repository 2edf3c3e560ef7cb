"""`c['db']` (namaskah_ci.database): a SQLite file keeps one pooled connection with synchronous=NORMAL
in WAL mode; other databases keep Buildbot's defaults."""

from __future__ import annotations

from buildbot.db import enginestrategy
from sqlalchemy.pool import QueuePool

from namaskah_ci.database import make_db_config


def test_other_databases_keep_buildbots_defaults():
    assert make_db_config("postgresql://ci:pw@db/ci") == {"db_url": "postgresql://ci:pw@db/ci"}
    assert make_db_config("sqlite://") == {"db_url": "sqlite://"}


def test_a_sqlite_file_keeps_one_connection_in_wal_with_normal_sync(tmp_path):
    config = make_db_config(f"sqlite:///{tmp_path / 'state.sqlite'}")
    engine = enginestrategy.create_engine(config["db_url"], basedir=str(tmp_path), **config["engine_kwargs"])
    try:
        assert isinstance(engine.pool, QueuePool)
        with engine.begin() as connection:
            connection.exec_driver_sql("create table t (x integer)")
        for value in range(3):
            with engine.begin() as connection:
                connection.exec_driver_sql(f"insert into t values ({value})")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("pragma journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("pragma synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("select count(*) from t").scalar() == 3
        assert engine.pool.checkedin() == 1, "the connection stays open between transactions"
        assert (tmp_path / "state.sqlite-wal").exists(), "no checkpoint-and-delete after each transaction"
    finally:
        engine.dispose()
