"""The application's long-lived objects, built when the app starts and closed when it stops.

`Container.from_settings` creates the database engine, the Redis client, the SMS
provider and the rate limiter without connecting to anything; routes reach the
container through `get_container` (a FastAPI dependency). Tests build a container
from fakes (SQLite, fakeredis, a recording SMS provider) instead.
"""

from __future__ import annotations

import dataclasses
import time

from fastapi import Request
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import db, redis_client
from app.config import Settings
from app.rate_limit import RateLimiter
from app.sms import SmsProvider, make_provider


@dataclasses.dataclass
class Container:
    settings: Settings
    engine: Engine
    sessions: "sessionmaker[Session]"
    redis: "Redis"
    sms: SmsProvider
    limiter: RateLimiter
    started: float = dataclasses.field(default_factory=time.monotonic)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Container":
        engine = db.make_engine(settings.database_url, settings.dependency_timeout_seconds)
        client = redis_client.make_redis(settings.redis_url, settings.dependency_timeout_seconds)
        return cls.assemble(settings, engine, client, make_provider(settings.sms_provider, settings.production_like))

    @classmethod
    def assemble(cls, settings: Settings, engine: Engine, client: "Redis", sms: SmsProvider) -> "Container":
        limiter = RateLimiter(
            client,
            limit=settings.rate_limit_count,
            window_seconds=settings.rate_limit_window_seconds,
            prefix="ratelimit:verifications",
        )
        return cls(settings, engine, db.make_sessionmaker(engine), client, sms, limiter)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container
