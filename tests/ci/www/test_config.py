"""The web UI's configuration without a master: bcrypt login (and its refusals), GitHub OAuth
only with both secrets, the plugins, commit-status contexts and the superseded-build canceller."""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any

import bcrypt
import jwt
import pytest
from buildbot.config.errors import ConfigErrors
from buildbot.process.properties import Properties
from buildbot.schedulers.canceller import OldBuildCanceller
from buildbot.secrets.secret import SecretDetails
from buildbot.www.oauth2 import GitHubAuth
from buildbot.www.service import BuildbotSite
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from namaskah_ci import fixes, names
from namaskah_ci.access import auth
from namaskah_ci.builders.setup import make_job_setup
from namaskah_ci.dashboard.app import DashboardApp
from namaskah_ci.dashboard.headers import CSP
from namaskah_ci.fixes import session_cookie
from namaskah_ci.github.reporters import (
    CANCELLER_NAME,
    CommitStatusPush,
    make_build_canceller,
    make_reporters,
    status_contexts,
)
from namaskah_ci.pipeline.model import load_pipeline_file
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.settings import ROOT as REPO_ROOT
from namaskah_ci.settings import load_settings
from namaskah_ci.workers import make_plan
from namaskah_ci.www.config import LoggedInOnly, make_www
from pipeline_support import SEED_CHECKS
from www_support import htpasswd_text

SEED = Registry().merge(load_pipeline_file(str(REPO_ROOT / ".namaskah-ci.yml")), default_branch=True)
SEED_CONTEXTS = [
    "test (Python 3.9)",
    "test (Python 3.11)",
    "lint",
    "integration",
    "migration-test",
    "security",
    "container-scan",
    "secrets-scan",
]


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        {"PIPELINE_MASTER_BASEDIR": str(tmp_path / "master"), "PIPELINE_SECRETS_DIR": str(tmp_path / "secrets")}
    )


def none(name: str) -> bool:
    return False


# --- the htpasswd login ---------------------------------------------------------------------


def test_parse_accepts_bcrypt_in_every_spelling_and_skips_comments():
    text = htpasswd_text({"a": "1"}) + "# comment\n\n" + htpasswd_text({"b": "2"}).replace("$2b$", "$2y$")
    assert set(auth.parse_htpasswd(text)) == {"a", "b"}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("admin:secret", "not a bcrypt hash"),
        ("admin:$1$salt$hash", "not a bcrypt hash"),
        ("just-a-name", "expected user:hash"),
        (":$2b$04$abc", "expected user:hash"),
    ],
)
def test_parse_refuses_other_entries(text, fragment):
    with pytest.raises(auth.HtpasswdError, match=fragment):
        auth.parse_htpasswd(text)


def test_duplicate_users_are_refused():
    with pytest.raises(auth.HtpasswdError, match="twice"):
        auth.parse_htpasswd(htpasswd_text({"a": "1"}) * 2)


def test_check_password():
    text = htpasswd_text({"admin": "right", "apache": "pw"}).replace("apache:$2b$", "apache:$2y$")
    entries = auth.parse_htpasswd(text)
    assert auth.check_password(entries, "admin", b"right")
    assert auth.check_password(entries, "apache", b"pw")
    assert not auth.check_password(entries, "admin", b"wrong")
    assert not auth.check_password(entries, "nobody", b"right")
    assert not auth.check_password(entries, "admin", b"right" * 20)  # over bcrypt's 72 bytes
    assert not auth.check_password({}, "admin", b"right")


class FakeSecrets:
    def __init__(self, values):
        self.values = values

    def get(self, name):
        value = self.values.get(name)
        return defer.succeed(SecretDetails("Fake", name, value) if value is not None else None)


class FakeMaster:
    def __init__(self, values):
        self.secrets_manager = FakeSecrets(values)


def login(values, user, password):
    checker = auth.SecretHtpasswdChecker(master=FakeMaster(values))
    return checker.requestAvatarId(UsernamePassword(user.encode(), password.encode()))


def test_checker_reads_the_secret_at_each_login(monkeypatch):
    # bcrypt runs in a thread in the master; run it inline here
    monkeypatch.setattr(threads, "deferToThread", lambda f, *a: defer.succeed(f(*a)))
    values = {"admin_htpasswd": htpasswd_text({"admin": "pw"})}
    assert login(values, "admin", "pw").result == b"admin"
    failure = login(values, "admin", "nope")
    assert failure.result.check(UnauthorizedLogin)
    failure.addErrback(lambda _: None)
    for broken in ({}, {"admin_htpasswd": "admin:plain"}):
        failure = login(broken, "admin", "plain")
        assert failure.result.check(UnauthorizedLogin)
        failure.addErrback(lambda _: None)


def test_add_user_writes_an_owner_only_bcrypt_file(tmp_path):
    path = tmp_path / "admin_htpasswd"
    auth.add_user(str(path), "admin", "first", rounds=4)
    auth.add_user(str(path), "dev", "second", rounds=4)
    auth.add_user(str(path), "admin", "third", rounds=4)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    entries = auth.parse_htpasswd(path.read_text())
    assert list(entries) == ["dev", "admin"]
    assert bcrypt.checkpw(b"third", entries["admin"])
    assert "third" not in path.read_text()
    with pytest.raises(auth.HtpasswdError):
        auth.add_user(str(path), "bad:name", "pw", rounds=4)


