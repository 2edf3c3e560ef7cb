"""The access table against a real master's REST API: for every builder kind, anonymous visitors
and logged-in non-admins get 403 for force, cancel, stop and rebuild, and admins are accepted;
other control actions are admin-only too; `[www] public_view = false` hides everything from
anonymous visitors.
"""

from __future__ import annotations

import os

import pytest

from harness import make_service_repo, wait_for
from www_support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEV_PASSWORD,
    DEV_USER,
    Client,
    api,
    builder_ids,
    default_secrets,
    force_scheduler_for,
    start_private_master,
    start_www_master,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# one builder of each kind; the deploy and rollback builders are guarded by their own rows
BUILDER_KINDS = {
    "pipeline": "pipeline",
    "check": "lint",
    "analysis": "codeql",
    "deploy (production)": "deploy-production",
    "deploy (staging)": "deploy-staging",
    "rollback (production)": "rollback-production",
    "rollback (staging)": "rollback-staging",
}


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authz")
    running = start_www_master(tmp, make_service_repo(tmp / "repo"), default_secrets())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clients(master):
    return {
        "anonymous": Client(master),
        "non-admin": Client(master, DEV_USER, DEV_PASSWORD),
        "admin": Client(master, ADMIN_USER, ADMIN_PASSWORD),
    }


def request_count(master, builderid: int) -> int:
    return len(api(master, "buildrequests", builderid=builderid)["buildrequests"])


def build_of(master, brid: int) -> dict | None:
    builds = api(master, "builds", buildrequestid=brid)["builds"]
    return builds[0] if builds else None


def settled(master, brid: int) -> bool:
    """The request has a build, or is already finished (cancelled)."""
    request = api(master, f"buildrequests/{brid}")["buildrequests"][0]
    return request["complete"] or build_of(master, brid) is not None


@pytest.mark.parametrize("kind", list(BUILDER_KINDS))
def test_only_admins_force_cancel_stop_and_rebuild(master, clients, kind):
    builder = BUILDER_KINDS[kind]
    ids = builder_ids(master)
    if builder not in ids:
        pytest.fail(f"builder {builder} is not configured (DESIGN.md names it; the deploy work adds it)")
    builderid = ids[builder]
    scheduler = force_scheduler_for(master, builder)
    params = {"builderid": builderid, "reason": f"authz test: {kind}"}

    before = request_count(master, builderid)
    for who in ("anonymous", "non-admin"):
        status, answer = clients[who].rpc(f"forceschedulers/{scheduler}", "force", **params)
        assert status == 403, f"{who} force on {builder}: HTTP {status} {answer}"
    assert request_count(master, builderid) == before, "a refused force created a build request"

    status, answer = clients["admin"].rpc(f"forceschedulers/{scheduler}", "force", **params)
    assert status == 200, f"admin force on {builder}: HTTP {status} {answer}"
    brid = answer["result"][1][str(builderid)]

    for who in ("anonymous", "non-admin"):
        status, _ = clients[who].rpc(f"buildrequests/{brid}", "cancel", reason="no")
        assert status == 403, f"{who} cancel on {builder}: HTTP {status}"

    wait_for(f"the forced {builder} build to start", lambda: settled(master, brid), 120)
    build = build_of(master, brid)
    if build is not None:
        for who in ("anonymous", "non-admin"):
            for method in ("stop", "rebuild"):
                status, _ = clients[who].rpc(f"builds/{build['buildid']}", method, reason="no")
                assert status == 403, f"{who} {method} on {builder}: HTTP {status}"
        status, answer = clients["admin"].rpc(f"builds/{build['buildid']}", "stop", reason="authz test done")
        assert status == 200, f"admin stop on {builder}: HTTP {status} {answer}"
        wait_for(
            f"the stopped {builder} build to finish",
            lambda: api(master, f"builds/{build['buildid']}")["builds"][0]["complete"],
            120,
        )
    else:
        status, answer = clients["admin"].rpc(f"buildrequests/{brid}", "cancel", reason="authz test done")
        assert status == 200, f"admin cancel on {builder}: HTTP {status} {answer}"


