#!/usr/bin/env python3
"""A job's reports copied out, as root, after its commands: each declared path (a file or a directory,
relative to the checkout) into DIR/reports, never through a symlink the job planted; special files and
other users' hard links skipped, and what goes over [limits] report_bytes / report_files refused, each
in one line. Run by `ci_step.py collect-reports` (from its own directory). Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from typing import IO, TYPE_CHECKING, Any, TypedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # mypy reads the siblings as modules of the helpers package; a job imports them from here
    from namaskah_ci.helpers import ci_job_user
else:
    import ci_job_user

REPORTS = "reports"  # DIR/reports: the declared reports as collected for the upload
DIR_FLAGS = ci_job_user.DIR_FLAGS
FILE_FLAGS = ci_job_user.FILE_FLAGS


class Budget(TypedDict, total=False):
    """What a job's reports may still take (`_collect`); None: no limit."""

    bytes: int | None
    files: int | None
    bytes_text: str  # the limits as the refusals name them
    files_text: str
    exceeded: int  # the files refused so far


def collect_reports(job: dict[str, Any], job_dir: str, paths: list[str], max_bytes: int = 0, max_files: int = 0) -> int:
    """As root, after the job's commands: copy each report (a file or a directory, relative to the
    checkout) into DIR/reports; symlinks, special files and other users' hard links are skipped, and
    so is what goes over `max_bytes` (bytes really read) or `max_files` (0: no limit); 1 when a
    report went over a limit (each named in one line), else 0."""
    budget: Budget = {
        "bytes": max_bytes or None,
        "files": max_files or None,
        "bytes_text": f"{max_bytes >> 20} MiB" if max_bytes and not max_bytes % (1 << 20) else f"{max_bytes} bytes",
        "files_text": f"{max_files} files",
    }
    try:
        user = ci_job_user.job_user(job)
    except ci_job_user.Refused:
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
            for note in _collect(top, parts, os.path.join(target, *parts), uid, budget):
                print(f"collect-reports: {note}")
    finally:
        os.close(top)
    return 1 if budget.get("exceeded") else 0


def _collect(top: int, parts: list[str], destination: str, uid: int, budget: Budget | None = None) -> list[str]:
    """Copy the report `parts` (a path under the checkout's descriptor `top`), never through a symlink.
    `budget` ({"bytes", "files": what is left, None: no limit; "bytes_text", "files_text"}) is what
    the job's reports may still take: counted in bytes really read (a sparse or growing file too),
    each file and directory one file; a file over it is not kept, and "exceeded" counts the refusals."""
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
        return _copy_entry(fd, parts[-1], destination, "/".join(parts), uid, budget)
    finally:
        os.close(fd)


def _count_file(budget: Budget, st: os.stat_result, shown: str) -> list[str]:
    """One more file or directory against the budget's "files": [] when it fits, else the refusal."""
    if budget["files"] is None or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return []
    if budget["files"] < 1:
        budget["exceeded"] = budget.get("exceeded", 0) + 1
        return [f"report {shown} skipped: the job's reports exceed {budget['files_text']} ([limits] report_files)"]
    budget["files"] -= 1
    return []


def _copy_entry(
    dir_fd: int, name: str, destination: str, shown: str, uid: int, budget: Budget | None = None
) -> list[str]:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return []
    budget = budget if budget is not None else {"bytes": None, "files": None}
    refused = _count_file(budget, st, shown)
    if refused:
        return refused
    if stat.S_ISDIR(st.st_mode):
        return _copy_dir(dir_fd, name, destination, shown, uid, budget)
    if not stat.S_ISREG(st.st_mode):
        return [f"skipped {shown}: {'a symlink (never followed)' if stat.S_ISLNK(st.st_mode) else 'not a file'}"]
    return _copy_file(dir_fd, name, destination, shown, uid, budget)


def _copy_file(dir_fd: int, name: str, destination: str, shown: str, uid: int, budget: Budget) -> list[str]:
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        return [f"skipped {shown}: {exc.strerror}"]
    left = budget["bytes"]
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return [f"skipped {shown}: not a file"]
        if st.st_nlink > 1 and st.st_uid != uid:
            return [f"skipped {shown}: a hard link to a file the job does not own"]
        os.makedirs(os.path.dirname(destination), mode=0o700, exist_ok=True)
        copied = _copy_at_most(source, destination, left)
    if left is not None and copied > left:
        os.unlink(destination)
        budget["exceeded"] = budget.get("exceeded", 0) + 1
        return [f"report {shown} skipped: the job's reports exceed {budget['bytes_text']} ([limits] report_bytes)"]
    if left is not None:
        budget["bytes"] = left - copied
    return []


def _copy_at_most(source: IO[bytes], destination: str, left: int | None) -> int:
    """Copy `source` into `destination` while it fits in `left` bytes (None: no limit); returns the bytes
    read, at most one more than `left`."""
    copied = 0
    with open(destination, "wb") as copy:
        while left is None or copied <= left:
            chunk = source.read(1 << 20 if left is None else min(1 << 20, left - copied + 1))
            if not chunk:
                break
            copied += len(chunk)
            if left is None or copied <= left:
                copy.write(chunk)
    return copied


def _copy_dir(
    dir_fd: int, name: str, destination: str, shown: str, uid: int, budget: Budget | None = None
) -> list[str]:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return [f"skipped {shown}: not a directory any more"]
    try:
        os.makedirs(destination, mode=0o700, exist_ok=True)
        notes: list[str] = []
        refused = (budget or {}).get("exceeded", 0)
        for entry in sorted(os.scandir(fd), key=lambda e: e.name):
            notes += _copy_entry(
                fd, entry.name, os.path.join(destination, entry.name), f"{shown}/{entry.name}", uid, budget
            )
            if (budget or {}).get("exceeded", 0) > refused:  # over a limit: the rest would be too
                notes.append(f"report {shown}: the rest of it was not copied")
                break
        return notes
    finally:
        os.close(fd)