# --- c['www'] --------------------------------------------------------------------------------


def test_www_has_the_views_badges_login_and_no_gravatar(settings):
    www = make_www(settings, none)
    assert {"waterfall_view", "console_view", "grid_view", "badges", "wsgi_dashboards"} <= set(www["plugins"])
    assert isinstance(www["auth"], auth.BcryptHTPasswdAuth)
    assert www["auth"].getConfigDict() == {"name": "HTPasswdAuth"}
    assert www["avatar_methods"] == []
    assert set(www["change_hook_dialects"]) == {"base"}


def test_private_view_drops_the_public_badges(settings):
    private = dataclasses.replace(settings, www=dataclasses.replace(settings.www, public_view=False))
    assert "badges" not in make_www(private, none)["plugins"]


def test_github_login_needs_both_secrets_and_real_admin_logins(settings):
    one = make_www(settings, lambda name: name == names.GITHUB_OAUTH_CLIENT_ID)
    assert isinstance(one["auth"], auth.BcryptHTPasswdAuth)
    with pytest.raises(ConfigErrors, match="GitHub logins"):
        make_www(settings, lambda name: name.startswith("github_oauth"))
    named = dataclasses.replace(settings, www=dataclasses.replace(settings.www, admins=["octocat"]))
    github = make_www(named, lambda name: name.startswith("github_oauth"))["auth"]
    assert isinstance(github, GitHubAuth)
    assert type(github.clientSecret).__name__ == "Secret"


def test_github_enterprise_server_url():
    assert auth.github_server_url("https://api.github.com") is None
    assert auth.github_server_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com"


# --- reporters -------------------------------------------------------------------------------


def test_status_contexts_are_the_seeds_required_checks():
    contexts = status_contexts(SEED)
    assert [contexts[name] for name in SEED_CHECKS] == SEED_CONTEXTS


def test_status_push_only_with_a_github_token(settings):
    assert not any(isinstance(s, CommitStatusPush) for s in make_reporters(settings, SEED, none))
    services = make_reporters(settings, SEED, lambda name: name == "github_token")
    [push] = [s for s in services if isinstance(s, CommitStatusPush)]
    props = Properties(buildername="test-py3.11")
    assert props.render(push._config_kwargs["context"]).result == "test (Python 3.11)"
    # the context the job has in the build's own pipeline file wins
    props = Properties(buildername="test-py3.11", status_context="unit (3.11)")
    assert props.render(push._config_kwargs["context"]).result == "unit (3.11)"
    assert type(push._config_kwargs["token"]).__name__ == "Secret"


def test_superseded_builds_are_cancelled_except_deploys_and_on_deploy_branches(settings):
    canceller = make_build_canceller(settings, SEED)
    assert isinstance(canceller, OldBuildCanceller) and canceller.name == CANCELLER_NAME
    filters = OldBuildCanceller.filter_tuples_to_filter_set_object(canceller._config_kwargs["filters"])

    def ss(branch):
        return {"branch": branch, "project": "namaskah", "codebase": "", "repository": "r"}

    for builder in ("pipeline", "lint", "test-py3.9"):
        assert filters.is_matched(builder, ss("feature/x"))
        assert not filters.is_matched(builder, ss("main"))  # an older main pipeline may pass and deploy first
        assert not filters.is_matched(builder, ss("develop"))
    for builder in ("deploy-production", "deploy-staging", "rollback-production", "rollback-staging"):
        for branch in ("main", "develop", "feature/x"):
            assert not filters.is_matched(builder, ss(branch))


def test_private_reports_need_a_logged_in_session(settings):
    private = dataclasses.replace(settings, www=dataclasses.replace(settings.www, public_view=False))
    dashboards = make_www(private, none)["plugins"]["wsgi_dashboards"]
    assert all(isinstance(d["app"], LoggedInOnly) for d in dashboards)  # pipelines, deploys, trends, reports
    [dashboard] = [d for d in dashboards if d["name"] == "reports"]
    app = dashboard["app"]
    assert isinstance(app, LoggedInOnly)

    class Site:
        session_secret = "s3cr3t-" + "x" * 32

    class Api:
        master = type("M", (), {"www": type("W", (), {"site": Site})})

    app.buildbot_api = Api()
    calls = []

    def start(status, headers, exc_info=None):
        calls.append(status)

    token = jwt.encode({"user_info": {"username": "dev"}}, Site.session_secret, algorithm="HS256")
    forged = jwt.encode({"user_info": {"username": "dev"}}, "another-secret-" + "y" * 32, algorithm="HS256")
    anonymous = jwt.encode({"user_info": {"anonymous": True}}, Site.session_secret, algorithm="HS256")
    for cookie in ("", f"TWISTED_SESSION={forged}", f"TWISTED_SESSION={anonymous}", "TWISTED_SESSION=garbage"):
        app({"HTTP_COOKIE": cookie, "PATH_INFO": "/"}, start)
        assert calls.pop() == "403 Forbidden", cookie
    app({"HTTP_COOKIE": f"TWISTED_SESSION={token}", "PATH_INFO": "/"}, start)
    assert calls.pop() != "403 Forbidden"


