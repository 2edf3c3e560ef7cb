"""Services that follow builds: GitHub commit statuses and cancelling superseded builds.

- `CommitStatusPush` (when the `github_token` secret exists): every check
  builder posts `pending`, then `success`/`failure`/`error` to the commit,
  under the context the seed's branch protection requires (`Job.context`:
  `test (Python 3.9)`, `lint`, ...). The repository is `[github] repository`
  when set (for masters that poll a mirror or a local path), else it is taken
  from the change's GitHub URL. Deploy notifications live with the deploy
  builders.
- `OldBuildCanceller`: when a newer commit arrives on a branch, the unfinished
  check builds of older commits on that branch are cancelled, and so are
  older `pipeline` builds except on the deploy branches (`main`, `develop`),
  whose pipeline may already be deploying. Deploy and rollback builders are
  never cancelled.
"""

from __future__ import annotations

from buildbot.plugins import util
from buildbot.reporters.github import GitHubStatusPush
from buildbot.reporters.generators.build import BuildStartEndStatusGenerator
from buildbot.reporters.generators.buildrequest import BuildRequestGenerator
from buildbot.reporters.message import MessageFormatterRenderable

from namaskah_ci.jobs import Job
from namaskah_ci.schedulers import PIPELINE
from namaskah_ci.settings import Settings

GITHUB_TOKEN = "github_token"
CANCELLER_NAME = "cancel-superseded-builds"


def status_contexts(jobs: tuple[Job, ...]) -> dict[str, str]:
    """Builder name → commit-status context."""
    return {job.name: job.context for job in jobs}


def context_renderer(contexts: dict[str, str]):
    @util.renderer
    def context(props) -> str:
        builder = props.getProperty("buildername")
        return contexts.get(builder, f"namaskah-ci/{builder}")

    return context


class CommitStatusPush(GitHubStatusPush):
    """GitHubStatusPush that can post to a configured `owner/name` instead of the change's repository."""

    name = "CommitStatusPush"

    def checkConfig(self, token, repository: str = "", **kwargs):
        super().checkConfig(token, **kwargs)

    def reconfigService(self, token, repository: str = "", **kwargs):
        self.repository = repository
        return super().reconfigService(token, **kwargs)

    def _extract_github_info(self, sourcestamp):
        if self.repository:
            owner, name = self.repository.split("/")
            return owner, name
        return super()._extract_github_info(sourcestamp)


def make_status_push(settings: Settings, jobs: tuple[Job, ...]) -> CommitStatusPush:
    contexts = status_contexts(jobs)
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


def make_build_canceller(settings: Settings, jobs: tuple[Job, ...]) -> util.OldBuildCanceller:
    return util.OldBuildCanceller(
        CANCELLER_NAME,
        filters=[
            ([job.name for job in jobs], util.SourceStampFilter()),
            ([PIPELINE], util.SourceStampFilter(branch_not_eq=deploy_branches(settings))),
        ],
    )


def make_reporters(settings: Settings, jobs: tuple[Job, ...], has_secret) -> list:
    """Services for `c['services']`; `has_secret(name)` tells whether a secret is configured."""
    services: list = [make_build_canceller(settings, jobs)]
    if has_secret(GITHUB_TOKEN):
        services.append(make_status_push(settings, jobs))
    return services
