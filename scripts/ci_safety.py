#!/usr/bin/env python3
"""Check the runtime requirements with Safety; the API key is read from a file, never from argv.

    ci_safety.py --key-file .secret-XYZ -r requirements.txt --output reports/safety.json

Installs the pinned Safety CLI when missing and passes the key through its
environment (SAFETY_API_KEY). Exits non-zero on any reported vulnerability.
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
    parser.add_argument("--key-file", required=True)
    parser.add_argument("-r", "--requirement", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    with open(args.key_file, encoding="utf-8") as handle:
        key = handle.read().strip()
    if shutil.which("safety") is None:
        rc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", SAFETY]).returncode
        if rc:
            print(f"safety: could not install {SAFETY}", file=sys.stderr)
            return rc
    env = dict(os.environ, SAFETY_API_KEY=key)
    with open(args.output, "w", encoding="utf-8") as report:
        rc = subprocess.run(["safety", "check", "-r", args.requirement, "--output", "json"], stdout=report, env=env)
    return rc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
