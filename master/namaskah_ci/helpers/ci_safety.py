#!/usr/bin/env python3
"""Check the runtime requirements with Safety, with the job's SAFETY_API_KEY (never on the command line).

    ci_safety.py -r requirements.txt --output reports/safety.json

The key comes from the job's environment (`secrets: [safety_api_key]` in the
pipeline file). Installs the pinned Safety CLI when missing. Exits non-zero on
any reported vulnerability, and 2 without a key.
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

SAFETY = "safety==3.8.1"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--requirement", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if ci_common.job_secret("safety", "SAFETY_API_KEY", "safety_api_key") is None:
        return 2
    rc = ci_common.ensure_cli("safety", "safety", SAFETY)
    if rc:
        return rc
    with open(args.output, "w", encoding="utf-8") as report:
        done = subprocess.run(
            ["safety", "check", "-r", args.requirement, "--output", "json"], stdout=report, check=False
        )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
