"""Pythons the jobs' user can run: copies of private installations, made the first time a job needs one.

A root master runs local jobs as `[workers] job_user`, which cannot enter a
private home such as `/root`, where pyenv keeps its Pythons. `share(prefix)`
copies such an installation (`/root/.pyenv/versions/3.12.1`) to
`SHARED_PYTHONS/3.12.1` (`/opt/namaskah-ci/python`, or `$NAMASKAH_PYTHONS`):
world-readable, without the packages of its site-packages, a `--enable-shared`
build's RUNPATH pointed at the copy (patchelf); copied to `<name>.tmp` and
renamed, under a lock file, so that two builds (or masters) asking at once copy
it once and nobody sees half a copy. The interpreter lookup
(`jobs/hostenv.py`) calls it when the only interpreter of a version is one the
job user cannot run (`scripts/shared_pythons.sh`, `make up`, through hostenv's
command line). Blocking (seconds): call it in a thread from the reactor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

SHARED_PYTHONS = os.environ.get("NAMASKAH_PYTHONS", "/opt/namaskah-ci/python")


class ShareError(Exception):
    """The installation could not be copied; the message says why, in one line."""


def _version_of(prefix: str) -> str:
    """'3.12' of an installation `prefix` (its bin/python3.12), '' when it is none."""
    for name in sorted(os.listdir(os.path.join(prefix, "bin"))) if os.path.isdir(os.path.join(prefix, "bin")) else ():
        found = re.fullmatch(r"python(3\.[0-9]+)", name)
        if found and os.path.isdir(os.path.join(prefix, "lib", name)):
            return found.group(1)
    return ""


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _no_packages(directory: str, entries: list[str]) -> list[str]:
    """copytree's filter: a site-packages' packages stay behind (the copy only makes virtualenvs)."""
    if os.path.basename(directory) != "site-packages":
        return []
    return [entry for entry in entries if os.path.isdir(os.path.join(directory, entry))]


def _runpath(binary: str) -> str:
    """The ELF RUNPATH/RPATH of `binary` ('' when it has none or no tool can read it)."""
    for command in (["patchelf", "--print-rpath", binary], ["readelf", "-d", binary]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if done.returncode == 0:
            if command[0] == "patchelf":
                return done.stdout.strip()
            return " ".join(re.findall(r"R(?:UN)?PATH\)\s.*\[(.*)\]", done.stdout))
    return ""


def _point_at_copy(source: str, copy: str, version: str) -> None:
    """A --enable-shared build finds its libpython through a RUNPATH into `source`: point it at the copy."""
    binaries = [os.path.join(copy, "bin", f"python{version}")]
    lib = os.path.join(copy, "lib")
    binaries += [os.path.join(lib, name) for name in sorted(os.listdir(lib)) if name.startswith(f"libpython{version}")]
    binaries = [path for path in binaries if os.path.isfile(path) and not os.path.islink(path)]
    if not any(source in _runpath(path) for path in binaries):
        return
    if shutil.which("patchelf") is None:
        raise ShareError(f"{source} is a --enable-shared build: copying it needs patchelf (apt-get install patchelf)")
    for path in binaries:
        subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../lib", path], check=True, capture_output=True, timeout=60)


def _readable(top: str) -> None:
    """chmod -R go+rX: every user may read it and enter (and run) what the owner may."""
    for directory, dirs, files in os.walk(top):
        for name in [*dirs, *files, None]:
            path = directory if name is None else os.path.join(directory, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode & 0o7777
            extra = 0o044 | (0o011 if (os.path.isdir(path) or mode & 0o100) else 0)
            if mode | extra != mode:
                os.chmod(path, mode | extra)


def share(prefix: str, target: str = "") -> str:
    """The copy of the installation `prefix` under `target` (SHARED_PYTHONS), made if missing: its path."""
    target = target or SHARED_PYTHONS
    source = os.path.realpath(prefix)
    version = _version_of(source)
    if not version:
        raise ShareError(f"{prefix} is not a Python installation (no bin/python3.X beside lib/python3.X)")
    final = os.path.join(target, os.path.basename(source))
    if os.path.isdir(final):
        return final
    os.makedirs(target, exist_ok=True)
    os.chmod(target, os.stat(target).st_mode & 0o7777 | 0o055)
    with _locked(os.path.join(target, ".lock")):
        if os.path.isdir(final):  # another thread or master made it while this one waited
            return final
        copy = final + ".tmp"
        shutil.rmtree(copy, ignore_errors=True)  # left by a copy that was interrupted
        try:
            shutil.copytree(source, copy, symlinks=True, ignore=_no_packages)
            _point_at_copy(source, copy, version)
            _readable(copy)
            os.rename(copy, final)
        except (OSError, subprocess.SubprocessError, shutil.Error) as exc:
            shutil.rmtree(copy, ignore_errors=True)
            raise ShareError(f"could not copy {source} to {target}: {exc}") from None
    return final
