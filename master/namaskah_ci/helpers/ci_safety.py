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
import shutil
import subprocess
import sys

SAFETY = "safety==3.8.1"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--requirement", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    key = os.environ.get("SAFETY_API_KEY", "").strip()
    if not key:
        print("safety: SAFETY_API_KEY is not set (list safety_api_key in the job's secrets)", file=sys.stderr)
        return 2
    if shutil.which("safety") is None:
        rc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", SAFETY]).returncode
        if rc:
            print(f"safety: could not install {SAFETY}", file=sys.stderr)
            return rc
    env = dict(os.environ)
    with open(args.output, "w", encoding="utf-8") as report:
        rc = subprocess.run(["safety", "check", "-r", args.requirement, "--output", "json"], stdout=report, env=env)
    return rc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
