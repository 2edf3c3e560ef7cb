"""Web UI authentication: bcrypt htpasswd entries from the `admin_htpasswd` secret, or GitHub OAuth.

Buildbot's `HTPasswdAuth` compares the stored field with the typed password as
plain text, so a real `htpasswd -B` file never matches and a plain-text file
would store passwords in clear. `BcryptHTPasswdAuth` reads the same file format
through the secret providers (file or environment) on every login, accepts
only bcrypt entries (`$2a$`, `$2b$`, `$2y$`) and checks them with `bcrypt` in
a thread, so the reactor never blocks. GitHub OAuth replaces it when both the
`github_oauth_client_id` and `github_oauth_client_secret` secrets exist.

Failed logins are limited in the master's memory (`LoginLimiter`, one per
master, bounded): after `[www] login_max_failures` failures within `[www]
login_window_seconds` for a user name or from a client address, attempts get
HTTP 429 + Retry-After, unchecked, until the oldest leaves the window. An
attempt counts as failed until it succeeds (parallel guesses cannot slip
through); a success clears only that user's failures from that address. The
`base` change hook shares the counters. Logs never hold a password or hash.

`python -m namaskah_ci.access.auth FILE USER` adds or replaces USER in FILE (bcrypt,
mode 0600) for machines without `htpasswd` from apache2-utils.
"""

from __future__ import annotations

import base64
import binascii
import collections
import getpass
import math
import os
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

from buildbot.config.errors import error as config_error
from buildbot.plugins import util
from buildbot.www.auth import TwistedICredAuthBase
from buildbot.www.oauth2 import GitHubAuth
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.python import log
from twisted.web import resource
from twisted.web.guard import BasicCredentialFactory
from zope.interface import implementer

from namaskah_ci.names import ADMIN_HTPASSWD, GITHUB_OAUTH_CLIENT_ID, GITHUB_OAUTH_CLIENT_SECRET
from namaskah_ci.per_master import per_master
from namaskah_ci.settings import Settings

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# checked when the user is unknown, so a wrong name costs as long as a wrong password
_DUMMY_HASH = b"$2b$12$18FPunYvX4XcRtbcTu9XnObQSE2D4WJOvO//uJvRxMy0SKvQINgXe"


class HtpasswdError(ValueError):
    """The htpasswd text is unusable; the message names the line, never the hash."""


def parse_htpasswd(text: str) -> dict[str, bytes]:
    """`user:bcrypt-hash` lines (blank lines and `#` comments skipped) → {user: hash}."""
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise HtpasswdError(f"line {number}: expected user:hash")
        if not hashed.startswith(BCRYPT_PREFIXES):
            raise HtpasswdError(
                f"line {number} (user {user!r}): not a bcrypt hash; create entries with `htpasswd -B` "
                "or `python -m namaskah_ci.access.auth FILE USER` (plain, MD5, SHA and crypt entries are refused)"
            )
        if user in entries:
            raise HtpasswdError(f"line {number}: user {user!r} appears twice")
        entries[user] = hashed.encode("ascii", "replace")
    return entries


def htpasswd_problems(text: str) -> list[str]:
    """Empty when `text` is a usable bcrypt htpasswd file, else one message."""
    try:
        parse_htpasswd(text)
    except HtpasswdError as exc:
        return [str(exc)]
    return []


def _normalise(hashed: bytes) -> bytes:
    # Apache writes $2y$, which is the same algorithm as $2b$
    return b"$2b$" + hashed[4:] if hashed.startswith(b"$2y$") else hashed


def check_password(entries: dict[str, bytes], username: str, password: bytes) -> bool:
    """Blocking bcrypt check; unknown users and over-long passwords fail after the same work."""
    import bcrypt

    hashed = entries.get(username)
    try:
        matched = bcrypt.checkpw(password, _normalise(hashed or _DUMMY_HASH))
    except ValueError:  # over 72 bytes, or a damaged hash
        return False
    return bool(matched and hashed is not None)


