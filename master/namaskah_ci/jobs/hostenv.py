"""What a local job needs of the host: the interpreter for a Python version, the host's CA bundle.

Shared by local jobs (`steps/load.py`, `jobs/reuse.py`) and `scripts/run_ci_checks.py`; no
Buildbot here. `find_interpreter` takes, for a version, the first interpreter that makes
virtualenvs and that the job user (a root master's `[workers] job_user`) can run, looking in
this order: `[workers] interpreters`' entry when it is a path, the PATH's directories (pyenv's
last: a process started through a pyenv shim has the version's directory first), the system's
(`/usr/local/bin`, `/usr/bin`, `/opt/<name>/bin`), the shared copies (`/opt/namaskah-ci/python`),
pyenv's versions. When only an installation the job user cannot enter has the version (pyenv
under `/root`), it is copied to the shared copies then, once (`jobs/shared_pythons.py`). A
version the host lacks raises MissingPython: one line naming the versions it has. Probes run
subprocesses and a copy takes seconds: call it in a thread from the reactor. `python -m
namaskah_ci.jobs.hostenv [--job-user USER] 3.9 3.11` does the same from a shell
(scripts/shared_pythons.sh, `make up`).
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import re
import subprocess
import sys
from typing import Any

from namaskah_ci.jobs import shared_pythons

OLDEST = (3, 8)  # the job helpers run on the job's interpreter when the job user cannot run the master's
SYSTEM_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
PROBE = "import venv, ensurepip"  # Debian splits venv and ensurepip out of its python3.X
_USABLE: set[tuple[str, str, int]] = set()  # (interpreter, user, its mtime) probed and working


class MissingPython(LookupError):
    """No interpreter of the version the job user can run; the message names the versions there are."""


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", text))


def _newest_first(paths: list[str]) -> list[str]:
    return sorted(paths, key=_version_key, reverse=True)


def _pyenv_root() -> str:
    return os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")).rstrip("/")


def _is_pyenv(directory: str) -> bool:
    directory = directory.rstrip("/")
    root = _pyenv_root()
    return directory == root or directory.startswith(root + "/") or "/.pyenv/" in directory + "/"


def _probe_as(user: str) -> dict[str, Any]:
    """subprocess arguments that run the probe as `user` (a root master's job user; nothing otherwise)."""
    if not user or os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:  # the job's own step fails naming the missing user
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}


def _usable(candidate: str, user: str = "") -> bool:
    """The interpreter runs (as `user` when given) and can create virtualenvs. Successes are remembered
    per file and mtime; failures are probed again (a package installed since, a copy made since)."""
    try:
        stamp = (candidate, user, os.stat(candidate).st_mtime_ns)
    except OSError:
        return False
    if stamp in _USABLE:
        return True
    try:
        probe = subprocess.run(
            [candidate, "-I", "-c", PROBE], capture_output=True, timeout=20, check=False, **_probe_as(user)
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if probe.returncode == 0:
        _USABLE.add(stamp)
    return probe.returncode == 0


def _path_dirs() -> tuple[list[str], list[str]]:
    """(the PATH's and the system's directories outside pyenv, the PATH's pyenv directories); no shims,
    which fail outside a selected version."""
    outside: list[str] = []
    pyenv: list[str] = []
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), *SYSTEM_DIRS]:
        if not directory or directory.rstrip("/").endswith("/shims"):
            continue
        group = pyenv if _is_pyenv(directory) else outside
        if directory not in group:
            group.append(directory)
    return outside, pyenv


def _installed(executable: str) -> tuple[list[str], list[str]]:
    """(/opt's and the shared copies' `executable` (python3.X), pyenv's), each newest first."""
    version = executable[len("python") :]
    ours = _newest_first(glob.glob(os.path.join("/opt", "*", "bin", executable)))  # e.g. /opt/python3.12/bin
    ours += _newest_first(glob.glob(os.path.join(shared_pythons.SHARED_PYTHONS, f"{version}.*", "bin", executable)))
    pyenv = _newest_first(glob.glob(os.path.join(_pyenv_root(), "versions", f"{version}.*", "bin", executable)))
    return ours, pyenv


def interpreter_candidates(name: str, version: str) -> list[str]:
    """Where the interpreter `name` (default python<version>) may be, in order of preference: `name`
    when it is a path, then `name` and python<version> in the PATH's and the system's directories,
    /opt, the shared copies, pyenv's."""
    outside, pyenv_dirs = _path_dirs()
    executable = f"python{version}"
    ours, pyenv = _installed(executable)
    bare = [] if os.path.isabs(name) else [name]
    bare += [executable] if executable not in bare else []
    found = [name] if os.path.isabs(name) else []
    found += [os.path.join(directory, each) for each in bare for directory in outside]
    found += [*ours, *(os.path.join(directory, each) for each in bare for directory in pyenv_dirs), *pyenv]
    unique: list[str] = []
    for path in found:
        if path not in unique and ".tmp/" not in path and os.access(path, os.X_OK) and not os.path.isdir(path):
            unique.append(path)
    return unique


