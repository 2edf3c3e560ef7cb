"""Exception handlers: every failure becomes a JSON answer with a clear status, never a bare 500.

- invalid input → 422 `{"detail": "<field>: <problem>; ...", "errors": [...]}` (the
  rejected values are not echoed back, so a code or phone number cannot leak into logs)
- PostgreSQL or Redis unreachable → 503 naming the dependency
- SMS provider refused the message → 502
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List

import redis
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.sms import SmsDeliveryError

logger = logging.getLogger("app.errors")
BODY_PARSE_ERROR = "There was an error parsing the body"


def _location(loc: Any) -> str:
    parts = [str(part) for part in loc] if isinstance(loc, (list, tuple)) else [str(loc)]
    if parts[:1] == ["body"] and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _describe(error: Dict[str, Any]) -> Dict[str, str]:
    kind = str(error.get("type", "invalid"))
    loc = error.get("loc", ())
    message = str(error.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    field = _location(loc)
    if kind == "json_invalid":
        position = loc[-1] if isinstance(loc, (list, tuple)) and loc else "?"
        field, message = "body", f"is not valid JSON (error at position {position})"
    elif kind == "model_attributes_type" or (kind == "missing" and field == "body"):
        field, message = "body", "must be a JSON object"
    return {"field": field, "message": message, "type": kind}


def describe_validation_errors(errors: Any) -> List[Dict[str, str]]:
    """Pydantic/FastAPI error dicts reduced to field, message and type (never the rejected input)."""
    return [_describe(error) for error in errors if isinstance(error, dict)]


def _unprocessable(errors: List[Dict[str, str]]) -> JSONResponse:
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in errors) or "invalid request"
    return JSONResponse(status_code=422, content={"detail": summary, "errors": errors})


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    return _unprocessable(describe_validation_errors(exc.errors() if isinstance(exc, RequestValidationError) else []))


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI answers 400 to a body it cannot decode (e.g. not UTF-8): make that a 422 like other bad input."""
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
        return _unprocessable([{"field": "body", "message": "is not valid UTF-8 JSON", "type": "json_invalid"}])
    return await http_exception_handler(request, exc)


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("database error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(status_code=503, content={"detail": "database unavailable", "dependency": "database"})


async def redis_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("redis error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(status_code=503, content={"detail": "redis unavailable", "dependency": "redis"})


async def sms_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("sms delivery failed on %s: %s", request.url.path, exc)
    return JSONResponse(status_code=502, content={"detail": "the SMS could not be sent; try again later"})


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(redis.RedisError, redis_error)
    app.add_exception_handler(SmsDeliveryError, sms_error)
