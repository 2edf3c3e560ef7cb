"""Pull requests: what a `pull_request` event records, done after the hook has answered GitHub.

`PullRequests.record(pr)` (opened, reopened, synchronize) fetches the PR's
`refs/pull/<n>/head` and `refs/pull/<n>/merge` (the merge of head into base as
GitHub computes it) into the master's mirror and records one change on the
branch `refs/pull/<n>/merge` at the merge commit, with the properties
`pr_number`, `pr_head`, `pr_base`, `pr_head_repo`, `pr_fork` (the head
repository is not this one). GitHub computes the merge ref a moment after the
event, so a missing (or stale: its second parent is not the head) merge ref is
fetched again after each of `[github] merge_ref_waits`; still missing, the
change is recorded at the head with `pr_conflict` = the base, and its pipeline
ends at once with "conflicts with <base>" (steps/load.py). A head commit whose
message says `[skip ci]` records nothing. The pipeline's later steps: no
deploy ever (steps/deploy/gate.py), statuses to `pr_head` (github/reporters.py), no secrets
for a fork (steps/load.py).

`PullRequests.cancel(pr)` (closed) stops the PR's unfinished builds and
cancels its queued requests. A newer synchronize cancels the older pipeline
through the build canceller (the PR's branch does not deploy).

Every git call is a child process the reactor waits on; the GitHub API is
never called here.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from buildbot.data import resultspec
from twisted.internet import defer, task
from twisted.python import log

from namaskah_ci import names
from namaskah_ci.github.payloads import PullRequest
from namaskah_ci.pipeline.source import PipelineConfig, PipelineSource, source_for
from namaskah_ci.text import short
from namaskah_ci.triggers.changes import skips_ci

SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_FILES = 1000  # a change lists at most this many files (the reuse key reads the tree, not this list)


def merge_ref_waits(total: int) -> tuple[float, ...]:
    """The pauses between fetches of a PR's merge ref: 1, 2, 4 ... s, `total` s in all."""
    waits: list[float] = []
    step = 1.0
    while sum(waits) < total:
        waits.append(min(step, total - sum(waits)))
        step *= 2
    return tuple(waits)


