#!/usr/bin/env python3
"""Run one command of a job in the job's own environment, never the worker's.

    ci_step.py --job-dir DIR venv --python python3.11 --cache-root CACHE [-r FILE ...]
    ci_step.py --job-dir DIR run -- bash -e -o pipefail -c 'pytest tests/unit'
    ci_step.py --job-dir DIR own                          (root, job user: before the commands)
    ci_step.py --job-dir DIR collect-reports -- PATH ...  (root, job user: after them)

The master writes DIR (`.namaskah-ci/` beside the checkout) before the job's
commands: `job.json` (the job's environment and base PATH), `secrets/NAME`
files (mode 0600) and `helpers/`. Every command is started with exactly:
PATH (the job's virtualenv or interpreter first, then the base PATH), HOME,
LANG, a per-build TMPDIR, the environment in `job.json` (the pipeline file's
`env` and Namaskah CI's NAMASKAH_CI_* variables), the service URLs named in
`job.json` when the worker has them (DATABASE_URL, REDIS_URL), and the job's
secrets, upper-cased. Nothing else of the worker's environment (the master's,
for local workers) reaches the command. `venv` finds or builds the job's
cached virtualenv (ci_venv.py) and records it in DIR/venv for later commands.

When `job.json` names a `user` (local mode, master running as root), this
helper starts as root, reads the secret files, and runs the command as that
user: no supplementary groups, the user's own group, HOME its home (or
DIR/tmp/home), no way back to root. `venv` runs ci_venv.py as the user, over
cache directories it first hands to it; a helper started with the master's
Python runs with the job's interpreter if the user cannot run the master's.
`own` gives the checkout and TMPDIR to the user; `collect-reports` copies the
declared reports into DIR/reports (root's) without ever following a symlink,
so a report linked to a file the job cannot read is skipped, not published.
Nothing here follows a symlink the job could have planted. A missing user, or
an interpreter or checkout the user cannot reach, fails naming it and the fix.
Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPORTS = "reports"  # DIR/reports: the declared reports as collected for the upload
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FIX = ("install it where every user can run it (e.g. system-wide, or pyenv with PYENV_ROOT outside /root) "
       "and name it in [workers] interpreters, or set [workers] job_user = \"\" (local mode then trusts every branch)")


class Refused(Exception):
    """The job cannot run as its user; the message says why and what to do."""


def job_user(job: dict):
    """The job user's passwd entry, None when the job runs as the worker's user."""
    name = job.get("user", "")
    if not name:
        return None
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise Refused(
            f"ci_step: the job user {name!r} does not exist on this host: create it with "
            f"scripts/create_job_user.sh {name} as root (`make up` does), or set [workers] job_user = \"\" "
            "to run jobs as the master's user (local mode then trusts every branch)"
        ) from None
    if os.geteuid() not in (0, user.pw_uid):
        raise Refused(f"ci_step: cannot run the job as {name}: started as uid {os.geteuid()}, not as root")
    return user


def drop_to(user) -> None:
    """Become `user` for good: its own group only, real, effective and saved ids alike."""
    uid, gid = user.pw_uid, user.pw_gid
    if os.getresuid() != (uid, uid, uid):
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or set(os.getgroups()) - {gid}:
        raise Refused(f"ci_step: could not switch to the job user {user.pw_name}")


def as_user(user) -> dict:
    """subprocess arguments that start a child as `user` (nothing when this process is that user)."""
    if user is None or os.geteuid() == user.pw_uid:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def private_dir(path: str, user) -> str:
    """The first directory on `path`, then on its resolved path, that `user` cannot enter; '' when none."""
    for full in (os.path.abspath(path), os.path.realpath(path)):
        current = "/"
        for part in full.split("/")[1:-1]:
            current = os.path.join(current, part)
            try:
                st = os.stat(current)
            except OSError:
                return current
            bit = 0o100 if st.st_uid == user.pw_uid else 0o010 if st.st_gid == user.pw_gid else 0o001
            if not st.st_mode & bit:
                return current
    return ""


def open_way(path: str, user) -> list:
    """As root: each directory on the way to `path` that `user` cannot enter gets o+x (enter, never list),
    unless it is someone's home (Refused, naming it). Returns the directories opened."""
    homes = {entry.pw_dir.rstrip("/") for entry in pwd.getpwall()} - {""}
    opened: list = []
    blocked = private_dir(os.path.join(path, "x"), user)
    while blocked and blocked not in opened and blocked not in homes:
        os.chmod(blocked, stat.S_IMODE(os.stat(blocked).st_mode) | 0o001)
        opened.append(blocked)
        blocked = private_dir(os.path.join(path, "x"), user)
    if blocked:
        why = "a home directory, left private" if blocked in homes else "private to its owner"
        raise Refused(f"ci_step: the job user {user.pw_name} cannot reach {path}: {blocked} is {why}: "
                      "move [master] basedir / [workers] cache_dir out of it")
    return opened


