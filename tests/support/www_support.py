"""Helpers for the web UI, authz, webhook and secret tests: secrets on disk, a bcrypt htpasswd,
a REST client that logs in like the UI does, signed GitHub deliveries, and a test master whose
every outside URL points at a closed loopback port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import secrets as pysecrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt

from harness import CHECK_BUILDERS, RunningMaster, free_port, start_master

# fresh per test run, so a leak check can search for them
ADMIN_USER, ADMIN_PASSWORD = "admin", "adm-" + pysecrets.token_hex(8)
DEV_USER, DEV_PASSWORD = "dev", "dev-" + pysecrets.token_hex(8)
WEBHOOK_SECRET = "whs-" + pysecrets.token_hex(16)
# Buildbot 4.3 writes REST JSON from a worker thread and now and then closes the connection before
# the body is out (buildbot/buildbot#9065, fixed after 4.3.0): GETs are retried.
GET_ATTEMPTS = 4
ALL_BUT_LINT = ",".join(name for name in CHECK_BUILDERS if name != "lint")


def htpasswd_text(users: dict[str, str], rounds: int = 4) -> str:
    """An `htpasswd -B` file (cheap rounds, for tests)."""
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds)).decode()}" for user, pw in users.items()]
    return "\n".join(lines) + "\n"


def write_secrets(directory: Path, values: dict[str, str], mode: int = 0o600) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for name, value in values.items():
        path = directory / name
        path.write_text(value + "\n")
        path.chmod(mode)


def outside_urls_env() -> dict[str, str]:
    """Settings overrides so nothing the master does can leave 127.0.0.1 (a closed port refuses)."""
    closed = f"http://127.0.0.1:{free_port()}"
    return {
        "PIPELINE_RENDER_API_URL": f"{closed}/v1",
        "PIPELINE_DEPLOY_PRODUCTION_URL": f"{closed}/production",
        "PIPELINE_DEPLOY_STAGING_URL": f"{closed}/staging",
        "PIPELINE_GITHUB_API_URL": f"{closed}/github",
        "PIPELINE_DEPLOY_PRODUCTION_WAIT_SECONDS": "0",
        "PIPELINE_DEPLOY_STAGING_WAIT_SECONDS": "0",
        "PIPELINE_DEPLOY_PRODUCTION_HEALTH_RETRIES": "1",
        "PIPELINE_DEPLOY_STAGING_HEALTH_RETRIES": "1",
        "PIPELINE_DEPLOY_PRODUCTION_HEALTH_INTERVAL_SECONDS": "0",
        "PIPELINE_DEPLOY_STAGING_HEALTH_INTERVAL_SECONDS": "0",
    }


def start_www_master(
    tmp: Path,
    repo: Path,
    secrets: dict[str, str],
    env: dict[str, str] | None = None,
    db_url: str | None = None,
    ready: Callable[[RunningMaster], object] | None = None,
) -> RunningMaster:
    """A master with `secrets` in its secret directory, admins = [admin], only `lint` in the pipeline."""
    write_secrets(tmp / "secrets", secrets)
    run_env = {
        "PIPELINE_WWW_ADMINS": ADMIN_USER,
        "PIPELINE_CHECKS_DISABLED": ALL_BUT_LINT,
        **outside_urls_env(),
        **(env or {}),
    }
    return start_master(tmp, repo, env=run_env, db_url=db_url, ready=ready)


def start_private_master(tmp: Path, repo: Path, secrets: dict[str, str]) -> RunningMaster:
    """A master with `[www] public_view = false`: anonymous REST reads get 403, so "ready" means
    "the web server answers" rather than "the builders are listed"."""

    def answering(master: RunningMaster) -> bool:
        return Client(master).request("GET", "config")[0] == 200

    return start_www_master(tmp, repo, secrets, env={"PIPELINE_WWW_PUBLIC_VIEW": "false"}, ready=answering)


def default_secrets() -> dict[str, str]:
    return {
        "admin_htpasswd": htpasswd_text({ADMIN_USER: ADMIN_PASSWORD, DEV_USER: DEV_PASSWORD}),
        "webhook_secret": WEBHOOK_SECRET,
    }


class Client:
    """REST client of one web UI user: anonymous, or logged in through /auth/login like the UI."""

    def __init__(self, master: RunningMaster, user: str | None = None, password: str | None = None):
        self.master = master
        self.cookie: str | None = None
        if user is not None:
            status, _, headers = self.request("GET", "auth/login", headers={"Authorization": basic(user, password)})
            cookies = [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"]
            if status >= 400 or not cookies:
                raise AssertionError(f"login of {user!r} failed: HTTP {status}")
            self.cookie = "; ".join(cookies)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        for attempt in range(GET_ATTEMPTS if method == "GET" else 1):
            connection = http.client.HTTPConnection("127.0.0.1", self.master.www_port, timeout=30)
            try:
                all_headers = dict(headers or {})
                if self.cookie:
                    all_headers["Cookie"] = self.cookie
                connection.request(method, "/" + path, body=body, headers=all_headers)
                response = connection.getresponse()
                return response.status, response.read(), response.getheaders()
            except http.client.IncompleteRead:
                if method != "GET" or attempt == GET_ATTEMPTS - 1:
                    raise
            finally:
                connection.close()
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, Any]:
        status, body, _ = self.request("GET", f"api/v2/{path}")
        return status, _json(body)

    def rpc(self, path: str, method: str, **params: Any) -> tuple[int, Any]:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1, "params": params}).encode()
        status, answer, _ = self.request(
            "POST", f"api/v2/{path}", body=body, headers={"Content-Type": "application/json"}
        )
        return status, _json(answer)


def api(master: RunningMaster, path: str, **params: Any) -> dict:
    """`master.api` that survives Buildbot 4.3's truncated REST responses (see GET_ATTEMPTS)."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body, _ = Client(master).request("GET", f"api/v2/{path}" + (f"?{query}" if query else ""))
    if status != 200:
        raise AssertionError(f"GET {path}: HTTP {status} {body[:200]!r}")
    return json.loads(body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def basic(user: str, password: str | None) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def builder_ids(master: RunningMaster) -> dict[str, int]:
    return {b["name"]: b["builderid"] for b in api(master, "builders")["builders"]}


def force_scheduler_for(master: RunningMaster, builder: str) -> str:
    """The force scheduler whose only builder is `builder` (for `pipeline`: "Run the pipeline", not
    "Re-run failed jobs" nor "Approve and run a fork's pull request")."""
    for scheduler in api(master, "forceschedulers")["forceschedulers"]:
        if scheduler["builder_names"] == [builder] and scheduler["name"] not in ("rerun_failed", "approve_fork"):
            return scheduler["name"]
    raise AssertionError(f"no force scheduler for {builder}")


def force_answer(client: Client, builder: str, scheduler: str | None = None, **params: Any) -> tuple[int, Any]:
    """Force `builder` as `client` through `scheduler` (default: the builder's own force scheduler,
    `force_scheduler_for`); (HTTP status, JSON-RPC answer), for tests of a refusal."""
    scheduler = scheduler or force_scheduler_for(client.master, builder)
    return client.rpc(f"forceschedulers/{scheduler}", "force", builderid=builder_ids(client.master)[builder], **params)


def force(client: Client, builder: str, scheduler: str | None = None, **params: Any) -> int:
    """`force_answer` that must be accepted: the build request id."""
    status, answer = force_answer(client, builder, scheduler, **params)
    assert status == 200, f"force {builder} ({scheduler or 'its own scheduler'}): HTTP {status} {answer}"
    return answer["result"][1][str(builder_ids(client.master)[builder])]


def push_payload(sha: str, branch: str = "main", message: str = "a change") -> dict:
    commit = {
        "id": sha,
        "message": message,
        "timestamp": "2026-01-31T12:00:00+00:00",
        "url": f"https://github.com/acme/namaskah/commit/{sha}",
        "author": {"name": "Dev", "email": "dev@example.com"},
        "committer": {"name": "Dev", "email": "dev@example.com"},
        "added": ["app/new.py"],
        "modified": [],
        "removed": [],
        "distinct": True,
    }
    return {
        "ref": f"refs/heads/{branch}",
        "before": "0" * 40,
        "after": sha,
        "created": False,
        "deleted": False,
        "commits": [commit],
        "head_commit": commit,
        "repository": {
            "name": "namaskah",
            "full_name": "acme/namaskah",
            "html_url": "https://github.com/acme/namaskah",
        },
    }


def _repo(full_name: str) -> dict:
    owner, name = full_name.split("/")
    return {
        "name": name,
        "full_name": full_name,
        "html_url": f"https://github.com/{full_name}",
        "owner": {"login": owner},
        "fork": full_name != "acme/namaskah",
    }


def pull_request_payload(
    number: int,
    head_sha: str,
    action: str = "opened",
    base: str = "main",
    head_ref: str = "feature/pr",
    head_repo: str = "acme/namaskah",
    base_sha: str = "0" * 40,
    title: str = "A change",
) -> dict:
    """A `pull_request` event as GitHub documents it (the fields the master reads, and some more)."""
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/acme/namaskah/pulls/{number}",
            "number": number,
            "state": "closed" if action == "closed" else "open",
            "title": title,
            "body": "Please review.",
            "created_at": "2026-01-31T12:00:00Z",
            "commits": 1,
            "merged": False,
            "mergeable": None,
            "head": {
                "ref": head_ref,
                "sha": head_sha,
                "label": f"{head_repo.split('/')[0]}:{head_ref}",
                "repo": _repo(head_repo),
            },
            "base": {"ref": base, "sha": base_sha, "label": f"acme:{base}", "repo": _repo("acme/namaskah")},
            "_links": {"html": {"href": f"https://github.com/acme/namaskah/pull/{number}"}},
        },
        "repository": _repo("acme/namaskah"),
        "sender": {"login": head_repo.split("/")[0]},
    }


def signature_headers(secret: str, body: bytes, event: str = "push") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": pysecrets.token_hex(8),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }


def deliver(master: RunningMaster, body: bytes, headers: dict[str, str], path: str = "change_hook/github"):
    """POST a delivery; (status, text)."""
    status, answer, _ = Client(master).request("POST", path, body=body, headers=headers)
    return status, answer.decode("utf-8", "replace")


def change_count(master: RunningMaster) -> int:
    return len(api(master, "changes")["changes"])