def available_versions(interpreters: dict[str, str]) -> list[str]:
    """The versions (3.8 or newer) this host has an interpreter of that makes virtualenvs."""
    outside, pyenv = _path_dirs()
    versions = {key for key in interpreters if re.fullmatch(r"3\.[0-9]+", key)}
    for directory in [*outside, *pyenv]:
        versions.update(
            os.path.basename(path)[len("python") :] for path in glob.glob(os.path.join(directory, "python3.*"))
        )
    for root in (
        "/opt/*",
        os.path.join(shared_pythons.SHARED_PYTHONS, "*"),
        os.path.join(_pyenv_root(), "versions", "*"),
    ):
        versions.update(
            os.path.basename(path)[len("python") :] for path in glob.glob(os.path.join(root, "bin", "python3.*"))
        )
    wanted = [
        version for version in versions if re.fullmatch(r"3\.[0-9]+", version) and _version_key(version) >= OLDEST
    ]
    return sorted(
        (
            version
            for version in wanted
            if any(
                _usable(path) for path in interpreter_candidates(interpreters.get(version, f"python{version}"), version)
            )
        ),
        key=_version_key,
    )


def _missing(interpreters: dict[str, str], version: str, why: str, fix: bool = True) -> MissingPython:
    available = ", ".join(available_versions(interpreters)) or "none"
    text = f"python {version}: {why}; available: {available}"
    if fix:
        text += (
            f"; install it (e.g. `pyenv install {version}`, or the distribution's python{version} with its venv "
            f'package) or name it in [workers] interpreters ("{version}" = "/path/to/python{version}")'
        )
    return MissingPython(text)


def _installation(interpreter: str, version: str) -> str:
    """The prefix of the installation `interpreter` belongs to (bin/python3.X beside lib/python3.X), or ''."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(interpreter)))
    if os.path.isdir(os.path.join(prefix, "lib", f"python{version}")) and prefix not in ("/", "/usr", "/usr/local"):
        return prefix
    return ""


def find_interpreter(interpreters: dict[str, str], version: str, job_user: str = "") -> tuple[str, str]:
    """(the interpreter for `version`, what was done to get it: '' or the copy made). Raises MissingPython."""
    if _version_key(version) < OLDEST:
        raise _missing(interpreters, version, "older than 3.8, the oldest the job helpers run on", fix=False)
    name = interpreters.get(version, f"python{version}")
    private: list[str] = []  # working for the master, not for the job user
    for candidate in interpreter_candidates(name, version):
        if not _usable(candidate):
            continue
        if not job_user or not _probe_as(job_user) or _usable(candidate, job_user):
            return candidate, ""
        private.append(candidate)
    problems: list[str] = []
    for candidate in private:
        prefix = _installation(candidate, version)
        if not prefix:
            problems.append(f"the job user {job_user} cannot run {candidate}")
            continue
        try:
            copy = shared_pythons.share(prefix)
        except shared_pythons.ShareError as exc:
            problems.append(str(exc))
            continue
        interpreter = os.path.join(copy, "bin", f"python{version}")
        if _usable(interpreter, job_user):
            return (
                interpreter,
                f"python {version}: copied {prefix} to {copy} (the job user {job_user} cannot run it there)",
            )
        problems.append(f"the job user {job_user} cannot run the copy {interpreter}")
    raise _missing(interpreters, version, "; ".join(problems[:2]) if problems else "not on this host")


def resolve_interpreter(interpreters: dict[str, str], version: str, job_user: str = "") -> str:
    """`find_interpreter`'s interpreter; the bare name (whatever runs it then fails naming it) if none."""
    try:
        return find_interpreter(interpreters, version, job_user)[0]
    except MissingPython:
        return interpreters.get(version, f"python{version}")


def main(argv: list[str]) -> int:
    """Make the versions runnable by the job user now (`make up`), rather than at their first job."""
    parser = argparse.ArgumentParser(description="copy private Pythons where the jobs' user can run them")
    parser.add_argument("versions", nargs="+", help="e.g. 3.9 3.11")
    parser.add_argument("--job-user", default="nobody", help="the user who must run them (missing: nobody)")
    args = parser.parse_args(argv)
    user = args.job_user if _probe_as(args.job_user) else "nobody"
    for version in args.versions:
        try:
            path, note = find_interpreter({}, version, user)
        except MissingPython as exc:
            print(exc, file=sys.stderr)
            continue
        print(note or f"python {version}: {path}")
    return 0


# the host's CA bundle (Debian/Ubuntu, then Fedora/RHEL): local jobs name it as the images do theirs,
# since their environment is built from scratch (requests and pip otherwise use their own bundles)
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
CA_VARIABLES = ("GIT_SSL_CAINFO", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def host_ca_env() -> tuple[tuple[str, str], ...]:
    for bundle in HOST_CA_BUNDLES:
        if os.path.isfile(bundle):
            return tuple((name, bundle) for name in CA_VARIABLES)
    return ()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
