"""The verification API end to end on fakes: send, check, rate limit, expiry, attempts, failures."""

from __future__ import annotations

import datetime
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app import codes
from app.models import Verification
from app.sms import RecordingSmsProvider

PHONE = "+14155550123"
BASE = "/api/v1/verifications"


def send(client: TestClient, phone: str = PHONE):
    return client.post(BASE, json={"phone_number": phone})


def check(client: TestClient, verification_id: str, code: str):
    return client.post(f"{BASE}/{verification_id}/check", json={"code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1000000:06d}"


def row(engine: Engine, verification_id: str) -> Verification:
    with Session(engine) as session:
        found = session.execute(select(Verification).where(Verification.id == uuid.UUID(verification_id))).scalar_one()
        session.expunge(found)
        return found


def test_sending_creates_a_pending_verification_with_a_hashed_code(
    client: TestClient, sms: RecordingSmsProvider, engine: Engine
) -> None:
    response = send(client)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["phone_number"] == "+1******0123"
    assert body["attempts_remaining"] == 5
    assert response.headers["location"] == f"{BASE}/{body['id']}"
    code = sms.last_code_for(PHONE)
    stored = row(engine, body["id"])
    assert code not in stored.code_hash
    assert codes.check_code(code, stored.code_hash, body["id"])
    assert stored.provider_message_id == sms.sent[-1].message_id
    assert code not in response.text


def test_the_right_code_verifies_once(client: TestClient, sms: RecordingSmsProvider, engine: Engine) -> None:
    verification_id = send(client).json()["id"]
    code = sms.last_code_for(PHONE)
    response = check(client, verification_id, code)
    assert response.status_code == 200
    assert response.json() == {"id": verification_id, "status": "verified", "verified": True, "attempts_remaining": 4}
    assert row(engine, verification_id).verified_at is not None
    again = check(client, verification_id, code)
    assert again.status_code == 410
    assert "already used" in again.json()["detail"]


def test_a_wrong_code_is_400_and_counts(client: TestClient, sms: RecordingSmsProvider) -> None:
    verification_id = send(client).json()["id"]
    response = check(client, verification_id, wrong(sms.last_code_for(PHONE)))
    assert response.status_code == 400
    assert response.json() == {"detail": "wrong code", "attempts_remaining": 4, "verified": False}


def test_attempts_run_out_even_for_the_right_code(client: TestClient, sms: RecordingSmsProvider) -> None:
    verification_id = send(client).json()["id"]
    code = sms.last_code_for(PHONE)
    statuses = [check(client, verification_id, wrong(code)).status_code for _ in range(5)]
    assert statuses == [400] * 5
    locked = check(client, verification_id, code)
    assert locked.status_code == 429
    assert locked.json()["attempts_remaining"] == 0


def test_an_expired_code_is_410(client: TestClient, sms: RecordingSmsProvider, engine: Engine) -> None:
    verification_id = send(client).json()["id"]
    with Session(engine) as session, session.begin():
        stored = session.get(Verification, uuid.UUID(verification_id))
        assert stored is not None
        stored.expires_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    response = check(client, verification_id, sms.last_code_for(PHONE))
    assert response.status_code == 410
    assert "expired" in response.json()["detail"]


def test_an_unknown_verification_is_404(client: TestClient) -> None:
    assert check(client, str(uuid.uuid4()), "123456").status_code == 404


def test_the_sixth_send_in_ten_minutes_is_429_with_retry_after(client: TestClient) -> None:
    statuses = [send(client).status_code for _ in range(5)]
    assert statuses == [201] * 5
    refused = send(client)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 600
    assert send(client, "+14155550124").status_code == 201


def test_a_limit_from_settings_applies(make_client) -> None:
    client = make_client(rate_limit_count=1, rate_limit_window_seconds=30)
    assert send(client).status_code == 201
    refused = send(client)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 30


def test_an_sms_failure_is_502(client: TestClient, sms: RecordingSmsProvider) -> None:
    sms.fail = True
    response = send(client)
    assert response.status_code == 502
    assert "SMS" in response.json()["detail"]


def test_redis_down_makes_sending_503(client: TestClient, fake_server) -> None:
    fake_server.connected = False
    response = send(client)
    assert response.status_code == 503
    assert response.json()["dependency"] == "redis"


def test_database_down_makes_the_api_503(client: TestClient, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE verifications")
    sent = send(client)
    assert sent.status_code == 503
    assert sent.json()["dependency"] == "database"
    checked = check(client, str(uuid.uuid4()), "123456")
    assert checked.status_code == 503


@pytest.mark.parametrize("phone", [" +14155550123 ", "+14155550123\n"])
def test_surrounding_whitespace_is_ignored(client: TestClient, phone: str) -> None:
    assert send(client, phone).status_code == 201
