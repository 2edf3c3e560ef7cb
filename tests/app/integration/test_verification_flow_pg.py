"""The verification API on real PostgreSQL 15 and Redis 7: storage, rate limiting, expiry, attempts."""

from __future__ import annotations

import concurrent.futures
import time
import uuid

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.integration

BASE = "/api/v1/verifications"


def test_readiness_and_diagnostics_see_both_servers(make_app_client) -> None:
    client, _, _ = make_app_client()
    assert client.get("/api/v1/health").json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    diagnostics = client.get("/api/diagnostics").json()
    assert diagnostics["commit"] == "integration"
    assert {name: dep["status"] for name, dep in diagnostics["dependencies"].items()} == {
        "database": "ok",
        "redis": "ok",
    }


def test_send_and_verify_stores_only_a_hash(make_app_client, phone: str) -> None:
    client, container, sms = make_app_client()
    created = client.post(BASE, json={"phone_number": phone})
    assert created.status_code == 201, created.text
    verification_id = created.json()["id"]
    code = sms.last_code_for(phone)
    with container.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT phone_number, code_hash, status FROM verifications WHERE id = :id"),
            {"id": uuid.UUID(verification_id)},
        ).one()
    assert stored.phone_number == phone
    assert code not in stored.code_hash
    assert stored.status == "pending"
    assert client.post(f"{BASE}/{verification_id}/check", json={"code": code}).status_code == 200
    with container.engine.connect() as connection:
        status, verified_at = connection.execute(
            text("SELECT status, verified_at FROM verifications WHERE id = :id"), {"id": uuid.UUID(verification_id)}
        ).one()
    assert status == "verified" and verified_at is not None
    assert client.post(f"{BASE}/{verification_id}/check", json={"code": code}).status_code == 410


def test_rate_limit_in_redis_refuses_the_sixth_send(make_app_client, phone: str) -> None:
    client, container, _ = make_app_client()
    statuses = [client.post(BASE, json={"phone_number": phone}).status_code for _ in range(6)]
    assert statuses == [201] * 5 + [429]
    refused = client.post(BASE, json={"phone_number": phone})
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 0 < retry_after <= 600
    key = container.limiter.key(phone)
    assert 0 < container.redis.ttl(key) <= 600
    assert int(container.redis.get(key)) == 7
    assert client.post(BASE, json={"phone_number": phone[:-1] + str((int(phone[-1]) + 1) % 10)}).status_code == 201


def test_the_rate_limit_window_really_expires(make_app_client, phone: str) -> None:
    client, _, _ = make_app_client(rate_limit_count=1, rate_limit_window_seconds=1)
    assert client.post(BASE, json={"phone_number": phone}).status_code == 201
    assert client.post(BASE, json={"phone_number": phone}).status_code == 429
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.25)
        response = client.post(BASE, json={"phone_number": phone})
        if response.status_code == 201:
            break
    assert response.status_code == 201


def test_a_code_expires_on_the_database_clock(make_app_client, phone: str) -> None:
    client, _, sms = make_app_client(code_ttl_seconds=1)
    verification_id = client.post(BASE, json={"phone_number": phone}).json()["id"]
    time.sleep(1.2)
    response = client.post(f"{BASE}/{verification_id}/check", json={"code": sms.last_code_for(phone)})
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]


def test_concurrent_wrong_guesses_never_exceed_the_attempts(make_app_client, phone: str) -> None:
    client, container, sms = make_app_client()
    verification_id = client.post(BASE, json={"phone_number": phone}).json()["id"]
    code = sms.last_code_for(phone)
    guess = f"{(int(code) + 1) % 1000000:06d}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda _: client.post(f"{BASE}/{verification_id}/check", json={"code": guess}).status_code, range(12)
            )
        )
    assert statuses.count(400) == 5
    assert statuses.count(429) == 7
    with container.engine.connect() as connection:
        attempts, status = connection.execute(
            text("SELECT attempts, status FROM verifications WHERE id = :id"), {"id": uuid.UUID(verification_id)}
        ).one()
    assert (attempts, status) == (5, "locked")
    assert client.post(f"{BASE}/{verification_id}/check", json={"code": code}).status_code == 429
