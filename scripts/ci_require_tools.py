#!/usr/bin/env python3
"""Fail, naming what to install, when a job's external tools are missing.

    ci_require_tools.py docker trivy

`docker` also needs a running engine (`docker info` must answer). Stdlib only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

HOW_TO_INSTALL = {
    "docker": "install the Docker engine (Debian: apt-get install docker.io) and start dockerd",
    "trivy": "install trivy (https://github.com/aquasecurity/trivy/releases, pinned; the tools image has it)",
    "gitleaks": "install gitleaks (https://github.com/gitleaks/gitleaks/releases, pinned; the tools image has it)",
    "codeql": "install the CodeQL CLI (https://github.com/github/codeql-cli-binaries/releases)",
}


def problems(tools: list[str]) -> list[str]:
    found = []
    for tool in tools:
        hint = HOW_TO_INSTALL.get(tool, f"install {tool}")
        if shutil.which(tool) is None:
            found.append(f"{tool}: not found on PATH: {hint}")
            continue
        if tool == "docker":
            try:
                probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
            except subprocess.TimeoutExpired:
                found.append("docker: the engine did not answer `docker info` within 20s: start dockerd")
                continue
            if probe.returncode != 0:
                reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
                found.append(f"docker: the client is installed but no engine answers ({reason}): start dockerd")
    return found


def main(argv: list[str]) -> int:
    missing = problems(argv)
    for line in missing:
        print(f"missing tool: {line}", file=sys.stderr)
    if not missing:
        print(f"required tools present: {', '.join(argv)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
