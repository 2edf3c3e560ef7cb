"""Starting a deploy exactly once, and never backwards by accident.

`NotOutdated` (before the deploy call): a deploy of a revision that this
environment already deployed, or that is an ancestor of a revision already
deployed or deploying, ends SKIPPED naming the newer one (GitLab's "prevent
outdated deployment jobs"); an admin's forced deploy with "deploy again"
ticked goes ahead and says so. Going back is a rollback's job.

`StartDeploy`: the Render API first (`POST /v1/services/{id}/deploys`
`{"commitId": sha}` with the API key and service id), the deploy hook with
`ref` only without them. Before calling, it resumes a deploy of this revision
that was already started: one whose id an earlier (crashed, retried) build of
this builder recorded, or, with the API, one in the service's deploy list; so
a master killed right after Render answered never deploys twice. Render's
answer is written to the build's properties in the database at once. 429
answers wait for `Retry-After` / `Ratelimit-Reset`; 5xx answers and timeouts
back off exponentially with jitter; both bounded (Render allows 10 deploys a
minute per service).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet import defer, utils

from namaskah_ci.names import (
    PROP_ATTEMPTED,
    PROP_DEPLOY_ID,
    PROP_HOOK_AT,
    PROP_REDEPLOY,
    PROP_RESUMED,
    PROP_REVISION,
    PROP_STARTED,
    PROP_SUPERSEDED,
)
from namaskah_ci.pipeline.source import REVISION
from namaskah_ci.steps.deploy.base import DeployStep, DeployTarget, HttpFailure, with_ref
from namaskah_ci.steps.deploy.render import HookStep, classify, deploy_from
from namaskah_ci.steps.results import FAILURE, SKIPPED, SUCCESS
from namaskah_ci.text import same_revision, short

HISTORY = 50  # earlier builds looked at


def is_superseded(step: Any) -> bool:
    return bool(step.getProperty(PROP_SUPERSEDED))


@defer.inlineCallbacks
def earlier_builds(step: Any, builder: str) -> Generator[Any, Any, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """[(build dict, properties dict)] of this builder's other builds, newest first."""
    builds = yield step.master.data.get(("builders", builder, "builds"), order=["-number"], limit=HISTORY)
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for build in builds or []:
        if build["buildid"] == step.build.buildid:
            continue
        props = yield step.master.db.builds.getBuildProperties(build["buildid"])
        found.append((build, {name: value for name, (value, _) in props.items()}))
    return found


