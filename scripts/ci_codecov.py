#!/usr/bin/env python3
"""Upload a coverage report to Codecov; the token is read from a file, never from argv.

    ci_codecov.py --token-file .secret-XYZ --file reports/coverage.xml --flag test-py3.11

Installs the pinned codecov-cli into the current environment when missing and
passes the token to it through its environment (CODECOV_TOKEN), which no log shows.
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
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--flag", default="")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.file):
        print(f"codecov: coverage report {args.file} not found (did the tests run?)", file=sys.stderr)
        return 2
    with open(args.token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
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
