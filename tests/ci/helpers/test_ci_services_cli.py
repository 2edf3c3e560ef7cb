"""The ci_services.py helper without servers: binary discovery, version checks, idempotent stop."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "master" / "namaskah_ci" / "helpers" / "ci_services.py"


@pytest.fixture
def ci_services() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_services_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ci_servers(ci_services: ModuleType) -> ModuleType:
    """The servers' module (ci_servers.py), as the command under test imports it from its directory."""
    return ci_services.ci_servers


def fake_binary(directory: Path, name: str, version_line: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def run(*args: str, path: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=path)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_versions_are_read_from_postgres_and_redis_output(ci_servers: ModuleType, tmp_path: Path) -> None:
    pg = fake_binary(tmp_path, "postgres", "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")
    redis = fake_binary(tmp_path, "redis-server", "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0")
    junk = fake_binary(tmp_path, "junk", "no version here")
    assert ci_servers.major_version(str(pg)) == 15
    assert ci_servers.major_version(str(redis)) == 7
    assert ci_servers.major_version(str(junk)) is None
    assert ci_servers.major_version(str(tmp_path / "absent")) is None


def test_postgres_of_another_major_version_is_refused(ci_servers: ModuleType, tmp_path: Path, monkeypatch) -> None:
    bindir = tmp_path / "pg16"
    for name in ("postgres", "initdb", "pg_ctl", "psql"):
        fake_binary(bindir, name, "postgres (PostgreSQL) 16.2")
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(ci_servers, "PG_DIRS", ())
    with pytest.raises(ci_servers.ServiceError) as raised:
        ci_servers.find_postgres()
    assert raised.value.code == 2
    assert str(raised.value) == "postgres 15: not on this host (available: 16)"


def test_a_postgres_15_on_the_path_is_found(ci_servers: ModuleType, tmp_path: Path, monkeypatch) -> None:
    bindir = tmp_path / "pg15"
    for name in ("postgres", "initdb", "pg_ctl", "psql"):
        fake_binary(bindir, name, "postgres (PostgreSQL) 15.4")
    monkeypatch.setenv("PATH", str(bindir))
    assert ci_servers.find_postgres() == str(bindir)


def test_redis_of_another_major_version_is_refused(ci_servers: ModuleType, tmp_path: Path, monkeypatch) -> None:
    fake_binary(tmp_path, "redis-server", "Redis server v=6.2.1 sha=0")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ci_servers.ServiceError, match="apt-get install redis-server") as raised:
        ci_servers.find_redis()
    assert raised.value.code == 2


def test_a_missing_postgres_exits_2_with_one_line_naming_the_package(
    ci_services: ModuleType, ci_servers: ModuleType, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ci_servers, "PG_DIRS", (str(tmp_path / "nowhere"),))
    assert ci_services.main(["start", "--state-dir", str(tmp_path / "s"), "--postgres", "--redis"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert err.startswith("ci_services: ") and "apt-get install postgresql-15" in err
    assert not (tmp_path / "s").exists()


def test_a_missing_redis_exits_2_with_one_line_naming_the_package(tmp_path: Path) -> None:
    if os.path.exists("/usr/bin/redis-server"):
        fake_dir = tmp_path / "bin"
        fake_binary(fake_dir, "redis-server", "Redis server v=6.0.0")
        done = run("start", "--state-dir", str(tmp_path / "s"), "--redis", path=str(fake_dir))
        assert "Redis 6" in done.stderr or "apt-get install redis-server" in done.stderr
    else:
        done = run("start", "--state-dir", str(tmp_path / "s"), "--redis", path=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "apt-get install redis-server" in done.stderr
    assert not (tmp_path / "s").exists()


def test_stop_without_anything_running_is_fine(tmp_path: Path) -> None:
    done = run("stop", "--state-dir", str(tmp_path / "never-started"), path=os.environ.get("PATH", ""))
    assert done.returncode == 0
    assert "nothing to stop" in done.stderr


def test_stop_removes_a_half_written_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "half"
    state.mkdir()
    (state / "state.json").write_text("{not json")
    done = run("stop", "--state-dir", str(state), path=os.environ.get("PATH", ""))
    assert done.returncode == 0
    assert not state.exists()


def test_free_ports_are_on_loopback_and_usable(ci_servers: ModuleType) -> None:
    port = ci_servers.free_port()
    assert 1024 < port < 65536


def test_the_cli_requires_an_action_and_a_state_dir() -> None:
    assert run(path=os.environ.get("PATH", "")).returncode == 2
    assert run("start", path=os.environ.get("PATH", "")).returncode == 2


def test_start_refuses_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "checkout"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    done = run("start", "--state-dir", str(foreign), "--redis", path=os.environ.get("PATH", ""))
    assert done.returncode != 0
    assert "not a ci_services state directory" in done.stderr
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_stop_leaves_a_directory_that_is_not_its_own_alone(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    done = run("stop", "--state-dir", str(tmp_path), path=os.environ.get("PATH", ""))
    assert done.returncode == 0
    assert "left alone" in done.stderr
    assert (tmp_path / "precious.txt").exists()
