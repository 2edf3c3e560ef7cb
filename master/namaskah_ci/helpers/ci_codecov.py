#!/usr/bin/env python3
"""Upload a coverage report to Codecov with the job's CODECOV_TOKEN (never on the command line).

    ci_codecov.py --file reports/coverage.xml --flag test-py3.11

The token comes from the job's environment (`secrets: [codecov_token]` in the
pipeline file exports CODECOV_TOKEN; Buildbot redacts it from the logs).
Installs the pinned codecov-cli into the current environment when missing.
Exits 2 without a token or a report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

CODECOV_CLI = "codecov-cli==11.3.1"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--flag", default="")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.file):
        print(f"codecov: coverage report {args.file} not found (did the tests run?)", file=sys.stderr)
        return 2
    token = os.environ.get("CODECOV_TOKEN", "").strip()
    if not token:
        print("codecov: CODECOV_TOKEN is not set (list codecov_token in the job's secrets)", file=sys.stderr)
        return 2
    if shutil.which("codecovcli") is None:
        rc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", CODECOV_CLI]).returncode
        if rc:
            print(f"codecov: could not install {CODECOV_CLI}", file=sys.stderr)
            return rc
    command = ["codecovcli", "upload-process", "--file", args.file, "--fail-on-error"]
    if args.flag:
        command += ["--flag", args.flag]
    return subprocess.run(command, env=dict(os.environ, CODECOV_TOKEN=token)).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
