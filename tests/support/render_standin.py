"""A stand-in for Render (deploy hooks and REST API) and for the service it deploys, on 127.0.0.1.

`RenderStandin` follows the documented shapes:
- deploy hook  `POST /deploy/<service>?key=<key>&ref=<sha>` → `{"deploy": {"id": "dep-…"}}`
  (or a bare 202 when told to queue), rollback hook `POST /rollback/<service>?key=<key>[&ref=<sha>]`;
- `POST /v1/services/<id>/deploys` `{"commitId": sha}` → 201 and the deploy (Render's documented way);
  429 with `Retry-After` and `Ratelimit-*` headers past `deploys_per_minute` (Render: 10 a minute);
- `GET /v1/services/<id>/deploys/<deployId>` → the deploy object,
  `GET /v1/services/<id>/deploys?limit=N` → `[{"deploy": {...}, "cursor": …}]` newest first,
  `POST /v1/services/<id>/rollback` `{"deployId": …}` → 201 and the new deploy,
  `POST /v1/services/<id>/deploys/<deployId>/cancel`, all with `Authorization: Bearer <key>`;
- a deploy goes created → build_in_progress → update_in_progress → live (or build_failed for a
  revision in `fail_revisions`); when live, the deployed service serves its commit.
It also receives notifications (`POST /notify/<token>`) and GitHub commit statuses
(`POST /github/repos/<owner>/<name>/statuses/<sha>`). Test code steers it through
attributes: `hook_codes` (answers to give the next hooks, e.g. [503, 503]),
`hook_queues` (202 without id), `hang_seconds`, `garbage`, `fail_revisions`, `api_codes`
(answers to the next API calls), `deploy_codes` (to the next `POST .../deploys`),
`rate_limited` (that many 429s for the next `POST .../deploys`), `on_deploy` (called with each new
deploy: the crash tests kill the master right after Render answered).

`ServiceStandin` is the deployed reference service: `/health`, `/api/v1/health` and
`/api/diagnostics` (`commit` = the deployed ref); `unhealthy_revisions`,
`failing_paths` and `down` make it fail.
"""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAILED = ("build_failed", "update_failed", "canceled", "pre_deploy_failed")


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class _Server:
    """A threaded HTTP server on a free loopback port whose requests go to `self.handle`."""

    def start(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = owner.handle(method, self.path, dict(self.headers), body)
                code, payload, extra = answer if len(answer) == 3 else (*answer, {})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                owner.answered()

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple:
        """(code, payload) or (code, payload, extra headers): the answer to one request."""
        raise NotImplementedError

    def answered(self) -> None:
        """Called once an answer has been written (Render: the on_deploy callbacks run then)."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ServiceStandin(_Server):
    """The deployed service: healthy unless told otherwise; reports the deployed commit."""

    def __init__(self):
        self.commit: str | None = None
        self.unhealthy_revisions: set[str] = set()
        self.failing_paths: set[str] = set()
        self.down = False
        self.hits: list[str] = []

    def handle(self, method, raw_path, headers, body):
        path = urlsplit(raw_path).path
        self.hits.append(path)
        broken = self.down or (self.commit in self.unhealthy_revisions)
        if path in self.failing_paths or (broken and path in ("/health", "/api/v1/health")):
            return 503, {"status": "unhealthy"}
        if path == "/health":
            return 200, {"status": "ok"}
        if path == "/api/v1/health":
            return 200, {"status": "ok", "database": "ok", "redis": "ok"}
        if path == "/api/diagnostics":
            return 200, {"version": "standin", "commit": self.commit, "latency_ms": {"db": 1, "redis": 1}}
        return 404, {"detail": "not found"}


class RenderStandin(_Server):
    """Render's hooks and API for one service; see the module docstring."""

    def __init__(self, service: ServiceStandin | None = None, build_seconds: float = 1.0, update_seconds: float = 0.5):
        self.service = service or ServiceStandin()
        self.service_id = f"srv-{uuid.uuid4().hex[:16]}"
        self.hook_key = f"hookkey{uuid.uuid4().hex}"
        self.rollback_key = f"rbkey{uuid.uuid4().hex}"
        self.api_key = f"rnd_{uuid.uuid4().hex}"
        self.notify_token = f"notify{uuid.uuid4().hex}"
        self.build_seconds = build_seconds
        self.update_seconds = update_seconds
        # steering
        self.fail_revisions: set[str] = set()
        self.hook_codes: list[int] = []
        self.api_codes: list[int] = []
        self.hook_queues = False
        self.hang_seconds = 0.0
        self.garbage = False
        self.deploy_codes: list[int] = []
        self.rate_limited = 0
        self.deploys_per_minute = 10
        self.on_deploy: Callable[[dict], object] | None = None
        self._announced: list[dict] = []
        # records
        self.deploys: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.notifications: list[dict] = []
        self.statuses: list[dict] = []
        self.max_in_progress = 0
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._ticking = True

    # -- URLs and secrets -------------------------------------------------------------------
    @property
    def deploy_hook(self) -> str:
        return f"{self.url}/deploy/{self.service_id}?key={self.hook_key}"

    @property
    def rollback_hook(self) -> str:
        return f"{self.url}/rollback/{self.service_id}?key={self.rollback_key}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def notify_url(self) -> str:
        return f"{self.url}/notify/{self.notify_token}"

    @property
    def github_api_url(self) -> str:
        return f"{self.url}/github"

    def secret_values(self) -> list[str]:
        return [self.hook_key, self.rollback_key, self.api_key, self.notify_token, self.service_id]

    # -- lifecycle --------------------------------------------------------------------------
    def start(self):
        super().start()
        self.service.start()
        threading.Thread(target=self._tick_forever, daemon=True).start()
        return self

    def stop(self):
        self._ticking = False
        super().stop()
        self.service.stop()

    def _tick_forever(self):
        while self._ticking:
            self.tick()
            time.sleep(0.05)

    def tick(self):
        """Advance every deploy along created → build → update → live (or failed)."""
        with self._lock:
            now = time.monotonic()
            for deploy in self.deploys.values():
                if deploy["status"] in FAILED or deploy["status"] in ("live", "deactivated"):
                    continue
                age = now - deploy["_t0"]
                build = 0.0 if deploy["trigger"] == "rollback" else self.build_seconds
                if age < 0.1:
                    continue
                if age < build:
                    deploy["status"] = "build_in_progress"
                elif deploy["commit"]["id"] in self.fail_revisions and deploy["trigger"] != "rollback":
                    self._set(deploy, "build_failed")
                elif age < build + self.update_seconds:
                    deploy["status"] = "update_in_progress"
                else:
                    for other in self.deploys.values():
                        if other["status"] == "live":
                            other["status"] = "deactivated"
                    self._set(deploy, "live")
                    self.service.commit = deploy["commit"]["id"]
            in_progress = sum(1 for d in self.deploys.values() if d["status"] not in (*FAILED, "live", "deactivated"))
            self.max_in_progress = max(self.max_in_progress, in_progress)

    def _set(self, deploy, status):
        deploy["status"] = status
        deploy["finishedAt"] = _now_iso()

    def _new_deploy(self, ref: str | None, trigger: str) -> dict:
        with self._lock:
            deploy_id = f"dep-{next(self._ids):04d}{uuid.uuid4().hex[:8]}"
            deploy = {
                "id": deploy_id,
                "commit": {"id": ref, "message": "standin", "createdAt": _now_iso()},
                "status": "created",
                "trigger": trigger,
                "createdAt": _now_iso(),
                "updatedAt": _now_iso(),
                "finishedAt": None,
                "_t0": time.monotonic(),
            }
            self.deploys[deploy_id] = deploy
            return deploy

    @staticmethod
    def public(deploy: dict) -> dict:
        return {k: v for k, v in deploy.items() if not k.startswith("_")}

    def live_deploy(self) -> dict | None:
        with self._lock:
            live = [d for d in self.deploys.values() if d["status"] == "live"]
            return self.public(live[-1]) if live else None

    def deploy_history(self) -> list[dict]:
        with self._lock:
            return [self.public(d) for d in self.deploys.values()]

    def deploys_of(self, commit: str, trigger: str | None = None) -> list[dict]:
        """The deploys (not rollbacks unless asked) Render made of a commit, oldest first."""
        with self._lock:
            return [
                self.public(d)
                for d in self.deploys.values()
                if d["commit"]["id"] == commit and (d["trigger"] == trigger if trigger else d["trigger"] != "rollback")
            ]

    def _rate_limit(self):
        """A 429 (with Render's headers) when told to, or past `deploys_per_minute` in the last minute."""
        now = time.monotonic()
        recent = [d for d in self.deploys.values() if d["trigger"] != "rollback" and now - d["_t0"] < 60]
        if self.rate_limited or len(recent) >= self.deploys_per_minute:
            self.rate_limited = max(0, self.rate_limited - 1)
            headers = {
                "Retry-After": "1",
                "Ratelimit-Limit": str(self.deploys_per_minute),
                "Ratelimit-Remaining": "0",
                "Ratelimit-Reset": "1",
            }
            return 429, {"message": "rate limit exceeded"}, headers
        return None

    # -- HTTP -------------------------------------------------------------------------------
    def handle(self, method, raw_path, headers, body):
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        self.requests.append((method, path.replace(self.service_id, "<service>")))
        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        if path.startswith("/notify/"):
            if path != f"/notify/{self.notify_token}":
                return 404, {"error": "unknown webhook"}
            self.notifications.append(json.loads(body or b"{}"))
            return 200, {"ok": True}
        if path.startswith("/github/"):
            self.statuses.append({"path": path, "auth": headers.get("Authorization"), **json.loads(body or b"{}")})
            return 201, {"state": "ok"}
        if path.startswith(("/deploy/", "/rollback/")):
            return self.hook(path, query)
        if path.startswith("/v1/"):
            if headers.get("Authorization") != f"Bearer {self.api_key}":
                return 401, {"message": "unauthorized"}
            if self.api_codes:
                return self.api_codes.pop(0), {"message": "standin error"}
            if self.garbage:
                return 200, b"<html>definitely not json"
            return self.api(method, path, body)
        return 404, {"message": "not found"}

    def _announce(self, deploy: dict) -> None:
        if self.on_deploy is not None:
            self._announced.append(self.public(deploy))

    def answered(self) -> None:
        with self._lock:
            announced, self._announced = self._announced, []
        for deploy in announced:
            if self.on_deploy is not None:
                self.on_deploy(deploy)

    def hook(self, path, query):
        kind, _, service = path.strip("/").partition("/")
        key = self.hook_key if kind == "deploy" else self.rollback_key
        if service != self.service_id or query.get("key") != [key]:
            return 404, {"message": "no such hook"}
        if self.hook_codes:
            return self.hook_codes.pop(0), {"message": "standin error"}
        if self.garbage:
            return 200, b"garbage{"
        ref = (query.get("ref") or [None])[0]
        if kind == "rollback" and not ref:
            previous = [d for d in self.deploys.values() if d["status"] == "deactivated"]
            ref = previous[-1]["commit"]["id"] if previous else None
        deploy = self._new_deploy(ref, "deploy_hook" if kind == "deploy" else "rollback")
        self._announce(deploy)
        if self.hook_queues:
            return 202, b""
        return 200, {"deploy": {"id": deploy["id"]}}

    def api(self, method, path, body):
        prefix = f"/v1/services/{self.service_id}"
        if not path.startswith(prefix):
            return 404, {"message": "service not found"}
        rest = path.removeprefix(prefix)
        with self._lock:
            if method == "GET" and rest == "/deploys":
                ordered = sorted(self.deploys.values(), key=lambda d: d["_t0"], reverse=True)
                return 200, [{"deploy": self.public(d), "cursor": d["id"]} for d in ordered[:20]]
            if method == "GET" and rest.startswith("/deploys/"):
                deploy = self.deploys.get(rest.split("/")[2])
                return (200, self.public(deploy)) if deploy else (404, {"message": "deploy not found"})
            if method == "POST" and rest.endswith("/cancel"):
                deploy = self.deploys.get(rest.split("/")[2])
                if deploy is None:
                    return 404, {"message": "deploy not found"}
                if deploy["status"] not in (*FAILED, "live", "deactivated"):
                    self._set(deploy, "canceled")
                return 200, self.public(deploy)
            if method == "POST" and rest == "/deploys":
                if self.deploy_codes:
                    return self.deploy_codes.pop(0), {"message": "standin error"}
                limited = self._rate_limit()
                if limited:
                    return limited
                commit = (json.loads(body or b"{}") or {}).get("commitId")
                if not isinstance(commit, str) or not commit:
                    return 400, {"message": "commitId must be a commit sha"}
                deploy = self._new_deploy(commit, "api")
                self._announce(deploy)
                return 201, self.public(deploy)
            if method == "POST" and rest == "/rollback":
                deploy_id = (json.loads(body or b"{}") or {}).get("deployId")
                target = self.deploys.get(deploy_id) if isinstance(deploy_id, str) else None
                if target is None or target["status"] not in ("live", "deactivated"):
                    return 404, {"message": "no such successful deploy"}
                deploy = self._new_deploy(target["commit"]["id"], "rollback")
                self._announce(deploy)
                return 201, self.public(deploy)
        return 404, {"message": "not found"}
