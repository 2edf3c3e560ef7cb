#!/usr/bin/env python3
"""Create or refresh a job's virtualenv, reusing it while its requirements are unchanged.

    ci_venv.py --python python3.9 --venv ../venv -r requirements-dev.txt

The venv is stamped with a hash of the interpreter version and the
requirement files (and the files they include with -r). A matching stamp
means nothing to do; otherwise the venv is rebuilt from scratch and the stamp
written last, so a crash half-way leaves no stamp and the next build starts
over. pip downloads go to PIP_CACHE_DIR. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
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


def fingerprint(python: str, files: list[str]) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout
    digest = hashlib.sha256(version.encode())
    for path in files:
        digest.update(path.encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="interpreter to create the venv with")
    parser.add_argument("--venv", required=True, help="virtualenv directory")
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
    stamp = fingerprint(python, requirement_files(args.requirement))
    stamp_path = os.path.join(args.venv, STAMP)
    if os.path.isfile(stamp_path):
        with open(stamp_path, encoding="utf-8") as handle:
            if handle.read().strip() == stamp:
                print(f"ci_venv: {args.venv} is up to date ({python})")
                return 0
    started = time.monotonic()
    shutil.rmtree(args.venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", args.venv], check=True)
    venv_python = os.path.join(args.venv, "bin", "python")
    if args.requirement:
        command = [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        for path in args.requirement:
            command += ["-r", path]
        result = subprocess.run(command)
        if result.returncode != 0:
            print(f"ci_venv: pip install failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    with open(stamp_path, "w", encoding="utf-8") as handle:
        handle.write(stamp + "\n")
    print(f"ci_venv: built {args.venv} with {python} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
