"""Every override of a Buildbot private API, one module per upstream bug, one version policy.

Each module in this package fixes one known Buildbot bug (its docstring names
the upstream issue or says where the reproduction was filed) and exposes
`apply()`, which is idempotent. Nothing is patched at import: `master.cfg`
calls `apply_all()` before it builds the config.

A few modules are not patches but the one place a private API is used by
subclassing or reaching into Buildbot's objects (`poller_reconfig`,
`status_repository`, `metrics_resource`, `docker_client`): they have no
`apply()` and are imported by the one module that needs them; the version policy covers them
too, since `apply_all()` runs before the config is built.

Version policy: the fixes were checked against Buildbot `CHECKED_AGAINST`,
the version `pyproject.toml` pins. On any other version `apply_all()` refuses
to start the master with one line saying so, rather than apply private-API
code to a Buildbot it was never read against (or silently leave a hole open).
"""

from __future__ import annotations

import importlib

import buildbot

CHECKED_AGAINST = "4.3.0"

# the fix modules, in the order they are applied (each: `apply()`, idempotent)
MODULES: tuple[str, ...] = (
    "rest_write",  # buildbot#9065
    "matcher_compile",
    "home_page",  # buildbot#8758
    "change_hook_answer",
    "rest_errors",
    "log_stream",
    "mq_delivery",
    "clean_shutdown",
    "shutdown_retry",  # buildbot#6029
    "request_limits",
    "session_cookie",  # buildbot#6209
    "redaction",  # buildbot#4793
)


class FixError(Exception):
    """The fixes cannot be applied to this Buildbot; the message is one line saying why."""


def check_version(version: str | None = None) -> None:
    found = version or buildbot.version
    if found != CHECKED_AGAINST:
        raise FixError(
            f"Buildbot {found} is installed, but Namaskah CI's fixes of Buildbot private APIs were checked "
            f"against {CHECKED_AGAINST} only: install buildbot=={CHECKED_AGAINST} (pyproject.toml pins it), "
            "or re-check every module of master/namaskah_ci/fixes/ against the new version"
        )


def apply_all(version: str | None = None) -> None:
    """Check the version, then apply every fix (idempotent)."""
    check_version(version)
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").apply()