class NotOutdated(DeployStep):
    """Skip a deploy that would repeat one or go backwards (see the module docstring)."""

    def __init__(self, target: DeployTarget, git_dirs: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("name", "newest revision")
        super().__init__(target, **kwargs)
        self.git_dirs = tuple(git_dirs)

    @defer.inlineCallbacks
    def is_ancestor(self, older: str, newer: str) -> Generator[Any, Any, bool | None]:
        """True/False when a repository knows both; None when none can tell (or one is not a revision)."""
        if not (REVISION.match(str(older)) and REVISION.match(str(newer))):
            return None
        code: int  # git's exit code
        for git_dir in self.git_dirs:
            _, _, code = yield utils.getProcessOutputAndValue(  # type: ignore[no-untyped-call]  # unannotated in Twisted
                "git", ["--git-dir", git_dir, "merge-base", "--is-ancestor", older, newer]
            )
            if code in (0, 1):
                return code == 0
        return None

    def skip(self, why: str) -> int:
        self.setProperty(PROP_SUPERSEDED, why, self.name)
        self.summary = self.build_summary = why
        return SKIPPED

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        revision = self.getProperty(PROP_REVISION)
        if not revision:
            self.summary = "no revision"
            return SUCCESS
        if self.getProperty(PROP_REDEPLOY):
            self.summary = f"deploying {short(revision)} again, as the admin asked"
            return SUCCESS
        for build, props in (yield earlier_builds(self, self.target.deploy_builder)):
            theirs = props.get(PROP_REVISION)
            label = f"{self.target.deploy_builder} #{build['number']}"
            started = props.get(PROP_STARTED) or not build["complete"]
            if not theirs or not started:
                continue
            if same_revision(theirs, revision):
                if build["complete"] and build["results"] == SUCCESS:
                    return self.skip(f"{short(revision)} was already deployed by {label}")
                continue  # a crashed or failed try of this revision: StartDeploy resumes or retries it
            newer = yield self.is_ancestor(revision, theirs)
            if newer:
                state = "deploying" if not build["complete"] else "deployed"
                return self.skip(f"not deploying {short(revision)}: {short(theirs)} is newer ({state} by {label})")
        self.summary = f"{short(revision)} is the newest revision for {self.target.environment}"
        return SUCCESS


class StartDeploy(HookStep):
    """Start (or resume) the Render deploy of the pinned revision."""

    def __init__(self, target: DeployTarget, **kwargs: Any) -> None:
        kwargs.setdefault("name", "start deploy")
        kwargs.setdefault("haltOnFailure", True)
        super().__init__(target, **kwargs)

    @defer.inlineCallbacks
    def record(self, name: str, value: Any) -> Generator[Any, Any, None]:
        """A property set now and written to the database at once (a crash right after keeps it)."""
        self.setProperty(name, value, self.name)
        yield self.master.data.updates.setBuildProperty(self.build.buildid, name, value, self.name)

    @defer.inlineCallbacks
    def started_before(
        self, revision: str, credentials: tuple[str, str] | None
    ) -> Generator[Any, Any, tuple[str | None, str]]:
        """(deploy id, where) of a deploy of this revision already under way or live, else (None, "")."""
        for build, props in (yield earlier_builds(self, self.target.deploy_builder)):
            known = props.get(PROP_DEPLOY_ID)
            if known and same_revision(props.get(PROP_REVISION), revision) and build["results"] != SUCCESS:
                return known, f"recorded by {self.target.deploy_builder} #{build['number']}"
        if credentials is None:
            return None, ""
        key, service = credentials
        try:
            answer = yield self.http("GET", self.api_url(service, "/deploys?limit=20"), headers=self.api_headers(key))
        except HttpFailure as exc:
            yield self.note(f"deploy list: {exc}")
            return None, ""
        entries = answer.json_or_none() if answer.code == 200 else None
        for entry in entries if isinstance(entries, list) else []:
            deploy = deploy_from(entry)
            commit = ((deploy or {}).get("commit") or {}).get("id")
            status = str((deploy or {}).get("status", ""))
            if deploy and same_revision(commit, revision) and classify(status) in ("live", "running"):
                return deploy["id"], f"found on Render ({status})"
        return None, ""

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        revision = self.getProperty(PROP_REVISION)
        credentials = yield self.api_credentials()
        hook = yield self.secret(self.target.deploy_hook_secret)
        if not revision or not (credentials or hook):
            self.summary = "no revision to deploy" if not revision else "no Render API key or deploy hook"
            self.fail_reason(self.summary)
            return FAILURE
        yield self.record(PROP_ATTEMPTED, True)
        if not self.getProperty(PROP_REDEPLOY):
            deploy_id, where = yield self.started_before(revision, credentials)
            if deploy_id:
                yield self.record(PROP_DEPLOY_ID, deploy_id)
                yield self.record(PROP_STARTED, True)
                yield self.record(PROP_RESUMED, deploy_id)
                self.setProperty(PROP_HOOK_AT, self.now() - 3600, self.name)
                self.summary = f"resuming {deploy_id} of {short(revision)} ({where}): not deploying twice"
                yield self.note(self.summary)
                return SUCCESS
        yield self.note(f"deploying {revision} to {self.target.environment}")
        if credentials:
            key, service = credentials
            label = "Render API"
            answer, problem = yield self.post_with_retries(
                self.api_url(service, "/deploys"), label, self.api_headers(key), {"commitId": revision}
            )
        else:
            label = "deploy hook"
            answer, problem = yield self.post_with_retries(with_ref(hook, revision), label)
        if answer is None:
            self.summary = f"deploy of {short(revision)} not accepted: {problem}"
            self.fail_reason(problem)
            return FAILURE
        yield self.record(PROP_STARTED, True)
        self.setProperty(PROP_HOOK_AT, self.now(), self.name)
        deploy = deploy_from(answer.json_or_none())
        if deploy:
            yield self.record(PROP_DEPLOY_ID, deploy["id"])
            self.summary = f"{short(revision)} accepted by the {label}: {deploy['id']}"
        else:
            self.summary = f"{short(revision)} accepted by the {label} (HTTP {answer.code}, no deploy id yet)"
        yield self.note(self.summary)
        return SUCCESS
