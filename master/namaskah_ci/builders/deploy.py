"""Deploy and rollback builders, their schedulers, locks and the pipeline's deploy gate.

Per environment (any `[deploy.<env>]`: the seed's production on `main`, staging on `develop`):
- `deploy-<env>`: configuration → pipeline gate → deploy hook → wait until live
  → health check → smoke tests; on any failure once the hook was accepted:
  automatic rollback → wait → health check; then notify. Triggered by the
  pipeline's gate, or forced (revision, override checkbox, reason).
- `rollback-<env>`: configuration → rollback target → roll back → wait →
  health check → smoke tests → notify. Forced only (reason required).
Both hold one exclusive `MasterLock` per environment, so an environment never
sees two deploys at once; `collapseRequests=False`, and a newer queued deploy
supersedes an older queued one (`deploy_history.supersede_queued`). A build
whose environment has no deploy hook secret ends SKIPPED, "not configured".
"""

from __future__ import annotations

from typing import Any

from buildbot.plugins import schedulers, util
from buildbot.process.build import Build
from buildbot.process.factory import BuildFactory
from buildbot.process.results import FAILURE, SKIPPED, SUCCESS, WARNINGS

from namaskah_ci import names
from namaskah_ci.names import (
    PROP_NOT_CONFIGURED,
    PROP_OVERRIDE_REQUEST,
    PROP_REDEPLOY,
    PROP_ROLLBACK_AT,
    PROP_ROLLBACK_DEPLOY_ID,
    PROP_ROLLBACK_HEALTH,
    PROP_ROLLBACK_LIVE,
    PROP_ROLLBACK_REQUEST,
    PROP_ROLLED_BACK_TO,
    PROP_SUPERSEDED,
    deploy_builder_name,
    deploy_force_name,
    deploy_trigger_name,
    environment_secrets,
    rollback_builder_name,
    rollback_force_name,
    worker_name,
)
from namaskah_ci.settings import Settings
from namaskah_ci.steps import hide_skipped
from namaskah_ci.steps.deploy.base import DeployTarget
from namaskah_ci.steps.deploy.gate import DeployGate, VerifyPipelinePassed
from namaskah_ci.steps.deploy.history import supersede_queued
from namaskah_ci.steps.deploy.notify import Notify, github_slug
from namaskah_ci.steps.deploy.render import CheckDeployConfigured, WaitUntilLive, is_configured
from namaskah_ci.steps.deploy.rollback import (
    ChooseRollbackTarget,
    RollBack,
    rollback_needed,
    rollback_started,
)
from namaskah_ci.steps.deploy.start import NotOutdated, StartDeploy, is_superseded
from namaskah_ci.steps.deploy.verify import HealthCheck, SmokeTests
from namaskah_ci.triggers.force_params import ReasonParameter, RevisionParameter, codebase
from namaskah_ci.workers.plan import WorkerPlan


def deploy_builder_names(settings: Settings) -> list[str]:
    """Every deploy and rollback builder (they need workers like any builder)."""
    return [name for env in settings.environments for name in (deploy_builder_name(env), rollback_builder_name(env))]


def make_target(settings: Settings, environment: str) -> DeployTarget:
    section = settings.deploy[environment]
    deploy_hook, rollback_hook, service_id = environment_secrets(environment)
    return DeployTarget(
        environment=environment,
        branch=section.branch,
        url=section.url,
        deploy_hook_secret=deploy_hook,
        rollback_hook_secret=rollback_hook,
        service_id_secret=service_id,
        api_url=settings.render.api_url,
        wait_seconds=section.wait_seconds,
        health_retries=section.health_retries,
        health_interval_seconds=section.health_interval_seconds,
        smoke_paths=tuple(section.smoke_paths),
        live_timeout_seconds=section.live_timeout_seconds,
        poll_interval_seconds=section.poll_interval_seconds,
        request_timeout_seconds=settings.render.request_timeout_seconds,
        deploy_builder=deploy_builder_name(environment),
        rollback_builder=rollback_builder_name(environment),
    )


