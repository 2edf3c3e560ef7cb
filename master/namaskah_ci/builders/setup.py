"""From the settings and the worker mode to what the pipeline steps need (pure; no I/O).

`make_pipeline_config` says where the repository, the poller's bare repository,
the master's mirror, the default pipeline and the job registry are, and what
the master allows a pipeline file (`PipelinePolicy`). `make_job_setup` says
how jobs run in this worker mode (`JobSetup`), and as which user (`plan.job_user`);
`make_reuse_setup` what of that enters a job's reuse key.
"""

from __future__ import annotations

import os

from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.jobs.reuse import ReuseSetup
from namaskah_ci.names import MIRROR_DIR, POLLER_DIR
from namaskah_ci.pipeline.model import PipelinePolicy
from namaskah_ci.pipeline.registry import FILE_NAME as REGISTRY_FILE
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.settings import ROOT, Settings
from namaskah_ci.steps.job_steps import JobSetup
from namaskah_ci.steps.reports import reports_url
from namaskah_ci.workers.plan import WorkerPlan


def make_policy(settings: Settings, plan: WorkerPlan) -> PipelinePolicy:
    return PipelinePolicy.from_settings(settings, plan.known_pythons)


def make_pipeline_config(settings: Settings, plan: WorkerPlan) -> PipelineConfig:
    default = settings.pipeline_default_file
    try:
        label = str(default.relative_to(ROOT))
    except ValueError:
        label = str(default)
    return PipelineConfig(
        repo_url=settings.repo_url,
        poller_dir=str(settings.basedir / POLLER_DIR),
        mirror_dir=str(settings.basedir / MIRROR_DIR),
        default_file=str(default),
        default_label=label,
        registry_path=str(settings.basedir / REGISTRY_FILE),
        default_branch=settings.repo.default_branch,
        policy=make_policy(settings, plan),
        max_registered=settings.limits.registered_builders,
    )


def make_reuse_setup(settings: Settings, setup: JobSetup) -> ReuseSetup:
    """What a job's reuse key takes from where it runs (`jobs/reuse.py`)."""
    images: tuple[tuple[str, str], ...] = ()
    if setup.mode == "docker":
        from namaskah_ci.workers.docker.config import images_of

        images = tuple(sorted(images_of(settings).items()))
    return ReuseSetup(
        enabled=settings.pipeline.reuse,
        mode=setup.mode,
        interpreters=setup.interpreters,
        worker_env=setup.worker_env,
        base_path=setup.base_path,
        job_user=setup.job_user,
        docker_host=settings.workers.docker_host if setup.mode == "docker" else "",
        images=images,
    )


def make_job_setup(settings: Settings, plan: WorkerPlan) -> JobSetup:
    layout = JobLayout(
        runner=plan.runner,
        helpers_dir=plan.helpers_dir,
        cache_root=plan.cache_root,
        user=plan.job_user,
        sandbox=plan.mode == "local",
        default_branch=settings.repo.default_branch,  # local: bwrap, caches per ref
        hidden=(str(settings.basedir), str(settings.secrets_dir), str(settings.cache_dir)),
    )
    worker_env = {**dict(plan.base_env), **settings.scanner_env, **settings.workers.job_env}
    return JobSetup(
        mode=plan.mode,
        layout=layout,
        repo_url=settings.repo_url,
        base_path=settings.workers.job_path or os.defpath,
        worker_env=tuple(sorted(worker_env.items())),
        interpreters=tuple(sorted(settings.workers.interpreters.items())),
        app_base_image=settings.workers.app_base_image,
        docker_ca_bundle=dict(plan.base_env).get("PIP_CERT", "") if plan.mode == "docker" else "",
        docker_socket_branches=plan.docker_socket_branches,
        nice=plan.nice_commands,
        transfer_helpers=plan.transfer_helpers,
        services_in_worker=plan.services_in_worker,
        coverage_min=settings.checks.coverage_min,
        reports_root=str(settings.reports_dir),
        report_bytes=settings.limits.report_bytes,
        report_files=settings.limits.report_files,
        reports_url=reports_url(settings.buildbot_url, settings.www.reports_url),
    )
