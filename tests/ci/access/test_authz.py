"""The access table (`access/authz.py`) as data: deploy and rollback rows first, deny-by-default control,
the public_view switch, and who gets which role."""

from __future__ import annotations

import dataclasses

import pytest
from buildbot.www.authz import endpointmatchers

from namaskah_ci.access.authz import (
    ADMINS,
    USERS,
    AccessRule,
    CancelBuildRequestEndpointMatcher,
    access_table,
    make_authz,
    make_matcher,
)
from namaskah_ci.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path / "master")})


def with_www(settings, **changes):
    return dataclasses.replace(settings, www=dataclasses.replace(settings.www, **changes))


def test_the_table_guards_deploy_and_rollback_first_then_denies_every_other_control(settings):
    table = access_table(settings)
    expected_guarded = [
        AccessRule(action, pattern, ADMINS)
        for pattern in ("deploy-*", "rollback-*")
        for action in ("force", "stop", "cancel", "rebuild")
    ]
    assert list(table[: len(expected_guarded)]) == expected_guarded
    assert table[len(expected_guarded)] == AccessRule("control", None, ADMINS)
    # public by default: no row for viewing, so GETs are allowed to everyone
    assert len(table) == len(expected_guarded) + 1
    assert all(rule.role == ADMINS for rule in table)


def test_private_view_adds_a_logged_in_only_row_after_the_control_rows(settings):
    table = access_table(with_www(settings, public_view=False))
    assert table[-1] == AccessRule("view", None, USERS)
    assert [rule.action for rule in table[:-1]].count("control") == 1


def test_rows_become_deny_by_default_matchers(settings):
    authz = make_authz(with_www(settings, public_view=False))
    kinds = [type(rule) for rule in authz.allowRules]
    assert kinds[:4] == [
        endpointmatchers.ForceBuildEndpointMatcher,
        endpointmatchers.StopBuildEndpointMatcher,
        CancelBuildRequestEndpointMatcher,
        endpointmatchers.RebuildBuildEndpointMatcher,
    ]
    assert [rule.builder for rule in authz.allowRules[:8]] == ["deploy-*"] * 4 + ["rollback-*"] * 4
    assert isinstance(authz.allowRules[8], endpointmatchers.AnyControlEndpointMatcher)
    assert isinstance(authz.allowRules[9], endpointmatchers.AnyEndpointMatcher)
    # a matching row whose role the user lacks denies; it never falls through to a later row
    assert all(rule.defaultDeny for rule in authz.allowRules)


@pytest.mark.parametrize(
    "user, expected",
    [
        ({"anonymous": True}, set()),
        ({"username": "dev", "email": "dev"}, {USERS}),
        ({"username": "admin", "email": "admin"}, {USERS, ADMINS}),
        ({"username": "octocat", "groups": ["acme"]}, {USERS, ADMINS}),
        ({"username": "stranger", "groups": ["elsewhere"]}, {USERS}),
    ],
)
def test_roles(settings, user, expected):
    authz = make_authz(with_www(settings, admins=["admin"], admin_groups=["acme"]))
    assert authz.getRolesFromUser(user) == expected


def test_no_admins_configured_means_nobody_controls_anything(settings):
    authz = make_authz(with_www(settings, admins=[], admin_groups=[]))
    assert authz.getRolesFromUser({"username": "admin"}) == {USERS}


def test_matcher_for_each_action():
    assert isinstance(make_matcher(AccessRule("control", None, ADMINS)), endpointmatchers.AnyControlEndpointMatcher)
    cancel = make_matcher(AccessRule("cancel", "deploy-*", ADMINS))
    assert isinstance(cancel, CancelBuildRequestEndpointMatcher) and cancel.builder == "deploy-*"
    with pytest.raises(KeyError):
        make_matcher(AccessRule("delete", None, ADMINS))
