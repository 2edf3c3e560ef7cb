"""Every override of a Buildbot private API, one module per upstream bug, one version policy.

Each module in this package fixes one known Buildbot bug (its docstring names
the upstream issue or says where the reproduction was filed) and exposes
`apply()`, which is idempotent. Nothing is patched at import: `master.cfg`
calls `apply_all()` before it builds the config.

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
MODULES: tuple[str, ...] = ("log_stream", "mq_delivery", "clean_shutdown", "shutdown_retry", "request_limits", "session_cookie", "redaction")


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
