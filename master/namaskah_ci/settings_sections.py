"""The settings' sections, one frozen dataclass per TOML table (`[master]`, `[www]`, ... and any
`[deploy.<environment>]`): the keys and their types, which `settings.py` checks every source against.
Every default is in `master/pipeline.toml`; what each key means is in docs/settings.md.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class MasterSection:
    basedir: str
    title: str
    buildbot_url: str
    db_url: str


@dataclasses.dataclass(frozen=True)
class WwwSection:
    port: int
    bind: str
    public_view: bool
    admins: list[str]
    admin_groups: list[str]
    login_max_failures: int  # failed web logins per user and per client address in the window (0: no limit)
    login_window_seconds: int
    reports_url: str  # another origin serving <basedir>/reports, linked instead of the UI ("": the UI, sandboxed)


@dataclasses.dataclass(frozen=True)
class WorkersSection:
    mode: str
    port: int
    bind: str
    interpreters: dict[str, str]
    cache_dir: str
    # docker mode (docs/docker.md)
    docker_host: str
    extra_docker_hosts: list[str]
    network_mode: str
    master_host: str
    images: dict[str, str]
    service_ready_timeout: int
    instance_name: str
    app_base_image: str
    docker_socket_branches: list[str]  # both modes: whose `tools: [docker]` gets the engine ([]: deploys + default)
    # every job's environment: the operator's variables and the directories of the base PATH
    job_env: dict[str, str]
    job_path: str
    job_user: str  # local mode, master as root: jobs' commands run as this user ("": as root)
    max_jobs: int  # job builds at once, every pipeline together (0: see workers.job_slots)
    engine_jobs: int  # docker mode: job builds at once per engine (0: the master's cores)


@dataclasses.dataclass(frozen=True)
class RepoSection:
    url: str
    default_branch: str  # schedules come from its pipeline file
    branches: list[str]
    all_branches: bool
    poll_interval: int
    tree_stable_seconds: int


@dataclasses.dataclass(frozen=True)
class SecretsSection:
    dir: str
    env_prefix: str


@dataclasses.dataclass(frozen=True)
class ChecksSection:
    required: list[str]  # []: the verdict jobs of the pipeline file at the revision being deployed
    disabled: list[str]
    coverage_min: int
    report_retention_days: int


@dataclasses.dataclass(frozen=True)
class PipelineSection:
    default_file: str  # the pipeline of repositories without .namaskah-ci.yml; empty: master/default-pipeline.yml
    job_secrets: list[str]  # secrets a pipeline file may hand to its jobs
    max_file_bytes: int
    first_run: bool  # a new master builds the newest revision of [repo] default_branch once
    reuse: bool  # a job whose reuse key equals an earlier SUCCESS's shows that result (pipeline/inputs.py)
    max_pipelines: int  # pipeline builds at once (0: see workers.pipeline_slots)


@dataclasses.dataclass(frozen=True)
class ScannersSection:
    """Where the scanners' databases come from (firewalled installs: mirrors and pre-seeded caches)."""

    trivy_db_repository: str  # TRIVY_DB_REPOSITORY: an OCI mirror of trivy's vulnerability database
    trivy_cache_dir: str  # TRIVY_CACHE_DIR: where the database is cached (or pre-seeded)
    trivy_skip_db_update: bool  # TRIVY_SKIP_DB_UPDATE: use the cached database as it is
    pip_audit_index_url: str  # PIP_AUDIT_INDEX_URL: the package index pip-audit queries


@dataclasses.dataclass(frozen=True)
class RenderSection:
    api_url: str
    request_timeout_seconds: int  # per HTTP request to Render, the hooks and the deployed service


@dataclasses.dataclass(frozen=True)
class DeploySection:
    branch: str
    url: str
    wait_seconds: int
    health_retries: int
    health_interval_seconds: int
    smoke_paths: list[str]
    live_timeout_seconds: int  # how long a deploy may take to go live (Render API polling)
    poll_interval_seconds: int  # between two Render API status polls


@dataclasses.dataclass(frozen=True)
class GithubSection:
    api_url: str
    repository: str
    max_payload_bytes: int  # the webhook refuses larger deliveries (GitHub sends up to 25 MB)
    merge_ref_wait_seconds: int  # how long a pull request's merge ref is waited for before "conflicts"


@dataclasses.dataclass(frozen=True)
class LimitsSection:
    """What one pipeline file, request, report or job may make the master do (each refusal names its key)."""

    file_depth: int  # nesting of a pipeline file's YAML (mappings and lists inside each other)
    file_nodes: int  # values in a pipeline file, aliases expanded
    file_seconds: int  # time to parse and validate one pipeline file (in a thread, off the reactor)
    pipeline_builders: int  # job builders one pipeline file may define (matrix entries expanded)
    registered_builders: int  # job builders the master keeps registered (unused ones retired first)
    request_bytes: int  # request bodies (REST, force forms, login) refused above this, by Content-Length
    report_bytes: int  # a job's reports together, as collected for the upload
    report_files: int  # files a job's reports may hold together


@dataclasses.dataclass(frozen=True)
class NotifySection:
    email_to: list[str]
    email_from: str
    smtp_host: str
    smtp_port: int


SECTIONS: dict[str, type] = {
    "master": MasterSection,
    "www": WwwSection,
    "workers": WorkersSection,
    "repo": RepoSection,
    "secrets": SecretsSection,
    "pipeline": PipelineSection,
    "scanners": ScannersSection,
    "checks": ChecksSection,
    "render": RenderSection,
    "notify": NotifySection,
    "github": GithubSection,
    "limits": LimitsSection,
}
# deploy environments are open data: any [deploy.<env>] table; these keys may be left out
DEPLOY_DEFAULTS = {
    "wait_seconds": 60,
    "health_retries": 5,
    "health_interval_seconds": 10,
    "smoke_paths": ["/health"],
    "live_timeout_seconds": 900,
    "poll_interval_seconds": 5,
}
ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
