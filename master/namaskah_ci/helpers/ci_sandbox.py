#!/usr/bin/env python3
"""The sandbox every command of a local job runs in: bubblewrap (`bwrap`), as Flatpak uses it.

ci_step.py builds the command line with `sandbox_argv()` and runs it; this module owns what a
command can see and how long it can live (local mode; in docker mode the container is the sandbox):

- its own PID namespace with a fresh /proc (no other job's processes, nor their environment), its
  own IPC and UTS namespaces; the network stays the host's (loopback services, package registries);
- `--new-session` (no terminal to push input into) and `--die-with-parent`: the sandbox is killed
  when the process that started it dies (a stopped build's process group, a master that died);
  when the command ends, the namespace's init ends and the kernel kills every process left in it,
  a `setsid` daemon included;
- read-only: /usr, /etc, /bin, /sbin, /lib*, /sys, /var/lib/dpkg, the installation of the job's
  interpreter, the directories of the job's base PATH and Namaskah CI's helpers; writable: what the
  caller names (the checkout, the build's TMPDIR holding HOME, its branch's caches); /tmp,
  /var/tmp and /dev/shm empty (tmpfs) at each command; the rest of the tree read-only;
- nothing else of the host: the master's basedir (other builds, reports, database, logs), the
  secrets directory and other branches' caches are not mounted, and an empty tmpfs covers any of
  them that lies under a read-only tree;
- on a root master bwrap runs as root (it mounts what the job user could not reach on the way)
  and `setpriv` then makes the command the job user's: no group, no capability, no way back; a
  root master without a job user runs it as root with no capability (`--cap-drop ALL`).

A master that is not root runs bwrap as itself, which needs unprivileged user namespaces. `check()`
runs bwrap once before each command and turns a refusal into one line naming the cause; a missing
bwrap is one line naming the package. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

PACKAGE = "bubblewrap"
SYSTEM_TREES = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys", "/var/lib/dpkg")
DOCKER_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock")
PR_SET_PDEATHSIG = 1
NO_USERNS = (
    "the kernel refuses user namespaces to this user: allow them (sysctl kernel.unprivileged_userns_clone=1 "
    "and user.max_user_namespaces > 0; on Ubuntu 24.04 the AppArmor profile for bwrap, or "
    "kernel.apparmor_restrict_unprivileged_userns=0), or use docker mode"
)


class Unavailable(Exception):
    """No sandbox can be made here; the message says why and what to do."""


def find_setpriv(search_path: str) -> str:
    found = shutil.which("setpriv", path=search_path)
    if not found:
        raise Unavailable(f"ci_step: setpriv not found (on {search_path}): install the Debian package util-linux")
    return found


def find_bwrap(search_path: str) -> str:
    found = shutil.which("bwrap", path=search_path)
    if not found:
        raise Unavailable(
            f"ci_step: bwrap not found (on {search_path}): local jobs run in a bubblewrap sandbox: install the "
            f"Debian package {PACKAGE} (apt-get install {PACKAGE}; scripts/install_deps.sh does)"
        )
    return found


def check(bwrap: str) -> None:
    """bwrap can make a sandbox here, as this process's user (raises Unavailable with its reason)."""
    probe = [bwrap, "--unshare-pid", "--die-with-parent", *system_args(), "--", shutil.which("true") or "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"ci_step: {bwrap} does not run: {exc}") from None
    if done.returncode:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        if os.geteuid() == 0:
            why = "root cannot create namespaces here (a container without CAP_SYS_ADMIN?): use docker mode"
        elif "namespace" in said.lower() or "permission" in said.lower():
            why = NO_USERNS
        else:
            why = "see its message"
        raise Unavailable(f"ci_step: bubblewrap cannot make the job's sandbox ({said}): {why}")


def die_with_parent() -> None:
    """Be killed (SIGKILL) when the parent dies: a sandbox started by this process then dies with it.
    Call it after any change of user (the kernel clears the setting then)."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the setting took effect
        os.kill(os.getpid(), signal.SIGKILL)


def under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def system_args() -> list[str]:
    args: list[str] = []
    made: set[str] = set()
    for tree in SYSTEM_TREES:
        if os.path.islink(tree):
            args += ["--symlink", os.readlink(tree), tree]
        elif os.path.isdir(tree):
            # /var and /var/lib of /var/lib/dpkg 0755: bwrap makes them 0700, closing a basedir under /var/lib
            args += _parents(tree, [], made)
            args += ["--ro-bind", tree, tree]
    return args


def _system_visible() -> list[str]:
    return [tree for tree in SYSTEM_TREES if os.path.isdir(tree) and not os.path.islink(tree)]


def host_readonly(interpreter: str, search_path: str, helpers: str) -> list[str]:
    """The host's trees a command needs beside the system's: the interpreter's installation, the base
    PATH's directories, the helpers, where /etc/resolv.conf points."""
    found: list[str] = []
    program = shutil.which(interpreter, path=search_path) if interpreter else None
    if program:
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(program)))
        if prefix != "/":
            found.append(prefix)
    for directory in search_path.split(os.pathsep):
        if directory and os.path.isabs(directory) and os.path.isdir(directory) and not os.path.islink(directory):
            found.append(directory)
    resolv = os.path.realpath("/etc/resolv.conf")
    if os.path.exists(resolv):
        found.append(os.path.dirname(resolv))
    found.append(helpers)
    system = _system_visible()
    return [path for path in found if not any(under(path, tree) for tree in system)]