class DeployBuild(Build):
    """A Build whose summary is its outcome line alone ("deployed abc1234, health check failed, ...",
    without Buildbot's "build successful"/"failed" prefix), and which ends SKIPPED with its
    reason when the environment is not configured."""

    results: int  # set by Build (a buildbot.process.results value)

    def allStepsDone(self) -> Any:
        reason = self.getProperty(PROP_NOT_CONFIGURED) or self.getProperty(PROP_SUPERSEDED)
        if reason and self.results in (SUCCESS, SKIPPED):
            self.results = SKIPPED
            return self.buildFinished([reason], SKIPPED)
        if self.text and self.results in (SUCCESS, WARNINGS, FAILURE) and self.stopped_reason is None:
            return self.buildFinished(list(self.text), self.results)
        return super().allStepsDone()


def _notify(settings: Settings, target: DeployTarget, rollback_build: bool) -> Notify:
    return Notify(
        target,
        rollback_build=rollback_build,
        email_to=tuple(settings.notify.email_to),
        email_from=settings.notify.email_from,
        smtp_host=settings.notify.smtp_host,
        smtp_port=settings.notify.smtp_port,
        github_api_url=settings.github.api_url,
        github_repository=github_slug(settings.repo_url, settings.github.repository),
    )


def to_deploy(step: Any) -> bool:
    """doStepIf of the steps after the newest-revision check: configured, and not superseded."""
    return is_configured(step) and not is_superseded(step)


def git_dirs(settings: Settings) -> tuple[str, ...]:
    """The master's repositories that know the branch's history (for "is this revision older")."""
    return (str(settings.basedir / names.POLLER_DIR), str(settings.basedir / names.MIRROR_DIR))


def make_deploy_factory(settings: Settings, target: DeployTarget) -> BuildFactory:
    factory = BuildFactory()
    factory.buildClass = DeployBuild
    configured: dict[str, Any] = {"doStepIf": is_configured, "hideStepIf": hide_skipped}
    deploying: dict[str, Any] = {"doStepIf": to_deploy, "hideStepIf": hide_skipped}
    auto: dict[str, Any] = {"alwaysRun": True, "hideStepIf": hide_skipped}
    factory.addSteps(
        [
            CheckDeployConfigured(target),
            VerifyPipelinePassed(target, required=list(settings.checks.required), **configured),
            NotOutdated(target, git_dirs(settings), **deploying),  # not when the gate ended the build SKIPPED
            StartDeploy(target, **deploying),
            WaitUntilLive(target, haltOnFailure=True, **deploying),
            HealthCheck(target, haltOnFailure=True, **deploying),
            SmokeTests(target, haltOnFailure=True, **deploying),
            RollBack(target, auto=True, doStepIf=rollback_needed, **auto),
            WaitUntilLive(
                target,
                name="wait until rollback is live",
                deploy_id_property=PROP_ROLLBACK_DEPLOY_ID,
                revision_property=PROP_ROLLED_BACK_TO,
                since_property=PROP_ROLLBACK_AT,
                failure_property=PROP_ROLLBACK_LIVE,
                doStepIf=rollback_started,
                **auto,
            ),
            HealthCheck(
                target,
                name="health check after rollback",
                result_property=PROP_ROLLBACK_HEALTH,
                doStepIf=rollback_started,
                **auto,
            ),
            _notify(settings, target, rollback_build=False),
        ]
    )
    return factory


def make_rollback_factory(settings: Settings, target: DeployTarget) -> BuildFactory:
    factory = BuildFactory()
    factory.buildClass = DeployBuild
    configured: dict[str, Any] = {"doStepIf": is_configured, "hideStepIf": hide_skipped, "haltOnFailure": True}
    factory.addSteps(
        [
            CheckDeployConfigured(target, rollback=True),
            ChooseRollbackTarget(target, **configured),
            RollBack(target, auto=False, **configured),
            WaitUntilLive(
                target,
                deploy_id_property=PROP_ROLLBACK_DEPLOY_ID,
                since_property=PROP_ROLLBACK_AT,
                **configured,
            ),
            HealthCheck(target, **configured),
            SmokeTests(target, **configured),
            _notify(settings, target, rollback_build=True),
        ]
    )
    return factory


