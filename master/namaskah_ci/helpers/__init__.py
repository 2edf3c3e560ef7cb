"""Namaskah CI's job helpers: stdlib-only scripts (Python 3.9+) that run on the workers.

They come with the master, never from the repository being built: local
workers run them from this directory, docker workers get them copied into
each build (`.namaskah-ci/helpers/` beside the checkout). Jobs reach them
as `$NAMASKAH_CI_HELPERS/<script>.py`.
"""

from __future__ import annotations

import os

HELPERS_DIR = os.path.dirname(os.path.abspath(__file__))


def scripts() -> tuple[str, ...]:
    """The helper scripts' file names."""
    return tuple(sorted(n for n in os.listdir(HELPERS_DIR) if n.startswith("ci_") and n.endswith(".py")))
