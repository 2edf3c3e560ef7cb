"""Failed-login limits (namaskah_ci/access/auth.py): per user and per client address in a sliding window,
refused without checking the password, a success clearing only its own pair, bounded memory, and
`/auth/login` answering 429 with Retry-After, logging no password.
"""

from __future__ import annotations

import base64
from typing import cast

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress
from twisted.python import log
from twisted.web.test.requesthelper import DummyRequest

from namaskah_ci.access import auth
from namaskah_ci.settings import load_settings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def limiter(clock):
    return auth.LoginLimiter(max_failures=5, window_seconds=600, clock=clock)


def fail(limiter, user, address, times=1):
    for _ in range(times):
        assert limiter.attempt(user, address) == 0  # allowed, counted as failed until it succeeds


def test_five_failures_for_a_user_refuse_the_sixth_until_the_window_passes(limiter, clock):
    for _ in range(5):
        fail(limiter, "admin", "10.0.0.1")
        clock.now += 10
    assert limiter.attempt("admin", "10.0.0.1") == 600 - 50  # the first failure leaves the window then
    assert limiter.retry_after("admin", "10.0.0.9") == 550, "the user is limited from any address"
    clock.now += 549
    assert limiter.retry_after("admin", "10.0.0.1") == 1
    clock.now += 1
    assert limiter.attempt("admin", "10.0.0.1") == 0
    # sliding: the second-oldest failure now decides
    assert limiter.retry_after("admin", "10.0.0.1") == 10


def test_an_address_is_limited_whatever_the_user(limiter):
    for user in ("a", "b", "c", "d", "e"):
        fail(limiter, user, "10.0.0.2")
    assert limiter.attempt("f", "10.0.0.2") > 0
    assert limiter.attempt("f", "10.0.0.3") == 0, "another address with a fresh user is not affected"


def test_a_user_is_limited_from_every_address(limiter):
    for n in range(5):
        fail(limiter, "admin", f"10.0.1.{n}")
    assert limiter.attempt("admin", "10.0.1.99") > 0
    assert limiter.attempt("dev", "10.0.1.99") == 0


def test_a_success_clears_only_its_own_user_and_address(limiter):
    fail(limiter, "admin", "10.0.0.1", times=3)
    fail(limiter, "admin", "10.0.0.2", times=2)
    fail(limiter, "dev", "10.0.0.1", times=2)
    assert limiter.failures("admin", "10.0.0.1") == (5, 5)
    assert limiter.attempt("admin", "10.0.0.1") > 0
    limiter.succeeded("admin", "10.0.0.2")  # e.g. the real admin, elsewhere
    assert limiter.failures("admin", "10.0.0.2") == (3, 0), "10.0.0.1's failures for admin stay"
    assert limiter.failures("dev", "10.0.0.1") == (2, 5)
    limiter.succeeded("admin", "10.0.0.1")
    assert limiter.failures("admin", "10.0.0.1") == (0, 2), "dev's failures from 10.0.0.1 stay"


def test_attempts_in_flight_count_so_parallel_guesses_cannot_slip_through(limiter):
    allowed = [limiter.attempt("admin", "10.0.0.7") for _ in range(20)]
    assert allowed.count(0) == 5


def test_memory_is_bounded(clock):
    limiter = auth.LoginLimiter(max_failures=5, window_seconds=600, max_tracked=50, clock=clock)
    for n in range(1000):
        limiter.attempt("u" * 5000 + str(n), f"10.1.{n // 256}.{n % 256}")
    assert len(limiter._failures) <= 50
    assert all(len(key[1]) <= 100 for key in limiter._failures)


def test_zero_turns_the_limit_off(clock):
    for limits in ((0, 600), (5, 0)):
        limiter = auth.LoginLimiter(*limits, clock=clock)
        assert all(limiter.attempt("admin", "10.0.0.1") == 0 for _ in range(50))


def test_the_refusal_says_when_to_retry(limiter):
    message = limiter.refusal(125)
    assert "try again in 125 s" in message and "UTC" in message


def test_one_limiter_per_master_kept_across_reconfigs():
    class Master:
        pass

    master = Master()
    first = auth.login_limiter(master, 5, 600)
    first.attempt("admin", "10.0.0.1")
    assert auth.login_limiter(master, 5, 600) is first and first.failures("admin", "10.0.0.1") == (1, 1)
    assert auth.login_limiter(master) is first
    assert auth.login_limiter(Master()) is not first
    auth.login_limiter(master, 3, 60)
    assert (first.max_failures, first.window) == (3, 60)


