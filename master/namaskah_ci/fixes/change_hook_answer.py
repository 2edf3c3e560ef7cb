"""Change hooks answer "no change found" to every request that recorded no change itself (not filed upstream).

A push the git poller then records is such a request, and GitHub shows that
text for every delivery. `apply` lets a dialect handler put its own answer on
the request (`ANSWER_ATTRIBUTE`, set by github/webhook.py); without one the
stock text stays. Reproduction for upstream: a `custom_class` hook returning
`([], "git")` after scheduling a poll gets "no change found" as its body.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from buildbot.util import unicode2bytes
from buildbot.www import change_hook
from twisted.internet import defer

ANSWER_ATTRIBUTE = "_namaskah_answer"  # a dialect handler's answer on the request


def apply() -> None:
    """A change hook's body is the handler's answer when it gives one (idempotent)."""
    if getattr(change_hook.ChangeHookResource, "_namaskah_answer", False):
        return

    @defer.inlineCallbacks
    def getAndSubmitChanges(self: Any, request: Any) -> Generator[Any, Any, None]:
        changes, src = yield self.getChanges(request)
        answer = getattr(request, ANSWER_ATTRIBUTE, None)
        if changes:
            yield self.submitChanges(changes, request, src)
        if answer is not None:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(unicode2bytes(answer))
        elif not changes:
            request.write(b"no change found")
        else:
            request.write(unicode2bytes(f"{len(changes)} change found"))

    change_hook.ChangeHookResource.getAndSubmitChanges = getAndSubmitChanges
    change_hook.ChangeHookResource._namaskah_answer = True
