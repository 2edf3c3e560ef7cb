"""Request and response bodies of the verification API (pydantic v2).

Phone numbers must be E.164 (`+` then 2 to 15 digits, no leading zero); codes are
exactly six ASCII digits. Validation failures become 422 answers (see `app.errors`).
"""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
CODE = re.compile(r"[0-9]{6}")


class VerificationCreate(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    phone_number: str = Field(max_length=32, examples=["+14155550123"])

    @field_validator("phone_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not E164.fullmatch(value):
            raise ValueError("must be an E.164 phone number: '+', country code and number, e.g. +14155550123")
        return value


class VerificationCheck(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    code: str = Field(max_length=16, examples=["123456"])

    @field_validator("code")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if not CODE.fullmatch(value):
            raise ValueError("must be the 6-digit code from the SMS")
        return value


class VerificationOut(BaseModel):
    id: uuid.UUID
    status: str
    phone_number: str = Field(description="masked")
    expires_at: datetime.datetime
    attempts_remaining: int


class CheckResult(BaseModel):
    id: uuid.UUID
    status: str
    verified: bool
    attempts_remaining: int


class DependencyStatus(BaseModel):
    status: str
    latency_ms: Optional[float] = None
    error: Optional[str] = None


class HealthOut(BaseModel):
    status: str
    checks: Dict[str, str]
    failing: Optional[List[str]] = None


class DiagnosticsOut(BaseModel):
    service: str
    version: str
    commit: str
    environment: str
    uptime_seconds: float
    status: str
    dependencies: Dict[str, DependencyStatus]