def test_the_settings_carry_the_limits_to_the_login(tmp_path):
    settings = load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path / "m"), "PIPELINE_SECRETS_DIR": str(tmp_path)})
    assert (settings.www.login_max_failures, settings.www.login_window_seconds) == (5, 600)
    login = auth.make_auth(settings, lambda name: False)
    assert (login.max_failures, login.window_seconds) == (5, 600)
    tight = load_settings(
        {
            "PIPELINE_MASTER_BASEDIR": str(tmp_path / "m"),
            "PIPELINE_SECRETS_DIR": str(tmp_path),
            "PIPELINE_WWW_LOGIN_MAX_FAILURES": "2",
            "PIPELINE_WWW_LOGIN_WINDOW_SECONDS": "30",
        }
    )
    assert auth.make_auth(tight, lambda name: False).limiter.max_failures == 2


# --- /auth/login --------------------------------------------------------------------------------


class Request(DummyRequest):
    code = 200

    def __init__(self, authorization: bytes | None, host: str):
        super().__init__([])
        if authorization is not None:
            self.requestHeaders.setRawHeaders(b"authorization", [authorization])
        self.client = cast(IAddress, IPv4Address("TCP", host, 40000))  # it provides IAddress (zope, unseen by mypy)

    def setResponseCode(self, code, message=None):
        super().setResponseCode(code, message)
        self.code = code


class PasswordCheck:
    """Stands in for Buildbot's basic-auth wrapper: 302 for the right password, else 401."""

    def __init__(self, password: bytes):
        self.password = password
        self.checked = 0

    def render(self, request):
        self.checked += 1
        given = base64.b64decode(request.getHeader(b"authorization").split(b" ", 1)[1]).partition(b":")[2]
        request.setResponseCode(302 if given == self.password else 401)
        request.finish()
        return b""


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def render(resource, authorization, host="10.0.0.1") -> Request:
    request = Request(authorization, host)
    body = resource.render(request)
    if isinstance(body, bytes) and body:
        request.write(body)
    return request


@pytest.fixture
def messages():
    seen: list[str] = []

    def observer(event):
        seen.append(" ".join(str(part) for part in event.get("message", ())) or str(event.get("format", "")))

    log.addObserver(observer)
    yield seen
    log.removeObserver(observer)


def test_login_answers_429_without_checking_the_password(limiter, clock, messages):
    check = PasswordCheck(b"right-pw-123")
    login = auth.LimitedLoginResource(check, limiter)
    for n in range(5):
        assert render(login, basic("admin", f"wrong-pw-{n}")).code == 401
    request = render(login, basic("admin", "right-pw-123"))
    assert request.code == 429 and check.checked == 5, "refused before the password is looked at"
    assert request.responseHeaders.getRawHeaders(b"retry-after") == [b"600"]
    assert b"try again in 600 s" in b"".join(request.written)
    assert render(login, basic("admin", "right-pw-123"), host="10.0.0.2").code == 429, "the user is limited"
    assert render(login, basic("dev", "x"), host="10.0.0.1").code == 429, "so is the address"
    clock.now += 600
    assert render(login, basic("admin", "right-pw-123")).code == 302
    text = "\n".join(messages)
    assert "login failed for user 'admin' from 10.0.0.1" in text and "login refused for user 'admin'" in text
    assert "wrong-pw" not in text and "right-pw" not in text


def test_a_good_login_elsewhere_keeps_the_other_address_limited(limiter):
    check = PasswordCheck(b"pw")
    login = auth.LimitedLoginResource(check, limiter)
    for _ in range(4):
        render(login, basic("admin", "guess"), host="10.9.9.9")
    assert render(login, basic("admin", "pw"), host="10.0.0.1").code == 302
    render(login, basic("admin", "guess"), host="10.9.9.9")
    assert render(login, basic("admin", "guess"), host="10.9.9.9").code == 429


def test_requests_without_basic_credentials_go_straight_through(limiter):
    calls = []

    class Challenge:
        def render(self, request):
            calls.append(request)
            request.setResponseCode(401)
            return b""

    login = auth.LimitedLoginResource(Challenge(), limiter)
    for header in (None, b"Bearer abc", b"Basic %%%not-base64", b"Basic " + base64.b64encode(b"no-colon")):
        for _ in range(10):
            assert render(login, header).code == 401
    assert len(calls) == 40 and not limiter._failures


def test_basic_user_reads_only_the_name():
    assert auth.basic_user(Request(basic("priya", "p:w"), "10.0.0.1")) == "priya"
    assert auth.basic_user(Request(None, "10.0.0.1")) is None