def runnable_by(user, program: str) -> bool:
    """Whether `user` can execute `program` (checked in a child that becomes the user)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            drop_to(user)
            code = 0 if os.access(program, os.X_OK) else 1
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


def cannot_run(user, program: str) -> str:
    blocked = private_dir(program, user)
    where = f" ({blocked} is private to its owner)" if blocked else ""
    return f"ci_step: the job user {user.pw_name} cannot run {program}{where}: {FIX}"


def _owned(st, user) -> bool:
    return (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)


def chown_tree(path: str, user, prune_from=None) -> tuple:
    """Give `path` and what is under it to the user through directory descriptors, never following a
    symlink (a link is re-owned itself, its target never); a file with several links that is not the
    user's keeps its owner. From depth `prune_from` on, a directory already the user's is not descended.
    Returns (entries changed, entries left)."""
    top = os.open(path, DIR_FLAGS)
    try:
        return _chown_dir(top, user, 0, prune_from)
    finally:
        os.close(top)


def _chown_dir(fd: int, user, depth: int, prune_from) -> tuple:
    changed = left = 0
    if not _owned(os.fstat(fd), user):
        os.fchown(fd, user.pw_uid, user.pw_gid)
        changed += 1
    elif prune_from is not None and depth >= prune_from:
        return changed, left
    for entry in os.scandir(fd):
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)  # swapped for a link since: ELOOP
                try:
                    more, kept = _chown_dir(child, user, depth + 1, prune_from)
                finally:
                    os.close(child)
                changed, left = changed + more, left + kept
            elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and st.st_uid != user.pw_uid:
                left += 1  # perhaps a hard link to someone else's file: never hand that over
            elif not _owned(st, user):
                os.chown(entry.name, user.pw_uid, user.pw_gid, dir_fd=fd, follow_symlinks=False)
                changed += 1
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone or replaced while we looked
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # a directory swapped for a symlink: not followed
                raise
    return changed, left


def user_dir(parent: str, name: str, user) -> str:
    """`parent/name` made or kept a real directory of the user's (0700), never through a symlink."""
    fd = os.open(parent, DIR_FLAGS)
    try:
        try:
            os.mkdir(name, 0o700, dir_fd=fd)
        except FileExistsError:
            pass
        child = os.open(name, DIR_FLAGS, dir_fd=fd)
        try:
            if not _owned(os.fstat(child), user):
                os.fchown(child, user.pw_uid, user.pw_gid)
            os.fchmod(child, 0o700)
        finally:
            os.close(child)
    finally:
        os.close(fd)
    return os.path.join(parent, name)


def prepare_user(job_dir: str, user) -> str:
    """As root, before a command: TMPDIR is the user's, the way to the checkout open (again: something
    may have closed a directory above it since `own`). Returns the user's HOME: its home when that is a
    directory of its own, else DIR/tmp/home."""
    tmp = os.path.join(os.path.abspath(job_dir), "tmp")
    if os.geteuid() == 0:
        user_dir(os.path.dirname(tmp), "tmp", user)  # DIR is root's: `tmp` itself cannot be a planted link
        open_way(os.getcwd(), user)
    try:
        st = os.stat(user.pw_dir)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == user.pw_uid:
            return user.pw_dir
    except OSError:
        pass
    return user_dir(tmp, "home", user)


def read_job(job_dir: str) -> dict:
    with open(os.path.join(job_dir, "job.json"), encoding="utf-8") as handle:
        return json.load(handle)


