"""Fixed-window rate limiting in Redis: at most `limit` hits per key per `window_seconds`.

Keys hold a hash of the subject (the phone number), never the number itself.
One MULTI/EXEC round trip creates the window key with its expiry if it is new,
increments it and reads its TTL, so concurrent requests cannot overshoot the limit
or leave a key without an expiry.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import redis


@dataclasses.dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after_seconds: int


class RateLimiter:
    """Counts hits per key under `prefix`; `hit` answers whether one more is allowed."""

    def __init__(self, client: "redis.Redis", limit: int, window_seconds: int, prefix: str = "ratelimit") -> None:
        self.client = client
        self.limit = limit
        self.window_seconds = window_seconds
        self.prefix = prefix

    def key(self, subject: str) -> str:
        """The Redis key for `subject`, hashed so phone numbers do not appear in Redis."""
        return f"{self.prefix}:{hashlib.sha256(subject.encode('utf-8')).hexdigest()[:32]}"

    def hit(self, subject: str) -> RateDecision:
        key = self.key(subject)
        pipe: Any = self.client.pipeline(transaction=True)
        pipe.set(key, 0, ex=self.window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
        count, ttl = int(count), int(ttl)
        if ttl < 0:  # a key left without an expiry (e.g. written by hand) would block forever
            self.client.expire(key, self.window_seconds)
            ttl = self.window_seconds
        retry_after = max(ttl, 1)
        if count > self.limit:
            return RateDecision(allowed=False, remaining=0, retry_after_seconds=retry_after)
        return RateDecision(allowed=True, remaining=self.limit - count, retry_after_seconds=0)

    def reset(self, subject: str) -> None:
        self.client.delete(self.key(subject))
