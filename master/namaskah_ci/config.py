"""`build_config(settings)`: the whole BuildmasterConfig dict, built fresh on each call."""

from __future__ import annotations

from namaskah_ci.builders import builder_names, make_builders
from namaskah_ci.changes import make_change_sources
from namaskah_ci.database import make_db_config
from namaskah_ci.deploy import deploy_builder_names, make_deploy_builders, make_deploy_schedulers
from namaskah_ci.janitor import ReportsJanitor
from namaskah_ci.jobs import make_jobs
from namaskah_ci.reporters import make_reporters
from namaskah_ci.schedulers import make_schedulers
from namaskah_ci.secrets import make_secret_providers, secret_available
from namaskah_ci.settings import Settings
from namaskah_ci.workers import make_plan, make_workers
from namaskah_ci.www import make_www


class ConfigError(Exception):
    """The settings do not fit the job table; the message names the key."""


def build_config(settings: Settings) -> dict:
    jobs = make_jobs(coverage_min=settings.checks.coverage_min)
    names = {job.name for job in jobs if job.in_pipeline}
    for key in ("required", "disabled"):
        for name in getattr(settings.checks, key):
            if name not in names:
                raise ConfigError(
                    f"[checks] {key}: {name!r} is not a check builder (known: {', '.join(sorted(names))})"
                )
    builders = builder_names(jobs) + deploy_builder_names()
    plan = make_plan(settings)
    return {
        "title": settings.master.title,
        "titleURL": settings.buildbot_url,
        "buildbotURL": settings.buildbot_url,
        "buildbotNetUsageData": None,
        "db": make_db_config(settings.database_url),
        "protocols": {"pb": {"port": f"tcp:{settings.workers.port}:interface={settings.workers.bind}"}},
        "workers": make_workers(settings, builders),
        "change_source": make_change_sources(settings),
        "schedulers": make_schedulers(settings, jobs) + make_deploy_schedulers(settings),
        "builders": make_builders(settings, jobs, plan) + make_deploy_builders(settings, plan),
        "services": [
            ReportsJanitor(
                root=str(settings.basedir / "reports"), max_age_days=settings.checks.report_retention_days
            ),
            *make_reporters(settings, jobs, lambda name: secret_available(settings, name)),
        ],
        "secretsProviders": make_secret_providers(settings),
        "www": make_www(settings),
    }
