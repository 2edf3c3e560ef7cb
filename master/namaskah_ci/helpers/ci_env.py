#!/usr/bin/env python3
"""A job command's own environment layers and working directory (imported by ci_step.py).

- `${NAME}` in the pipeline file's `env` values (top level, job, step) is the value of a
  variable defined before it, expanded here at run time, so it works on whatever the job has
  then (the services' variables, Namaskah CI's, the job's secrets, the file's earlier ones).
  Only `${NAME}` is special: `$NAME`, `$(...)` and a lone `$` stay as written (the shell of a
  step may expand them), and `$${` writes a literal `${`. A name not defined fails the command
  naming it. The master checks the syntax when it reads the file (`reference_problem`).
- `$NAMASKAH_CI_ENV` (`env_file`, in the build's TMPDIR: fresh per build, the job user's): a
  step appends `NAME=value` lines, or `NAME<<DELIM` ... `DELIM` for a value of several lines,
  and every later command of the job has them (as GitHub Actions' `GITHUB_ENV`). Names Namaskah
  CI owns and values with control characters are refused with one line; as root the file is
  read only when it is a regular file of the job user's (never through a symlink).
- `working_directory`: a directory of the checkout, resolved under it; missing, not a
  directory, or leading out of the checkout (a symlink) fails naming it.

Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping

RESERVED = ("PATH", "HOME", "TMPDIR", "VIRTUAL_ENV")  # the job's base environment is Namaskah CI's
RESERVED_PREFIX = "NAMASKAH_CI_"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")  # a literal `${`, a reference, an unclosed one
ENV_FILE = "namaskah-ci.env"  # in TMPDIR: $NAMASKAH_CI_ENV
ENV_FILE_MAX_BYTES = 1024 * 1024
# control characters but tab (C0, DEL, C1) and the Unicode line and paragraph separators
CONTROL = re.compile("[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]")


# what the dynamic loader reads (glibc's unsecure variables): bwrap and setpriv start as root (or as the
# master's user, outside the sandbox), where LD_PRELOAD=<a library in the checkout> would be the branch's code
LOADER = re.compile(
    r"(LD_|MALLOC_)\w*|GCONV_PATH|GETCONF_DIR|GLIBC_TUNABLES|HOSTALIASES|LOCALDOMAIN|LOCPATH|NIS_PATH|NLSPATH"
    r"|RESOLV_HOST_CONF|RES_OPTIONS|TZDIR"
)


class EnvProblem(Exception):
    """A variable that cannot be set; the message is one line naming it."""


def reference_problem(value: str) -> str:
    """'' when every `${` in `value` is `${NAME}` or `$${`, else what is wrong (for the master's check)."""
    for found in TOKEN.finditer(value):
        text = found.group(0)
        if text == "$${":
            continue
        if text == "${":
            return "has a '${' without its '}' (write a literal '${' as '$${')"
        if not NAME.match(found.group(1)):
            return (
                f"{text!r} is not a reference: write ${{NAME}} with NAME a variable name "
                "(no default or other shell forms; a literal '${' is '$${')"
            )
    return ""


def expand(value: str, scope: Mapping[str, str], where: str) -> str:
    """`value` with each `${NAME}` replaced by NAME's value in `scope`; `where` names the variable set."""

    def replace(found: re.Match[str]) -> str:
        text = found.group(0)
        if text == "$${":
            return "${"
        name = found.group(1)
        if text == "${" or not NAME.match(name or ""):
            raise EnvProblem(f"ci_step: {where}: {reference_problem(value)}")
        if name not in scope:
            raise EnvProblem(
                f"ci_step: {where} uses ${{{name}}}, which is not defined before it (a service the job lacks, "
                "a secret not configured, a name set later or misspelt?)"
            )
        return scope[name]

    return TOKEN.sub(replace, value)


def apply(
    env: dict[str, str], pairs: Iterable[tuple[str, str]], what: str, keep: Iterable[str] = (), strict: bool = True
) -> None:
    """Set each (name, value) of `pairs` in order into `env`, its `${NAME}` expanded over what `env` holds
    then; names in `keep` keep the value `env` has (the services' and the secrets' over the file's). Not
    `strict` (Namaskah CI's own commands, e.g. the virtualenv's, before the services started): a variable
    using a name not defined yet is left out instead of failing the command."""
    kept = set(keep)
    for name, value in pairs:
        try:
            expanded = expand(value, env, f"{what} {name}")
        except EnvProblem:
            if strict:
                raise
            continue
        if name not in kept:
            env[name] = expanded


def reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIX)


