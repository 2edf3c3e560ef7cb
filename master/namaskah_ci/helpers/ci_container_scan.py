#!/usr/bin/env python3
"""Build the application image and scan it with trivy (the container-scan job).

    ci_container_scan.py build --tag namaskah-app:ci
    ci_container_scan.py scan --tag namaskah-app:ci --sarif reports/trivy.sarif

`build` passes APP_BASE_IMAGE (when set) as the Dockerfile's BASE_IMAGE, so a
host without a registry can build on a local Debian image, and copies the CA
bundle named by PIP_CERT_FILE (when set) into the build context as
`pip-ca.crt`, which the Dockerfile hands to pip in its build stage only. `scan` writes a
SARIF report and then prints the table, failing on HIGH or CRITICAL findings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys


CONTEXT_CA = "pip-ca.crt"


def build(tag: str) -> int:
    command = ["docker", "build", "--network", "host", "-t", tag]
    base = os.environ.get("APP_BASE_IMAGE")
    if base:
        command += ["--build-arg", f"BASE_IMAGE={base}"]
    cert = os.environ.get("PIP_CERT_FILE")
    copied = False
    if cert and os.path.isfile(cert) and not os.path.exists(CONTEXT_CA):
        shutil.copyfile(cert, CONTEXT_CA)
        copied = True
    print("+", " ".join(command + ["."]), flush=True)
    try:
        return subprocess.run(command + ["."]).returncode
    finally:
        if copied:
            os.remove(CONTEXT_CA)


def scan(tag: str, sarif: str) -> int:
    base = ["trivy", "image", "--severity", "HIGH,CRITICAL", "--exit-code", "1", "--no-progress"]
    report = subprocess.run(base + ["--format", "sarif", "--output", sarif, tag])
    table = subprocess.run(base + ["--format", "table", tag])
    return report.returncode or table.returncode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build")
    b.add_argument("--tag", required=True)
    s = sub.add_parser("scan")
    s.add_argument("--tag", required=True)
    s.add_argument("--sarif", required=True)
    args = parser.parse_args(argv)
    return build(args.tag) if args.action == "build" else scan(args.tag, args.sarif)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
