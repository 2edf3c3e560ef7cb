#!/usr/bin/env python3
"""The job user's side of ci_step.py: switching a job's commands to an unprivileged user and handing it
the files it must write (`own`: the checkout and TMPDIR; `share_cache`: the caches the virtualenv step
writes), never through a symlink it planted (copying its reports out: ci_reports.py).
(What the user's commands can see is ci_sandbox.py's: all jobs share this one uid.)

Imported by ci_step.py from its own directory (a root master in local mode runs every job's
commands as `[workers] job_user`). Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from typing import Any

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FIX = (
    "install it where every user can run it (e.g. system-wide, or pyenv with PYENV_ROOT outside /root) "
    'and name it in [workers] interpreters, or set [workers] job_user = "" (jobs then run as root without '
    "capabilities: only their sandbox keeps them from the host)"
)


class Refused(Exception):
    """The job cannot run as its user; the message says why and what to do."""


def job_user(job: dict[str, Any]) -> pwd.struct_passwd | None:
    """The job user's passwd entry, None when the job runs as the worker's user."""
    name = job.get("user", "")
    if not name:
        return None
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise Refused(
            f"ci_step: the job user {name!r} does not exist on this host: create it with "
            f'scripts/create_job_user.sh {name} as root (`make up` does), or set [workers] job_user = "" '
            "to run jobs as the master's user (then only their sandbox keeps them from the host)"
        ) from None
    if os.geteuid() not in (0, user.pw_uid):
        raise Refused(f"ci_step: cannot run the job as {name}: started as uid {os.geteuid()}, not as root")
    return user


def drop_to(user: pwd.struct_passwd) -> None:
    """Become `user` for good: its own group only, real, effective and saved ids alike."""
    uid, gid = user.pw_uid, user.pw_gid
    if os.getresuid() != (uid, uid, uid):
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or set(os.getgroups()) - {gid}:
        raise Refused(f"ci_step: could not switch to the job user {user.pw_name}")


def as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that start a child as `user` (nothing when this process is that user)."""
    if user is None or os.geteuid() == user.pw_uid:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def private_dir(path: str, user: pwd.struct_passwd) -> str:
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


def open_way(path: str, user: pwd.struct_passwd) -> list[str]:
    """As root: each directory on the way to `path` that `user` cannot enter gets o+x (enter, never list),
    unless it is someone's home (Refused, naming it). Returns the directories opened."""
    homes = {entry.pw_dir.rstrip("/") for entry in pwd.getpwall()} - {""}
    opened: list[str] = []
    blocked = private_dir(os.path.join(path, "x"), user)
    while blocked and blocked not in opened and blocked not in homes:
        os.chmod(blocked, stat.S_IMODE(os.stat(blocked).st_mode) | 0o001)
        opened.append(blocked)
        blocked = private_dir(os.path.join(path, "x"), user)
    if blocked:
        why = "a home directory, left private" if blocked in homes else "private to its owner"
        raise Refused(
            f"ci_step: the job user {user.pw_name} cannot reach {path}: {blocked} is {why}: "
            "move [master] basedir / [workers] cache_dir out of it"
        )
    return opened


def runnable_by(user: pwd.struct_passwd, program: str) -> bool:
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


def cannot_run(user: pwd.struct_passwd, program: str) -> str:
    blocked = private_dir(program, user)
    where = f" ({blocked} is private to its owner)" if blocked else ""
    return f"ci_step: the job user {user.pw_name} cannot run {program}{where}: {FIX}"


def _owned(st: os.stat_result, user: pwd.struct_passwd) -> bool:
    return (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)


def chown_tree(path: str, user: pwd.struct_passwd, prune_from: int | None = None) -> tuple[int, int]:
    """Give `path` and what is under it to the user through directory descriptors, never following a
    symlink (a link is re-owned itself, its target never); a file with several links that is not the
    user's keeps its owner. From depth `prune_from` on, a directory already the user's is not descended.
    Returns (entries changed, entries left)."""
    top = os.open(path, DIR_FLAGS)
    try:
        return _chown_dir(top, user, 0, prune_from)
    finally:
        os.close(top)


def _chown_dir(fd: int, user: pwd.struct_passwd, depth: int, prune_from: int | None) -> tuple[int, int]:
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


def user_dir(parent: str, name: str, user: pwd.struct_passwd) -> str:
    """`parent/name` made or kept a real directory of the user's (0700), never through a symlink."""
    fd = os.open(parent, DIR_FLAGS)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=fd)
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


def prepare_user(job_dir: str, user: pwd.struct_passwd, private: bool = False) -> str:
    """As root, before a command: TMPDIR is the user's, the way to the checkout open (again: something
    may have closed a directory above it since `own`). Returns the user's HOME: DIR/tmp/home when
    `private` (a sandboxed job: a HOME of this build's own) or the user has no home of its own, else
    its home."""
    tmp = os.path.join(os.path.abspath(job_dir), "tmp")
    if os.geteuid() == 0:
        user_dir(os.path.dirname(tmp), "tmp", user)  # DIR is root's: `tmp` itself cannot be a planted link
        open_way(os.getcwd(), user)
    if private:
        return user_dir(tmp, "home", user)
    try:
        st = os.stat(user.pw_dir)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == user.pw_uid:
            return user.pw_dir
    except OSError:
        pass
    return user_dir(tmp, "home", user)


def share_cache(cache_root: str, pip_cache: str, user: pwd.struct_passwd) -> None:
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


def own(job: dict[str, Any], job_dir: str) -> int:
    """As root, after the checkout (and before any command of the job): hand it and TMPDIR to the user."""
    user = job_user(job)
    if user is None:
        print("ci_step: no job user: the job's commands run as the worker's user")
        return 0
    builder_dir = os.path.dirname(os.path.abspath(job_dir))
    for path in (builder_dir, os.path.abspath(job_dir)):  # root's: the user may enter, not list or write
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | 0o711)
    home = prepare_user(job_dir, user, private="sandbox" in job)
    changed, left = chown_tree(".", user)
    for opened in open_way(os.getcwd(), user):
        print(f"ci_step: {opened} made enterable by other users (o+x, not listable) to reach the checkout")
    print(f"ci_step: the job's commands run as {user.pw_name} (uid {user.pw_uid}, gid {user.pw_gid}), HOME={home}")
    print(f"ci_step: the checkout and TMPDIR are {user.pw_name}'s ({changed} entries handed over)")
    if "sandbox" in job:
        print(
            "ci_step: each command runs in a bubblewrap sandbox: its own processes only, this build's HOME "
            "and /tmp, its branch's caches, the virtualenv read-only, nothing of the master's files"
        )
    if left:
        print(f"ci_step: {left} file(s) with several hard links kept their owner")
    interpreter = job.get("interpreter", "")
    if os.path.isabs(interpreter) and not runnable_by(user, interpreter):
        print(cannot_run(user, interpreter).replace("ci_step: ", "ci_step: warning: ", 1))
    return 0
