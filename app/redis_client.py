"""The Redis client, built on demand with bounded socket timeouts (no connection at import)."""

from __future__ import annotations

import redis


def make_redis(url: str, timeout_seconds: int = 3) -> "redis.Redis":
    """A client for `url` (`redis://` or `rediss://`); it connects on first command."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        health_check_interval=30,
        decode_responses=True,
    )


def ping(client: "redis.Redis") -> None:
    """Raise if Redis does not answer PING."""
    if not client.ping():
        raise redis.ConnectionError("PING was not answered")
