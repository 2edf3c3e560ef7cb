#!/usr/bin/env python3
"""One build's PostgreSQL 15 and Redis 7 server processes: their binaries found, each started on a free
loopback port with its own random password, and stopped.

ci_services.py (the command a build runs) keeps them in a state directory and says what they guarantee:
a PostgreSQL role that is no superuser, a Redis that requires its password and has no CONFIG, MODULE,
DEBUG, SLAVEOF or REPLICAOF; as root both run as `postgres` (or `nobody`) through runuser. Imported by
ci_services.py from its own directory. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import contextlib
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

PG_DIRS = ("/usr/lib/postgresql/15/bin",)
PG_MAJOR, REDIS_MAJOR = 15, 7
DB_NAME = DB_USER = "namaskah"  # the job's role, owner of its database (not a superuser)
ADMIN_USER = "postgres"  # the superuser: its password never leaves this process
REDIS_USER = "default"  # Redis's one user; `requirepass` sets its password
# Redis commands a job never needs that reach beyond its own data (files, modules, replication)
REDIS_DISABLED = ("CONFIG", "MODULE", "DEBUG", "SLAVEOF", "REPLICAOF")
STATE_FILE = "state.json"  # in the state directory: what `stop` needs to find the servers


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


def find_postgres() -> str:
    """The bin directory of a PostgreSQL 15 server (PATH first, then Debian's location)."""
    dirs = [os.path.dirname(p) for p in (shutil.which("pg_ctl"), shutil.which("initdb")) if p] + list(PG_DIRS)
    seen: list[str] = []
    for bindir in dict.fromkeys(dirs):
        if all(os.access(os.path.join(bindir, n), os.X_OK) for n in ("postgres", "initdb", "pg_ctl", "psql")):
            version = major_version(os.path.join(bindir, "postgres"))
            if version == PG_MAJOR:
                return bindir
            seen.append(f"{bindir} is version {version}")
    extra = f" ({'; '.join(seen)})" if seen else ""
    raise ServiceError(f"initdb/pg_ctl/postgres {PG_MAJOR} not found{extra}: apt-get install postgresql-15", 2)


def find_redis() -> str:
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if binary is None:
        raise ServiceError("redis-server not found: apt-get install redis-server", 2)
    version = major_version(binary)
    if version != REDIS_MAJOR:
        raise ServiceError(f"{binary} is Redis {version}, need {REDIS_MAJOR}: apt-get install redis-server", 2)
    return binary


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
    state_dir: str, state: dict[str, dict[str, Any]], deadline: float, bindir: str, prefix: list[str]
) -> str:
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
    job_password = secrets.token_hex(16)
    # not a superuser: owner of its database (PG 15: of its public schema too), CREATEDB; PG 13+ lets a
    # database owner create trusted extensions (pgcrypto, citext, hstore, ...)
    sql = (
        f"CREATE ROLE {DB_USER} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS "
        f"PASSWORD '{job_password}';\nCREATE DATABASE {DB_NAME} OWNER {DB_USER};\n"
    )
    run([*psql, "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"], 30, env=env, stdin=sql)
    return f"postgresql://{DB_USER}:{job_password}@127.0.0.1:{port}/{DB_NAME}"


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
    state_dir: str, state: dict[str, dict[str, Any]], deadline: float, binary: str, prefix: list[str]
) -> str:
    port, password = free_port(), secrets.token_hex(16)
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
    # `default:` (Redis's own user) rather than an empty user: redis-cli 7.0's -u sends `AUTH "" PASSWORD` for
    # `redis://:PASSWORD@` and fails (redis-py and other clients read both forms)
    return f"redis://{REDIS_USER}:{password}@127.0.0.1:{port}/0"


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
