#!/usr/bin/env python3
"""One build's PostgreSQL and Redis server processes (the host's versions; 15 and 7 by default): their
binaries found by version, each started on a free loopback port with its own password (random unless the
pipeline file gives one), the variables a job gets for them, and stopped.

ci_services.py (the command a build runs) keeps them in a state directory and says what they guarantee:
a PostgreSQL role that is no superuser, a Redis that requires its password and has no CONFIG, MODULE,
DEBUG, SLAVEOF or REPLICAOF; as root both run as `postgres` (or `nobody`) through runuser. Imported by
ci_services.py from its own directory. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

PG_DIRS = ("/usr/lib/postgresql/*/bin",)  # Debian's (globs), after the PATH
PG_MAJOR, REDIS_MAJOR = 15, 7
DB_NAME = DB_USER = "namaskah"  # the job's role, owner of its database (not a superuser)
ADMIN_USER = "postgres"  # the superuser: its password never leaves this process
REDIS_USER = "default"  # Redis's one user; `requirepass` sets its password
# Redis commands a job never needs that reach beyond its own data (files, modules, replication)
REDIS_DISABLED = ("CONFIG", "MODULE", "DEBUG", "SLAVEOF", "REPLICAOF")
STATE_FILE = "state.json"  # in the state directory: what `stop` needs to find the servers
# a database or role name, and a given password: nothing SQL, a URL or redis.conf would need quoted
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
IDENTIFIER_HINT = "lower-case letters, digits and '_', not starting with a digit, at most 63"
PASSWORD = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
# a password the pipeline file gives reaches ci_services.py in its environment, never as an argument
PASSWORD_ENV = {"postgres": "CI_SERVICES_POSTGRES_PASSWORD", "redis": "CI_SERVICES_REDIS_PASSWORD"}
PASSWORD_HINT = "letters, digits and . _ ~ - (no quoting needed in a URL), 1 to 128"


class ServiceError(Exception):
    """A failure with the exit code to use: 2 for a missing binary, 1 otherwise."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def major_version(binary: str) -> int | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=15, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"v=(\d+)\.", out) or re.search(r"(\d+)\.\d+", out)
    return int(found.group(1)) if found else None


def postgres_versions() -> dict[int, str]:
    """{major version: bin directory} of every PostgreSQL server on this host (PATH first, then Debian's
    `/usr/lib/postgresql/<N>/bin`); a version found twice keeps its first directory."""
    dirs = [os.path.dirname(p) for p in (shutil.which("pg_ctl"), shutil.which("initdb")) if p]
    for pattern in PG_DIRS:
        dirs += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    found: dict[int, str] = {}
    for bindir in dict.fromkeys(dirs):
        if all(os.access(os.path.join(bindir, n), os.X_OK) for n in ("postgres", "initdb", "pg_ctl", "psql")):
            version = major_version(os.path.join(bindir, "postgres"))
            if version is not None:
                found.setdefault(version, bindir)
    return found


def _version_key(path: str) -> int:
    digits = re.findall(r"/(\d+)/", path)
    return int(digits[-1]) if digits else 0


def available(versions: Any) -> str:
    return ", ".join(str(v) for v in sorted(versions)) or "none"


def find_postgres(version: int = PG_MAJOR) -> str:
    """The bin directory of a PostgreSQL `version` server; ServiceError (exit code 2) naming the versions
    this host has when it lacks that one."""
    found = postgres_versions()
    if version in found:
        return found[version]
    hint = f"available: {available(found)}" if found else f"none: apt-get install postgresql-{version}"
    raise ServiceError(f"postgres {version}: not on this host ({hint})", 2)


def find_redis(version: int = REDIS_MAJOR) -> str:
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if binary is None:
        raise ServiceError(f"redis {version}: not on this host (no redis-server): apt-get install redis-server", 2)
    found = major_version(binary)
    if found != version:
        raise ServiceError(
            f"redis {version}: not on this host (available: {found}, {binary}): apt-get install redis-server", 2
        )
    return binary