def test_admins_cancel_a_pending_request(master, clients):
    """A request that cannot start yet (its worker is paused) is cancelled by an admin only."""
    ids = builder_ids(master)
    slots = os.cpu_count() or 1  # one lint worker per job slot: local-lint, local-lint-s2, ...
    lint_workers = wait_for(
        f"the {slots} lint workers",
        lambda: (lambda found: found if len(found) == slots else None)(
            [w for w in api(master, "workers")["workers"] if w["name"].startswith("local-lint")]
        ),
        60,
    )
    for who in ("anonymous", "non-admin"):
        status, _ = clients[who].rpc(f"workers/{lint_workers[0]['workerid']}", "pause", reason="no")
        assert status == 403, f"{who} pause worker: HTTP {status}"
    for worker in lint_workers:
        status, answer = clients["admin"].rpc(f"workers/{worker['workerid']}", "pause", reason="hold")
        assert status == 200, answer
    try:
        status, answer = clients["admin"].rpc(
            f"forceschedulers/{force_scheduler_for(master, 'lint')}", "force", builderid=ids["lint"], reason="pending"
        )
        assert status == 200, answer
        brid = answer["result"][1][str(ids["lint"])]
        for who in ("anonymous", "non-admin"):
            status, _ = clients[who].rpc(f"buildrequests/{brid}", "cancel", reason="no")
            assert status == 403
        status, answer = clients["admin"].rpc(f"buildrequests/{brid}", "cancel", reason="not needed")
        assert status == 200, answer
        wait_for(
            "the cancelled request to complete",
            lambda: api(master, f"buildrequests/{brid}")["buildrequests"][0]["complete"],
            60,
        )
        assert build_of(master, brid) is None
    finally:
        for worker in lint_workers:
            clients["admin"].rpc(f"workers/{worker['workerid']}", "unpause", reason="done")


def test_other_control_actions_are_admin_only(master, clients):
    scheduler = api(master, "schedulers")["schedulers"][0]
    for who in ("anonymous", "non-admin"):
        status, _ = clients[who].rpc(f"schedulers/{scheduler['schedulerid']}", "enable", enabled=False)
        assert status == 403, f"{who} disable scheduler: HTTP {status}"
    assert api(master, f"schedulers/{scheduler['schedulerid']}")["schedulers"][0]["enabled"] is True


def test_everyone_may_view_by_default(master, clients):
    for who, client in clients.items():
        status, answer = client.get("builders")
        assert status == 200 and answer["builders"], who
    status, _, _ = clients["anonymous"].request("GET", "plugins/badges/lint.svg")
    assert status == 200


def test_wrong_password_is_refused(master):
    with pytest.raises(AssertionError, match="HTTP 401"):
        Client(master, ADMIN_USER, ADMIN_PASSWORD + "x")
    with pytest.raises(AssertionError, match="HTTP 401"):
        Client(master, "nobody", ADMIN_PASSWORD)


def test_private_view_needs_a_login(tmp_path):
    private = start_private_master(tmp_path, make_service_repo(tmp_path / "repo"), default_secrets())
    try:
        status, _ = Client(private).get("builders")
        assert status == 403
        status, _, _ = Client(private).request("GET", "plugins/badges/lint.svg")
        assert status == 404, "badges would publish build results"
        status, _, _ = Client(private).request("GET", "plugins/wsgi_dashboards/reports/")
        assert status == 403, "the reports dashboard is open to anonymous visitors"
        for user, password in ((DEV_USER, DEV_PASSWORD), (ADMIN_USER, ADMIN_PASSWORD)):
            client = Client(private, user, password)
            status, answer = client.get("builders")
            assert status == 200 and answer["builders"], user
            status, _, _ = client.request("GET", "plugins/wsgi_dashboards/reports/")
            assert status in (200, 404), f"{user}: HTTP {status}"  # 404: no report was published yet
    finally:
        private.stop()
