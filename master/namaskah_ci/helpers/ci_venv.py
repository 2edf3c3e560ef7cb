#!/usr/bin/env python3
"""Find or build the virtualenv for an interpreter and a set of requirement files.

    ci_venv.py --python python3.9 --cache-root CACHE -r requirements-dev.txt
    → prints VENV=CACHE/venvs/py3.9-<hash>

The venv's directory is named by a hash of the interpreter version and the
requirement files (and the files they include with -r), so every job with the
same Python and requirements shares one venv, and a change to a requirement
file gets a new one. A lock file serialises concurrent builders; the stamp is
written last, so a crash half-way leaves no stamp and the next build starts
over. pip downloads go to PIP_CACHE_DIR. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time

STAMP = ".namaskah-stamp"


def requirement_files(paths: list[str]) -> list[str]:
    """The files named, plus every file they include with -r / -c, in a stable order."""
    seen: list[str] = []
    pending = list(paths)
    while pending:
        path = pending.pop(0)
        if path in seen:
            continue
        seen.append(path)
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0] in ("-r", "--requirement", "-c", "--constraint"):
                    pending.append(os.path.join(os.path.dirname(path), parts[1]))
    return seen


def python_version(python: str) -> str:
    """The interpreter's version and where it is installed: a venv links to its base interpreter, so
    the same version installed elsewhere (a copy the job user can run) gets a venv of its own."""
    return subprocess.run(
        [python, "-c", "import os, sys; print(sys.version); print(os.path.realpath(sys.executable))"],
        check=True, capture_output=True, text=True,
    ).stdout


def usable(venv: str) -> bool:
    """The venv's interpreter runs for the current user (not one left by another user it cannot run)."""
    try:
        done = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "pass"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def fingerprint(version: str, files: list[str]) -> str:
    digest = hashlib.sha256(version.encode())
    for path in files:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def build(python: str, venv: str, requirements: list[str], stamp: str) -> int:
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", venv], check=True, stdout=sys.stderr)
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip"]
    # an old pip resolves slowly; without an index, keep the bundled one
    if subprocess.run(pip + ["install", "-q", "--upgrade", "pip"], stdout=sys.stderr).returncode:
        print("ci_venv: could not upgrade pip; using the bundled one", file=sys.stderr)
    if requirements:
        command = pip + ["install", "--progress-bar", "off"]
        for path in requirements:
            command += ["-r", path]
        result = subprocess.run(command, stdout=sys.stderr)
        if result.returncode != 0:
            print(f"ci_venv: pip install failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    with open(os.path.join(venv, STAMP), "w", encoding="utf-8") as handle:
        handle.write(stamp + "\n")
    print(f"ci_venv: built {venv} with {python} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="interpreter to create the venv with")
    parser.add_argument("--cache-root", required=True, help="directory holding the shared venvs")
    parser.add_argument("-r", "--requirement", action="append", default=[], help="requirements file (repeatable)")
    args = parser.parse_args(argv)

    python = shutil.which(args.python) or (args.python if os.path.isfile(args.python) else None)
    if python is None:
        print(
            f"ci_venv: interpreter {args.python!r} not found: install it (Debian: apt-get install "
            f"{os.path.basename(args.python)}, or pyenv install) or set [workers] interpreters",
            file=sys.stderr,
        )
        return 2
    missing = [path for path in args.requirement if not os.path.isfile(path)]
    if missing:
        print(f"ci_venv: requirements file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    version = python_version(python)
    stamp = fingerprint(version, requirement_files(args.requirement))
    short = ".".join(version.split()[0].split(".")[:2])
    venvs = os.path.join(os.path.abspath(args.cache_root), "venvs")
    os.makedirs(venvs, exist_ok=True)
    venv = os.path.join(venvs, f"py{short}-{stamp[:16]}")
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another builder may be building the same venv
        stamp_path = os.path.join(venv, STAMP)
        fresh = os.path.isfile(stamp_path) and open(stamp_path, encoding="utf-8").read().strip() == stamp
        fresh = fresh and usable(venv)
        if fresh:
            print(f"ci_venv: reusing {venv}", file=sys.stderr)
        else:
            rc = build(python, venv, args.requirement, stamp)
            if rc:
                return rc
    print(f"VENV={venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
