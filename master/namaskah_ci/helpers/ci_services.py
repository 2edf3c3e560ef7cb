#!/usr/bin/env python3
"""Per-build PostgreSQL 15 and Redis 7 server processes on free loopback ports.

    ci_services.py start --state-dir DIR [--env-file FILE] [--postgres] [--redis] [--timeout SECONDS]
    ci_services.py stop --state-dir DIR [--env-file FILE]

`start` (both services when neither flag is given) runs initdb into DIR/pg and
starts PostgreSQL on 127.0.0.1 (its unix socket in DIR too), creates the database
and its user, starts redis-server without persistence and with a password, waits
until both answer (bounded by --timeout), then writes DIR/services.env (0600):

    DATABASE_URL=postgresql://USER:PASS@127.0.0.1:PORT/DB
    REDIS_URL=redis://default:PASS@127.0.0.1:PORT/0

Every server of every job listens on 127.0.0.1: its random password is what keeps
other jobs out, so it is never printed where others read. With --env-file (a
build: FILE is `<job dir>/services.env`, which ci_step.py reads for the job's
commands) the lines go to FILE too, written afresh (0600, never through a
symlink), and stdout says only where the servers are, e.g.
`postgres: 127.0.0.1:PORT (database DB, user USER; DATABASE_URL)`; without it
(a developer's run) stdout prints the lines above. `stop --env-file` removes FILE.

The servers run outside the job's sandbox, so what a job can make them do is
bounded. USER (`namaskah`) is not a superuser: it owns DB, may create databases
and trusted extensions, nothing more (no `COPY ... TO PROGRAM`, no server files,
no untrusted language); the superuser's random password is used once to create
it and printed nowhere. Redis requires its password (`requirepass`, from a 0600
configuration file: never on a command line) and has CONFIG, MODULE, DEBUG, SLAVEOF and REPLICAOF
switched off (no file written where the job chooses, no replication to or from
elsewhere).

As root, both servers run as the `postgres` user (or `nobody`) through runuser, in
directories that user owns (private /tmp directories when it cannot reach DIR). On
failure `start` stops what it started, removes DIR and exits 1 naming the service;
a missing binary exits 2 naming the package. `stop` stops both (pg_ctl fast, then
immediate; redis by its pidfile), removes DIR and exits 0, also when nothing runs.
Neither touches a non-empty DIR without its state.json. Messages go to stderr.
The servers themselves (finding, starting, stopping one): ci_servers.py.
Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # mypy reads the sibling as a module of the helpers package; a job imports it from here
    from namaskah_ci.helpers import ci_servers
else:
    import ci_servers

ENV_FILE = "services.env"
SERVICE_OF = {"DATABASE_URL": "postgres", "REDIS_URL": "redis"}


def log(message: str) -> None:
    print(f"ci_services: {message}", file=sys.stderr, flush=True)


def where(key: str, url: str) -> str:
    """What may be shown of a service's URL: where it is (and its database and user), not its password."""
    parts = urllib.parse.urlsplit(url)
    detail = f"database {parts.path.lstrip('/')}, user {parts.username}; " if SERVICE_OF[key] == "postgres" else ""
    return f"{SERVICE_OF[key]}: {parts.hostname}:{parts.port} ({detail}{key})"


def start(state_dir: str, postgres: bool, redis: bool, timeout: float, env_file: str = "") -> int:
    if os.path.exists(os.path.join(state_dir, ci_servers.STATE_FILE)):
        log(f"{state_dir} holds services from an earlier run: stopping them first")
        stop(state_dir, env_file=env_file)
    elif os.path.isdir(state_dir) and os.listdir(state_dir):
        raise ci_servers.ServiceError(f"{state_dir} exists and is not a ci_services state directory; choose another")
    # find every binary before starting anything, so a missing one fails fast with exit code 2
    bindir = ci_servers.find_postgres() if postgres else ""
    redis_binary = ci_servers.find_redis() if redis else ""
    prefix = ci_servers.run_as_prefix()
    deadline = time.monotonic() + timeout
    os.makedirs(state_dir, exist_ok=True)
    state: dict[str, dict[str, Any]] = {}
    ci_servers.save_state(state_dir, state)  # from here on, `stop` recognises DIR as ours
    urls: dict[str, str] = {}
    failed = f"postgres failed to start within {timeout:g}s"
    try:
        if postgres:
            urls["DATABASE_URL"] = ci_servers.start_postgres(state_dir, state, deadline, bindir, prefix)
        failed = f"redis failed to start within {timeout:g}s"
        if redis:
            urls["REDIS_URL"] = ci_servers.start_redis(state_dir, state, deadline, redis_binary, prefix)
        lines = "".join(f"{key}={url}\n" for key, url in urls.items())
        ci_servers.write_private(os.path.join(state_dir, ENV_FILE), lines)
        if env_file:
            failed = f"the servers' URLs could not be written to {env_file}"
            ci_servers.write_private(env_file, lines)
    except (ci_servers.ServiceError, OSError, subprocess.SubprocessError) as exc:
        log(f"{failed}: {exc}")
        stop(state_dir, quiet=True, env_file=env_file)
        return exc.code if isinstance(exc, ci_servers.ServiceError) and exc.code != 1 else 1
    shown = [where(key, url) for key, url in urls.items()] if env_file else lines.splitlines()
    print("\n".join(shown), flush=True)
    return 0


def remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def stop(state_dir: str, quiet: bool = False, env_file: str = "") -> int:
    if env_file:
        remove_file(env_file)
    if not os.path.isdir(state_dir):
        if not quiet:
            log(f"nothing to stop in {state_dir}")
        return 0
    if not os.path.exists(os.path.join(state_dir, ci_servers.STATE_FILE)):
        log(f"{state_dir} holds no {ci_servers.STATE_FILE}: not a ci_services state directory, left alone")
        return 0
    try:
        with open(os.path.join(state_dir, ci_servers.STATE_FILE), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        state = {}
    if "redis" in state:
        ci_servers.stop_redis(state["redis"])
    if "postgres" in state:
        ci_servers.stop_postgres(state["postgres"])
    shutil.rmtree(state_dir, ignore_errors=True)
    if not quiet:
        log(f"stopped {', '.join(sorted(state)) or 'nothing'}; removed {state_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    start_parser = sub.add_parser("start", help="start the servers and print their URLs")
    stop_parser = sub.add_parser("stop", help="stop the servers and remove the state directory")
    for each in (start_parser, stop_parser):
        each.add_argument("--state-dir", required=True, help="directory holding the servers' data and state")
        each.add_argument("--env-file", default="", help="the file (0600) the URLs go to instead of stdout")
    start_parser.add_argument("--postgres", action="store_true", help="start PostgreSQL 15")
    start_parser.add_argument("--redis", action="store_true", help="start Redis 7")
    start_parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for both (default 60)")
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    env_file = os.path.abspath(args.env_file) if args.env_file else ""
    if args.action == "stop":
        return stop(state_dir, env_file=env_file)
    both = not (args.postgres or args.redis)
    try:
        return start(state_dir, args.postgres or both, args.redis or both, args.timeout, env_file)
    except ci_servers.ServiceError as exc:
        log(str(exc))
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
