"""Web UI authentication: bcrypt htpasswd entries from the `admin_htpasswd` secret, or GitHub OAuth.

Buildbot's `HTPasswdAuth` compares the stored field with the typed password as
plain text, so a real `htpasswd -B` file never matches and a plain-text file
would store passwords in clear. `BcryptHTPasswdAuth` reads the same file format
through the secret providers (file or environment) on every login, accepts
only bcrypt entries (`$2a$`, `$2b$`, `$2y$`) and checks them with `bcrypt` in
a thread, so the reactor never blocks. GitHub OAuth replaces it when both the
`github_oauth_client_id` and `github_oauth_client_secret` secrets exist.

`python -m namaskah_ci.auth FILE USER` adds or replaces USER in FILE (bcrypt,
mode 0600) for machines without `htpasswd` from apache2-utils.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.python import log
from twisted.web.guard import BasicCredentialFactory
from zope.interface import implementer

from buildbot.config.errors import error as config_error
from buildbot.plugins import util
from buildbot.www.auth import TwistedICredAuthBase
from buildbot.www.oauth2 import GitHubAuth

from namaskah_ci import names

ADMIN_HTPASSWD = names.ADMIN_HTPASSWD
GITHUB_OAUTH_CLIENT_ID = names.GITHUB_OAUTH_CLIENT_ID
GITHUB_OAUTH_CLIENT_SECRET = names.GITHUB_OAUTH_CLIENT_SECRET
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
                "or `python -m namaskah_ci.auth FILE USER` (plain, MD5, SHA and crypt entries are refused)"
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

    credentialInterfaces = [IUsernamePassword]

    def __init__(self, secret_name: str = ADMIN_HTPASSWD, master: Any = None):
        self.secret_name = secret_name
        self.master = master

    @defer.inlineCallbacks
    def load_entries(self):
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
    def check(self, username: str, password: bytes):
        entries = yield self.load_entries()
        ok = yield threads.deferToThread(check_password, entries, username, password)
        return ok

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials):
        username = credentials.username
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        password = credentials.password
        if isinstance(password, str):
            password = password.encode("utf-8")
        ok = yield self.check(username, password)
        if not ok:
            raise UnauthorizedLogin()
        return username.encode("utf-8")


class BcryptHTPasswdAuth(TwistedICredAuthBase):
    """HTTP basic login against the bcrypt htpasswd in the `admin_htpasswd` secret."""

    def __init__(self, secret_name: str = ADMIN_HTPASSWD, **kwargs: Any):
        self.checker = SecretHtpasswdChecker(secret_name)
        # no Digest: it needs the plain password on the server side
        super().__init__([BasicCredentialFactory(b"Namaskah CI")], [self.checker], **kwargs)

    def reconfigAuth(self, master: Any, new_config: Any) -> None:
        super().reconfigAuth(master, new_config)
        self.checker.master = master

    def getConfigDict(self) -> dict[str, str]:
        return {"name": "HTPasswdAuth"}


def github_server_url(api_url: str) -> str | None:
    """GitHub Enterprise's server URL from its API URL (`https://host/api/v3`); None for github.com."""
    api_url = api_url.rstrip("/")
    if api_url.endswith("/api/v3"):
        return api_url[: -len("/api/v3")]
    return None


def make_auth(settings: Any, has_secret) -> Any:
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
    return BcryptHTPasswdAuth()


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
    """`python -m namaskah_ci.auth FILE USER [--stdin]`: set USER's password in FILE."""
    args = [a for a in argv if a != "--stdin"]
    if len(args) != 2:
        print("usage: python -m namaskah_ci.auth FILE USER [--stdin]", file=sys.stderr)
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
