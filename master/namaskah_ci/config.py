"""`build_config(settings)`: the whole BuildmasterConfig dict, built fresh on each call.

The job builders are the ones the repository's pipeline files defined so far
(the job registry in the basedir); a pipeline that brings a new job
reconfigures the master, which calls this again (`jobs/builder_sync.py`).
"""

from __future__ import annotations

from typing import Any

from twisted.python import log

from namaskah_ci import workdirs
from namaskah_ci.builders.deploy import deploy_builder_names, make_deploy_builders, make_deploy_schedulers
from namaskah_ci.builders.jobs import builder_names, make_builders
from namaskah_ci.builders.setup import make_job_setup, make_pipeline_config
from namaskah_ci.database import make_db_config
from namaskah_ci.fixes.request_limits import RequestBodyLimits
from namaskah_ci.github.pending_events import PendingPullRequests
from namaskah_ci.github.pull_requests import merge_ref_waits
from namaskah_ci.github.reporters import make_reporters
from namaskah_ci.pipeline.registry import FILE_NAME as REGISTRY_FILE
from namaskah_ci.pipeline.registry import Registry, RegistryError, read_registry, write_registry
from namaskah_ci.reports.janitor import ReportsJanitor
from namaskah_ci.secrets import make_secret_providers, secret_available
from namaskah_ci.settings import Settings
from namaskah_ci.triggers.changes import make_change_sources
from namaskah_ci.triggers.schedulers import make_schedulers
from namaskah_ci.workers import make_plan, make_workers
from namaskah_ci.www.config import make_www
from namaskah_ci.www.metrics import MetricsService


class ConfigError(Exception):
    """The settings or the master's state cannot be used; the message names the key or file."""


_BOUNDED_AT_START: set[str] = set()  # registry files this process has bounded (at the master's start)


def load_registry(settings: Settings) -> Registry:
    """The job registry. Its first load in this process (the master's start: no build runs yet) bounds it to
    `[limits] registered_builders` as a pipeline does (`Registry.retire`: the builders unused longest go
    first, scheduled ones last) and writes it back, so a registry that grew before the limit existed, or
    under a higher one, does not come back whole. Later loads (reconfigurations) take it as written: the
    pipeline that asked for them bounded it, keeping the builders running a build, which they must not retire."""
    path = str(settings.basedir / REGISTRY_FILE)
    try:
        registry = read_registry(path)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None
    limit = settings.limits.registered_builders
    if path in _BOUNDED_AT_START or limit <= 0:
        return registry
    _BOUNDED_AT_START.add(path)
    bounded = registry.retire(limit)
    if bounded == registry:
        return registry
    retired = sorted(set(registry.builders) - set(bounded.builders))
    log.msg(
        f"job registry: {len(registry.entries)} builders, more than [limits] registered_builders = {limit}: "
        f"retiring the {len(retired)} unused longest: {', '.join(retired)}"
    )
    try:
        write_registry(path, bounded)
    except OSError as exc:
        log.msg(f"job registry: could not write {path} bounded ({exc}); the next pipeline bounds it")
    return bounded


def build_config(settings: Settings, registry: Registry | None = None) -> dict[str, Any]:
    # local jobs run under the basedir: never inside a project whose configuration their tools would take
    problem = workdirs.guard_problem(settings.basedir) if settings.workers.mode == "local" else None
    if problem and problem.refuse:
        raise ConfigError(problem.line)
    if problem:
        log.msg(f"WARNING: {problem.line}")
    registry = load_registry(settings) if registry is None else registry
    plan = make_plan(settings)
    pipeline_config = make_pipeline_config(settings, plan)
    job_setup = make_job_setup(settings, plan)
    builders = builder_names(registry) + deploy_builder_names(settings)
    return {
        "title": settings.master.title,
        "titleURL": settings.buildbot_url,
        "buildbotURL": settings.buildbot_url,
        "buildbotNetUsageData": None,
        "db": make_db_config(settings.database_url),
        "protocols": {"pb": {"port": f"tcp:{settings.workers.port}:interface={settings.workers.bind}"}},
        "workers": make_workers(settings, builders, registry),
        "change_source": make_change_sources(settings),
        "schedulers": make_schedulers(settings, registry) + make_deploy_schedulers(settings),
        "builders": make_builders(settings, registry, plan, pipeline_config, job_setup)
        + make_deploy_builders(settings, plan),
        "services": [
            ReportsJanitor(root=str(settings.reports_dir), max_age_days=settings.checks.report_retention_days),
            *make_reporters(settings, registry, lambda name: secret_available(settings, name)),
            MetricsService(public_view=settings.www.public_view),
            RequestBodyLimits(
                request_bytes=settings.limits.request_bytes, hook_bytes=settings.github.max_payload_bytes
            ),
            PendingPullRequests(
                pipeline_config=pipeline_config,
                merge_ref_waits=merge_ref_waits(settings.github.merge_ref_wait_seconds),
            ),
        ],
        "secretsProviders": make_secret_providers(settings),
        "www": make_www(settings, pipeline_config=pipeline_config),
    }
