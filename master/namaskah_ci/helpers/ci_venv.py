#!/usr/bin/env python3
"""Find or build the virtualenv for an interpreter and a set of requirement files.

    ci_venv.py --python python3.9 --cache-root CACHE -r requirements-dev.txt
    → prints VENV=CACHE/venvs/py3.9-<hash>

The venv's directory is named by a hash of the interpreter version and the
requirement files (and the files they include with -r), so every job with the
same Python and requirements shares one venv, and a change to a requirement
file gets a new one. A lock file serialises concurrent builders; the stamp is
written last, so a crash half-way leaves no stamp and the next build starts
over. pip downloads go to PIP_CACHE_DIR.

    ci_venv.py ... --cache-root CACHE --seed SEED
    → VENV=SEED/venvs/py3.9-<hash> when CACHE has no such venv and SEED (read-only: the default
      branch's cache, which a local job of another branch sees as a seed) has it, built and usable

    ci_venv.py --python python3.11 --cache-root CACHE --install '{"tool": "uv"}' --project-dir DIR
    → the job's `install:` (uv, poetry, pip specs: ci_install.py) run in DIR, the venv keyed by the
      files it reads (uv.lock + pyproject.toml, ...), the interpreter and DIR; run again over a
      venv of CACHE (not a seed's) each build, so the editable project is this checkout's

Stdlib only; Python 3.9+.
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
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # mypy reads the siblings as modules of the helpers package; a job imports them from here
    from namaskah_ci.helpers import ci_install
else:
    import ci_install

STAMP = ".namaskah-stamp"
REF_CACHE_DAYS = 14  # local mode: a ref's cache unused this long goes (prune_refs)


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
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def usable(venv: str) -> bool:
    """The venv's interpreter runs for the current user (not one left by another user it cannot run)."""
    try:
        done = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c", "pass"], capture_output=True, timeout=60, check=False
        )
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


def ref_dir(own: str) -> None:
    """Local mode, outside the sandbox: `<cache>/refs/` a real directory of the caller's (root's on a root
    master: no job writes it), so the ref's cache `own` inside it is never a link a job planted."""
    refs = os.path.dirname(os.path.abspath(own))
    for path in (refs, own):
        if os.path.islink(path):
            os.unlink(path)
    os.makedirs(refs, exist_ok=True)
    if os.stat(refs).st_uid != os.geteuid():
        os.chown(refs, os.geteuid(), os.getegid())
        os.chmod(refs, 0o755)


def prune_refs(own: str, keep: tuple[str, ...], days: int = REF_CACHE_DAYS) -> list[str]:
    """Local mode, outside the sandbox: mark the ref's cache `own` (`<cache>/refs/<ref>`) used, and
    remove the other refs' caches beside it not used for `days` days, but those in `keep` (the default
    branch's). Returns the names removed."""
    refs = os.path.dirname(os.path.abspath(own))
    os.utime(own)
    removed: list[str] = []
    if os.path.basename(refs) != "refs":
        return removed
    for entry in os.scandir(refs):
        if entry.path in keep or entry.path == os.path.abspath(own) or not entry.is_dir(follow_symlinks=False):
            continue
        if time.time() - entry.stat(follow_symlinks=False).st_mtime > days * 86400:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def complete(venv: str, stamp: str) -> bool:
    """The venv was built for `stamp` to the end (the stamp is written last) and runs."""
    path = os.path.join(venv, STAMP)
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read().strip() != stamp:
                return False
    except OSError:
        return False
    return usable(venv)


