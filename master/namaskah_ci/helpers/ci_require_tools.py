#!/usr/bin/env python3
"""Fail, naming what to install, when a job's external tools are missing.

    ci_require_tools.py docker trivy

`docker` also needs a running engine that this job may use (`docker info` must
answer): the engine's socket is root on its host, so a local job (sandboxed as
`[workers] job_user`, in no group) is refused it, and in docker mode only builds
of `[workers] docker_socket_branches` get it (the `required tools` step refuses
the others on the master before this runs). In a worker image, a tool its build
could not install is listed in /etc/namaskah-tools-missing ("TOOL: reason") and
reported with that reason. Each tool found is printed with its version. Stdlib
only; Python 3.9+.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

HOW_TO_INSTALL = {
    "docker": "install the Docker engine (Debian: apt-get install docker.io) and start dockerd",
    "trivy": "install trivy (https://github.com/aquasecurity/trivy/releases, pinned; the tools image has it)",
    "gitleaks": "install gitleaks (https://github.com/gitleaks/gitleaks/releases, pinned; the tools image has it)",
    "codeql": "install the CodeQL CLI (https://github.com/github/codeql-cli-binaries/releases)",
}


IMAGE_RECORD = "/etc/namaskah-tools-missing"
DOCKER_DENIED = (
    "docker: this job may not use the Docker engine (permission denied on its socket): the engine is root "
    "on its host, and a local job runs sandboxed as [workers] job_user, in no group; run jobs with "
    "`tools: [docker]` in docker mode, where builds of [workers] docker_socket_branches get the engine"
)
VERSION_FLAGS = {"docker": ["--version"], "gitleaks": ["version"], "trivy": ["--version"], "codeql": ["version"]}


def image_record(path: str = IMAGE_RECORD) -> dict[str, str]:
    """{tool: reason} for the tools a worker image's build could not install."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    return {tool.strip(): reason.strip() for tool, _, reason in (line.partition(":") for line in lines) if reason}


def package_version(path: str) -> str:
    """The Debian package version of a program (Debian's gitleaks prints no version of its own)."""
    try:
        owner = subprocess.run(
            ["dpkg-query", "-S", os.path.realpath(path)], capture_output=True, text=True, timeout=20, check=False
        )
        package = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else ""
        if not package:
            return ""
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, timeout=20, check=False
        )
        return f"Debian package {package} {done.stdout.strip()}" if done.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def version_of(tool: str) -> str:
    try:
        command = [tool, *VERSION_FLAGS.get(tool, ["--version"])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    first = text[0][:120] if text else ""
    if not any(ch.isdigit() for ch in first):
        first = package_version(shutil.which(tool) or tool) or first or "version unknown"
    return first


def problems(tools: list[str], record: dict[str, str] | None = None) -> list[str]:
    found: list[str] = []
    record = image_record() if record is None else record
    for tool in tools:
        hint = HOW_TO_INSTALL.get(tool, f"install {tool}")
        if tool in record:
            found.append(f"{tool}: {record[tool]}")
            continue
        if shutil.which(tool) is None:
            found.append(f"{tool}: not found on PATH: {hint}")
            continue
        if tool == "docker":
            try:
                probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
            except subprocess.TimeoutExpired:
                found.append("docker: the engine did not answer `docker info` within 20s: start dockerd")
                continue
            if probe.returncode != 0:
                reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
                if "permission denied" in reason.lower():
                    found.append(DOCKER_DENIED)
                else:
                    found.append(f"docker: the client is installed but no engine answers ({reason}): start dockerd")
    return found


def main(argv: list[str]) -> int:
    missing = problems(argv)
    for line in missing:
        print(f"missing tool: {line}", file=sys.stderr)
    if not missing:
        for tool in argv:
            print(f"{tool}: {shutil.which(tool)} ({version_of(tool)})")
        print(f"required tools present: {', '.join(argv)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