# --- nothing a dashboard answers runs in the web UI's origin (issue 21) ------------------------


def answer(app, path: str, method: str = "GET", cookie: str = "") -> tuple[str, dict]:
    said: dict[str, Any] = {}
    app(
        {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": "", "HTTP_COOKIE": cookie},
        lambda status, headers: said.update(status=status, headers=dict(headers)),
    )
    return said["status"], said["headers"]


def test_every_dashboard_answer_is_sandboxed_and_the_private_refusal_too(settings):
    sandbox = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

    def failing_source(api):
        raise RuntimeError("no master here")

    for name in ("pipelines", "deploys", "trends"):
        app = DashboardApp(name, source_factory=failing_source)
        for path, method in (("/", "GET"), ("/index.html", "GET"), ("", "GET"), ("/nope", "GET"), ("/", "POST")):
            status, headers = answer(app, path, method)
            assert {k: headers.get(k) for k in sandbox} == sandbox, (name, path, method, status)
    private = dataclasses.replace(settings, www=dataclasses.replace(settings.www, public_view=False))
    for dashboard in make_www(private, none)["plugins"]["wsgi_dashboards"]:
        status, headers = answer(dashboard["app"], "/")
        assert status == "403 Forbidden" and {k: headers.get(k) for k in sandbox} == sandbox, dashboard["name"]


def with_reports_url(settings, value: str):
    return dataclasses.replace(settings, www=dataclasses.replace(settings.www, reports_url=value))


def reports_app(www: dict):
    [dashboard] = [d for d in www["plugins"]["wsgi_dashboards"] if d["name"] == "reports"]
    return dashboard["app"]


def test_reports_are_linked_from_the_web_ui_unless_a_reports_origin_is_set(settings):
    plan = make_plan(settings)
    assert settings.www.reports_url == ""
    assert reports_app(make_www(settings, none)).files_url == ""
    assert make_job_setup(settings, plan).reports_url == settings.buildbot_url + "plugins/wsgi_dashboards/reports/"
    separate = with_reports_url(settings, "https://reports.example.net")
    assert reports_app(make_www(separate, none)).files_url == "https://reports.example.net/"
    assert make_job_setup(separate, plan).reports_url == "https://reports.example.net/"  # the build's links
    env = {"PIPELINE_MASTER_BASEDIR": str(settings.basedir), "PIPELINE_WWW_REPORTS_URL": "http://10.0.0.5:8080/r/"}
    assert load_settings(env).www.reports_url == "http://10.0.0.5:8080/r/"


@pytest.mark.parametrize(
    "value, message",
    [
        ("reports.example.net", "must be an http"),
        ("ftp://reports.example.net/", "must be an http"),
        ("http://localhost:8010/reports/", "the web UI's own origin"),
    ],
)
def test_a_reports_origin_must_be_another_http_origin(settings, value, message):
    assert settings.buildbot_url == "http://localhost:8010/"
    with pytest.raises(ConfigErrors, match=message):
        make_www(with_reports_url(settings, value), none)


# --- the session cookie (fixes/session_cookie.py) ----------------------------------------------


class Config:
    def __init__(self, url: str):
        self.master = type("Master", (), {"config": type("Config", (), {"buildbotURL": url})})()


def site_request(url: str = "http://localhost:8010/"):
    session_cookie.apply()
    session_cookie.apply()  # idempotent
    site = BuildbotSite(Resource(), logPath=None, rotateLength=1, maxRotatedFiles=1)
    site.setSessionSecret("s" * 64)
    site.master = Config(url).master
    request = site.requestFactory(DummyChannel())
    request.site, request.sitepath = site, []
    return site, request


def set_cookies(request) -> list[str]:
    return [cookie.decode() for cookie in request.cookies]


def test_session_cookies_are_httponly_and_samesite_lax():
    assert "session_cookie" in fixes.MODULES  # master.cfg applies it
    site, request = site_request()
    request.getSession()  # a new anonymous session (Twisted sets it)
    session = site.makeSession()
    session.user_info = {"username": "admin"}
    session.updateSession(request)  # a login (Buildbot sets it)
    request.addCookie(b"other", b"1", path=b"/")
    anonymous, logged_in, other = set_cookies(request)
    for cookie in (anonymous, logged_in):
        assert cookie.startswith("TWISTED_SESSION=") and "; HttpOnly" in cookie and "; SameSite=lax" in cookie
        assert "; Secure" not in cookie and "; Path=/" in cookie
    assert other == "other=1; Path=/"  # other cookies as they were
    assert BuildbotSite.requestFactory._namaskah_session_cookie


def test_the_session_cookie_is_secure_behind_an_https_url():
    _, request = site_request("https://ci.example.com/")
    request.getSession()
    [cookie] = set_cookies(request)
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=lax" in cookie
