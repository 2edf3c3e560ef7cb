"""GitHub webhook payloads: signature check, the documented field types, and what an event says.

Everything here is pure: `verify_signature` (HMAC-SHA256 `X-Hub-Signature-256`,
else SHA-1 `X-Hub-Signature`, constant-time), `validate_push` /
`validate_pull_request` (a field of the wrong type is a `PayloadError`, so the
hook answers 400 and never the stock handler's 500), and `PullRequest`, the
parts of a `pull_request` event the master uses. This module imports no Buildbot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any


class PayloadError(ValueError):
    """The request is refused; the change hook answers 400 with this message."""


def _require(value: Any, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    if value is None and optional:
        return value
    if isinstance(value, bool) and kind in (int, (int, float)):
        raise PayloadError(f"malformed payload: {where} must be {getattr(kind, '__name__', kind)}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PayloadError(f"malformed payload: {where} must be {name}")
    return value


def _person(value: Any, where: str) -> None:
    _require(value, dict, where)
    for key in ("name", "email"):
        _require(value.get(key), str, f"{where}.{key}")


def _commit(value: Any, where: str) -> None:
    from dateutil.parser import parse as parse_date

    _require(value, dict, where)
    for key in ("id", "message", "timestamp", "url"):
        _require(value.get(key), str, f"{where}.{key}")
    try:
        parse_date(value["timestamp"])
    except (ValueError, OverflowError):
        raise PayloadError(f"malformed payload: {where}.timestamp is not a date") from None
    _person(value.get("author"), f"{where}.author")
    _person(value.get("committer"), f"{where}.committer")
    for kind in ("added", "modified", "removed"):
        files = _require(value.get(kind, []), list, f"{where}.{kind}")
        for name in files:
            _require(name, str, f"{where}.{kind}[]")
    _require(value.get("distinct", True), bool, f"{where}.distinct")


def _repository(value: Any) -> None:
    _require(value, dict, "repository")
    for key in ("name", "full_name", "html_url"):
        _require(value.get(key), str, f"repository.{key}")


def validate_push(payload: dict[str, Any]) -> None:
    """Raise PayloadError unless `payload` is a push event the GitHub handler can process."""
    _require(payload.get("ref"), str, "ref")
    _repository(payload.get("repository"))
    deleted = _require(payload.get("deleted", False), bool, "deleted")
    _require(payload.get("created", False), bool, "created")
    commits = _require(payload.get("commits", []), list, "commits")
    for index, commit in enumerate(commits):
        _commit(commit, f"commits[{index}]")
    head = payload.get("head_commit")
    if not deleted:
        _commit(head, "head_commit")


def validate_pull_request(payload: dict[str, Any]) -> None:
    _require(payload.get("number"), int, "number")
    _require(payload.get("action"), str, "action")
    _repository(payload.get("repository"))
    pull = _require(payload.get("pull_request"), dict, "pull_request")
    for key in ("title", "created_at"):
        _require(pull.get(key), str, f"pull_request.{key}")
    _require(pull.get("body"), str, "pull_request.body", optional=True)
    _require(pull.get("commits"), int, "pull_request.commits")
    head = _require(pull.get("head"), dict, "pull_request.head")
    _require(head.get("sha"), str, "pull_request.head.sha")
    _require(head.get("ref"), str, "pull_request.head.ref")
    head_repo = _require(head.get("repo"), dict, "pull_request.head.repo", optional=True)  # null: fork deleted
    if head_repo is not None:
        _require(head_repo.get("full_name"), str, "head.repo.full_name")
    base = _require(pull.get("base"), dict, "pull_request.base")
    _require(base.get("ref"), str, "pull_request.base.ref")
    _require(_require(base.get("repo"), dict, "pull_request.base.repo").get("full_name"), str, "base.repo.full_name")
    links = _require(pull.get("_links"), dict, "pull_request._links")
    _require(_require(links.get("html"), dict, "pull_request._links.html").get("href"), str, "_links.html.href")
    _require(_require(payload.get("sender"), dict, "sender").get("login"), str, "sender.login")


def verify_signature(secret: str, body: bytes, sha256_header: str | None, sha1_header: str | None) -> None:
    """Raise PayloadError unless a signature header is present and matches `body`."""
    if sha256_header:
        header, digestmod, algorithm = sha256_header, hashlib.sha256, "sha256"
    elif sha1_header:
        header, digestmod, algorithm = sha1_header, hashlib.sha1, "sha1"
    else:
        raise PayloadError("request has no signature (X-Hub-Signature-256)")
    kind, _, received = header.partition("=")
    if kind != algorithm or not received:
        raise PayloadError("signature header is malformed")
    expected = hmac.new(secret.encode("utf-8"), body, digestmod).hexdigest()
    if not hmac.compare_digest(expected, received.strip().lower()):
        raise PayloadError("signature mismatch")


@dataclasses.dataclass(frozen=True)
class PullRequest:
    """What the master uses of a validated `pull_request` event."""

    number: int
    action: str
    head_sha: str
    head_ref: str
    head_repo: str  # "" when the fork was deleted
    base_ref: str
    base_repo: str
    title: str
    url: str
    sender: str

    @property
    def fork(self) -> bool:
        """A head from another repository (or a deleted one) is untrusted."""
        return self.head_repo != self.base_repo

    @property
    def merge_ref(self) -> str:
        return f"refs/pull/{self.number}/merge"

    @property
    def head_ref_name(self) -> str:
        return f"refs/pull/{self.number}/head"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> PullRequest:
        validate_pull_request(payload)
        if payload["number"] < 1:
            raise PayloadError("malformed payload: number must be a pull request number (1 or more)")
        pull = payload["pull_request"]
        head_repo = pull["head"].get("repo") or {}
        return cls(
            number=payload["number"],
            action=payload["action"],
            head_sha=pull["head"]["sha"],
            head_ref=pull["head"]["ref"],
            head_repo=head_repo.get("full_name", ""),
            base_ref=pull["base"]["ref"],
            base_repo=pull["base"]["repo"]["full_name"],
            title=pull["title"],
            url=pull["_links"]["html"]["href"],
            sender=payload["sender"]["login"],
        )
