"""SMS delivery behind a small interface; no provider here sends a real message.

`LogSmsProvider` (the default, `SMS_PROVIDER=log`) writes one log line per message
with the phone number masked; it includes the code only outside production-like
environments. `RecordingSmsProvider` keeps messages in memory for tests.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import List, NamedTuple, Protocol

logger = logging.getLogger("app.sms")


class SmsDeliveryError(Exception):
    """The provider could not accept the message."""


class SmsProvider(Protocol):
    """Anything that can send a verification code; returns the provider's message id."""

    def send_code(self, phone_number: str, code: str) -> str: ...


class SentMessage(NamedTuple):
    phone_number: str
    code: str
    message_id: str


def mask_phone(phone_number: str) -> str:
    """`+14155550123` → `+1******0123`: country code prefix and last four digits only."""
    if len(phone_number) <= 6:
        return "*" * len(phone_number)
    return phone_number[:2] + "*" * (len(phone_number) - 6) + phone_number[-4:]


class LogSmsProvider:
    """Logs the message instead of sending it."""

    def __init__(self, reveal_code: bool = False) -> None:
        self.reveal_code = reveal_code

    def send_code(self, phone_number: str, code: str) -> str:
        message_id = f"log-{uuid.uuid4().hex}"
        if self.reveal_code:  # development/test only (APP_ENV): the developer needs the code
            logger.info(  # nosemgrep: verification-code-logged
                "SMS %s to %s: verification code %s", message_id, mask_phone(phone_number), code
            )
        else:
            logger.info("SMS %s to %s: verification code sent", message_id, mask_phone(phone_number))
        return message_id


class RecordingSmsProvider:
    """Keeps every message in `sent` (thread-safe); `fail=True` makes every send raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: List[SentMessage] = []
        self._lock = threading.Lock()

    def send_code(self, phone_number: str, code: str) -> str:
        if self.fail:
            raise SmsDeliveryError("recording provider set to fail")
        message_id = f"rec-{uuid.uuid4().hex}"
        with self._lock:
            self.sent.append(SentMessage(phone_number, code, message_id))
        return message_id

    def last_code_for(self, phone_number: str) -> str:
        with self._lock:
            for message in reversed(self.sent):
                if message.phone_number == phone_number:
                    return message.code
        raise LookupError(f"no message sent to {mask_phone(phone_number)}")


def make_provider(name: str, production_like: bool) -> SmsProvider:
    """The provider named by SMS_PROVIDER: `log` (default) or `recording`."""
    if name == "log":
        return LogSmsProvider(reveal_code=not production_like)
    if name == "recording":
        return RecordingSmsProvider()
    raise ValueError(f"SMS_PROVIDER must be 'log' or 'recording', got {name!r}")
