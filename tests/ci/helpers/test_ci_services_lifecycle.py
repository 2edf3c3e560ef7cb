"""The ci_services.py helper against the real binaries: start answers, stop leaves nothing behind."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[3] / "master" / "namaskah_ci" / "helpers" / "ci_services.py"


class ServiceControl:
    script = SCRIPT

    @staticmethod
    def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    @classmethod
    def start(cls, state_dir: Path, flags: list[str]) -> dict:
        done = cls.run("start", "--state-dir", str(state_dir), "--timeout", "60", *flags)
        assert done.returncode == 0, done.stderr
        return {k: v for k, _, v in (line.partition("=") for line in done.stdout.splitlines()) if k.isupper()}

    @classmethod
    def stop(cls, state_dir: Path) -> None:
        cls.run("stop", "--state-dir", str(state_dir))


@pytest.fixture
def services_ctl() -> ServiceControl:
    return ServiceControl()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if text.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(predicate, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def check_servers(state: Path, urls: dict) -> None:
    pg_root = Path(json.loads((state / "state.json").read_text())["postgres"]["root"])
    with psycopg.connect(urls["DATABASE_URL"], connect_timeout=10) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
        user = conn.execute("SELECT current_user").fetchone()
    assert version is not None and version[0].startswith("15.")
    assert listen is not None and listen[0] == "127.0.0.1"
    # the job's role may not read it (pg_read_all_settings): the server's configuration says
    conf = (pg_root / "data" / "postgresql.conf").read_text()
    sockets = conf.rsplit("unix_socket_directories = '", 1)[1].split("'", 1)[0]
    assert sockets == "" or sockets.startswith(str(pg_root))
    assert user is not None and user[0] == "namaskah"
    client = Redis.from_url(urls["REDIS_URL"], socket_timeout=5)
    info = cast("dict[str, Any]", client.info())  # redis-py's one type for sync and async answers: Awaitable | Any
    assert info["redis_version"].startswith("7.")
    assert info["aof_enabled"] == 0
    client.close()


@pytest.mark.parametrize("reachable", [True, False], ids=["state-dir-reachable", "state-dir-private"])
def test_start_and_stop_leave_nothing_behind(services_ctl, tmp_path_factory, reachable: bool) -> None:
    """As root, a state dir the postgres user cannot reach makes the data go to a private /tmp directory."""
    parent = Path(tempfile.mkdtemp(prefix="ci-services-test-")) if reachable else tmp_path_factory.mktemp("private")
    os.chmod(parent, 0o755 if reachable else 0o700)
    state = parent / "both"
    # the state dir is created by the script: its mode follows the umask (a daemonised master has 077)
    old_umask = os.umask(0o022 if reachable else 0o077)
    try:
        try:
            done = services_ctl.run("start", "--state-dir", str(state), "--postgres", "--redis", "--timeout", "60")
        finally:
            os.umask(old_umask)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        keys = [line.split("=", 1)[0] for line in lines]
        assert keys[0] == "DATABASE_URL" and keys[-4:] == ["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"]
        assert (state / "services.env").read_text().splitlines() == lines
        assert oct((state / "services.env").stat().st_mode & 0o777) == "0o600"
        urls = dict(line.split("=", 1) for line in lines)
        assert urls["DATABASE_URL"].startswith("postgresql://namaskah:")
        assert "@127.0.0.1:" in urls["DATABASE_URL"] and urls["DATABASE_URL"].endswith("/namaskah")
        assert urls["REDIS_URL"].startswith("redis://default:") and urls["REDIS_URL"].endswith("/0")
        assert "@127.0.0.1:" in urls["REDIS_URL"]
        check_servers(state, urls)
        recorded = json.loads((state / "state.json").read_text())
        pg_root, redis_root = Path(recorded["postgres"]["root"]), Path(recorded["redis"]["root"])
        if os.geteuid() == 0:
            assert (pg_root == state / "pg") == reachable
            assert (redis_root == state / "redis") == reachable
        pg_port = int(urls["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0])
        redis_port = int(urls["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        pg_pid = int((pg_root / "data" / "postmaster.pid").read_text().split()[0])
        redis_pid = int((redis_root / "redis.pid").read_text())
        if os.geteuid() == 0:
            assert Path(f"/proc/{pg_pid}").stat().st_uid != 0, "PostgreSQL must not run as root"
            assert Path(f"/proc/{redis_pid}").stat().st_uid != 0, "Redis must not run as root"
    finally:
        stopped = services_ctl.run("stop", "--state-dir", str(state), timeout=90)
        if reachable:
            shutil.rmtree(parent, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    assert not state.exists() and not pg_root.exists() and not redis_root.exists()
    assert wait_until(lambda: not port_open(pg_port) and not port_open(redis_port))
    assert wait_until(lambda: not processes_mentioning(str(pg_root)))
    for pid in (pg_pid, redis_pid):
        assert wait_until(functools.partial(gone, pid))

    again = services_ctl.run("stop", "--state-dir", str(state), timeout=30)
    assert again.returncode == 0
    assert "nothing to stop" in again.stderr


def test_a_start_that_times_out_cleans_up_and_names_the_service(services_ctl, tmp_path: Path) -> None:
    state = tmp_path / "too-slow"
    done = services_ctl.run("start", "--state-dir", str(state), "--postgres", "--timeout", "0.01")
    if done.returncode == 0:  # a very fast machine; still it must stop cleanly
        assert services_ctl.run("stop", "--state-dir", str(state)).returncode == 0
        pytest.skip("PostgreSQL started within 10 ms")
    assert done.returncode == 1
    assert "postgres" in done.stderr
    assert done.stdout == ""
    assert not state.exists()
    assert wait_until(lambda: not processes_mentioning(str(state)))


def test_starting_over_a_leftover_state_dir_stops_the_old_servers(services_ctl, tmp_path: Path) -> None:
    state = tmp_path / "reused"
    first = services_ctl.run("start", "--state-dir", str(state), "--redis")
    assert first.returncode == 0, first.stderr
    old_pid = int(Path(json.loads((state / "state.json").read_text())["redis"]["pidfile"]).read_text())
    second = services_ctl.run("start", "--state-dir", str(state), "--redis")
    try:
        assert second.returncode == 0, second.stderr
        assert "earlier run" in second.stderr
        assert wait_until(lambda: gone(old_pid))
        assert second.stdout.startswith("REDIS_URL=redis://default:")
    finally:
        assert services_ctl.run("stop", "--state-dir", str(state)).returncode == 0
    assert not state.exists()


def test_a_job_cannot_make_its_servers_run_anything_or_write_files_elsewhere(services_ctl, tmp_path: Path) -> None:
    """The servers run outside the job's sandbox (as `postgres` on a root master, the master's user
    otherwise): the job's role is no superuser and Redis has no command that writes where it chooses."""
    state = tmp_path / "attacked"
    marker = Path(tempfile.gettempdir()) / f"ci-services-probe-{os.getpid()}-{time.monotonic_ns()}"
    urls = services_ctl.start(state, ["--postgres", "--redis"])
    try:
        with psycopg.connect(urls["DATABASE_URL"], autocommit=True, connect_timeout=10) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pg_execute_server_program"):
                conn.execute(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"COPY (SELECT 1) TO '{marker}'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE ROLE intruder SUPERUSER")
            role = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls, rolcreatedb FROM pg_roles"
                " WHERE rolname = current_user"
            ).fetchone()
            assert role == (False, False, False, False, True)
            # what migrations and test suites need: its own schema, trusted extensions, more databases
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            assert conn.execute("SELECT length(gen_random_bytes(4))").fetchone() == (4,)
            conn.execute("CREATE TABLE probe (id serial PRIMARY KEY)")
            conn.execute("DROP TABLE probe")
            conn.execute("CREATE DATABASE probe_copy")
            conn.execute("DROP DATABASE probe_copy WITH (FORCE)")
        client = Redis.from_url(urls["REDIS_URL"], socket_timeout=5)
        try:
            for command in (
                ("CONFIG", "SET", "dir", "/tmp"),
                ("CONFIG", "GET", "dir"),
                ("SLAVEOF", "127.0.0.1", "1"),
                ("REPLICAOF", "NO", "ONE"),
                ("MODULE", "LOAD", str(marker)),
                ("DEBUG", "SLEEP", "0"),
            ):
                with pytest.raises(ResponseError, match="unknown command"):
                    client.execute_command(*command)
            assert client.set("still", "works") and client.get("still") == b"works"
        finally:
            client.close()
    finally:
        services_ctl.stop(state)
    assert not marker.exists()


