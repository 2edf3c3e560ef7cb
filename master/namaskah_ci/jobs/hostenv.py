"""What a local job needs of the host: the interpreter for a Python version, the host's CA bundle.

Shared by local workers (`workers/local.py`) and `scripts/run_ci_checks.py`; no
Buildbot here. `resolve_interpreter` probes candidates with a subprocess:
call it in a thread from the reactor.
"""

from __future__ import annotations

import functools
import glob
import os
import subprocess

SHARED_PYTHONS = os.environ.get("NAMASKAH_PYTHONS", "/opt/namaskah-ci/python")


@functools.cache
def _usable(candidate: str) -> bool:
    """The interpreter runs and can create virtualenvs (Debian splits venv/ensurepip out)."""
    try:
        probe = subprocess.run(
            [candidate, "-c", "import venv, ensurepip"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def interpreter_candidates(name: str, version: str) -> list[str]:
    """PATH entries first (pyenv shims skipped: they fail outside a selected version), then pyenv installs."""
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory, name)
        if directory.rstrip("/").endswith("/shims") or not os.access(path, os.X_OK) or os.path.isdir(path):
            continue
        found.append(path)
    if os.path.isabs(name):
        found.insert(0, name)
    # copies any user can run (scripts/shared_pythons.sh): a root master's job user cannot enter /root
    found += sorted(glob.glob(os.path.join(SHARED_PYTHONS, f"{version}.*", "bin", f"python{version}")))[::-1]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")))[::-1]
    return found


def resolve_interpreter(interpreters: dict[str, str], version: str) -> str:
    """The interpreter for a Python version (`[workers] interpreters`); the bare name (the job then fails
    naming it) if none works. Probes with a subprocess: call it in a thread from the reactor."""
    name = interpreters.get(version, f"python{version}")
    for candidate in interpreter_candidates(name, version):
        if _usable(candidate):
            return candidate
    return name


# the host's CA bundle (Debian/Ubuntu, then Fedora/RHEL): local jobs name it as the images do theirs,
# since their environment is built from scratch (requests and pip otherwise use their own bundles)
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
CA_VARIABLES = ("GIT_SSL_CAINFO", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def host_ca_env() -> tuple[tuple[str, str], ...]:
    for bundle in HOST_CA_BUNDLES:
        if os.path.isfile(bundle):
            return tuple((name, bundle) for name in CA_VARIABLES)
    return ()
