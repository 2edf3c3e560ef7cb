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
import subprocess
import sys
from typing import TYPE_CHECKING

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # mypy reads the sibling as a module of the helpers package; a job imports it from here
    from namaskah_ci.helpers import ci_common
else:
    import ci_common

CODECOV_CLI = "codecov-cli==11.3.1"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--flag", default="")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.file):
        print(f"codecov: coverage report {args.file} not found (did the tests run?)", file=sys.stderr)
        return 2
    token = ci_common.job_secret("codecov", "CODECOV_TOKEN", "codecov_token")
    if token is None:
        return 2
    rc = ci_common.ensure_cli("codecov", "codecovcli", CODECOV_CLI)
    if rc:
        return rc
    command = ["codecovcli", "upload-process", "--file", args.file, "--fail-on-error"]
    if args.flag:
        command += ["--flag", args.flag]
    return subprocess.run(command, env=dict(os.environ, CODECOV_TOKEN=token), check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
