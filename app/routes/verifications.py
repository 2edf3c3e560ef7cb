"""The verification API: send a 6-digit code by SMS, then check it.

    POST /api/v1/verifications            {"phone_number": "+14155550123"}  → 201
    POST /api/v1/verifications/{id}/check {"code": "123456"}               → 200

Sending is rate-limited per phone number in Redis (429 with Retry-After). Checking
counts attempts under a row lock: 200 verified, 400 wrong code, 404 unknown id,
410 expired or already used, 429 once the attempts are spent.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Dict, Optional, Union

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from app import codes
from app.container import Container, get_container
from app.models import STATUS_LOCKED, STATUS_PENDING, STATUS_VERIFIED, Verification, utcnow
from app.schemas import CheckResult, Problem, ValidationProblem, VerificationCheck, VerificationCreate, VerificationOut
from app.sms import mask_phone

# what the error answers look like, in the OpenAPI schema (FastAPI's own 422 shape is not what app.errors sends)
INVALID: Dict[Union[int, str], Dict[str, Any]] = {422: {"model": ValidationProblem, "description": "Invalid request"}}
router = APIRouter(prefix="/api/v1/verifications", tags=["verifications"], responses=INVALID)


def _problems(*statuses: int) -> Dict[Union[int, str], Dict[str, Any]]:
    return {status: {"model": Problem} for status in statuses}


def _problem(status_code: int, detail: str, headers: Optional[Dict[str, str]] = None, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"detail": detail, **extra}, headers=headers)


def _remaining(container: Container, row: Verification) -> int:
    return max(container.settings.max_check_attempts - row.attempts, 0)


@router.post("", status_code=201, response_model=VerificationOut, responses=_problems(429, 502, 503))
def create_verification(
    body: VerificationCreate, response: Response, container: Container = Depends(get_container)
) -> Any:
    decision = container.limiter.hit(body.phone_number)
    if not decision.allowed:
        return _problem(
            429,
            "too many verification requests for this phone number; try again later",
            headers={"Retry-After": str(decision.retry_after_seconds)},
            retry_after_seconds=decision.retry_after_seconds,
        )
    settings = container.settings
    verification_id = uuid.uuid4()
    code = codes.generate_code()
    now = utcnow()
    row = Verification(
        id=verification_id,
        phone_number=body.phone_number,
        code_hash=codes.hash_code(code, str(verification_id), settings.secret_key),
        status=STATUS_PENDING,
        attempts=0,
        created_at=now,
        expires_at=now + datetime.timedelta(seconds=settings.code_ttl_seconds),
    )
    with container.sessions.begin() as session:
        session.add(row)
    message_id = container.sms.send_code(body.phone_number, code)
    with container.sessions.begin() as session:
        stored = session.get(Verification, verification_id)
        if stored is not None:
            stored.provider_message_id = message_id
    response.headers["Location"] = f"{router.prefix}/{verification_id}"
    return VerificationOut(
        id=verification_id,
        status=STATUS_PENDING,
        phone_number=mask_phone(body.phone_number),
        expires_at=row.expires_at,
        attempts_remaining=settings.max_check_attempts,
    )


@router.post(
    "/{verification_id}/check",
    response_model=CheckResult,
    responses=_problems(400, 404, 410, 429, 503),
)
def check_verification(
    body: VerificationCheck,
    verification_id: uuid.UUID = Path(description="the id returned when the code was sent"),
    container: Container = Depends(get_container),
) -> Any:
    settings = container.settings
    now = utcnow()
    with container.sessions.begin() as session:
        row = session.execute(
            select(Verification).where(Verification.id == verification_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            return _problem(404, "verification not found")
        if row.status == STATUS_VERIFIED:
            return _problem(410, "this verification was already used; request a new code")
        if row.is_expired(now):
            return _problem(410, "the code has expired; request a new one")
        if row.status == STATUS_LOCKED or row.attempts >= settings.max_check_attempts:
            return _problem(429, "too many wrong codes; request a new verification", attempts_remaining=0)
        row.attempts += 1
        if codes.check_code(body.code, row.code_hash, str(row.id), settings.secret_key):
            row.status = STATUS_VERIFIED
            row.verified_at = now
            return CheckResult(
                id=row.id, status=row.status, verified=True, attempts_remaining=_remaining(container, row)
            )
        remaining = _remaining(container, row)
        if remaining == 0:
            row.status = STATUS_LOCKED
    return _problem(400, "wrong code", attempts_remaining=remaining, verified=False)