def env_file(tmpdir: str) -> str:
    return os.path.join(tmpdir, ENV_FILE)


def _read_own_file(path: str, uid: int | None) -> str:
    """The file's text, never through a symlink; with `uid` (read as root) only a regular file of that
    user with one link (not a hard link to a file someone else can read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise EnvProblem(f"ci_step: $NAMASKAH_CI_ENV ({path}) cannot be read ({exc.strerror}): refused") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EnvProblem(f"ci_step: $NAMASKAH_CI_ENV ({path}) is not a regular file: refused")
        if uid is not None and (info.st_uid != uid or info.st_nlink != 1):
            raise EnvProblem(f"ci_step: $NAMASKAH_CI_ENV ({path}) is not a file the job wrote: refused")
        if info.st_size > ENV_FILE_MAX_BYTES:
            raise EnvProblem(
                f"ci_step: $NAMASKAH_CI_ENV holds {info.st_size} bytes, over the limit of {ENV_FILE_MAX_BYTES}"
            )
        data = os.read(fd, ENV_FILE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvProblem("ci_step: $NAMASKAH_CI_ENV is not UTF-8 text") from None


def _checked(name: str, value: str, line: int, multiline: bool = False) -> tuple[str, str]:
    where = f"$NAMASKAH_CI_ENV line {line}"
    if not NAME.match(name):
        raise EnvProblem(f"ci_step: {where}: {name[:60]!r} is not a variable name (write NAME=value)")
    if reserved(name):
        raise EnvProblem(f"ci_step: {where}: {name} is set by Namaskah CI and cannot be set here")
    control = CONTROL.search(value.replace("\n", "") if multiline else value)
    if control:
        raise EnvProblem(
            f"ci_step: {where}: {name}'s value holds a control character ({control.group()!r}): refused "
            "(a value of several lines is written NAME<<DELIM ... DELIM)"
        )
    return name, value


def read_env_file(path: str, uid: int | None = None) -> list[tuple[str, str]]:
    """The (name, value) lines of `$NAMASKAH_CI_ENV` in order ([] when no step wrote it)."""
    lines = _read_own_file(path, uid).split("\n")
    found: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        line, number = lines[index].rstrip("\r"), index + 1
        index += 1
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        heredoc = line.partition("<<")
        if heredoc[1] and (not equals or len(heredoc[0]) < len(name)):
            name, delimiter = heredoc[0], heredoc[2]
            if not delimiter:
                raise EnvProblem(f"ci_step: $NAMASKAH_CI_ENV line {number}: {name}<< needs a delimiter")
            body: list[str] = []
            while index < len(lines) and lines[index].rstrip("\r") != delimiter:
                body.append(lines[index].rstrip("\r"))
                index += 1
            if index == len(lines):
                raise EnvProblem(f"ci_step: $NAMASKAH_CI_ENV line {number}: {name}<<{delimiter} is never closed")
            index += 1
            found.append(_checked(name, "\n".join(body), number, multiline=True))
        elif equals:
            found.append(_checked(name, value, number))
        else:
            raise EnvProblem(f"ci_step: $NAMASKAH_CI_ENV line {number}: write NAME=value or NAME<<DELIM")
    return found


def working_directory(root: str, relative: str) -> str:
    """`relative` (a job's or step's `working_directory`) under the checkout `root`, checked."""
    shown = relative.rstrip("/") + "/"
    path = os.path.normpath(os.path.join(root, relative))
    if os.path.isabs(relative) or not (path + "/").startswith(root.rstrip("/") + "/"):
        raise EnvProblem(f"ci_step: working_directory {shown}: not a directory inside the checkout")
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if not os.path.lexists(path):
        raise EnvProblem(f"ci_step: working_directory {shown}: no such directory in the checkout")
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise EnvProblem(
            f"ci_step: working_directory {shown}: leads out of the checkout through a symlink (to {real}): refused"
        )
    if not os.path.isdir(real):
        raise EnvProblem(f"ci_step: working_directory {shown}: no such directory in the checkout (not a directory)")
    return path


def loader_apart(env: Mapping[str, str], prefix: list[str]) -> tuple[dict[str, str], list[str]]:
    """(the environment the sandbox starts with, its command line up to the command): the loader's
    variables (`LOADER`) out of the first, set again by `env` inside, as the job's user, for the command."""
    moved = {name: value for name, value in env.items() if LOADER.fullmatch(name)}
    if not moved:
        return dict(env), prefix
    kept = {name: value for name, value in env.items() if name not in moved}
    return kept, [*prefix, "/usr/bin/env", *(f"{name}={value}" for name, value in moved.items())]