def test_with_an_env_file_the_passwords_go_only_there_and_redis_refuses_a_client_without_its(
    services_ctl, tmp_path: Path
) -> None:
    """A build's servers, like every job's, listen on 127.0.0.1: their passwords are what keep other
    jobs out. With --env-file (the job directory's services.env, read by ci_step.py) the URLs go to
    that file (0600) only; stdout, which is the step's log, says where the servers are; Redis answers
    NOAUTH to a client without the password; `stop --env-file` removes the file."""
    state, env_file = tmp_path / "state", tmp_path / "job" / "services.env"
    env_file.parent.mkdir()
    env_file.symlink_to(tmp_path / "elsewhere")  # left by someone: replaced, never followed
    done = services_ctl.run("start", "--state-dir", str(state), "--env-file", str(env_file), "--postgres", "--redis")
    try:
        assert done.returncode == 0, done.stderr
        assert not env_file.is_symlink() and not (tmp_path / "elsewhere").exists()
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        urls = {key: written[key] for key in ("DATABASE_URL", "REDIS_URL")}
        assert written["PGPASSWORD"] == urllib.parse.urlsplit(urls["DATABASE_URL"]).password
        passwords = [urllib.parse.urlsplit(url).password or "" for url in urls.values()]
        assert all(passwords) and not any(password in done.stdout + done.stderr for password in passwords)
        pg, redis = (urllib.parse.urlsplit(urls[key]).port for key in ("DATABASE_URL", "REDIS_URL"))
        assert done.stdout.splitlines() == [
            f"postgres: 127.0.0.1:{pg} (version 15, database namaskah, user namaskah; DATABASE_URL, PG*, POSTGRES_*)",
            f"redis: 127.0.0.1:{redis} (version 7; REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_PASSWORD)",
        ]
        check_servers(state, urls)  # the job's clients connect with them
        assert redis is not None
        stranger = Redis(host="127.0.0.1", port=redis, socket_timeout=5)
        try:
            with pytest.raises(AuthenticationError, match="Authentication required"):  # NOAUTH
                stranger.ping()
            with pytest.raises(AuthenticationError, match="invalid username-password pair"):  # WRONGPASS
                stranger.execute_command("AUTH", "default", "guessed")
        finally:
            stranger.close()
        redis_pid = int(Path(json.loads((state / "state.json").read_text())["redis"]["pidfile"]).read_text())
        assert passwords[1].encode() not in Path(f"/proc/{redis_pid}/cmdline").read_bytes()
    finally:
        stopped = services_ctl.run("stop", "--state-dir", str(state), "--env-file", str(env_file), timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert not env_file.exists() and not state.exists()
