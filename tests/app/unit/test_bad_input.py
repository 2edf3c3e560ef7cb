"""Malformed bodies, headers and paths get 4xx with a clear message, never a 500."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

BASE = "/api/v1/verifications"
# a well-formed id no verification has; fixed, so that every pytest-xdist worker collects the same test ids
UNKNOWN_ID = "6f1c2a9e-3b7d-4c85-9e21-0d4b8a7f5c13"
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"phone_number": "4155550123"}, "phone_number"),
        ({"phone_number": "+0155550123"}, "phone_number"),
        ({"phone_number": "+1415555012345678"}, "phone_number"),
        ({"phone_number": "+1 415 555 0123"}, "phone_number"),
        ({"phone_number": "+١٤١٥٥٥٥٠١٢٣"}, "phone_number"),
        ({"phone_number": 14155550123}, "phone_number"),
        ({"phone_number": None}, "phone_number"),
        ({"phone_number": ["+14155550123"]}, "phone_number"),
        ({"phone_number": "+1" + "5" * 5000}, "phone_number"),
        ({}, "phone_number"),
        ({"phone": "+14155550123"}, "phone_number"),
        ([], "body"),
        ("+14155550123", "body"),
        (None, "body"),
    ],
)
def test_bad_send_bodies_are_422_naming_the_field(client: TestClient, body: object, field: str) -> None:
    response = client.post(BASE, json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["detail"].startswith(f"{field}:")
    assert payload["errors"][0]["field"] == field
    assert "5555555555" not in response.text  # the rejected input is not echoed


@pytest.mark.parametrize("code", ["12345", "1234567", "12a456", "١٢٣٤٥٦", 123456, None, "", "123 456"])
def test_bad_codes_are_422(client: TestClient, code: object) -> None:
    response = client.post(f"{BASE}/{uuid.uuid4()}/check", json={"code": code})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("code:")


@pytest.mark.parametrize(
    "raw, headers",
    [
        (b'{"phone_number": ', JSON),
        (b"\xff\xfe\x00{", JSON),
        (b"\x00\x01\x02", JSON),
        (b'{"phone_number": "+14155550123"', JSON),
        (b"phone_number=%2B14155550123", {"content-type": "application/x-www-form-urlencoded"}),
        (b"plain text", {"content-type": "text/plain"}),
        (b'{"phone_number": "+14155550123"}', {"content-type": "application/json; charset=bogus"}),
        (b"", JSON),
        (b'{"phone_number": "\\ud800"}', JSON),
        (b"[" * 5000 + b"]" * 5000, JSON),
        (b'{"phone_number": 1e999999}', JSON),
    ],
)
def test_unparseable_bodies_are_422_not_500(client: TestClient, raw: bytes, headers: dict) -> None:
    response = client.post(BASE, content=raw, headers=headers)
    if b"charset=bogus" in headers.get("content-type", "").encode():
        assert response.status_code == 201  # the body is JSON whatever the label says
        return
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(("body:", "phone_number:"))


def test_an_undecodable_body_is_422(client: TestClient) -> None:
    response = client.post(BASE, content=b"\xff\xfe\x00{", headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body:")


def test_invalid_json_says_where(client: TestClient) -> None:
    response = client.post(BASE, content=b'{"phone_number": ', headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: is not valid JSON")


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/not-a-uuid/check",
        f"{BASE}/%00/check",
        f"{BASE}/{'9' * 5000}/check",
        f"{BASE}/..%2F..%2Fetc%2Fpasswd/check",
        f"{BASE}/{UNKNOWN_ID}/check?code=123456",
    ],
)
def test_bad_paths_are_4xx(client: TestClient, path: str) -> None:
    response = client.post(path, json={"code": "123456"})
    assert 400 <= response.status_code < 500


def test_malformed_ids_are_422(client: TestClient) -> None:
    response = client.post(f"{BASE}/not-a-uuid/check", json={"code": "123456"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("path.verification_id:")


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json", "content-length": "5"},
        {"content-type": "application/json\x7f"},
        {"accept": "*/*;q=bogus", "content-type": "application/json"},
        {"x-forwarded-for": "not an address", "content-type": "application/json"},
    ],
)
def test_odd_headers_do_not_break_the_api(client: TestClient, headers: dict) -> None:
    response = client.post(BASE, content=b'{"phone_number": "+14155550199"}', headers=headers)
    assert response.status_code < 500


@pytest.mark.parametrize("method, path", [("get", BASE), ("put", f"{BASE}/{UNKNOWN_ID}/check"), ("get", "/nope")])
def test_wrong_methods_and_paths_are_4xx(client: TestClient, method: str, path: str) -> None:
    assert getattr(client, method)(path).status_code in (404, 405)
