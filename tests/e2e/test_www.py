"""A real master with every secret set (files, and `github_token` from the environment) and a
stand-in for GitHub's API on 127.0.0.1:

- badges are served per builder;
- a check posts commit statuses under the seed's context names, with the token from the
  environment provider;
- after a login, a signed webhook delivery, a check build and a deploy that uses the deploy
  hook secret, no secret value (nor the admin's password or hash) appears in the frontend
  config, the REST API (builders, schedulers, changes, builds with properties, step logs), the
  master's logs, or the environment a worker command sees.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from harness import free_port, git, make_service_repo, wait_for
from www_support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    WEBHOOK_SECRET,
    Client,
    api,
    default_secrets,
    deliver,
    force,
    push_payload,
    signature_headers,
    start_www_master,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ENV_TOKEN = "ghp_env_" + pysecrets.token_hex(12)
CLOSED = f"http://127.0.0.1:{free_port()}"


def file_secrets(stand_in: str) -> dict[str, str]:
    """Random values; the deploy and rollback hooks point at the stand-in, so they are really used."""
    token = pysecrets.token_hex
    return {
        "render_deploy_hook": f"{stand_in}/deploy/srv-x?key={token(12)}",
        "render_rollback_hook": f"{stand_in}/rollback/{token(12)}",
        "staging_deploy_hook": f"{stand_in}/staging-deploy/{token(12)}",
        "staging_rollback_hook": f"{stand_in}/staging-rollback/{token(12)}",
        "render_api_key": f"rnd_{token(12)}",
        "codecov_token": f"cc-{token(12)}",
        "safety_api_key": f"sf-{token(12)}",
        "notify_webhook_url": f"{CLOSED}/notify/{token(12)}",
    }


class GitHubStandIn(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []  # every request's, across the handler's instances

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"{}")})
        answer = b'{"state": "ok"}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def github():
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, github):
    tmp = tmp_path_factory.mktemp("www")
    repo = make_service_repo(tmp / "repo")
    secrets = {**default_secrets(), **file_secrets(f"http://127.0.0.1:{github.server_port}")}
    env = {
        "NAMASKAH_SECRET_GITHUB_TOKEN": ENV_TOKEN,
        "PIPELINE_GITHUB_API_URL": f"http://127.0.0.1:{github.server_port}",
        "PIPELINE_GITHUB_REPOSITORY": "acme/namaskah",
    }
    master = start_www_master(tmp, repo, secrets, env=env)
    yield master, repo, secrets
    master.stop()


def finished_build(master, brid: int, timeout: float = 300) -> dict:
    def done():
        builds = api(master, "builds", buildrequestid=brid)["builds"]
        return builds[0] if builds and builds[0]["complete"] else None

    return wait_for(f"build of request {brid} to finish", done, timeout, interval=2)


def test_badges_per_builder(setup):
    master, _, _ = setup
    for builder in ("pipeline", "lint", "deploy-production"):
        status, body, headers = Client(master).request("GET", f"plugins/badges/{builder}.svg")
        assert status == 200, builder
        assert dict(headers).get("Content-Type", "").startswith("image/svg+xml")
        assert b"<svg" in body


def test_a_check_posts_commit_statuses_under_the_seed_context(setup, github):
    master, repo, _ = setup
    sha = git(repo, "rev-parse", "HEAD")
    admin = Client(master, ADMIN_USER, ADMIN_PASSWORD)
    build = finished_build(master, force(admin, "lint", revision=sha, reason="statuses"))

    def statuses():
        found = [r for r in GitHubStandIn.received if r["path"] == f"/repos/acme/namaskah/statuses/{sha}"]
        return found if any(r["json"]["state"] != "pending" for r in found) else None

    posted = wait_for("the final commit status", statuses, 60)
    assert {r["json"]["context"] for r in posted} == {"lint"}
    assert posted[0]["json"]["state"] == "pending"
    assert posted[-1]["json"]["state"] == ("success" if build["results"] == 0 else "failure")
    assert posted[-1]["json"]["target_url"].endswith(f"/builds/{build['number']}")
    assert all(r["headers"]["Authorization"] == f"token {ENV_TOKEN}" for r in posted)


def everything_visible(master) -> str:
    """The frontend config, a REST dump and every step log, as one text."""
    anonymous = Client(master)
    parts = [anonymous.request("GET", "config")[1].decode("utf-8", "replace")]
    for path in (
        "builders",
        "forceschedulers",
        "schedulers",
        "changes",
        "workers",
        "masters",
        "buildrequests",
        "buildsets",
        "changesources",
    ):
        parts.append(json.dumps(api(master, path)))
    builds = api(master, "builds", property="*")["builds"]
    parts.append(json.dumps(builds))
    for build in builds:
        for step in api(master, f"builds/{build['buildid']}/steps")["steps"]:
            for log in api(master, f"steps/{step['stepid']}/logs")["logs"]:
                raw = Client(master).request("GET", f"api/v2/logs/{log['logid']}/raw")[1]
                parts.append(raw.decode("utf-8", "replace"))
    return "\n".join(parts)


def test_no_secret_value_in_config_rest_logs_or_properties(setup, github):
    master, repo, secrets = setup
    admin = Client(master, ADMIN_USER, ADMIN_PASSWORD)
    body = json.dumps(push_payload("c" * 40)).encode()
    assert deliver(master, body, signature_headers(WEBHOOK_SECRET, body))[0] < 300
    sha = git(repo, "rev-parse", "HEAD")
    lint = force(admin, "lint", reason="leak check")
    deploy = force(admin, "deploy-production", reason="leak check", revision=sha, override_gate=True)
    finished_build(master, lint)
    finished_build(master, deploy)
    hook_path = secrets["render_deploy_hook"].split(str(github.server_port), 1)[1]
    assert any(r["path"].startswith(hook_path) for r in GitHubStandIn.received), "the deploy never used its hook secret"
    wait_for("every build to finish", lambda: all(b["complete"] for b in api(master, "builds")["builds"]), 300)

    text = everything_visible(master)
    text += "\n" + master.twistd_log()
    for name in ("http.log",):
        path = master.basedir / name
        text += "\n" + (path.read_text(errors="replace") if path.exists() else "")
    text += "\n" + (master.basedir.parent / "master-stdout.log").read_text(errors="replace")

    assert "leak check" in text and "deploy-production" in text  # the search does reach the builds
    values = {**secrets, "github_token (environment)": ENV_TOKEN, "admin password": ADMIN_PASSWORD}
    for name, value in values.items():
        for line in value.strip().splitlines():
            secret_part = line.partition(":")[2] if name == "admin_htpasswd" else line
            assert secret_part not in text, f"the value of {name} is visible"
    # the environment a worker command starts with (logged in the stdio header) holds no secret
    assert "NAMASKAH_SECRET_" not in text
