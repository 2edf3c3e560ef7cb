"""Secret redaction: every common encoding of a secret, and a secret split between output chunks.

The bugs (Buildbot 4.3.0, `buildbot/process/properties.py` and
`process/remotecommand.py`): `Properties.useSecret` registers a secret's exact
value only, and `cleanupTextFromSecrets` replaces that exact value in each
piece of text it gets; `RemoteCommand` applies it to each chunk of output as it
arrives. So a job given a secret prints it unredacted as soon as it encodes it
(`echo "$TOKEN" | base64`, `xxd -p`, a URL-encoded query string), and a secret
is missed when it does not lie whole inside one chunk: the output line
splitters cut lines longer than 4095 characters, `xxd -p` and `base64` wrap
their lines, and a chunk may end inside a secret.

Upstream: the split case is buildbot/buildbot#4793 ("Multiline Secrets are
rendered in console output", open: "If the secret is split between two chunks
of data, it may not be redacted"); the encodings are not filed upstream;
reproduction: a `ShellCommand` with `env={"TOKEN": util.Secret("token")}`
running `printf %s "$TOKEN" | base64` shows the base64 form in its stdio log.

The fix (`apply()`), the way GitHub Actions masks secrets:
- `useSecret` also registers, for a secret of at least `MIN_ENCODED`
  characters: its base64 form at the three alignments (the characters that
  depend only on the secret when it sits at byte offset 0, 1 or 2 of longer
  base64 text), its URL-encoded forms (`%20` and `+` for spaces) and its hex
  form in lower and upper case; each is redacted as `<name>`, like the value;
- `cleanupTextFromSecrets` finds every form with one regular expression in
  which a line break may fall between any two characters (wrapped base64 and
  hex, a line cut by the line splitters), longest first;
- `RemoteCommand.split_line` (the path of every stdout, stderr, header and
  log chunk from a worker) redacts a stream as a whole: while the build has
  secrets, it holds back the last lines of what it got (at least as long as
  the longest form) until the next chunk or the end of the command
  (`remoteComplete`), so a secret split between chunks is still found. A
  build without secrets streams as before.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from buildbot.process import properties, remotecommand
from buildbot.util.twisted import async_to_deferred

MIN_ENCODED = 6  # shorter secrets are redacted as themselves only (their encodings would hit ordinary text)
MIN_FORM = 8  # an encoded form shorter than this is not registered
LINE_BREAK = "(?:\r?\n)?"
HOLD_LIMIT = 1 << 20  # a stream holds at most this much without a line break (the line splitters cut at 4095)
REDACTORS = "_namaskah_redactors"  # RemoteCommand attribute: {stream: StreamRedactor}
PATTERN = "_namaskah_redaction"  # Properties attribute: (forms registered, expression, {form: name}, longest)
_ORIGINALS: dict[str, Any] = {}


def base64_forms(value: bytes) -> set[str]:
    """The base64 text that encodes `value` whatever stands before and after it, at each alignment."""
    forms = set()
    for offset in range(3):
        total = offset + len(value)
        encoded = base64.b64encode(b"\0" * offset + value).decode("ascii")
        start = -(-offset * 8 // 6)  # the first characters carry bits of the bytes before the value
        forms.add(encoded[start : total * 8 // 6])  # the last may carry bits of the bytes after it
    return forms


def encoded_forms(value: str) -> set[str]:
    """What a secret looks like when a job encodes it: base64, URL-encoded, hex (never the value itself)."""
    text = value.strip()
    if len(text) < MIN_ENCODED:
        return set()
    raw = text.encode("utf-8")
    forms = base64_forms(raw)
    forms |= {urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text, safe=""), urllib.parse.quote(text)}
    forms |= {raw.hex(), raw.hex().upper()}
    return {form for form in forms if len(form) >= MIN_FORM and form != text}


def _bare(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


def _expression(forms: Iterable[str]) -> re.Pattern[str]:
    """One alternation of every form, longest first, a line break allowed between any two characters."""
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(LINE_BREAK.join(re.escape(char) for char in _bare(form)) for form in ordered))


def _compiled(props: Any) -> tuple[re.Pattern[str] | None, dict[str, str], int]:
    """(expression or None, {form without line breaks: replacement}, longest form) of the build's secrets."""
    secrets = props._used_secrets
    cached = getattr(props, PATTERN, None)
    if cached is None or cached[0] != len(secrets):  # useSecret only ever adds
        names: dict[str, str] = {}
        for form in sorted(secrets, key=len):  # the longer form's name wins where two forms read the same
            names[_bare(form)] = secrets[form]
        expression = _expression(secrets) if secrets else None
        cached = (len(secrets), expression, names, max((len(form) for form in secrets), default=0))
        setattr(props, PATTERN, cached)
    compiled: tuple[re.Pattern[str] | None, dict[str, str], int] = cached[1:]
    return compiled