class PullRequests:
    """Records pull requests' merge results as changes (see the module docstring)."""

    def __init__(self, master: Any, config: PipelineConfig, merge_ref_waits: tuple[float, ...] = (1.0, 3.0)):
        self.master = master
        self.config = config
        self.merge_ref_waits = tuple(merge_ref_waits)

    @property
    def source(self) -> PipelineSource:
        return source_for(self.master, self.config)

    @defer.inlineCallbacks
    def _git(self, *args: str) -> Generator[Any, Any, tuple[str, str, int]]:
        out, err, code = yield self.source.git(self.config.mirror_dir, *args)
        return out.decode("utf-8", "replace").strip(), err, code

    @defer.inlineCallbacks
    def _merge_result(self, pr: PullRequest) -> Generator[Any, Any, str | None]:
        """The merge commit of head into base, or None when GitHub has none for this head."""
        for delay in (0.0, *self.merge_ref_waits):
            if delay:
                yield task.deferLater(self.master.reactor, delay, lambda: None)
            code, _ = yield self.source.fetch(f"+{pr.merge_ref}:{pr.merge_ref}")
            if code:
                continue
            listed: tuple[str, str, int] = yield self._git("rev-list", "--parents", "-n", "1", pr.merge_ref)
            parents, _, code = listed
            if not code and pr.head_sha in parents.split()[1:]:
                return parents.split()[0]
        return None

    @defer.inlineCallbacks
    def recorded_at(self, pr: PullRequest) -> Generator[Any, Any, str | None]:
        """The revision of the newest change recorded for the PR (None: none yet)."""
        changes = yield self.master.data.get(
            ("changes",), filters=[resultspec.Filter("branch", "eq", [pr.merge_ref])], order=["-changeid"], limit=1
        )
        return changes[0]["revision"] if changes else None

    @defer.inlineCallbacks
    def record(self, pr: PullRequest, replay: bool = False) -> Generator[Any, Any, str]:
        """Record the PR's change; returns what happened (one line, also logged). `replay` (an event
        saved before a restart, github/pending_events.py): nothing is recorded twice."""
        if not SHA.match(pr.head_sha):
            return self._say(pr, f"head {pr.head_sha[:60]!r} is not a commit id: nothing recorded")
        code, err = yield self.source.fetch(f"+{pr.head_ref_name}:{pr.head_ref_name}")
        message, _, missing = yield self._git("log", "-1", "--format=%B", f"{pr.head_sha}^{{commit}}")
        if missing:
            why = err.splitlines()[-1] if code and err else f"{short(pr.head_sha)} is not in the repository"
            return self._say(pr, f"cannot fetch its head: {why}: nothing recorded")
        if skips_ci(message):
            return self._say(pr, f"head {short(pr.head_sha)} says [skip ci]: no pipeline")
        merge = yield self._merge_result(pr)
        if replay and (yield self.recorded_at(pr)) in (merge or pr.head_sha,):
            return self._say(pr, f"{short(merge or pr.head_sha)} was recorded before the restart")
        properties = {
            names.PROP_PR_NUMBER: pr.number,
            names.PROP_PR_HEAD: pr.head_sha,
            names.PROP_PR_BASE: pr.base_ref,
            names.PROP_PR_HEAD_REPO: pr.head_repo or "(deleted fork)",
            names.PROP_PR_FORK: pr.fork,
        }
        files: list[str] = []
        if merge is None:
            properties[names.PROP_PR_CONFLICT] = pr.base_ref
        else:
            listed, _, code = yield self._git("diff-tree", "--no-commit-id", "--name-only", "-r", f"{merge}^1", merge)
            files = listed.splitlines()[:MAX_FILES] if not code else []
        yield self.master.data.updates.addChange(
            author=pr.sender,
            revision=merge or pr.head_sha,
            branch=pr.merge_ref,
            files=files,
            comments=f"Pull request #{pr.number}: {pr.title}\n\n{message}",
            repository=self.config.repo_url,
            project=names.PROJECT,
            category="pull",
            revlink=pr.url,
            properties=properties,
            src="git",
        )
        origin = f" from the fork {pr.head_repo or '(deleted)'}" if pr.fork else ""
        if merge is None:
            return self._say(pr, f"head {short(pr.head_sha)}{origin} conflicts with {pr.base_ref}: recorded")
        what = f"merge result {short(merge)} of {short(pr.head_sha)}{origin} into {pr.base_ref}"
        return self._say(pr, f"{what}: recorded")

    @defer.inlineCallbacks
    def cancel(self, pr: PullRequest, reason: str) -> Generator[Any, Any, int]:
        """Stop the PR's unfinished builds and cancel its queued requests; returns how many."""
        stopped = 0
        unfinished = yield self.master.data.get(("builds",), filters=[resultspec.Filter("complete", "eq", [False])])
        for build in unfinished or []:
            props = yield self.master.db.builds.getBuildProperties(build["buildid"])
            if props.get("branch", (None,))[0] == pr.merge_ref:
                yield self.master.data.control("stop", {"reason": reason}, ("builds", build["buildid"]))
                stopped += 1
        requests = yield self.master.data.get(
            ("buildrequests",),
            filters=[resultspec.Filter("complete", "eq", [False]), resultspec.Filter("claimed", "eq", [False])],
        )
        for request in requests or []:
            buildset = yield self.master.data.get(("buildsets", request["buildsetid"]))
            stamps = (buildset or {}).get("sourcestamps") or []
            if any(stamp.get("branch") == pr.merge_ref for stamp in stamps):
                target = ("buildrequests", request["buildrequestid"])
                yield self.master.data.control("cancel", {"reason": reason}, target)
                stopped += 1
        self._say(pr, f"{pr.action}: {stopped} build(s) or request(s) cancelled")
        return stopped

    @staticmethod
    def _say(pr: PullRequest, text: str) -> str:
        line = f"pull request #{pr.number}: {text}"
        log.msg(f"GitHub hook: {line}")
        return line