def recorded_venv(job_dir: str) -> str:
    try:
        with open(os.path.join(job_dir, "venv"), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def read_secrets(job_dir: str) -> dict:
    found = {}
    directory = os.path.join(job_dir, "secrets")
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                found[name] = handle.read().strip()
    return found


def interpreter_dir(job: dict, base_path: str) -> str:
    found = shutil.which(job.get("interpreter", ""), path=base_path) or job.get("interpreter", "")
    return os.path.dirname(found) if os.path.isabs(found) else ""


def job_environment(job_dir: str, job: dict, environ: dict, with_venv: bool = True, home: str = "") -> dict:
    """The environment a job's command starts with (see the module docstring); `home`: the job user's."""
    job_dir = os.path.abspath(job_dir)
    base_path = job.get("path", os.defpath)
    venv = recorded_venv(job_dir) if with_venv else ""
    first = os.path.join(venv, "bin") if venv else interpreter_dir(job, base_path)
    env = {
        "PATH": os.pathsep.join(part for part in (first, base_path) if part),
        "HOME": home or environ.get("HOME") or job_dir,
        "LANG": "C.UTF-8",
        "TMPDIR": os.path.join(job_dir, "tmp"),
    }
    env.update(job.get("env", {}))
    for name in job.get("pass", []):
        if environ.get(name):
            env[name] = environ[name]
    env.update(read_secrets(job_dir))
    if venv:
        env["VIRTUAL_ENV"] = venv
    env["NAMASKAH_CI_HELPERS"] = HERE
    return env


def lower_priority(job: dict) -> None:
    niceness = int(job.get("nice", 0))
    if niceness > 0:
        try:
            os.nice(niceness)
        except OSError:
            pass


def run(job_dir: str, argv: list) -> int:
    job = read_job(job_dir)
    user = job_user(job)
    home = prepare_user(job_dir, user) if user else ""
    env = job_environment(job_dir, job, dict(os.environ), home=home)
    os.makedirs(env["TMPDIR"], exist_ok=True)
    lower_priority(job)
    if user:
        drop_to(user)  # the secrets are in `env` already: their files are root's
        if argv[0] == sys.executable and not os.access(argv[0], os.X_OK):
            # a helper, started with the master's Python, which only root can run: use the job's
            argv = [job.get("interpreter") or "python3", *argv[1:]]
    program = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    try:
        os.execve(program, argv, env)
    except OSError as exc:
        if user and isinstance(exc, PermissionError):
            print(cannot_run(user, program), file=sys.stderr)
        else:
            print(f"ci_step: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


def version_problem(python: str, expected: str, env: dict, user=None) -> str:
    """'' when `python` is the Python version the job asks for (NAMASKAH_CI_PYTHON)."""
    program = shutil.which(python, path=env["PATH"]) or python
    try:
        done = subprocess.run([program, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, env=env, **as_user(user))
    except OSError:
        return ""  # ci_venv.py names a missing interpreter
    found = done.stdout.strip()
    if done.returncode == 0 and expected and found != expected:
        return (f"ci_step: {python} is Python {found}, but the job asks for Python {expected} "
                "(check [workers] interpreters; in docker mode a forced build of a job whose Python changed "
                "runs in its last known image: run it through the pipeline)")
    return ""


def share_cache(cache_root: str, pip_cache: str, user) -> None:
    """As root: the shared venvs and this Python's pip cache are the job user's (venvs someone else
    built, e.g. a local run as root, included); each venv or cache entry already the user's is not
    descended."""
    venvs = os.path.join(cache_root, "venvs")
    for path in (cache_root, venvs) + ((pip_cache,) if pip_cache else ()):
        os.makedirs(path, exist_ok=True)
    chown_tree(cache_root, user, prune_from=0)
    chown_tree(venvs, user, prune_from=1)
    if pip_cache:
        chown_tree(pip_cache, user, prune_from=1)


def venv(job_dir: str, python: str, cache_root: str, requirements: list) -> int:
    job = read_job(job_dir)
    user = job_user(job)
    home = prepare_user(job_dir, user) if user else ""
    env = job_environment(job_dir, job, dict(os.environ), with_venv=False, home=home)
    os.makedirs(env["TMPDIR"], exist_ok=True)
    lower_priority(job)
    helper_python = sys.executable
    if user:
        program = shutil.which(python, path=env["PATH"]) or python
        if not runnable_by(user, program):
            raise Refused(cannot_run(user, program))
        share_cache(os.path.abspath(cache_root), env.get("PIP_CACHE_DIR", ""), user)
        open_way(os.path.abspath(cache_root), user)
        if not runnable_by(user, sys.executable):
            helper_python = program  # the master's Python is root's: ci_venv.py runs on the job's
    problem = version_problem(python, job.get("env", {}).get("NAMASKAH_CI_PYTHON", ""), env, user)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    command = [helper_python, os.path.join(HERE, "ci_venv.py"), "--python", python, "--cache-root", cache_root]
    for path in requirements:
        command += ["-r", path]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, **as_user(user))
    sys.stdout.write(done.stdout)
    found = [line[len("VENV=") :].strip() for line in done.stdout.splitlines() if line.startswith("VENV=")]
    if done.returncode or not found:
        return done.returncode or 1
    with open(os.path.join(job_dir, "venv"), "w", encoding="utf-8") as handle:
        handle.write(found[-1] + "\n")
    return 0


def own(job_dir: str) -> int:
    """As root, after the checkout (and before any command of the job): hand it and TMPDIR to the user."""
    job = read_job(job_dir)
    user = job_user(job)
    if user is None:
        print("ci_step: no job user: the job's commands run as the worker's user")
        return 0
    builder_dir = os.path.dirname(os.path.abspath(job_dir))
    for path in (builder_dir, os.path.abspath(job_dir)):  # root's: the user may enter, not list or write
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | 0o711)
    home = prepare_user(job_dir, user)
    changed, left = chown_tree(".", user)
    for opened in open_way(os.getcwd(), user):
        print(f"ci_step: {opened} made enterable by other users (o+x, not listable) to reach the checkout")
    print(f"ci_step: the job's commands run as {user.pw_name} (uid {user.pw_uid}, gid {user.pw_gid}), HOME={home}")
    print(f"ci_step: the checkout and TMPDIR are {user.pw_name}'s ({changed} entries handed over)")
    if left:
        print(f"ci_step: {left} file(s) with several hard links kept their owner")
    interpreter = job.get("interpreter", "")
    if os.path.isabs(interpreter) and not runnable_by(user, interpreter):
        print(cannot_run(user, interpreter).replace("ci_step: ", "ci_step: warning: ", 1))
    return 0


def collect_reports(job_dir: str, paths: list) -> int:
    """As root, after the job's commands: copy each report (a file or a directory, relative to the
    checkout) into DIR/reports; symlinks, special files and other users' hard links are skipped."""
    job = read_job(job_dir)
    try:
        user = job_user(job)
    except Refused:
        user = None  # no command ran as it
    uid = user.pw_uid if user else os.geteuid()
    target = os.path.join(os.path.abspath(job_dir), REPORTS)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target, mode=0o700)
    top = os.open(".", DIR_FLAGS)
    try:
        for relative in paths:
            parts = [part for part in relative.split("/") if part not in ("", ".")]
            if not parts or ".." in parts or relative.startswith("/"):
                print(f"collect-reports: {relative}: not a path inside the checkout")
                continue
            for note in _collect(top, parts, os.path.join(target, *parts), uid):
                print(f"collect-reports: {note}")
    finally:
        os.close(top)
    return 0


