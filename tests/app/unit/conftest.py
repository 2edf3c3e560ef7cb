"""Unit-test fixtures: the app on fakes only (in-memory SQLite, fakeredis, a recording SMS provider)."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import fakeredis
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool

from app.config import Settings
from app.container import Container
from app.main import create_app
from app.models import Base
from app.sms import RecordingSmsProvider


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="sqlite+pysqlite://", environment="test", git_commit="abc1234")


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite+pysqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fake_server, decode_responses=True)


@pytest.fixture
def sms() -> RecordingSmsProvider:
    return RecordingSmsProvider()


@pytest.fixture
def container(
    settings: Settings, engine: Engine, fake_redis: fakeredis.FakeRedis, sms: RecordingSmsProvider
) -> Container:
    return Container.assemble(settings, engine, fake_redis, sms)


@pytest.fixture
def make_client(engine: Engine, fake_redis: fakeredis.FakeRedis, sms: RecordingSmsProvider):
    """Build a TestClient for given settings overrides; the lifespan runs inside the `with`."""
    opened = []

    def build(**overrides: object) -> TestClient:
        settings = dataclasses.replace(
            Settings(database_url="sqlite+pysqlite://", environment="test", git_commit="abc1234"), **overrides
        )
        container = Container.assemble(settings, engine, fake_redis, sms)
        client = TestClient(create_app(lambda: container), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
