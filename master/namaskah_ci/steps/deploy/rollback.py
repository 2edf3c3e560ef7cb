"""Roll an environment back to a good deploy.

`ChooseRollbackTarget` (the `rollback-*` builders) picks the target: the revision
the admin typed, else the good deploy before the current one, from the deploy
history (`steps/deploy/history.py`). `RollBack` performs it with the first way that
is configured and accepts: the Render API (`POST /v1/services/{id}/rollback`
with the target's deploy id), the rollback hook, or the deploy hook with
`ref=<target revision>`. In a deploy build it runs automatically (mode
"auto") after any failure once the hook had been accepted, and goes back to
the newest good deploy of the environment.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet import defer

from namaskah_ci.names import (
    PROP_ATTEMPTED,
    PROP_DEPLOY_ID,
    PROP_REVISION,
    PROP_ROLLBACK_AT,
    PROP_ROLLBACK_DEPLOY_ID,
    PROP_ROLLBACK_REQUEST,
    PROP_ROLLBACK_RESULT,
    PROP_ROLLBACK_STARTED,
    PROP_ROLLED_BACK_TO,
    PROP_STARTED,
    PROP_TARGET_DEPLOY_ID,
)
from namaskah_ci.steps.deploy.base import DeployStep, DeployTarget, with_ref
from namaskah_ci.steps.deploy.history import find_revision, good_deploys, previous_good
from namaskah_ci.steps.deploy.render import HookStep, deploy_from
from namaskah_ci.steps.results import FAILURE, SUCCESS, WARNINGS
from namaskah_ci.text import short

Way = tuple[str, str, dict[str, str] | None, dict[str, str] | None]  # label, URL, headers, JSON body


def rollback_needed(step: Any) -> bool:
    """doStepIf of the automatic rollback: the hook was accepted and something failed since."""
    return bool(step.getProperty(PROP_STARTED)) and step.build.results not in (SUCCESS, WARNINGS)


def rollback_started(step: Any) -> bool:
    return bool(step.getProperty(PROP_ROLLBACK_STARTED))


class ChooseRollbackTarget(DeployStep):
    """Set the target revision (and its Render deploy id when the history knows it)."""

    def __init__(self, target: DeployTarget, **kwargs: Any) -> None:
        kwargs.setdefault("name", "rollback target")
        kwargs.setdefault("haltOnFailure", True)
        super().__init__(target, **kwargs)

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        self.setProperty(PROP_ATTEMPTED, True, self.name)
        records = yield good_deploys(self.master, self.target.history_builders)
        for record in records[:5]:
            yield self.note(f"good deploy: {record.label} {record.revision} ({record.deploy_id or 'no deploy id'})")
        requested = (self.getProperty(PROP_ROLLBACK_REQUEST) or "").strip()
        if requested:
            record = find_revision(records, requested)
            revision = record.revision if record else requested
            how = f"requested, {record.label}" if record else "requested, not a recorded good deploy"
        else:
            record = previous_good(records)
            if record is None:
                current = f" (current: {short(records[0].revision)})" if records else ""
                reason = f"no earlier good deploy of {self.target.environment} to roll back to{current}"
                self.fail_reason(reason)
                self.summary = reason + ": give a target revision"
                return FAILURE
            revision = record.revision
            how = f"the good deploy before {short(records[0].revision)}, {record.label}"
        self.setProperty(PROP_REVISION, revision, self.name)
        if record and record.deploy_id:
            self.setProperty(PROP_TARGET_DEPLOY_ID, record.deploy_id, self.name)
        self.summary = f"target {short(revision)} ({how})"
        return SUCCESS


class RollBack(HookStep):
    """Roll back by the Render API, the rollback hook or the deploy hook, whichever works first."""

    def __init__(self, target: DeployTarget, auto: bool, **kwargs: Any) -> None:
        kwargs.setdefault("name", "automatic rollback" if auto else "roll back")
        super().__init__(target, **kwargs)
        self.auto = auto

    @defer.inlineCallbacks
    def choose(self) -> Generator[Any, Any, tuple[str | None, str | None]]:
        """(revision, deploy id) to roll back to, or (None, None) with a reason recorded."""
        if not self.auto:
            return self.getProperty(PROP_REVISION), self.getProperty(PROP_TARGET_DEPLOY_ID)
        records = yield good_deploys(self.master, self.target.history_builders)
        if not records:
            return None, None
        yield self.note(f"last good deploy: {records[0].label} {records[0].revision}")
        return records[0].revision, records[0].deploy_id

    @defer.inlineCallbacks
    def ways(self, revision: str, deploy_id: str | None) -> Generator[Any, Any, list[Way]]:
        """[(label, url, headers, json body)] in order of preference."""
        found: list[Way] = []
        credentials = yield self.api_credentials()
        if credentials and deploy_id:
            key, service = credentials
            found.append(
                (
                    "Render API rollback",
                    self.api_url(service, "/rollback"),
                    self.api_headers(key),
                    {"deployId": deploy_id},
                )
            )
        rollback_hook = yield self.secret(self.target.rollback_hook_secret)
        if rollback_hook:
            found.append(("rollback hook", with_ref(rollback_hook, revision), None, None))
        deploy_hook = yield self.secret(self.target.deploy_hook_secret)
        if deploy_hook:
            found.append(("deploy hook", with_ref(deploy_hook, revision), None, None))
        return found

    def give_up(self, result: str, summary: str) -> int:
        if self.auto:
            self.setProperty(PROP_ROLLBACK_RESULT, result, self.name)
        else:
            self.fail_reason(result)
        self.summary = summary
        return FAILURE

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        revision, deploy_id = yield self.choose()
        if not revision:
            return self.give_up("nothing to roll back to", "nothing to roll back to: no earlier good deploy")
        ways = yield self.ways(revision, deploy_id)
        if not ways:
            return self.give_up(
                "no rollback configured",
                f"cannot roll back to {short(revision)}: no Render API key, rollback hook or deploy hook",
            )
        problems: list[str] = []
        for label, url, headers, body in ways:
            self.setProperty(PROP_ROLLBACK_AT, self.now(), self.name)
            answer, problem = yield self.post_with_retries(url, label, headers=headers, json_body=body)
            if answer is None:
                problems.append(problem)
                continue
            new_deploy = deploy_from(answer.json_or_none())
            new_id = new_deploy["id"] if new_deploy else None
            self.setProperty(PROP_ROLLBACK_STARTED, True, self.name)
            self.setProperty(PROP_ROLLED_BACK_TO, revision, self.name)
            if new_id:
                self.setProperty(PROP_ROLLBACK_DEPLOY_ID, new_id, self.name)
            if not self.auto:
                self.setProperty(PROP_STARTED, True, self.name)
                if new_id or deploy_id:
                    self.setProperty(PROP_DEPLOY_ID, new_id or deploy_id, self.name)
            self.summary = f"rolling back to {short(revision)} by {label}" + (f": {new_id}" if new_id else "")
            return SUCCESS
        return self.give_up(f"rollback failed: {'; '.join(problems)}", f"rollback to {short(revision)} failed")