def make_deploy_builders(settings: Settings, plan: WorkerPlan) -> list[Any]:
    """A fresh list of the deploy and rollback BuilderConfigs (plan: unused, deploy steps run on the master)."""
    result: list[Any] = []
    for environment in settings.environments:
        target = make_target(settings, environment)
        lock = util.MasterLock(f"deploy-{environment}")
        common = {"locks": [lock.access("exclusive")], "collapseRequests": False, "tags": ["deploy", environment]}
        result.append(
            util.BuilderConfig(
                name=target.deploy_builder,
                workernames=[worker_name(target.deploy_builder)],
                factory=make_deploy_factory(settings, target),
                nextBuild=supersede_queued,
                description=f"Deploy {target.branch} to {environment} ({target.url}) on Render",
                **common,
            )
        )
        result.append(
            util.BuilderConfig(
                name=target.rollback_builder,
                workernames=[worker_name(target.rollback_builder)],
                factory=make_rollback_factory(settings, target),
                description=f"Roll {environment} back to a good deploy (force only)",
                **common,
            )
        )
    return result


def _codebase(branch: str, revision: Any) -> util.CodebaseParameter:
    if type(revision) is util.StringParameter:  # a typed revision: a commit id or empty (triggers/force_params.py)
        revision = RevisionParameter(
            name=revision.name, label=revision.label, default=revision.default, size=revision.size
        )
    return codebase(util.FixedParameter(name="branch", default=branch), revision, label="Source")


def _reason(label: str) -> util.StringParameter:
    return ReasonParameter(name="reason", label=label, required=True, size=60)


def make_deploy_gate(settings: Settings) -> DeployGate:
    """The step the pipeline runs after its fan-out."""
    branches = {settings.deploy[env].branch: deploy_trigger_name(env) for env in settings.environments}
    return DeployGate(branch_schedulers=branches, required=list(settings.checks.required))


def make_deploy_schedulers(settings: Settings) -> list[Any]:
    """A fresh list: per environment, the gate's Triggerable and the deploy and rollback force forms."""
    result: list[Any] = []
    for environment in settings.environments:
        branch = settings.deploy[environment].branch
        result += [
            schedulers.Triggerable(
                name=deploy_trigger_name(environment), builderNames=[deploy_builder_name(environment)]
            ),
            schedulers.ForceScheduler(
                name=deploy_force_name(environment),
                builderNames=[deploy_builder_name(environment)],
                label=f"Deploy to {environment}",
                buttonName=f"Deploy to {environment}",
                reason=_reason("Reason (recorded in the build)"),
                codebases=[
                    _codebase(
                        branch,
                        util.StringParameter(
                            name="revision", label=f"Revision (empty: the newest on {branch})", default="", size=45
                        ),
                    )
                ],
                properties=[
                    util.BooleanParameter(
                        name=PROP_OVERRIDE_REQUEST,
                        label="Deploy even though its pipeline did not pass (recorded in the build)",
                        default=False,
                    ),
                    util.BooleanParameter(
                        name=PROP_REDEPLOY,
                        label="Deploy again even if this or a newer revision was already deployed (recorded)",
                        default=False,
                    ),
                ],
            ),
            schedulers.ForceScheduler(
                name=rollback_force_name(environment),
                builderNames=[rollback_builder_name(environment)],
                label=f"Roll back {environment}",
                buttonName=f"Roll back {environment}",
                reason=_reason("Reason (required)"),
                codebases=[_codebase(branch, util.FixedParameter(name="revision", default=""))],
                properties=[
                    RevisionParameter(
                        name=PROP_ROLLBACK_REQUEST,
                        label="Target revision (empty: the good deploy before the current one)",
                        default="",
                        size=45,
                    )
                ],
            ),
        ]
    return result
