"""Every builder, scheduler, worker, property and secret name the master uses, in one place.

Builders come from the pipeline file (one per job and matrix entry) plus the
fixed ones below; deploy environments are open data (`[deploy.<env>]`), so
their builder, scheduler and secret names are functions of the environment's
name. Nothing here imports Buildbot.
"""

from __future__ import annotations

PROJECT = "namaskah"  # the project of every change, source stamp and force form

# --- builders ---------------------------------------------------------------------------------
PIPELINE = "pipeline"
RESERVED_BUILDER_PREFIXES = ("deploy-", "rollback-")


def deploy_builder_name(environment: str) -> str:
    return f"deploy-{environment}"


def rollback_builder_name(environment: str) -> str:
    return f"rollback-{environment}"


def is_reserved_builder(name: str) -> bool:
    """Names a pipeline file may not give a job: the pipeline's own and the deploy builders'."""
    return name == PIPELINE or name.startswith(RESERVED_BUILDER_PREFIXES)


def matrix_builder_name(job: str, python: str) -> str:
    """`test` with `matrix: {python: [3.9]}` is the builder `test-py3.9`."""
    return f"{job}-py{python}"


# --- schedulers -------------------------------------------------------------------------------
PUSH_SCHEDULER = "pipeline-on-push"
FIRST_RUN_SCHEDULER = "first-run"
RERUN_SCHEDULER = "rerun_failed"  # the pipeline's "Re-run failed jobs" force form
APPROVE_SCHEDULER = "approve_fork"  # the pipeline's "Approve and run a fork's pull request" form (local mode)
APPROVE_FORM_LABEL = "Approve and run a fork's pull request"


def identifier(name: str) -> str:
    """Scheduler and worker names must be identifiers: `test_py3_9` for `test-py3.9`."""
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def check_scheduler_name(builder: str) -> str:
    """The Triggerable the pipeline's fan-out starts a job builder with."""
    return f"check-{builder}"


def analysis_scheduler_name(builder: str) -> str:
    """The Triggerable for a job outside the verdict, started once the checks ended."""
    return f"analysis-{builder}"


def schedule_scheduler_name(builder: str) -> str:
    """The Nightly of a job with a `schedule` (taken from the default branch's file)."""
    return f"schedule-{builder}"


def force_scheduler_name(builder: str) -> str:
    return "force_" + identifier(builder)


def deploy_trigger_name(environment: str) -> str:
    return f"deploy-{environment}-after-pipeline"


def deploy_force_name(environment: str) -> str:
    return f"force_deploy_{identifier(environment)}"


def rollback_force_name(environment: str) -> str:
    return f"force_rollback_{identifier(environment)}"


# --- workers ----------------------------------------------------------------------------------
REUSE_WORKER = "reuse"  # the master-side worker of reused job builds (nothing runs on it)


def _slot(slot: int) -> str:
    return "" if slot == 0 else f"-s{slot + 1}"


def worker_name(builder: str, slot: int = 0) -> str:
    """`local-test-py3_9` for `test-py3.9`; `local-test-py3_9-s2` its second concurrent build."""
    return "local-" + builder.replace(".", "_") + _slot(slot)


def docker_worker_name(builder: str, host_index: int = 0, slot: int = 0) -> str:
    """`docker-test-py3_9` on the first Docker host, `docker-test-py3_9-h2` on the second; `-s2` and on
    for a builder's further concurrent builds on one host."""
    base = "docker-" + builder.replace(".", "_")
    return (base if host_index == 0 else f"{base}-h{host_index + 1}") + _slot(slot)


# --- the master's state, in its basedir ------------------------------------------------------
POLLER_DIR = "gitpoller"  # the GitPoller's bare repository
MIRROR_DIR = "pipeline-mirror.git"  # the master's own mirror (pipeline files, ancestry)
REPORTS_DIR = "reports"  # uploaded reports, <builder>/<build number>/ (the Reports dashboard serves them)


# --- build properties -------------------------------------------------------------------------
PROP_CHECK_RESULTS = "check_results"  # pipeline: {builder: result name} of the fanned-out jobs
PROP_PIPELINE_JOBS = "pipeline_jobs"  # pipeline: the verdict jobs its file defines for the branch
PROP_PIPELINE_FILE = "pipeline_file"  # pipeline and jobs: where the jobs came from (file or default)
PROP_PIPELINE_ERROR = "pipeline_error"  # pipeline: the one-line problem of an invalid file
PROP_JOB = "namaskah_job"  # job builds: the resolved job definition (a dict)
PROP_JOB_REVISION = "namaskah_revision"  # job builds: the revision the definition was read at
PROP_STATUS_CONTEXT = "status_context"  # job builds: the commit-status context
PROP_COVERAGE = "coverage"  # jobs with a coverage report: percent of lines covered
PROP_VENV = "venv"
PROP_REUSE_KEY = "namaskah_reuse_key"  # job builds: the job's reuse key (jobs/reuse.py), recorded on SUCCESS
PROP_REUSED = "namaskah_reused"  # job builds: the earlier SUCCESS build this one reuses
PROP_RUN_EVERYTHING = "run_everything"  # forced pipelines: reuse nothing
PROP_RERUN_OF = "rerun_of"  # pipeline: the number of the pipeline build whose failed jobs it re-runs
PROP_RERUN_KEPT = "rerun_kept"  # pipeline: {builder: result} of that build's checks it keeps
PROP_DEADLINE = "job_deadline"
# pull requests (github/pull_requests.py): on the change, the pipeline and its job builds
PROP_PR_NUMBER = "pr_number"
PROP_PR_HEAD = "pr_head"  # the PR's head commit: commit statuses go there
PROP_PR_BASE = "pr_base"  # the branch it merges into
PROP_PR_HEAD_REPO = "pr_head_repo"  # owner/name the head comes from
PROP_PR_FORK = "pr_fork"  # True: the head repository is not this one (no secrets, isolation)
PROP_PR_CONFLICT = "pr_conflict"  # no merge result: the base it conflicts with
PROP_PR_APPROVED_BY = "pr_approved_by"  # a fork's pipeline an admin approved (local mode)
PR_PROPERTIES = (PROP_PR_NUMBER, PROP_PR_HEAD, PROP_PR_BASE, PROP_PR_HEAD_REPO, PROP_PR_FORK, PROP_PR_APPROVED_BY)