def service_variables(
    name: str, host: str, port: int, password: str, user: str = "", database: str = ""
) -> dict[str, str]:
    """The variables a job gets for one service, in both modes (`ci_services.py` writes them to
    services.env; docker mode puts them in the worker container's environment): PostgreSQL's URL,
    libpq's PG* and the POSTGRES_* many applications read; Redis's URL, host, port and password.
    Every one is a job-side value, never a build property or a log line (the passwords)."""
    if name == "redis":
        # `default:` (Redis's own user) rather than an empty user: redis-cli 7.0's -u sends `AUTH "" PASSWORD`
        # for `redis://:PASSWORD@` and fails (redis-py and other clients read both forms)
        url = f"redis://{REDIS_USER}:{password}@{host}:{port}/0"
        return {"REDIS_URL": url, "REDIS_HOST": host, "REDIS_PORT": str(port), "REDIS_PASSWORD": password}
    where = {"HOST": host, "PORT": str(port), "USER": user, "PASSWORD": password}
    return {
        "DATABASE_URL": f"postgresql://{user}:{password}@{host}:{port}/{database}",
        **{f"PG{key}": value for key, value in where.items()},
        "PGDATABASE": database,
        **{f"POSTGRES_{key}": value for key, value in where.items()},
        "POSTGRES_SERVER": host,
        "POSTGRES_DB": database,
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_as_prefix() -> list[str]:
    """`runuser -u USER --` when root (initdb and pg_ctl refuse to run as root; a Redis that a job
    talks to never runs as root either), else nothing."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServiceError("running as root needs runuser to start PostgreSQL and Redis: apt-get install util-linux", 2)
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
            return [runuser, "-u", user, "--"]
        except KeyError:
            continue
    raise ServiceError("running as root needs a 'postgres' or 'nobody' user to run PostgreSQL and Redis")


def run(
    command: list[str],
    timeout: float,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run `command` in its own process group; on timeout kill the whole group (runuser's children too).
    `stdin`: text to feed it (e.g. SQL holding a password, never on a command line)."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ServiceError(f"{os.path.basename(command[0])} timed out after {max(timeout, 1):.0f}s") from None
    if proc.returncode != 0:
        raise ServiceError(f"{' '.join(command)} failed ({proc.returncode}): {(err or out).strip()[-800:]}")
    return out


def wait_for(check_port: int, payload: bytes | None, expect: bytes, deadline: float) -> bool:
    """Poll 127.0.0.1:port until it accepts (and answers `expect` to `payload`) or the deadline passes."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", check_port), timeout=1) as sock:
                if payload is None:
                    return True
                sock.sendall(payload)
                if sock.recv(64).startswith(expect):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def save_state(state_dir: str, state: dict[str, dict[str, Any]]) -> None:
    with open(os.path.join(state_dir, STATE_FILE), "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)


def server_dir(state_dir: str, name: str, prefix: list[str]) -> str:
    """DIR/<name>, or, as root when the server's user cannot reach DIR, a private /tmp directory; the
    server's user owns it."""
    root = os.path.join(state_dir, name)
    os.makedirs(root)
    if prefix:
        user = prefix[2]
        shutil.chown(root, user, user)
        if subprocess.run([*prefix, "test", "-w", root], capture_output=True, timeout=15, check=False).returncode != 0:
            # DIR is not reachable for that user, nor may the job's TMPDIR be (it lives beside the checkout)
            root = tempfile.mkdtemp(prefix=f"ci-services-{name}-", dir="/tmp" if os.path.isdir("/tmp") else None)
            shutil.chown(root, user, user)
    return root


def start_postgres(
    state_dir: str,
    state: dict[str, dict[str, Any]],
    deadline: float,
    bindir: str,
    prefix: list[str],
    *,
    database: str = DB_NAME,
    user: str = DB_USER,
    job_password: str = "",
) -> dict[str, str]:
    """Start the server, create `user` (no superuser; `job_password`, else a random one) and `database`
    (its owner); return the job's variables (`service_variables`)."""
    root = server_dir(state_dir, "pg", prefix)
    data, port, password = os.path.join(root, "data"), free_port(), secrets.token_hex(16)
    sockets = os.path.join(root, "run")
    state["postgres"] = {"bindir": bindir, "prefix": prefix, "root": root, "data": data, "port": port}
    save_state(state_dir, state)
    pwfile = os.path.join(root, "pwfile")
    with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    os.makedirs(sockets)
    if prefix:
        for path in (pwfile, sockets):
            shutil.chown(path, prefix[2], prefix[2])
    initdb = [os.path.join(bindir, "initdb"), "-D", data, "-U", ADMIN_USER, f"--pwfile={pwfile}", "-E", "UTF8"]
    initdb += ["--locale=C", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--no-sync"]
    run(prefix + initdb, deadline - time.monotonic(), cwd=root)
    os.unlink(pwfile)
    socket_dir = sockets if len(sockets) < 90 else ""  # sun_path: 108 bytes with "/.s.PGSQL.NNNNN"
    with open(os.path.join(data, "postgresql.conf"), "a", encoding="utf-8") as conf:
        conf.write(
            f"\n# ci_services.py\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{socket_dir}'\nfsync = off\nsynchronous_commit = off\n"
            "full_page_writes = off\nmax_connections = 50\n"
        )
    pg_ctl = [os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(root, "postgres.log"), "-w"]
    remaining = int(max(deadline - time.monotonic(), 1))
    try:
        run(prefix + pg_ctl + ["-t", str(remaining), "start"], remaining + 5, cwd=root)
    except ServiceError as exc:
        raise ServiceError(f"postgres did not start: {exc}") from None
    if not wait_for(port, None, b"", deadline):
        raise ServiceError(f"postgres did not accept connections on 127.0.0.1:{port} in time")
    psql = [os.path.join(bindir, "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", ADMIN_USER, "-d", "postgres"]
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
    job_password = job_password or secrets.token_hex(16)
    # not a superuser: owner of its database (PG 15: of its public schema too), CREATEDB; PG 13+ lets a
    # database owner create trusted extensions (pgcrypto, citext, hstore, ...)
    sql = (
        f"CREATE ROLE {user} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS "
        f"PASSWORD '{job_password}';\nCREATE DATABASE {database} OWNER {user};\n"
    )
    run([*psql, "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"], 30, env=env, stdin=sql)
    return service_variables("postgres", "127.0.0.1", port, job_password, user, database)


# every variable of each service, in the order services.env holds them
VARIABLES = {name: tuple(service_variables(name, "", 0, "")) for name in ("postgres", "redis")}


def write_private(path: str, text: str, owner: str = "") -> None:
    """`path` written afresh, 0600 (and `owner`'s): a file or link left there is replaced, never followed."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    if owner:
        shutil.chown(path, owner, owner)


def start_redis(
    state_dir: str,
    state: dict[str, dict[str, Any]],
    deadline: float,
    binary: str,
    prefix: list[str],
    *,
    password: str = "",
) -> dict[str, str]:
    """Start the server with `password` (else a random one); return the job's variables."""
    port, password = free_port(), password or secrets.token_hex(16)
    workdir = server_dir(state_dir, "redis", prefix)
    pidfile = os.path.join(workdir, "redis.pid")
    state["redis"] = {"pidfile": pidfile, "port": port, "root": workdir}
    save_state(state_dir, state)
    conf = os.path.join(workdir, "redis.conf")  # the password: read by the server only, never an argument
    write_private(conf, f"requirepass {password}\n", prefix[2] if prefix else "")
    command = [binary, conf, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", str(port)]
    command += ["--dir", workdir, "--daemonize", "yes", "--pidfile", pidfile]
    command += ["--logfile", os.path.join(workdir, "redis.log")]
    # Redis 7's defaults, said here (they cannot change at runtime), and the commands switched off
    command += ["--enable-protected-configs", "no", "--enable-debug-command", "no", "--enable-module-command", "no"]
    for name in REDIS_DISABLED:
        command += ["--rename-command", name, ""]
    run(prefix + command, deadline - time.monotonic(), cwd=workdir)
    if not wait_for(port, f"AUTH {password}\r\nPING\r\n".encode(), b"+OK", deadline):
        raise ServiceError(f"redis did not answer AUTH and PING on 127.0.0.1:{port} in time")
    return service_variables("redis", "127.0.0.1", port, password)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pid: int, wait: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        limit = time.monotonic() + wait
        while time.monotonic() < limit and _alive(pid):
            time.sleep(0.1)


def _read_pid(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.readline().strip())
    except (OSError, ValueError):
        return 0


def stop_postgres(pg: dict[str, Any]) -> None:
    data, prefix = pg["data"], pg.get("prefix", [])
    pg_ctl = [os.path.join(pg["bindir"], "pg_ctl"), "-D", data, "-w", "-t", "20", "stop", "-m"]
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        for mode in ("fast", "immediate"):
            try:
                run(prefix + pg_ctl + [mode], 40, cwd=pg["root"])
                break
            except (ServiceError, OSError):
                continue
        pid = _read_pid(os.path.join(data, "postmaster.pid"))
        if pid and _alive(pid):
            _kill(pid)
    shutil.rmtree(pg["root"], ignore_errors=True)


def stop_redis(info: dict[str, Any]) -> None:
    pid = _read_pid(info["pidfile"])
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            ours = f":{info['port']}".encode() in handle.read()  # not a pid reused by another program
    except OSError:
        ours = False
    if pid and ours:
        _kill(pid)
    if info.get("root"):
        shutil.rmtree(info["root"], ignore_errors=True)
