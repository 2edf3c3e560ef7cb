"""Where a master keeps its working state, and the check that its job directories sit outside any project.

Local-mode jobs run in `<basedir>/workers/<worker>/<builder>/build`. pytest, mypy, ruff, flake8,
black, isort and coverage look for their configuration in the directory they run in and every
directory above it, so a job directory under another project (e.g. a basedir inside Namaskah CI's own
checkout, the default before issue 23) makes a repository's tests and linters take that project's
configuration: its pytest rootdir and `pythonpath`, its mypy and ruff rules.

- `default_basedir(checkout)`: `[master] basedir` when the setting is empty: `$XDG_STATE_HOME/namaskah-ci/
  <name>` when that variable is set, else `/var/lib/namaskah-ci/<name>` for root and
  `~/.local/state/namaskah-ci/<name>` for anyone else; `<name>` (`place_name`) is the checkout's
  directory name and a short hash of its absolute path, so two checkouts on one machine never share it.
  `scripts/run_ci_checks.py` keeps a repository's local runs under `state_root()/local-checks/<name>`.
- `config_ancestor(directory)`: the first project-configuration file (`PROJECT_FILES`) in `directory` or
  above it; `guard_problem(basedir)` turns one into the line the master refuses to start with (config.py;
  `make up` says it first), or only warns with (twistd.log, `make up`) when the file lies in a world-writable
  sticky directory such as /tmp, where anyone may put one.

Standard library only, no side effect at import; the checks stat a few dozen paths (run them off the
reactor, or before it runs, as config building does).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

APP_DIR = "namaskah-ci"
SYSTEM_STATE = Path("/var/lib") / APP_DIR  # root's default
LEGACY_BASEDIR = Path(".state") / "master"  # the default before issue 23, relative to the checkout
# what pytest, mypy, ruff, flake8, black, isort and coverage take as a project's root or configuration
PROJECT_FILES = (
    "pyproject.toml",
    "setup.cfg",
    "tox.ini",
    "pytest.ini",
    "conftest.py",
    ".flake8",
    "mypy.ini",
    ".mypy.ini",
    ".git",
    "setup.py",
    "ruff.toml",
    ".ruff.toml",
    ".coveragerc",
    ".isort.cfg",
)


def state_root(environ: Mapping[str, str] | None = None, euid: int | None = None, home: Path | None = None) -> Path:
    """`$XDG_STATE_HOME/namaskah-ci` (an absolute value: the XDG spec ignores a relative one), else
    `/var/lib/namaskah-ci` for root, `~/.local/state/namaskah-ci` for other users."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_DIR
    if (os.geteuid() if euid is None else euid) == 0:
        return SYSTEM_STATE
    return (Path.home() if home is None else home) / ".local" / "state" / APP_DIR


def place_name(path: Path) -> str:
    """`<directory name>-<8 hex digits of its absolute path>`: two checkouts (or repositories) never share it."""
    absolute = Path(os.path.realpath(path))
    return f"{absolute.name or 'root'}-{hashlib.sha256(str(absolute).encode()).hexdigest()[:8]}"


def default_basedir(
    checkout: Path, environ: Mapping[str, str] | None = None, euid: int | None = None, home: Path | None = None
) -> Path:
    """`[master] basedir` when the setting is empty (see the module docstring)."""
    return state_root(environ, euid, home) / place_name(checkout)


def config_ancestor(directory: Path, exists: Callable[[str], bool] = os.path.lexists) -> Path | None:
    """The first of `PROJECT_FILES` in `directory` (as its real path: what a tool's getcwd() gives) or a
    directory above it, the nearest first; None when there is none."""
    real = Path(os.path.realpath(directory))
    for each in (real, *real.parents):
        for name in PROJECT_FILES:
            if exists(str(each / name)):
                return each / name
    return None


class Problem(NamedTuple):
    line: str  # what the master says, one line naming the file and the setting
    refuse: bool  # False: the file is in a world-writable sticky directory (/tmp): a loud warning only


def guard_problem(basedir: Path, exists: Callable[[str], bool] = os.path.lexists) -> Problem | None:
    """None when no job directory under `basedir` would sit inside a project; else the line to refuse (or warn)
    with. A file in a world-writable sticky directory such as /tmp only warns: any local user can put one there,
    so refusing would let anyone keep the master from starting, and its owner cannot keep them out."""
    found = config_ancestor(basedir, exists)
    if found is None:
        return None
    try:
        mode = os.stat(found.parent).st_mode
    except OSError:
        mode = 0
    shared = bool(mode & stat.S_IWOTH and mode & stat.S_ISVTX)
    line = (
        f"[master] basedir {basedir} is inside a project: {found} is above its job directories, so the "
        "repositories' pytest, mypy, ruff, flake8, black and coverage may take that project's configuration; "
        + (f"remove {found}, or " if shared else "")
        + "set [master] basedir (PIPELINE_MASTER_BASEDIR) to a directory outside any project, or empty for "
        f"the default ({state_root()}/<checkout>-<hash>)"
    )
    return Problem(line, refuse=not shared)


def main(argv: list[str]) -> int:
    """`python -m namaskah_ci.workdirs default CHECKOUT`: `default_basedir(CHECKOUT)`; `check BASEDIR`: the
    guard's line, if any, exit 1 when it refuses (scripts/master_ctl.sh)."""
    if len(argv) == 2 and argv[0] == "default":
        print(default_basedir(Path(argv[1])))
        return 0
    if len(argv) == 2 and argv[0] == "check":
        problem = guard_problem(Path(argv[1]))
        if problem:
            print(problem.line if problem.refuse else f"WARNING: {problem.line}", file=sys.stderr)
        return 1 if problem and problem.refuse else 0
    print("usage: python -m namaskah_ci.workdirs default CHECKOUT | check BASEDIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
