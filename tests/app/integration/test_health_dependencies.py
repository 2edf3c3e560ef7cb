"""Readiness against servers that really stop: a throwaway Redis and a throwaway PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command

from app.config import normalise_database_url

pytestmark = pytest.mark.integration


def test_a_stopped_redis_makes_readiness_503(make_app_client, services_ctl, tmp_path) -> None:
    state = tmp_path / "redis-only"
    urls = services_ctl.start(state, ["--redis"])
    try:
        client, _, _ = make_app_client(redis_url=urls["REDIS_URL"], dependency_timeout_seconds=2)
        assert client.get("/api/v1/health").status_code == 200
    finally:
        services_ctl.stop(state)
    assert not state.exists()
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]
    assert response.json()["checks"]["database"] == "ok"
    assert client.get("/health").status_code == 200
    diagnostics = client.get("/api/diagnostics").json()
    assert diagnostics["status"] == "degraded"
    assert diagnostics["dependencies"]["redis"]["status"] == "error"
    sent = client.post("/api/v1/verifications", json={"phone_number": "+14155550123"})
    assert sent.status_code == 503
    assert sent.json()["dependency"] == "redis"


def test_a_stopped_postgres_makes_readiness_503(make_app_client, services_ctl, tmp_path) -> None:
    state = tmp_path / "postgres-only"
    urls = services_ctl.start(state, ["--postgres"])
    try:
        command.upgrade(services_ctl.alembic_config(urls["DATABASE_URL"]), "head")
        client, _, _ = make_app_client(database_url=normalise_database_url(urls["DATABASE_URL"]))
        assert client.get("/api/v1/health").status_code == 200
    finally:
        services_ctl.stop(state)
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    sent = client.post("/api/v1/verifications", json={"phone_number": "+14155550123"})
    assert sent.status_code == 503
    assert sent.json()["dependency"] == "database"
