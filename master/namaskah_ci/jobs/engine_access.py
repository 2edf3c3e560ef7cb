"""Which builds get the Docker engine's socket (both modes): one decision for the sandbox or container and its step.

A job with `tools: [docker]` builds images on the engine that runs the job
containers; its socket is root on that engine's host (containers that outlive
the build, any volume or host path mounted read-write). So only builds of the
branches the operator names get it: `[workers] docker_socket_branches`, by
default (an empty list) the branches that deploy (`[deploy.<env>] branch`) and
`[repo] default_branch` — code that reached them was pushed by someone trusted
to deploy. Any other ref (another branch, a pull request's
`refs/pull/<n>/merge`, a build without a branch) does not, nor does a fork's
pull request whatever the setting says.

`workers/docker/config.py` mounts the socket only when `refusal()` is empty;
the job's `required tools` step (`steps/job_steps.py`) ends FAILURE with the
same line otherwise, so the job never runs half-way without the engine. Pure
functions: no Buildbot, no Docker.
"""

from __future__ import annotations

from namaskah_ci.settings import Settings

SETTING = "[workers] docker_socket_branches"


def allowed_branches(settings: Settings) -> tuple[str, ...]:
    """The branches whose builds may have the socket: the setting, or (empty) the deploy branches and the
    default branch."""
    named = settings.workers.docker_socket_branches
    if named:
        return tuple(dict.fromkeys(named))
    deploys = [settings.deploy[env].branch for env in settings.environments]
    return tuple(dict.fromkeys([settings.repo.default_branch, *deploys]))


def refusal(allowed: tuple[str, ...], branch: str | None, fork: bool) -> str:
    """Empty when a build of `branch` may have the engine's socket, else one line saying why, naming the setting."""
    if fork:
        return (
            f"docker: a fork's pull request never gets the Docker engine's socket (root on its host), "
            f"whatever {SETTING} says"
        )
    ref = (branch or "").removeprefix("refs/heads/")
    if ref and ref in allowed:
        return ""
    which = f"branch {ref}" if ref else "a build without a branch"
    return (
        f"docker: {which} does not get the Docker engine's socket (root on its host): {SETTING} "
        f"gives it to {', '.join(allowed) or 'no branch'} only"
    )


def summary(allowed: tuple[str, ...], branch: str | None, fork: bool) -> str:
    """The step's short summary of a refusal."""
    if fork:
        return "docker refused: a fork's pull request"
    ref = (branch or "").removeprefix("refs/heads/") or "(no branch)"
    return f"docker refused: {ref} is not in {SETTING}"
