"""The Redis fixed-window rate limiter, on fakeredis."""

from __future__ import annotations

import fakeredis

from app.rate_limit import RateLimiter


def test_the_sixth_hit_in_the_window_is_refused(fake_redis: fakeredis.FakeRedis) -> None:
    limiter = RateLimiter(fake_redis, limit=5, window_seconds=600, prefix="t")
    decisions = [limiter.hit("+14155550123") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert 0 < decisions[5].retry_after_seconds <= 600


def test_the_window_key_always_expires(fake_redis: fakeredis.FakeRedis) -> None:
    limiter = RateLimiter(fake_redis, limit=5, window_seconds=60, prefix="t")
    limiter.hit("a")
    assert 0 < fake_redis.ttl(limiter.key("a")) <= 60


def test_subjects_are_counted_separately_and_can_be_reset(fake_redis: fakeredis.FakeRedis) -> None:
    limiter = RateLimiter(fake_redis, limit=1, window_seconds=60, prefix="t")
    assert limiter.hit("a").allowed
    assert not limiter.hit("a").allowed
    assert limiter.hit("b").allowed
    limiter.reset("a")
    assert limiter.hit("a").allowed


def test_a_key_without_ttl_gets_the_whole_window_as_retry_after(fake_redis: fakeredis.FakeRedis) -> None:
    limiter = RateLimiter(fake_redis, limit=5, window_seconds=60, prefix="t")
    fake_redis.set(limiter.key("a"), 10)  # e.g. written by hand without an expiry
    decision = limiter.hit("a")
    assert not decision.allowed
    assert decision.retry_after_seconds == 60
    assert fake_redis.ttl(limiter.key("a")) == 60


def test_keys_do_not_contain_the_phone_number(fake_redis: fakeredis.FakeRedis) -> None:
    limiter = RateLimiter(fake_redis, limit=5, window_seconds=60, prefix="t")
    limiter.hit("+14155550123")
    keys = list(fake_redis.scan_iter("*"))
    assert keys == [limiter.key("+14155550123")]
    assert "4155550123" not in keys[0] and keys[0].startswith("t:")
