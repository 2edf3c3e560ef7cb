"""Request and response bodies of the verification API (pydantic v2), as its OpenAPI schema declares them.

Phone numbers must be E.164 (`+` then 2 to 15 digits, no leading zero); codes are
exactly six ASCII digits; spaces, tabs and line breaks around either are ignored.
The validators enforce exactly the `pattern` the schema declares (`PHONE_PATTERN`,
`CODE_PATTERN`), so a client generated from the schema and the service agree on
every value. Validation failures become 422 answers shaped as `ValidationProblem`
(see `app.errors`); every other error answer is a `Problem`.
"""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Dict, List, Optional

from pydantic import BaseModel, Field, field_validator

# The characters ignored around a phone number or code (str.strip() would take more than a schema's regex
# engine calls whitespace, and the two must agree).
BLANKS = " \t\n\r"
PHONE_PATTERN = r"^[ \t\n\r]*\+[1-9][0-9]{1,14}[ \t\n\r]*$"
CODE_PATTERN = r"^[ \t\n\r]*[0-9]{6}[ \t\n\r]*$"
E164 = re.compile(PHONE_PATTERN)
CODE = re.compile(CODE_PATTERN)


class VerificationCreate(BaseModel):
    phone_number: str = Field(
        max_length=32,
        examples=["+14155550123"],
        description="E.164: '+', country code and number (2 to 15 digits, no leading zero)",
        json_schema_extra={"pattern": PHONE_PATTERN},
    )

    @field_validator("phone_number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not E164.fullmatch(value):
            raise ValueError("must be an E.164 phone number: '+', country code and number, e.g. +14155550123")
        return value.strip(BLANKS)


class VerificationCheck(BaseModel):
    code: str = Field(
        max_length=16,
        examples=["123456"],
        description="the 6-digit code from the SMS",
        json_schema_extra={"pattern": CODE_PATTERN},
    )

    @field_validator("code")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if not CODE.fullmatch(value):
            raise ValueError("must be the 6-digit code from the SMS")
        return value.strip(BLANKS)


class FieldProblem(BaseModel):
    field: str = Field(description="the rejected field, e.g. phone_number, code, path.verification_id or body")
    message: str
    type: str = Field(description="the kind of problem (pydantic's error type)")


class ValidationProblem(BaseModel):
    """A 422 answer: every problem of the request (the rejected values are never echoed back)."""

    detail: str = Field(description="every problem as 'field: message', joined by '; '")
    errors: List[FieldProblem]


class Problem(BaseModel):
    """Any other error answer: what went wrong, and what the client can do next."""

    detail: str
    attempts_remaining: Optional[int] = None
    verified: Optional[bool] = None
    retry_after_seconds: Optional[int] = None
    dependency: Optional[str] = None


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
