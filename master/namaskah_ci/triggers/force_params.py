"""Force-form fields that refuse bad input before anything is queued.

Every ForceScheduler field a person types into (`schedulers._force`, the deploy
and rollback forms in `builders/deploy.py`) is one of these. A refused value raises
Buildbot's `ValidationError`, so the REST call answers 400 with one line
naming the field, and no build request is created:

- `RevisionParameter`: a commit id, 7 to 40 hexadecimal characters (stored in
  lower case), or empty where the form allows "the newest".
- `BranchParameter`: git's ref-name rules (no spaces, `..`, `@{`, control
  characters, `~^:?*[\\`, leading `-` or `/`, `.lock` components), at most 200
  characters, and no shell metacharacters (`` ` $ ; | & < > ( ) ' " ! ``).
- `ReasonParameter`: at most 500 characters, no control characters.

A well-formed revision or branch the repository does not have is accepted
here; the build's first step then fails saying so ("revision … is not in the
repository", "cannot fetch branch …", `pipeline/source.py`). Values are
checked in `parse_from_arg` rather than with Buildbot's `regex`/`maxsize`,
whose messages echo the whole value back and which fail on non-text JSON
values (a 500).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from buildbot.plugins import util
from buildbot.schedulers.forcesched import ValidationError

from namaskah_ci import names

REVISION_MIN, REVISION_MAX = 7, 40
BRANCH_MAX = 200
REASON_MAX = 500
_HEX = re.compile(r"[0-9a-fA-F]+")
# git check-ref-format forbids these anywhere in a ref name
_GIT_FORBIDDEN = " ~^:?*[\\"
# harmless to git, but never in a branch anyone means to build
_SHELL_META = "`$;|&<>()'\"!"
_SHOWN = 40  # at most this much of a refused value is quoted back


def _shown(value: str) -> str:
    text = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
    return repr(text)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{name}: must be text, got {type(value).__name__}")
    return value


def _control_character(value: str) -> str | None:
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return char
    return None


def revision_problem(value: str, allow_empty: bool = True) -> str | None:
    """Why `value` is not a commit id (None when it is one, or empty and allowed)."""
    if not value:
        return None if allow_empty else "is required (a commit id)"
    if len(value) > REVISION_MAX:
        return f"must be {REVISION_MIN} to {REVISION_MAX} hexadecimal characters (a commit id), got {len(value)}"
    if len(value) < REVISION_MIN or not _HEX.fullmatch(value):
        return f"must be {REVISION_MIN} to {REVISION_MAX} hexadecimal characters (a commit id), got {_shown(value)}"
    return None


def branch_problem(value: str) -> str | None:
    """Why `value` is not a branch name we build (None when it is one)."""
    if not value:
        return "is required"
    if len(value) > BRANCH_MAX:
        return f"must be at most {BRANCH_MAX} characters, got {len(value)}"
    control = _control_character(value)
    if control is not None:
        return f"must not contain control characters (found {control!r})"
    for char in _GIT_FORBIDDEN + _SHELL_META:
        if char in value:
            what = "spaces" if char == " " else repr(char)
            return f"must not contain {what}: {_shown(value)} is not a branch name"
    if value.startswith("-"):
        return f"must not start with '-': {_shown(value)}"
    if ".." in value or "@{" in value or value == "@":
        return f"must not contain '..' or '@{{' or be '@': {_shown(value)}"
    if value.startswith("/") or value.endswith("/") or "//" in value or value.endswith("."):
        return f"must not start or end with '/', contain '//' or end with '.': {_shown(value)}"
    for part in value.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return f"no part may start with '.' or end with '.lock': {_shown(value)}"
    return None


def reason_problem(value: str) -> str | None:
    """Why `value` is not a reason we record (None when it is one)."""
    if len(value) > REASON_MAX:
        return f"must be at most {REASON_MAX} characters, got {len(value)}"
    control = _control_character(value)
    if control is not None:
        return f"must be one line without control characters (found {control!r})"
    return None


class _Checked(util.StringParameter):
    debug = False  # a refused value is the caller's mistake: no traceback in the master's log


class RevisionParameter(_Checked):
    """A commit id, or empty (the newest) unless `required`."""

    def parse_from_arg(self, s: Any) -> str:
        value = _text(self.name, s).strip()
        problem = revision_problem(value, allow_empty=not self.required)
        if problem:
            raise ValidationError(f"{self.name}: {problem}")
        return value.lower()


class BranchParameter(_Checked):
    """A branch name (empty: the field's default)."""

    def parse_from_arg(self, s: Any) -> str:
        value = _text(self.name, s).strip()
        problem = branch_problem(value)
        if problem:
            raise ValidationError(f"{self.name}: {problem}")
        return value


class ReasonParameter(_Checked):
    """Why a build was forced: one line, at most 500 characters."""

    def parse_from_arg(self, s: Any) -> str:
        value = _text(self.name, s).strip()
        problem = reason_problem(value)
        if problem:
            raise ValidationError(f"{self.name}: {problem}")
        if not value and self.required:
            raise ValidationError(f"{self.name}: is required")
        return value


def codebase(branch: Any, revision: Any, label: str = "") -> util.CodebaseParameter:
    """The one codebase of every force form: its branch and revision fields as given, no repository
    field, the project fixed."""
    return util.CodebaseParameter(
        "",
        branch=branch,
        revision=revision,
        repository=util.FixedParameter(name="repository", default=""),
        project=util.FixedParameter(name="project", default=names.PROJECT),
        **({"label": label} if label else {}),
    )


def source_taken_elsewhere() -> list[Any]:
    """The `codebases` of a form whose source stamp comes from what it names (a build, a pull
    request), not from fields: branch, revision and repository are fixed and empty."""
    return [codebase(util.FixedParameter(name="branch", default=""), util.FixedParameter(name="revision", default=""))]