def inside(path: str, *bases: str) -> bool:
    """`path` lies in one of `bases` through real directories only: a job that wrote a cache can have
    left a symlink there, which a mount made as root must never follow (to another branch's cache)."""
    for base in filter(None, bases if path else ()):
        relative = os.path.relpath(path, base)
        if relative == "." or relative.startswith(".."):
            continue
        current = base
        for part in relative.split(os.sep):
            current = os.path.join(current, part)
            if os.path.islink(current) or not os.path.isdir(current):
                break
        else:
            return not os.path.islink(base)
    return False


def sandbox_argv(
    bwrap: str,
    *,
    workdir: str,
    writable: Sequence[str],
    readonly: Sequence[str],
    hidden: Sequence[str] = (),
    tools: Sequence[str] = (),
    as_root: bool = False,
    switch_to: tuple[str, int, int] | tuple[()] = (),
) -> list[str]:
    """bwrap's arguments up to and with `--` (the command follows). `readonly`/`writable`: host paths
    mounted at the same place; `hidden`: host paths never to be seen (covered by a tmpfs if a tree
    mounted above them would show them); `tools`: the job's `tools:` as job.json lists them (`docker`
    gets the engine's socket, root on its host: the master lists it only for builds of [workers]
    docker_socket_branches, jobs/engine_access.py). `as_root`: bwrap runs as root;
    `switch_to` (setpriv, uid, gid): the command then runs as that user, with no group, capability or
    way back (root sets the sandbox up, so mounting what the user could not reach on the way, a
    directory someone closed meanwhile, still works); without it, as root with no capability."""
    args = [
        bwrap,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        "--perms",
        "1777",
        "--tmpfs",
        "/var/tmp",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
        *system_args(),
    ]
    if as_root and not switch_to:
        args += ["--cap-drop", "ALL"]
    mounts = [(os.path.abspath(path), "--ro-bind") for path in readonly if os.path.exists(path)]
    mounts += [(os.path.abspath(path), "--bind") for path in writable if os.path.exists(path)]
    if "docker" in tools:
        mounts += [(os.path.realpath(path), "--bind") for path in DOCKER_SOCKETS if os.path.exists(path)]
    trees = _system_visible()
    shown = trees + [path for path, _ in mounts]
    for each in hidden:
        path = os.path.abspath(each)
        if os.path.isdir(path) and any(under(path, tree) and path != tree for tree in shown):
            mounts.append((path, "--tmpfs"))
    made: set[str] = set()
    # parents before what is mounted inside them: a tmpfs hides a tree, then the one part of it allowed
    for path, kind in sorted(set(mounts), key=lambda item: (item[0].count("/"), item[1] != "--tmpfs", item[0])):
        args += _parents(path, trees, made)
        args += ["--perms", "0755", kind, path] if kind == "--tmpfs" else [kind, path, path]
        if kind != "--tmpfs":
            trees.append(path)
    if "docker" in tools and os.path.islink("/var/run"):
        args += ["--symlink", os.readlink("/var/run"), "/var/run"]
    args += ["--remount-ro", "/", "--chdir", workdir, "--"]  # the rest of the tree: nothing to write into
    if switch_to:
        setpriv, uid, gid = switch_to
        args += [
            setpriv,
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return args


def _parents(path: str, mounted: list[str], made: set[str]) -> list[str]:
    """`--dir` (0755, enterable by the command's user) for each directory above `path` that no host tree
    mounted so far provides (bwrap would make them private to the user setting the sandbox up)."""
    args: list[str] = []
    parts = path.strip("/").split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        parent = "/" + "/".join(parts[:depth])
        if parent in made or any(under(parent, tree) for tree in mounted):
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", parent]
    return args


def exit_like(status: int) -> int:
    """Return bwrap's status as the command's: a command killed by signal N (bwrap says 128+N) kills
    this process with N, so the worker sees what it would have seen without the sandbox."""
    if 128 < status < 128 + signal.NSIG:
        number = status - 128
        if number not in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
    return status