def _collect(top: int, parts: list, destination: str, uid: int) -> list:
    fd = os.dup(top)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return []  # not written: the upload says so
            except OSError:
                return [f"skipped {'/'.join(parts)}: {part} is not a directory (a symlink is never followed)"]
            os.close(fd)
            fd = child
        return _copy_entry(fd, parts[-1], destination, "/".join(parts), uid)
    finally:
        os.close(fd)


def _copy_entry(dir_fd: int, name: str, destination: str, shown: str, uid: int) -> list:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return []
    if stat.S_ISDIR(st.st_mode):
        return _copy_dir(dir_fd, name, destination, shown, uid)
    if not stat.S_ISREG(st.st_mode):
        return [f"skipped {shown}: {'a symlink (never followed)' if stat.S_ISLNK(st.st_mode) else 'not a file'}"]
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        return [f"skipped {shown}: {exc.strerror}"]
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return [f"skipped {shown}: not a file"]
        if st.st_nlink > 1 and st.st_uid != uid:
            return [f"skipped {shown}: a hard link to a file the job does not own"]
        os.makedirs(os.path.dirname(destination), mode=0o700, exist_ok=True)
        with open(destination, "wb") as copy:
            shutil.copyfileobj(source, copy)
    return []


def _copy_dir(dir_fd: int, name: str, destination: str, shown: str, uid: int) -> list:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return [f"skipped {shown}: not a directory any more"]
    try:
        os.makedirs(destination, mode=0o700, exist_ok=True)
        notes: list = []
        for entry in sorted(os.scandir(fd), key=lambda e: e.name):
            notes += _copy_entry(fd, entry.name, os.path.join(destination, entry.name), f"{shown}/{entry.name}", uid)
        return notes
    finally:
        os.close(fd)


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-dir", required=True, help="the job's directory written by the master")
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("venv", help="find or build the job's virtualenv")
    v.add_argument("--python", required=True)
    v.add_argument("--cache-root", required=True)
    v.add_argument("-r", "--requirement", action="append", default=[])
    r = sub.add_parser("run", help="run a command in the job's environment")
    r.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("own", help="as root: give the checkout and TMPDIR to the job user")
    c = sub.add_parser("collect-reports", help="as root: copy the declared reports into DIR/reports")
    c.add_argument("paths", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.action == "venv":
            return venv(args.job_dir, args.python, args.cache_root, args.requirement)
        if args.action == "own":
            return own(args.job_dir)
        if args.action == "collect-reports":
            return collect_reports(args.job_dir, args.paths[1:] if args.paths[:1] == ["--"] else args.paths)
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run: no command given")
        return run(args.job_dir, command)
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