@implementer(ICredentialsChecker)
class SecretHtpasswdChecker:
    """A Twisted credentials checker over a bcrypt htpasswd kept as a Buildbot secret."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, secret_name: str = ADMIN_HTPASSWD, master: Any = None):
        self.secret_name = secret_name
        self.master = master

    @defer.inlineCallbacks
    def load_entries(self) -> Generator[Any, Any, dict[str, bytes]]:
        details = None
        if self.master is not None:
            details = yield self.master.secrets_manager.get(self.secret_name)
        if details is None or not details.value:
            log.msg(f"login refused: the {self.secret_name} secret is not configured")
            return {}
        try:
            return parse_htpasswd(details.value)
        except HtpasswdError as exc:
            log.msg(f"login refused: the {self.secret_name} secret is unusable: {exc}")
            return {}

    @defer.inlineCallbacks
    def check(self, username: str, password: bytes) -> Generator[Any, Any, bool]:
        entries = yield self.load_entries()
        ok: bool = yield threads.deferToThread(check_password, entries, username, password)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        return ok

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials: Any) -> Generator[Any, Any, bytes]:
        username: str | bytes = credentials.username
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        password: str | bytes = credentials.password
        if isinstance(password, str):
            password = password.encode("utf-8")
        ok = yield self.check(username, password)
        if not ok:
            raise UnauthorizedLogin()
        return username.encode("utf-8")


DEFAULT_MAX_FAILURES = 5
DEFAULT_WINDOW_SECONDS = 600
MAX_TRACKED = 10_000  # users and addresses remembered at once; the least recently failed go first
_NAME_CHARS = 100  # of a user name, as a counter key and in the log
Key = tuple[str, str]  # ("user", name) or ("address", host)


class LoginLimiter:
    """Recent failed logins per user name and per client address (sliding window, bounded memory)."""

    def __init__(
        self,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_failures, self.window = max_failures, window_seconds
        self.max_tracked, self.clock = max_tracked, clock
        # ("user", name) / ("address", host) → failures, oldest first: (time, the other half of the pair)
        self._failures: collections.OrderedDict[Key, collections.deque[tuple[float, str]]] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0 and self.window > 0

    def configure(self, max_failures: int, window_seconds: int) -> None:
        if (max_failures, window_seconds) != (self.max_failures, self.window):
            self.max_failures, self.window = max_failures, window_seconds
            self._failures.clear()

    def _keys(self, user: str, address: str) -> tuple[Key, Key]:
        return ("user", user[:_NAME_CHARS]), ("address", address)

    def _recent(self, key: Key, now: float) -> collections.deque[tuple[float, str]]:
        failures = self._failures.get(key)
        if failures is None:
            return collections.deque()
        while failures and failures[0][0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, user: str, address: str) -> int:
        """Seconds until `user` may try again from `address` (0: now)."""
        if not self.enabled:
            return 0
        now = self.clock()
        waits = [0.0]
        for key in self._keys(user, address):
            failures = self._recent(key, now)
            if len(failures) >= self.max_failures:
                waits.append(failures[-self.max_failures][0] + self.window - now)
        return math.ceil(max(waits))

    def attempt(self, user: str, address: str) -> int:
        """0 and the attempt is counted as failed (until `succeeded`), or the seconds to wait (refused)."""
        wait = self.retry_after(user, address)
        if wait or not self.enabled:
            return wait
        now = self.clock()
        user_key, address_key = self._keys(user, address)
        for key, other in ((user_key, address), (address_key, user_key[1])):
            failures = self._failures.setdefault(key, collections.deque(maxlen=self.max_failures))
            failures.append((now, other))
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)
        return 0

    def succeeded(self, user: str, address: str) -> None:
        """Forget this user's failures from this address (nobody else's)."""
        user_key, address_key = self._keys(user, address)
        for key, other in ((user_key, address), (address_key, user_key[1])):
            kept = [entry for entry in self._failures.pop(key, ()) if entry[1] != other]
            if kept:
                self._failures[key] = collections.deque(kept, maxlen=self.max_failures)

    def failures(self, user: str, address: str) -> tuple[int, int]:
        """(recent failures of the user, recent failures from the address), for messages and tests."""
        now = self.clock()
        user_key, address_key = self._keys(user, address)
        return len(self._recent(user_key, now)), len(self._recent(address_key, now))

    def refusal(self, wait: int) -> str:
        at = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + wait))
        return f"too many failed logins for this user or from this address: try again in {wait} s (after {at})"


def login_limiter(master: Any, max_failures: int | None = None, window_seconds: int | None = None) -> LoginLimiter:
    """The master's limiter (created on first use; kept across reconfigs); new limits when given."""
    limiter = per_master(master, "login_limiter", lambda _: LoginLimiter())
    if max_failures is not None and window_seconds is not None:
        limiter.configure(max_failures, window_seconds)
    return limiter


def client_address(request: Any) -> str:
    """The TCP peer of a request (behind a reverse proxy: the proxy)."""
    return str(getattr(request.getClientAddress(), "host", None) or "unknown")


def basic_user(request: Any) -> str | None:
    """The user name of an HTTP basic Authorization header (the password is not looked at)."""
    header = request.getHeader(b"authorization") or b""
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip() + b"===")
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = decoded.partition(b":")
    return user.decode("utf-8", "replace") if sep else None


