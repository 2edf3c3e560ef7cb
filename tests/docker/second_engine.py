"""A second Docker engine on this machine, for `[workers] extra_docker_hosts`: its own socket, data
root, exec root and pidfile, started like the first (no bridge, no iptables: host networking only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from docker_harness import docker


class SecondEngine:
    def __init__(self, name: str = "namaskah-docker2"):
        self.socket = f"/run/{name}.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = Path(f"/var/lib/{name}")
        self.exec_root = Path(f"/run/{name}")
        self.pidfile = Path(f"/run/{name}.pid")
        self.log = Path(f"/tmp/{name}.log")
        self.process: subprocess.Popen | None = None

    def cli(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return docker("-H", self.host, *args, timeout=timeout, check=check)

    def answers(self) -> bool:
        done = subprocess.run(
            ["docker", "-H", self.host, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
            check=False,
        )
        return done.returncode == 0

    def start(self, timeout: float = 60) -> SecondEngine:
        if self.answers():
            return self
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "dockerd",
                    "--host",
                    self.host,
                    "--data-root",
                    str(self.data_root),
                    "--exec-root",
                    str(self.exec_root),
                    "--pidfile",
                    str(self.pidfile),
                    "--bridge=none",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"the second dockerd did not answer on {self.socket}; its log: {self.log}")

    def load(self, image: str) -> None:
        """Copy an image of the first engine into this one (no registry here)."""
        if (
            subprocess.run(
                ["docker", "-H", self.host, "image", "inspect", image], capture_output=True, timeout=30, check=False
            ).returncode
            == 0
        ):
            return
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["docker", "-H", self.host, "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert save.stdout is not None  # a pipe
        save.stdout.close()
        if save.wait(timeout=300) != 0 or loaded.returncode != 0:
            raise AssertionError(f"could not copy {image} to the second engine: {loaded.stderr.strip()}")

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 60) -> None:
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.answers() or (pid and _alive(pid))):
            time.sleep(0.5)
        if self.process is not None:
            self.process.wait(timeout=10)

    def remove(self) -> None:
        """Stop it and remove everything it stored."""
        self.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/status").read_text().count("State:\tZ")
