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
    print("+", " ".join([*command, "."]), flush=True)
    try:
        return subprocess.run([*command, "."], check=False).returncode
    finally:
        if copied:
            os.remove(CONTEXT_CA)


NO_DATABASE = 2  # exit code: trivy had no vulnerability database (1: HIGH/CRITICAL findings)
DOWNLOAD_FAILED = ("failed to download vulnerability DB", "DB error", "OCI repository error")


def database_problem() -> str:
    """Why trivy cannot have a database, known before running it ('' when it may)."""
    if os.environ.get("TRIVY_SKIP_DB_UPDATE", "").lower() not in ("1", "true", "yes"):
        return ""
    cache = os.environ.get("TRIVY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "trivy")
    if not os.path.isfile(os.path.join(cache, "db", "trivy.db")):
        return (
            f"trivy_skip_db_update is set but {cache}/db/trivy.db does not exist: seed that cache "
            "(`trivy image --download-db-only --cache-dir ...` where the database can be downloaded) "
            "or set [scanners] trivy_db_repository to a mirror"
        )
    return ""


def scan(tag: str, sarif: str) -> int:
    problem = database_problem()
    if problem:
        print(f"container-scan: {problem}", file=sys.stderr)
        return NO_DATABASE
    base = ["trivy", "image", "--severity", "HIGH,CRITICAL", "--exit-code", "1", "--no-progress"]
    report = subprocess.run(
        [*base, "--format", "sarif", "--output", sarif, tag], stderr=subprocess.PIPE, text=True, check=False
    )
    sys.stderr.write(report.stderr)
    if report.returncode and any(marker in report.stderr for marker in DOWNLOAD_FAILED):
        mirror = os.environ.get("TRIVY_DB_REPOSITORY") or "trivy's default (ghcr.io)"
        print(
            f"container-scan: trivy could not get its vulnerability database from {mirror}: set [scanners] "
            "trivy_db_repository to a mirror this machine reaches, or pre-seed [scanners] trivy_cache_dir and "
            "set trivy_skip_db_update = true",
            file=sys.stderr,
        )
        return NO_DATABASE
    table = subprocess.run([*base, "--format", "table", tag], check=False)
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