# deploy and rollback builds (steps/deploy/)
PROP_TARGET_DEPLOY_ID = "rollback_target_deploy_id"
PROP_ROLLBACK_AT = "rollback_at"
PROP_ROLLBACK_LIVE = "rollback_live_failure"
PROP_ROLLBACK_HEALTH = "rollback_health"
PROP_SUPERSEDED = "deploy_superseded"  # why this deploy was skipped (a newer revision, or already done)
PROP_REDEPLOY = "redeploy"  # the force form's "deploy again" checkbox
PROP_RESUMED = "deploy_resumed"  # the Render deploy this build took over instead of starting one
PROP_ENVIRONMENT = "deploy_environment"
PROP_REVISION = "deploy_revision"  # deploy: the revision deployed; rollback: the target
PROP_DEPLOY_ID = "render_deploy_id"  # the Render deploy that is (to be) live
PROP_STARTED = "deploy_started"  # the hook (or rollback) was accepted: production may have changed
PROP_ATTEMPTED = "deploy_attempted"  # the deploy or rollback was tried (the notification is due)
PROP_HOOK_AT = "deploy_hook_at"  # epoch seconds the hook accepted the deploy
PROP_FAILURE = "deploy_failure"  # the first thing that failed, in words
PROP_ROLLED_BACK_TO = "rolled_back_to"  # revision an automatic rollback went back to
PROP_ROLLBACK_DEPLOY_ID = "rollback_deploy_id"
PROP_ROLLBACK_STARTED = "rollback_started"
PROP_ROLLBACK_RESULT = "rollback_result"  # "healthy", "unhealthy", "failed: ...", "nothing to roll back to"
PROP_NOT_CONFIGURED = "deploy_not_configured"  # why the build ended SKIPPED
PROP_GATE_PIPELINE = "gate_pipeline"  # set by the pipeline's deploy gate when it triggers a deploy
PROP_GATE_OVERRIDE = "gate_override"  # a forced deploy whose pipeline did not pass
PROP_OVERRIDE_REQUEST = "override_gate"  # the force form's checkbox
PROP_ROLLBACK_REQUEST = "rollback_target"  # the rollback force form's revision field


def jobs_branch(branch: str | None, pr_base: str | None = None) -> str | None:
    """The branch a job's `branches:` is matched against: a pull request's base, else the build's."""
    return pr_base or branch


# --- secrets ----------------------------------------------------------------------------------
GITHUB_TOKEN = "github_token"
WEBHOOK_SECRET = "webhook_secret"
RENDER_API_KEY = "render_api_key"
NOTIFY_WEBHOOK_URL = "notify_webhook_url"
CODECOV_TOKEN = "codecov_token"
SAFETY_API_KEY = "safety_api_key"
ADMIN_HTPASSWD = "admin_htpasswd"
WORKER_PASSWORD = "worker_password"
GITHUB_OAUTH_CLIENT_ID = "github_oauth_client_id"
GITHUB_OAUTH_CLIENT_SECRET = "github_oauth_client_secret"
# the seed's names for its two environments; any other environment `<env>` uses `<env>_deploy_hook`, ...
SEED_ENVIRONMENT_SECRETS = {
    "production": ("render_deploy_hook", "render_rollback_hook", "render_service_id"),
    "staging": ("staging_deploy_hook", "staging_rollback_hook", "staging_service_id"),
}


def environment_secrets(environment: str) -> tuple[str, str, str]:
    """(deploy hook, rollback hook, Render service id) secret names of an environment."""
    seed = SEED_ENVIRONMENT_SECRETS.get(environment)
    if seed:
        return seed
    return (f"{environment}_deploy_hook", f"{environment}_rollback_hook", f"{environment}_service_id")


# secrets a pipeline file can never hand to a job, whatever `[pipeline] job_secrets` says
MASTER_ONLY_SECRETS = (
    GITHUB_TOKEN,
    WEBHOOK_SECRET,
    RENDER_API_KEY,
    NOTIFY_WEBHOOK_URL,
    ADMIN_HTPASSWD,
    WORKER_PASSWORD,
    GITHUB_OAUTH_CLIENT_ID,
    GITHUB_OAUTH_CLIENT_SECRET,
)


def master_only_secret(name: str, environments: tuple[str, ...] = ()) -> bool:
    """Deploy, Render, GitHub, webhook, notification and login secrets stay on the master."""
    if name in MASTER_ONLY_SECRETS:
        return True
    if name.endswith(("_deploy_hook", "_rollback_hook", "_service_id")):
        return True
    return any(name in environment_secrets(env) for env in environments)


def secret_env_var(secret: str) -> str:
    """A job secret reaches the job's steps as an environment variable: `codecov_token` → CODECOV_TOKEN."""
    return secret.upper()
