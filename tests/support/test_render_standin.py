"""The Render stand-in itself: documented shapes, deploy life cycle, and each failure it can be told to show."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from render_standin import RenderStandin

REV = "1234567890abcdef1234567890abcdef12345678"
OLD = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def render():
    with RenderStandin(build_seconds=0.3, update_seconds=0.2) as standin:
        yield standin


def call(url, method="POST", body=None, key=None, timeout=5):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_status(render, deploy_id, wanted, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = call(
            f"{render.api_url}/services/{render.service_id}/deploys/{deploy_id}", "GET", key=render.api_key
        )
        assert code == 200
        status = json.loads(body)["status"]
        if status == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"{deploy_id} never became {wanted} (last: {status})")


def deploy(render, ref):
    code, body = call(f"{render.deploy_hook}&ref={ref}")
    assert code == 200
    return json.loads(body)["deploy"]["id"]


def test_deploy_goes_live_and_the_service_serves_its_commit(render):
    first = deploy(render, OLD)
    wait_status(render, first, "live")
    second = deploy(render, REV)
    wait_status(render, second, "live")
    wait_status(render, first, "deactivated")
    code, body = call(f"{render.service.url}/api/diagnostics", "GET")
    assert code == 200 and json.loads(body)["commit"] == REV
    code, body = call(f"{render.api_url}/services/{render.service_id}/deploys?limit=20", "GET", key=render.api_key)
    listed = json.loads(body)
    assert [entry["deploy"]["id"] for entry in listed] == [second, first]
    assert listed[0]["deploy"]["commit"]["id"] == REV and "cursor" in listed[0]


def test_rollback_by_api_and_cancel(render):
    first = deploy(render, OLD)
    wait_status(render, first, "live")
    bad = deploy(render, REV)
    code, body = call(f"{render.api_url}/services/{render.service_id}/deploys/{bad}/cancel", key=render.api_key)
    assert code == 200 and json.loads(body)["status"] == "canceled"
    code, body = call(
        f"{render.api_url}/services/{render.service_id}/rollback", body={"deployId": first}, key=render.api_key
    )
    assert code == 201
    rollback = json.loads(body)
    assert rollback["commit"]["id"] == OLD and rollback["trigger"] == "rollback"
    wait_status(render, rollback["id"], "live")
    assert render.service.commit == OLD


def test_failure_modes(render):
    render.fail_revisions.add(REV)
    wait_status(render, deploy(render, REV), "build_failed")
    render.hook_codes = [503]
    assert call(f"{render.deploy_hook}&ref={OLD}")[0] == 503
    assert call(f"{render.deploy_hook.replace('key=', 'key=wrong')}&ref={OLD}")[0] == 404
    render.hook_queues = True
    assert call(f"{render.deploy_hook}&ref={OLD}") == (202, b"")
    render.garbage = True
    code, body = call(f"{render.api_url}/services/{render.service_id}/deploys", "GET", key=render.api_key)
    assert code == 200 and body.startswith(b"<html>")
    assert call(f"{render.api_url}/services/{render.service_id}/deploys", "GET", key="wrong")[0] == 401
    render.garbage = False
    render.hang_seconds = 2
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        call(f"{render.deploy_hook}&ref={OLD}", timeout=0.5)
    render.hang_seconds = 0


def test_service_can_be_told_to_fail(render):
    render.service.commit = REV
    render.service.unhealthy_revisions.add(REV)
    assert call(f"{render.service.url}/health", "GET")[0] == 503
    render.service.unhealthy_revisions.clear()
    render.service.failing_paths.add("/api/v1/health")
    assert call(f"{render.service.url}/health", "GET")[0] == 200
    assert call(f"{render.service.url}/api/v1/health", "GET")[0] == 503
    render.service.down = True
    assert call(f"{render.service.url}/health", "GET")[0] == 503


def test_notifications_and_statuses_are_recorded(render):
    assert call(render.notify_url, body={"text": "hi"})[0] == 200
    assert call(f"{render.url}/notify/wrong", body={})[0] == 404
    assert call(f"{render.github_api_url}/repos/a/b/statuses/{REV}", body={"state": "success"})[0] == 201
    assert render.notifications == [{"text": "hi"}]
    assert render.statuses[0]["state"] == "success"