class LimitedLoginResource(resource.Resource):
    """`/auth/login` in front of Buildbot's basic-auth wrapper: 429 while the user or address is over the limit."""

    isLeaf = True

    def __init__(self, wrapped: Any, limiter: LoginLimiter):
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        self.wrapped, self.limiter = wrapped, limiter

    def render(self, request: Any) -> Any:
        user = basic_user(request)
        if user is None:
            return self.wrapped.render(request)
        address = client_address(request)
        wait = self.limiter.attempt(user, address)
        if wait:
            log.msg(f"login refused for user {user[:_NAME_CHARS]!r} from {address}: too many failures, {wait} s left")
            request.setResponseCode(429)
            request.setHeader(b"retry-after", str(wait).encode())
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return (self.limiter.refusal(wait) + "\n").encode()
        request.notifyFinish().addCallbacks(lambda _: self.finished(request, user, address), lambda _: None)
        return self.wrapped.render(request)

    def finished(self, request: Any, user: str, address: str) -> None:
        if request.code < 400:
            self.limiter.succeeded(user, address)
            return
        by_user, by_address = self.limiter.failures(user, address)
        log.msg(
            f"login failed for user {user[:_NAME_CHARS]!r} from {address} "
            f"({by_user} for the user, {by_address} from the address in {self.limiter.window} s)"
        )


class BcryptHTPasswdAuth(TwistedICredAuthBase):
    """HTTP basic login against the bcrypt htpasswd in the `admin_htpasswd` secret, rate-limited."""

    def __init__(
        self,
        secret_name: str = ADMIN_HTPASSWD,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        **kwargs: Any,
    ):
        self.checker = SecretHtpasswdChecker(secret_name)
        self.max_failures, self.window_seconds = max_failures, window_seconds
        self.limiter = LoginLimiter(max_failures, window_seconds)
        # no Digest: it needs the plain password on the server side
        factory = BasicCredentialFactory(b"Namaskah CI")  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        super().__init__([factory], [self.checker], **kwargs)

    def reconfigAuth(self, master: Any, new_config: Any) -> None:
        super().reconfigAuth(master, new_config)
        self.checker.master = master
        self.limiter = login_limiter(master, self.max_failures, self.window_seconds)

    def getLoginResource(self) -> Any:
        return LimitedLoginResource(super().getLoginResource(), self.limiter)

    def getConfigDict(self) -> dict[str, str]:
        return {"name": "HTPasswdAuth"}


def github_server_url(api_url: str) -> str | None:
    """GitHub Enterprise's server URL from its API URL (`https://host/api/v3`); None for github.com."""
    api_url = api_url.rstrip("/")
    if api_url.endswith("/api/v3"):
        return api_url[: -len("/api/v3")]
    return None


def make_auth(settings: Settings, has_secret: Callable[[str], bool]) -> Any:
    """GitHub OAuth when both its secrets exist (`has_secret(name)`), else the bcrypt htpasswd login."""
    if has_secret(GITHUB_OAUTH_CLIENT_ID) and has_secret(GITHUB_OAUTH_CLIENT_SECRET):
        if "admin" in settings.www.admins:
            # "admin" is the htpasswd default, and also somebody's GitHub login
            config_error(
                "[www] admins: GitHub login is on (github_oauth_client_id/secret secrets exist), so admins are "
                "GitHub logins: replace the default 'admin' with your admins' GitHub logins"
            )
        return GitHubAuth(
            util.Secret(GITHUB_OAUTH_CLIENT_ID),
            util.Secret(GITHUB_OAUTH_CLIENT_SECRET),
            serverURL=github_server_url(settings.github.api_url),
        )
    return BcryptHTPasswdAuth(
        max_failures=settings.www.login_max_failures, window_seconds=settings.www.login_window_seconds
    )


def add_user(path: str, username: str, password: str, rounds: int = 12) -> None:
    """Add or replace `username` in the htpasswd file at `path` (created with mode 0600)."""
    import bcrypt

    if not username or ":" in username or username != username.strip():
        raise HtpasswdError(f"invalid user name {username!r}")
    if not password or len(password.encode("utf-8")) > 72:
        raise HtpasswdError("the password must be 1 to 72 bytes long")
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")
    lines = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            lines = [ln for ln in handle.read().splitlines() if ln.partition(":")[0].strip() != username]
    lines.append(f"{username}:{hashed}")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)


def main(argv: list[str]) -> int:
    """`python -m namaskah_ci.access.auth FILE USER [--stdin]`: set USER's password in FILE."""
    args = [a for a in argv if a != "--stdin"]
    if len(args) != 2:
        print("usage: python -m namaskah_ci.access.auth FILE USER [--stdin]", file=sys.stderr)
        return 2
    if "--stdin" in argv:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args[1]}: ")
        if password != getpass.getpass("again: "):
            print("passwords differ", file=sys.stderr)
            return 1
    try:
        add_user(args[0], args[1], password)
    except HtpasswdError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args[1]} set in {args[0]} (bcrypt, mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
