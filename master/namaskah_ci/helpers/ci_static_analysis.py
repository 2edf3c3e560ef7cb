#!/usr/bin/env python3
"""Static analysis (the codeql job): CodeQL when its CLI is installed, else semgrep with local rules.

    ci_static_analysis.py --output-dir reports

Writes `<output-dir>/static-analysis.sarif` and exits non-zero on findings or
on a tool failure. semgrep runs with `--metrics=off` and only the rules kept in
`.semgrep/` in this repository: nothing is fetched from a registry.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def run(command: list[str], env: dict[str, str] | None = None) -> int:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


def codeql(sarif: str) -> int:
    with tempfile.TemporaryDirectory(prefix="codeql-") as tmp:
        database = os.path.join(tmp, "db")
        rc = run(["codeql", "database", "create", database, "--language=python", "--source-root=.", "--overwrite"])
        if rc:
            return rc
        return run(
            [
                "codeql",
                "database",
                "analyze",
                database,
                "codeql/python-queries",
                "--format=sarif-latest",
                f"--output={sarif}",
            ]
        )


def semgrep(sarif: str) -> int:
    env = dict(os.environ, SEMGREP_ENABLE_VERSION_CHECK="0", SEMGREP_SEND_METRICS="off")
    return run(
        [
            "semgrep",
            "scan",
            "--metrics=off",
            "--disable-version-check",
            "--config",
            ".semgrep/",
            "--error",
            "--sarif",
            "--output",
            sarif,
            "app",
        ],
        env=env,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    sarif = os.path.join(args.output_dir, "static-analysis.sarif")
    if shutil.which("codeql"):
        print("static analysis: using CodeQL")
        return codeql(sarif)
    if shutil.which("semgrep"):
        print("static analysis: CodeQL CLI not installed, using semgrep with the rules in .semgrep/")
        return semgrep(sarif)
    print(
        "static analysis: neither codeql nor semgrep is installed (pip install -r requirements-static.txt)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
