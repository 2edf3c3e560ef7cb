#!/usr/bin/env python3
"""Per-build PostgreSQL and Redis server processes on free loopback ports.

    ci_services.py start --state-dir DIR [--env-file FILE] [--postgres] [--redis] [--timeout SECONDS]
        [--postgres-version N] [--postgres-database NAME] [--postgres-user NAME] [--redis-version N]
    ci_services.py stop --state-dir DIR [--env-file FILE]

`start` (both services when neither flag is given) runs initdb into DIR/pg and
starts PostgreSQL (the host's version N, default 15: `/usr/lib/postgresql/N/bin`)
on 127.0.0.1 (its unix socket in DIR too), creates the database and its user
(default `namaskah` both), starts redis-server (version N, default 7) without
persistence and with a password, waits until both answer (bounded by
--timeout), then writes DIR/services.env (0600):

    DATABASE_URL=postgresql://USER:PASS@127.0.0.1:PORT/DB
    PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE (libpq's), POSTGRES_HOST POSTGRES_SERVER
    POSTGRES_PORT POSTGRES_USER POSTGRES_PASSWORD POSTGRES_DB (the same values)
    REDIS_URL=redis://default:PASS@127.0.0.1:PORT/0, REDIS_HOST REDIS_PORT REDIS_PASSWORD

The passwords are random unless the environment gives one ($CI_SERVICES_POSTGRES_PASSWORD,
$CI_SERVICES_REDIS_PASSWORD: a pipeline file's `password`; never an argument, which
the step's log shows). A version the host lacks exits 2 naming the versions it has.

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
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # mypy reads the sibling as a module of the helpers package; a job imports it from here
    from namaskah_ci.helpers import ci_servers
else:
    import ci_servers

ENV_FILE = "services.env"
PASSWORD_ENV = ci_servers.PASSWORD_ENV
SHOWN = {"postgres": "DATABASE_URL, PG*, POSTGRES_*", "redis": "REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_PASSWORD"}


def log(message: str) -> None:
    print(f"ci_services: {message}", file=sys.stderr, flush=True)


def where(name: str, version: int, variables: dict[str, str]) -> str:
    """What may be shown of a service: where it is (and its database and user), never its password."""
    if name == "postgres":
        detail = f"version {version}, database {variables['PGDATABASE']}, user {variables['PGUSER']}; "
        return f"postgres: {variables['PGHOST']}:{variables['PGPORT']} ({detail}{SHOWN[name]})"
    return f"redis: {variables['REDIS_HOST']}:{variables['REDIS_PORT']} (version {version}; {SHOWN[name]})"


def check_options(options: dict[str, Any]) -> None:
    """Names go into SQL and passwords into SQL, a URL and redis.conf: only what needs no quoting there
    (the pipeline file's schema says the same)."""
    for key in ("postgres_database", "postgres_user"):
        if options.get(key) and not ci_servers.IDENTIFIER.match(options[key]):
            flag = "--" + key.replace("_", "-")
            raise ci_servers.ServiceError(f"{flag} {options[key]!r}: {ci_servers.IDENTIFIER_HINT}", 2)
    for name, variable in PASSWORD_ENV.items():
        value = os.environ.get(variable, "")
        if value and not ci_servers.PASSWORD.match(value):
            raise ci_servers.ServiceError(f"${variable} ({name}'s password): {ci_servers.PASSWORD_HINT}", 2)


def start(
    state_dir: str,
    postgres: bool,
    redis: bool,
    timeout: float,
    env_file: str = "",
    options: dict[str, Any] | None = None,
) -> int:
    """`options`: postgres_version, postgres_database, postgres_user, redis_version (the defaults when
    absent); the passwords come from the environment (PASSWORD_ENV)."""
    options = options or {}
    check_options(options)
    pg_version = int(options.get("postgres_version") or ci_servers.PG_MAJOR)
    redis_version = int(options.get("redis_version") or ci_servers.REDIS_MAJOR)
    if os.path.exists(os.path.join(state_dir, ci_servers.STATE_FILE)):
        log(f"{state_dir} holds services from an earlier run: stopping them first")
        stop(state_dir, env_file=env_file)
    elif os.path.isdir(state_dir) and os.listdir(state_dir):
        raise ci_servers.ServiceError(f"{state_dir} exists and is not a ci_services state directory; choose another")
    # find every binary before starting anything, so a missing one fails fast with exit code 2
    bindir = ci_servers.find_postgres(pg_version) if postgres else ""
    redis_binary = ci_servers.find_redis(redis_version) if redis else ""
    prefix = ci_servers.run_as_prefix()
    deadline = time.monotonic() + timeout
    os.makedirs(state_dir, exist_ok=True)
    state: dict[str, dict[str, Any]] = {}
    ci_servers.save_state(state_dir, state)  # from here on, `stop` recognises DIR as ours
    started: dict[str, dict[str, str]] = {}
    failed = f"postgres failed to start within {timeout:g}s"
    try:
        if postgres:
            started["postgres"] = ci_servers.start_postgres(
                state_dir,
                state,
                deadline,
                bindir,
                prefix,
                database=options.get("postgres_database") or ci_servers.DB_NAME,
                user=options.get("postgres_user") or ci_servers.DB_USER,
                job_password=os.environ.get(PASSWORD_ENV["postgres"], ""),
            )
        failed = f"redis failed to start within {timeout:g}s"
        if redis:
            started["redis"] = ci_servers.start_redis(
                state_dir, state, deadline, redis_binary, prefix, password=os.environ.get(PASSWORD_ENV["redis"], "")
            )
        lines = "".join(f"{key}={value}\n" for each in started.values() for key, value in each.items())
        ci_servers.write_private(os.path.join(state_dir, ENV_FILE), lines)
        if env_file:
            failed = f"the servers' URLs could not be written to {env_file}"
            ci_servers.write_private(env_file, lines)
    except (ci_servers.ServiceError, OSError, subprocess.SubprocessError) as exc:
        log(f"{failed}: {exc}")
        stop(state_dir, quiet=True, env_file=env_file)
        return exc.code if isinstance(exc, ci_servers.ServiceError) and exc.code != 1 else 1
    versions = {"postgres": pg_version, "redis": redis_version}
    shown = [where(name, versions[name], each) for name, each in started.items()] if env_file else lines.splitlines()
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
    start_parser.add_argument("--postgres", action="store_true", help="start PostgreSQL")
    start_parser.add_argument("--redis", action="store_true", help="start Redis")
    start_parser.add_argument("--postgres-version", type=int, default=0, help="major version (default 15)")
    start_parser.add_argument("--postgres-database", default="", help="the job's database (default namaskah)")
    start_parser.add_argument("--postgres-user", default="", help="the job's role (default namaskah)")
    start_parser.add_argument("--redis-version", type=int, default=0, help="major version (default 7)")
    start_parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for both (default 60)")
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    env_file = os.path.abspath(args.env_file) if args.env_file else ""
    if args.action == "stop":
        return stop(state_dir, env_file=env_file)
    both = not (args.postgres or args.redis)
    try:
        options = {key: getattr(args, key) for key in ("postgres_version", "postgres_database", "postgres_user")}
        options["redis_version"] = args.redis_version
        return start(state_dir, args.postgres or both, args.redis or both, args.timeout, env_file, options)
    except ci_servers.ServiceError as exc:
        log(str(exc))
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
