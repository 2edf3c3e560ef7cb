#!/usr/bin/env python3
"""Audit a requirements file with pip-audit against its cached virtualenv, not a temporary one.

    ci_pip_audit.py -r requirements.txt [--cache-root CACHE] -- --strict --format json --output reports/x.json

`pip-audit -r requirements.txt` creates a temporary venv, upgrades pip in it and lets pip
resolve and download every requirement on each run (15-20 s of CPU here, and over 80 s when
the machine is busy). This finds or builds the shared job venv of the requirements file
(ci_venv.py beside it, cached under CACHE/venvs and keyed by the file's hash), freezes what is
installed there (the requirements and everything they pull in, without pip itself) and
audits that fully pinned list with `pip-audit --no-deps --disable-pip`: the same packages,
no resolution. CACHE defaults to the one holding the job's own venv ($VIRTUAL_ENV/../..).
Arguments after `--` go to pip-audit; its exit code is this script's. PIP_AUDIT_INDEX_URL (the
master's `[scanners] pip_audit_index_url`) becomes `--index-url`. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def default_cache_root() -> str | None:
    venv = os.environ.get("VIRTUAL_ENV")
    if not venv:
        return None
    parent = os.path.dirname(os.path.abspath(venv))
    return os.path.dirname(parent) if os.path.basename(parent) == "venvs" else None


def requirements_venv(requirement: str, cache_root: str) -> str | None:
    """The cached venv of `requirement`; a local job's caches are read-only to its steps (its sandbox):
    one found there is used as is, else it is built in TMPDIR for this build."""
    command = [
        sys.executable,
        os.path.join(HERE, "ci_venv.py"),
        "--python",
        sys.executable,
        "--cache-root",
        cache_root,
        "-r",
        requirement,
    ]
    if not os.access(cache_root, os.W_OK):
        build_in = os.path.join(os.environ.get("TMPDIR") or tempfile.gettempdir(), "ci-pip-audit")
        at = command.index("--cache-root") + 1  # the cache root's value: the build's own, seeded from it
        command[at : at + 1] = [build_in, "--seed", cache_root]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("VENV="):
            return line[len("VENV=") :].strip()
    return None


def main(argv: list[str]) -> int:
    own, _, passthrough = _split(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--requirement", required=True)
    parser.add_argument("--cache-root", default=default_cache_root())
    args = parser.parse_args(own)
    if not args.cache_root:
        print("ci_pip_audit: no --cache-root and no job venv ($VIRTUAL_ENV) to find it from", file=sys.stderr)
        return 2
    venv = requirements_venv(args.requirement, args.cache_root)
    if venv is None:
        print(f"ci_pip_audit: could not build the venv of {args.requirement}", file=sys.stderr)
        return 2
    frozen = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-m", "pip", "freeze", "--exclude-editable"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    pins = [line for line in frozen.splitlines() if line and not line.startswith("#")]
    print(f"ci_pip_audit: auditing the {len(pins)} packages {args.requirement} installs ({venv})", flush=True)
    with tempfile.NamedTemporaryFile("w", suffix="-requirements.txt", delete=False) as handle:
        handle.write("\n".join(pins) + "\n")
    try:
        index = os.environ.get("PIP_AUDIT_INDEX_URL", "")
        extra = ["--index-url", index] if index and "--index-url" not in passthrough else []
        command = ["pip-audit", "-r", handle.name, "--no-deps", "--disable-pip", *extra, *passthrough]
        return subprocess.run(command, check=False).returncode
    finally:
        os.unlink(handle.name)


def _split(argv: list[str]) -> tuple[list[str], None, list[str]]:
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], None, argv[index + 1 :]
    return argv, None, []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
