"""Verification codes (generation, hashing, constant-time check) and the SMS providers."""

from __future__ import annotations

import logging

import pytest

from app import codes
from app.sms import LogSmsProvider, RecordingSmsProvider, SmsDeliveryError, make_provider, mask_phone


def test_codes_are_six_digits_and_vary() -> None:
    generated = {codes.generate_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in generated)
    assert len(generated) > 150


def test_the_hash_hides_the_code_and_checks_it() -> None:
    stored = codes.hash_code("123456", "id-1", "pepper")
    assert "123456" not in stored
    assert stored.startswith("v1$")
    assert codes.check_code("123456", stored, "id-1", "pepper")
    assert not codes.check_code("123457", stored, "id-1", "pepper")
    assert not codes.check_code("123456", stored, "id-2", "pepper")
    assert not codes.check_code("123456", stored, "id-1", "other pepper")


def test_the_same_code_hashes_differently_each_time() -> None:
    assert codes.hash_code("000000", "id") != codes.hash_code("000000", "id")


@pytest.mark.parametrize("stored", ["", "v1", "v2$00$ab", "v1$zz$abcd", "v1$00$"])
def test_malformed_hashes_never_match(stored: str) -> None:
    assert not codes.check_code("123456", stored, "id")


@pytest.mark.parametrize(
    "phone, masked", [("+14155550123", "+1******0123"), ("+447700900123", "+4*******0123"), ("+123", "****")]
)
def test_phone_numbers_are_masked(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_log_provider_hides_the_code_in_production(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.sms")
    message_id = make_provider("log", production_like=True).send_code("+14155550123", "654321")
    assert message_id.startswith("log-")
    assert "654321" not in caplog.text
    assert "+14155550123" not in caplog.text
    assert "+1******0123" in caplog.text


def test_log_provider_shows_the_code_in_development(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.sms")
    LogSmsProvider(reveal_code=True).send_code("+14155550123", "654321")
    assert "654321" in caplog.text
    assert "+14155550123" not in caplog.text


def test_recording_provider_keeps_messages_and_can_fail() -> None:
    provider = make_provider("recording", production_like=True)
    assert isinstance(provider, RecordingSmsProvider)
    provider.send_code("+14155550123", "111111")
    provider.send_code("+14155550123", "222222")
    assert provider.last_code_for("+14155550123") == "222222"
    with pytest.raises(LookupError):
        provider.last_code_for("+19999999999")
    with pytest.raises(SmsDeliveryError):
        RecordingSmsProvider(fail=True).send_code("+14155550123", "1")


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="SMS_PROVIDER"):
        make_provider("twilio", production_like=True)