def build(python: str, venv: str, requirements: list[str], stamp: str) -> int:
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", venv], check=True, stdout=sys.stderr)
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip"]
    # an old pip resolves slowly; without an index, keep the bundled one
    if subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], stdout=sys.stderr, check=False).returncode:
        print("ci_venv: could not upgrade pip; using the bundled one", file=sys.stderr)
    if requirements:
        command = [*pip, "install", "--progress-bar", "off"]
        for path in requirements:
            command += ["-r", path]
        result = subprocess.run(command, stdout=sys.stderr, check=False)
        if result.returncode != 0:
            print(f"ci_venv: pip install failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
    with open(os.path.join(venv, STAMP), "w", encoding="utf-8") as handle:
        handle.write(stamp + "\n")
    print(f"ci_venv: built {venv} with {python} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def step_env(job: dict[str, Any], venv: str) -> dict[str, str]:
    """The variables a job's commands get with its venv (ci_step.py): see ci_install.step_env."""
    return ci_install.step_env(job, venv)


def install_venv(
    python: str, venv: str, install: dict[str, Any], project: str, cache_root: str, stamp: str, tool: str
) -> int:
    """Build the venv of an `install:` (ci_install.py) from scratch; the stamp is written last."""
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    if install["tool"] != "uv":  # uv makes its own, with the interpreter it is given
        subprocess.run([python, "-m", "venv", venv], check=True, stdout=sys.stderr)
    if install["tool"] == "pip":
        pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"]
        if subprocess.run(pip, stdout=sys.stderr, check=False).returncode:
            print("ci_venv: could not upgrade pip; using the bundled one", file=sys.stderr)
    env = ci_install.base_env(install, venv, cache_root)
    rc = ci_install.run_all(install, ci_install.commands(install, tool, python, venv, project), env, project)
    if rc:
        return rc
    if tool:
        ci_install.link_tool(tool, venv)
    with open(os.path.join(venv, STAMP), "w", encoding="utf-8") as handle:
        handle.write(stamp + "\n")
    print(f"ci_venv: built {venv} with {python} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="interpreter to create the venv with")
    parser.add_argument("--cache-root", required=True, help="directory holding the shared venvs")
    parser.add_argument("-r", "--requirement", action="append", default=[], help="requirements file (repeatable)")
    parser.add_argument("--seed", default="", help="a read-only cache whose venv is used when CACHE has none")
    parser.add_argument("--install", default="", help="the job's install: as JSON (ci_install.py)")
    parser.add_argument("--project-dir", default=".", help="where the install runs (the job's working directory)")
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
    install: dict[str, Any] = {}
    project = os.path.abspath(args.project_dir)
    try:
        if args.install:
            install = ci_install.parse(args.install)
            if not os.path.isdir(project):
                raise ci_install.Problem(f"ci_venv: install: the project directory {project} does not exist")
            files = ci_install.files(install, project)
            # the project is installed editable from here: its venv is this directory's
            stamp = fingerprint(version + ci_install.describe(install) + project, files)
        else:
            stamp = fingerprint(version, requirement_files(args.requirement))
        short = ".".join(version.split()[0].split(".")[:2])
        venvs = os.path.join(os.path.abspath(args.cache_root), "venvs")
        os.makedirs(venvs, exist_ok=True)
        name = f"py{short}-{stamp[:16]}"
        venv = os.path.join(venvs, name)
        seeded = os.path.join(os.path.abspath(args.seed), "venvs", name) if args.seed else ""
        tool = ""
        if install.get("tool") in ci_install.TOOLS:
            tool = ci_install.tool(install["tool"], python, version, args.cache_root, args.seed)
        with open(venv + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another builder may be building the same venv
            if complete(venv, stamp):
                print(f"ci_venv: reusing {venv}", file=sys.stderr)
                if install:  # the project itself again, from this checkout
                    env = ci_install.base_env(install, venv, args.cache_root)
                    again = ci_install.refresh_commands(install, tool, python, venv, project)
                    rc = ci_install.run_all(install, again, env, project)
                    if rc:
                        return rc
            elif seeded and complete(seeded, stamp):
                print(f"ci_venv: reusing {seeded} (the default branch's, read-only)", file=sys.stderr)
                venv = seeded
            elif install:
                rc = install_venv(python, venv, install, project, args.cache_root, stamp, tool)
                if rc:
                    return rc
            else:
                rc = build(python, venv, args.requirement, stamp)
                if rc:
                    return rc
    except ci_install.Problem as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"VENV={venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
