"""A deploy story's parts, shared by the deploy and reliability end-to-end tests: a repository the
`lint` job passes on (its first commit on a branch that never deploys), the Render and service
stand-ins wired in as secrets and settings, and `Story`, which commits and reads builds (waiting for a
pipeline: `master.pipeline_of`; forcing: `www_support.force(story.admin, ...)`)."""

from __future__ import annotations

from pathlib import Path

from harness import RunningMaster, commit_file, git
from render_standin import RenderStandin
from www_support import ADMIN_PASSWORD, ADMIN_USER, Client, builder_ids, default_secrets

BUILD_TIMEOUT = 600
LINT_TOOLS = "black==24.10.0\nisort==5.13.2\nflake8==7.1.1\nmypy==1.13.0\n"
APP = '"""Stand-in for the reference service, for the deploy tests."""\n\n\ndef version() -> str:\n    return "1"\n'


BOOTSTRAP = "feature/bootstrap"


def make_repo(path):
    """A repository the default pipeline's lint job passes on (a typed package, the lint tools as
    requirements); its first commit is on a branch that never deploys."""
    path.mkdir()
    (path / "app").mkdir()
    (path / "tests" / "app").mkdir(parents=True)
    (path / "app" / "__init__.py").write_text(APP)
    (path / "tests" / "app" / "__init__.py").write_text("")
    (path / "requirements-dev.txt").write_text(LINT_TOOLS)
    git(path, "init", "-q", "-b", BOOTSTRAP)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


class Story:
    """What the tests share: the master, the repository, the stand-ins and the revisions so far."""

    def __init__(self, master: RunningMaster, repo: Path, render: RenderStandin | None):
        self.master, self.repo, self._render = master, repo, render
        self.revisions: dict[str, str] = {}
        self.admin = Client(master, ADMIN_USER, ADMIN_PASSWORD)
        self.ids = builder_ids(master)

    @property
    def render(self) -> RenderStandin:
        assert self._render is not None, "this story has no Render stand-in"
        return self._render

    def commit(self, name: str, relative: str, content: str, branch: str = "main") -> str:
        self.revisions[name] = commit_file(self.repo, relative, content, f"{name}: {relative}", branch=branch)
        return self.revisions[name]

    def deploys(self, builder: str = "deploy-production") -> list[dict]:
        return self.master.builds(builder)

    def wait_deploy(self, count: int, builder: str = "deploy-production") -> dict:
        return self.master.wait_builds(builder, count, BUILD_TIMEOUT)[count - 1]

    def step_states(self, build: dict) -> dict[str, str]:
        return {s["name"]: s["state_string"] for s in self.master.steps(build)}

    def prop(self, build: dict, name: str):
        return build["properties"].get(name, [None])[0]


def stand_in_secrets(render: RenderStandin) -> dict[str, str]:
    return {
        **default_secrets(),
        "render_deploy_hook": render.deploy_hook,
        "render_rollback_hook": render.rollback_hook,
        "render_api_key": render.api_key,
        "render_service_id": render.service_id,
        "notify_webhook_url": render.notify_url,
        "github_token": "ghp_" + render.notify_token[-20:],
    }


def stand_in_settings(render: RenderStandin) -> dict[str, str]:
    """Production deploys to the stand-ins, quickly: lint is the only required (and run) check."""
    return {
        "PIPELINE_CHECKS_REQUIRED": "lint",
        "PIPELINE_RENDER_API_URL": render.api_url,
        "PIPELINE_RENDER_REQUEST_TIMEOUT_SECONDS": "5",
        "PIPELINE_DEPLOY_PRODUCTION_URL": render.service.url,
        "PIPELINE_DEPLOY_PRODUCTION_HEALTH_RETRIES": "2",
        "PIPELINE_DEPLOY_PRODUCTION_HEALTH_INTERVAL_SECONDS": "1",
        "PIPELINE_DEPLOY_PRODUCTION_LIVE_TIMEOUT_SECONDS": "60",
        "PIPELINE_DEPLOY_PRODUCTION_POLL_INTERVAL_SECONDS": "1",
        "PIPELINE_GITHUB_API_URL": render.github_api_url,
        "PIPELINE_GITHUB_REPOSITORY": "acme/namaskah",
    }
