"""Services that follow builds: GitHub commit statuses and cancelling superseded builds.

- `CommitStatusPush` (when the `github_token` secret exists): every job
  builder posts `pending`, then `success`/`failure`/`error` to the commit,
  under the job's `context` in the revision's pipeline file (the build
  property `status_context`; the seed's: `test (Python 3.9)`, `lint`, ...). The repository is `[github] repository`
  when set (for masters that poll a mirror or a local path), else it is taken
  from the change's GitHub URL. A pull request's builds post to its head
  commit (`pr_head`), where GitHub's branch protection looks, not to the
  merge commit they built. Deploy notifications live with the deploy
  builders.
- `OldBuildCanceller`: when a newer commit arrives on a branch that does not
  deploy (a pull request's `refs/pull/<n>/merge` too: a newer synchronize),
  the older commits' unfinished `pipeline` and job builds on that branch are
  cancelled. On the deploy branches (`main`, `develop`) nothing is
  cancelled: pipelines run side by side (`workers.pipeline_slots`), an older
  one may pass and deploy first, and the deploy gate never deploys a revision
  older than one already deployed. Deploy and rollback builders are never
  cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from buildbot.plugins import util
from buildbot.reporters.generators.build import BuildStartEndStatusGenerator
from buildbot.reporters.generators.buildrequest import BuildRequestGenerator
from buildbot.reporters.github import GitHubStatusPush
from buildbot.reporters.message import MessageFormatterRenderable
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.fixes.status_repository import FixedRepositoryMixin
from namaskah_ci.names import GITHUB_TOKEN, PIPELINE
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.settings import Settings

CANCELLER_NAME = "cancel-superseded-builds"


def status_contexts(registry: Registry) -> dict[str, str]:
    """Builder name → its latest known commit-status context (the fallback when a build has none)."""
    return {entry.builder: entry.context for entry in registry.entries}


def context_renderer(contexts: dict[str, str]) -> Any:
    """A Buildbot renderable of the commit-status context of a build."""

    @util.renderer
    def context(props: Any) -> str:
        given: str | None = props.getProperty(names.PROP_STATUS_CONTEXT)
        if given:
            return given
        builder = props.getProperty("buildername")
        return contexts.get(builder, f"namaskah-ci/{builder}")

    return context


class CommitStatusPush(FixedRepositoryMixin, GitHubStatusPush):
    """GitHubStatusPush that can post to a configured `owner/name` instead of the change's repository."""

    name = "CommitStatusPush"

    def checkConfig(self, token: Any, repository: str = "", **kwargs: Any) -> None:
        super().checkConfig(token, **kwargs)

    def reconfigService(self, token: Any, repository: str = "", **kwargs: Any) -> defer.Deferred[None]:
        self.repository = repository
        done: defer.Deferred[None] = super().reconfigService(token, **kwargs)
        return done

    def createStatus(
        self,
        repo_user: str,
        repo_name: str,
        sha: str,
        state: str,
        target_url: str | None = None,
        context: Any = None,
        issue: Any = None,
        description: str | None = None,
        props: Any = None,
    ) -> defer.Deferred[Any]:
        head = props.getProperty(names.PROP_PR_HEAD) if props is not None else None
        response: defer.Deferred[Any] = super().createStatus(
            repo_user,
            repo_name,
            head or sha,
            state,
            target_url=target_url,
            context=context,
            issue=issue,
            description=description,
            props=props,
        )
        return response


def make_status_push(settings: Settings, registry: Registry) -> CommitStatusPush:
    contexts = status_contexts(registry)
    builders = sorted(contexts)
    return CommitStatusPush(
        token=util.Secret(GITHUB_TOKEN),
        repository=settings.github.repository,
        context=context_renderer(contexts),
        baseURL=settings.github.api_url,
        generators=[
            BuildRequestGenerator(builders=builders, formatter=MessageFormatterRenderable("Namaskah CI: queued")),
            BuildStartEndStatusGenerator(
                builders=builders,
                start_formatter=MessageFormatterRenderable("Namaskah CI: running"),
                end_formatter=MessageFormatterRenderable("Namaskah CI: finished"),
            ),
        ],
    )


def deploy_branches(settings: Settings) -> list[str]:
    return sorted({section.branch for section in settings.deploy.values()})


def make_build_canceller(settings: Settings, registry: Registry) -> util.OldBuildCanceller:
    builders = [PIPELINE, *registry.builders]
    not_deploying = util.SourceStampFilter(branch_not_eq=deploy_branches(settings))
    return util.OldBuildCanceller(CANCELLER_NAME, filters=[(builders, not_deploying)])


def make_reporters(settings: Settings, registry: Registry, has_secret: Callable[[str], bool]) -> list[Any]:
    """Services for `c['services']`; `has_secret(name)` tells whether a secret is configured."""
    services: list[Any] = [make_build_canceller(settings, registry)]
    if has_secret(GITHUB_TOKEN) and registry.builders:
        services.append(make_status_push(settings, registry))
    return services
