"""`/health`, `/api/v1/health` and `/api/diagnostics` with working and failing dependencies."""

from __future__ import annotations

import fakeredis
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from app.config import Settings
from app.container import Container
from app.main import create_app
from app.sms import RecordingSmsProvider


@pytest.fixture
def broken_client(tmp_path, fake_server: fakeredis.FakeServer):
    """PostgreSQL replaced by an SQLite file that cannot be opened, Redis by a disconnected fake."""
    settings = Settings(database_url="sqlite://", environment="test")
    engine = create_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    fake_server.connected = False
    container = Container.assemble(
        settings, engine, fakeredis.FakeRedis(server=fake_server, decode_responses=True), RecordingSmsProvider()
    )
    with TestClient(create_app(lambda: container), raise_server_exceptions=False) as client:
        yield client


def test_liveness_needs_no_dependency(client: TestClient, broken_client: TestClient) -> None:
    for each in (client, broken_client):
        response = each.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    assert broken_client.head("/health").status_code == 200


def test_readiness_is_ok_when_both_answer(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readiness_names_every_failing_dependency(broken_client: TestClient) -> None:
    response = broken_client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["database", "redis"]


def test_readiness_names_only_redis_when_only_redis_fails(client: TestClient, fake_server) -> None:
    fake_server.connected = False
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]
    assert response.json()["checks"] == {"database": "ok", "redis": "error"}


def test_diagnostics_reports_version_commit_uptime_and_latencies(client: TestClient) -> None:
    response = client.get("/api/diagnostics")
    assert response.status_code == 200
    body = response.json()
    assert body["commit"] == "abc1234"
    assert body["version"] == "1.0.0"
    assert body["status"] == "ok"
    assert body["uptime_seconds"] >= 0
    for name in ("database", "redis"):
        assert body["dependencies"][name]["status"] == "ok"
        assert body["dependencies"][name]["latency_ms"] >= 0


def test_diagnostics_stays_200_and_says_degraded(broken_client: TestClient) -> None:
    response = broken_client.get("/api/diagnostics")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["commit"] == "unknown"
    assert body["dependencies"]["redis"]["status"] == "error"
    assert body["dependencies"]["redis"]["error"]
    assert body["dependencies"]["database"]["error"] == "OperationalError"


def test_the_default_app_connects_nowhere_until_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """`app.main:app` builds its container from the environment; closed ports make readiness 503, not a crash."""
    monkeypatch.setenv("DATABASE_URL", "postgres://nobody:pw@127.0.0.1:1/none")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("RENDER_GIT_COMMIT", "cafe123")
    monkeypatch.setenv("DEPENDENCY_TIMEOUT_SECONDS", "1")
    from app.main import app

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/api/v1/health")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["database", "redis"]
        assert client.get("/api/diagnostics").json()["commit"] == "cafe123"
        assert "pw" not in ready.text