def use_secret(self: Any, secret_value: Any, secret_name: str) -> None:
    _ORIGINALS["useSecret"](self, secret_value, secret_name)
    if isinstance(secret_value, str) and secret_value.strip():
        if secret_value.strip() != secret_value:  # a job gets the value stripped (steps/load.py)
            self._used_secrets.setdefault(secret_value.strip(), f"<{secret_name}>")
        for form in encoded_forms(secret_value):
            self._used_secrets.setdefault(form, f"<{secret_name}>")


def cleanup_text_from_secrets(self: Any, text: Any) -> Any:
    expression, names, _ = _compiled(self)
    if expression is None or not isinstance(text, str):
        return text
    return expression.sub(lambda match: names[_bare(match.group(0))], text)


class StreamRedactor:
    """One output stream of a command, redacted across its chunks (see the module docstring)."""

    def __init__(self, props: Any):
        self.props = props
        self.held = ""

    def feed(self, text: str) -> str:
        """The redacted text that can be shown now; the rest waits for more output or `flush()`."""
        longest = _compiled(self.props)[2]
        redacted: str = self.props.cleanupTextFromSecrets(self.held + text)
        cut = redacted.rfind("\n") + 1  # a partial last line waits
        while cut > 0 and len(redacted) - cut < longest:  # and whole lines, as long as the longest form
            cut = redacted.rfind("\n", 0, cut - 1) + 1
        if len(redacted) - cut > HOLD_LIMIT:
            cut = len(redacted) - longest
        self.held = redacted[cut:]
        return redacted[:cut]

    def flush(self) -> str:
        held, self.held = self.held, ""
        redacted: str = self.props.cleanupTextFromSecrets(held)
        return redacted


def _properties(command: Any) -> Any:
    step = getattr(command, "step", None)
    build = getattr(step, "build", None)
    return getattr(build, "properties", None)


def split_line(self: Any, stream: str, text: str) -> str | None:
    props = _properties(self)
    redactors: dict[str, StreamRedactor] = self.__dict__.setdefault(REDACTORS, {})
    if stream not in redactors and (props is None or not getattr(props, "_used_secrets", None)):
        line: str | None = _ORIGINALS["split_line"](self, stream, text)
        return line
    if stream not in redactors:
        redactors[stream] = StreamRedactor(props)
    ready = redactors[stream].feed(text)
    line = _ORIGINALS["split_line"](self, stream, ready) if ready else None
    return line


@async_to_deferred
async def remote_complete(self: Any, maybeFailure: Any) -> None:
    """Release what the redactors hold, through the line splitters, before Buildbot flushes them."""
    for stream, redactor in self.__dict__.get(REDACTORS, {}).items():
        rest = redactor.flush()
        whole = _ORIGINALS["split_line"](self, stream, rest) if rest else None
        if whole is not None:
            if stream in ("stdout", "stderr", "header"):
                await self.remoteUpdate(stream, whole, False)
            else:
                await self.remoteUpdate("log", (stream, whole), False)
    await _ORIGINALS["remoteComplete"](self, maybeFailure)


def apply() -> None:
    """Install the replacements (idempotent)."""
    if _ORIGINALS:
        return
    _ORIGINALS["useSecret"] = properties.Properties.useSecret
    _ORIGINALS["cleanup"] = properties.Properties.cleanupTextFromSecrets
    _ORIGINALS["split_line"] = remotecommand.RemoteCommand.split_line
    _ORIGINALS["remoteComplete"] = remotecommand.RemoteCommand.remoteComplete
    properties.Properties.useSecret = use_secret
    properties.Properties.cleanupTextFromSecrets = cleanup_text_from_secrets
    remotecommand.RemoteCommand.split_line = split_line
    remotecommand.RemoteCommand.remoteComplete = remote_complete
