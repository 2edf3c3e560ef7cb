"""A benchmarked master: a real master on free ports (tests/support/harness.py) polling a scratch
repository that holds the reference service, with an event recorder on its websocket.

Buildbot stores build and step times in whole seconds, too coarse for a 2-second
target, so `EventRecorder` subscribes to the master's message queue through `/ws`
(what the web UI does) and stamps every build, step, change and buildset event
with the arrival time on this machine's clock. Pushes are timed on the same clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "master", ROOT / "tests" / "support"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import www_support  # noqa: E402 (after the sys.path insert)
from bench import stats  # noqa: E402 (after the sys.path insert)
from harness import commit_file, make_service_repo, start_master, wait_for, wait_poller_ready  # noqa: E402 (after the sys.path insert)
from www_support import (  # noqa: E402 (after the sys.path insert)
    ADMIN_PASSWORD,
    ADMIN_USER,
    WEBHOOK_SECRET,
    Client,
    api,
    default_secrets,
    deliver,
    outside_urls_env,
    push_payload,
    signature_headers,
    write_secrets,
)

SUBSCRIPTIONS = ("builds/*/*", "steps/*/*", "changes/*/*", "buildsets/*/*")
BUILD_TIMEOUT = 1800


class EventRecorder:
    """Records (arrival time, routing key, message) of the master's events from its websocket."""

    def __init__(self, www_port: int):
        import websocket  # bench/requirements.txt

        self.events: list[tuple[float, str, dict]] = []
        self._lock = threading.Lock()
        self._ws = websocket.create_connection(f"ws://127.0.0.1:{www_port}/ws", timeout=30)
        for index, path in enumerate(SUBSCRIPTIONS):
            self._ws.send(json.dumps({"cmd": "startConsuming", "path": path, "_id": index + 1}))
        self._acks = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bench-events", daemon=True)
        self._thread.start()
        wait_for("the websocket subscriptions", lambda: self._acks >= len(SUBSCRIPTIONS), 30, 0.1)

    def _run(self) -> None:
        import websocket

        self._ws.settimeout(None)
        while not self._closed:
            try:
                frame = self._ws.recv()
            except (websocket.WebSocketException, OSError):
                return
            arrival = time.time()
            if not frame:
                continue
            message = json.loads(frame)
            if "k" in message:
                with self._lock:
                    self.events.append((arrival, message["k"], message.get("m") or {}))
            elif message.get("code") == 200:
                self._acks += 1

    def snapshot(self) -> list[tuple[float, str, dict]]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._ws.close()


def pipeline_defaults() -> dict:
    import tomllib

    with open(ROOT / "master" / "pipeline.toml", "rb") as handle:
        return tomllib.load(handle)


class BenchMaster:
    """One master for one worker mode; `push()` commits and announces, `collect()` reads a run back."""

    def __init__(
        self,
        tmp: Path,
        mode: str,
        cache_root: Path,
        poll_interval: int,
        tree_stable: int,
        env: dict | None = None,
        secrets: dict | None = None,
    ):
        self.tmp = tmp
        self.mode = mode
        self.cache_root = cache_root
        self.poll_interval = poll_interval
        self.tree_stable = tree_stable
        self.instance = f"bench-{uuid.uuid4().hex[:10]}"
        self.repo = make_service_repo(tmp / "repo")
        write_secrets(tmp / "secrets", secrets or default_secrets())
        env = {
            "PIPELINE_WWW_ADMINS": ADMIN_USER,
            **outside_urls_env(),
            "PIPELINE_WORKERS_CACHE_DIR": str(cache_root),
            "PIPELINE_REPO_POLL_INTERVAL": str(poll_interval),
            "PIPELINE_REPO_TREE_STABLE_SECONDS": str(tree_stable),
            **(env or {}),
        }
        if mode == "docker":
            env.update(
                PIPELINE_WORKERS_MODE="docker",
                PIPELINE_WORKERS_INSTANCE_NAME=self.instance,
                PIPELINE_WORKERS_APP_BASE_IMAGE="namaskah-ci/worker:py3.11",
            )
        self.master = start_master(tmp, self.repo, env=env)
        try:
            wait_poller_ready(self.master)
            self.events = EventRecorder(self.master.www_port)
            self.builder_ids = www_support.builder_ids(self.master)
            self.builder_names = {v: k for k, v in self.builder_ids.items()}
            self.checks = [s for s in api(self.master, "builders")["builders"] if "check" in (s.get("tags") or [])]
        except BaseException:
            self.master.stop()
            raise
        self._admin: Client | None = None
        self._counter = 0

    # --- pushes -------------------------------------------------------------------------------
    def commit(self, label: str, path: str = "app/BENCH_NOTES.txt", branch: str | None = None) -> str:
        """A commit on `branch` (default: the checked-out one, main) touching `path`: under app/, an
        input of every job, so nothing is reused (pipeline/inputs.py)."""
        self._counter += 1
        return commit_file(self.repo, path, f"{label} {self._counter} {time.time()}\n", f"bench: {label}", branch)

    def announce(self, sha: str, branch: str = "main") -> None:
        """What GitHub does on a push: a signed push event to the change hook."""
        body = json.dumps(push_payload(sha, branch=branch)).encode()
        status, text = deliver(self.master, body, signature_headers(WEBHOOK_SECRET, body))
        if not 200 <= status < 300:
            raise RuntimeError(f"webhook refused: HTTP {status} {text[:200]}")

    def builds_of(self, sha: str) -> list[dict]:
        builds = api(self.master, "builds", property="revision")["builds"]
        return [b for b in builds if (b.get("properties") or {}).get("revision", [None])[0] == sha]

    def pipeline_build(self, sha: str, complete: bool = True) -> dict | None:
        for build in self.builds_of(sha):
            if build["builderid"] == self.builder_ids["pipeline"] and (build["complete"] or not complete):
                return build
        return None

    def wait_verdict(self, sha: str, timeout: float = BUILD_TIMEOUT) -> dict:
        return wait_for(f"the pipeline verdict of {sha[:8]}", lambda: self.pipeline_build(sha), timeout, 1.0)

    def wait_idle(self, settle: float = 2.0) -> None:
        wait_for("all builds to finish", lambda: not api(self.master, "builds", complete="false")["builds"], 900, 1)
        time.sleep(settle)

    # --- reading a run back ----------------------------------------------------------------------
    def stdio_elapsed(self, stepid: int) -> float | None:
        for log in api(self.master, f"steps/{stepid}/logs")["logs"]:
            if log["name"] == "stdio":
                return stats.parse_elapsed(self.master.log_text(log["logid"]))
        return None

    def collect(self, sha: str, t0: float) -> dict:
        """Every build of `sha`: times from the events (relative to t0), commands' runtimes from the logs."""
        builds = {b["buildid"]: self.builder_names[b["builderid"]] for b in self.builds_of(sha)}
        events = self.events.snapshot()
        timeline = stats.build_timeline(events, builds, t0)
        for build in timeline.values():
            for step in build["steps"]:
                step["elapsed"] = self.stdio_elapsed(step["stepid"])
        return {"builds": timeline, "events": events}

    # --- forced builds --------------------------------------------------------------------------
    def force(self, builder: str) -> int:
        if self._admin is None:
            self._admin = Client(self.master, ADMIN_USER, ADMIN_PASSWORD)
        scheduler = www_support.force_scheduler_for(self.master, builder)
        status, answer = self._admin.rpc(
            f"forceschedulers/{scheduler}",
            "force",
            builderid=self.builder_ids[builder],
            branch="main",
            reason="pipeline benchmark",
        )
        if status != 200:
            raise RuntimeError(f"force {builder}: HTTP {status} {answer}")
        return answer["result"][1][str(self.builder_ids[builder])]

    def run_forced(self, builder: str) -> dict:
        """Force one build of `builder`, wait for it, return its timeline (relative to the force)."""
        t0 = time.time()
        brid = self.force(builder)

        def done():
            builds = api(self.master, "builds", buildrequestid=brid)["builds"]
            return builds[0] if builds and builds[0]["complete"] else None

        build = wait_for(f"the forced {builder} build", done, BUILD_TIMEOUT, 1.0)
        timeline = stats.build_timeline(self.events.snapshot(), {build["buildid"]: builder}, t0)[build["buildid"]]
        for step in timeline["steps"]:
            step["elapsed"] = self.stdio_elapsed(step["stepid"])
        return timeline

    # --- the process --------------------------------------------------------------------------------
    def master_pid(self) -> int:
        pidfile = self.master.basedir / "twistd.pid"
        if pidfile.exists():
            try:
                return int(pidfile.read_text().strip())
            except ValueError:
                pass
        return self.master.process.pid

    def master_cpu_seconds(self) -> float:
        """User + system CPU of the master process (not its children) so far."""
        fields = Path(f"/proc/{self.master_pid()}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int | None:
        """VmHWM of the master process (kB), its peak resident set size so far."""
        try:
            for line in Path(f"/proc/{self.master_pid()}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.events.close()
        try:
            self.wait_idle(settle=0)
        except AssertionError:
            pass
        finally:
            self.master.stop()
            if self.mode == "docker":
                try:
                    sys.path.insert(0, str(ROOT / "tests" / "docker"))
                    from docker_harness import remove_labelled

                    remove_labelled(self.instance)
                except Exception:
                    pass


def machine_cpu_seconds() -> float:
    """CPU time every core of the machine has spent busy so far (user, nice, system, irq, softirq;
    /proc/stat): its difference over a run is the work the run made the machine do."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
