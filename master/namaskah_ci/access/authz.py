"""Who may do what in the web UI and REST API: the access table and its `util.Authz`.

Roles: `admins` (users named in `[www] admins`, or members of a GitHub
organisation in `[www] admin_groups`) and `users` (anyone logged in).

The table, first matching row wins; a row whose role the user lacks denies:

| action                             | builders                   | role    |
|------------------------------------|----------------------------|---------|
| force, stop, cancel, rebuild       | `deploy-*`, `rollback-*`   | admins  |
| any other control (POST)           | every builder and endpoint | admins  |
| view (GET, websocket)              | everything                 | users, only when `[www] public_view = false` |

So control is deny-by-default: an action nobody wrote a row for (pausing a
worker, enabling a scheduler, a control endpoint a future Buildbot adds) needs
the admins role. The deploy and rollback rows come first so that a later row
letting more people re-run checks can never open the deploy buttons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

from buildbot.plugins import util
from buildbot.www.authz import endpointmatchers
from buildbot.www.authz.roles import RolesFromBase
from twisted.internet import defer

from namaskah_ci.settings import Settings

ADMINS = "admins"
USERS = "users"
PROTECTED_BUILDERS = ("deploy-*", "rollback-*")
BUILD_ACTIONS = ("force", "stop", "cancel", "rebuild")


@dataclasses.dataclass(frozen=True)
class AccessRule:
    """One row: `action` on builders matching `builders` (fnmatch; None: any) needs `role`."""

    action: str  # force | stop | cancel | rebuild | control | view
    builders: str | None
    role: str


def access_table(settings: Settings) -> tuple[AccessRule, ...]:
    rows = [AccessRule(action, pattern, ADMINS) for pattern in PROTECTED_BUILDERS for action in BUILD_ACTIONS]
    rows.append(AccessRule("control", None, ADMINS))
    if not settings.www.public_view:
        rows.append(AccessRule("view", None, USERS))
    return tuple(rows)


class CancelBuildRequestEndpointMatcher(endpointmatchers.EndpointMatcherBase):
    """Cancelling a pending build request (the UI's "Cancel"), optionally only on some builders."""

    def __init__(self, builder: str | None = None, **kwargs: Any):
        self.builder = builder
        super().__init__(**kwargs)

    @defer.inlineCallbacks
    def match_BuildRequestEndpoint_cancel(
        self, epobject: Any, epdict: dict[str, Any], options: dict[str, Any]
    ) -> Generator[Any, Any, Any]:
        buildrequest = yield epobject.get({}, epdict)
        if buildrequest is None:
            return None
        if self.builder is not None:
            builder = yield self.master.data.get(("builders", buildrequest["builderid"]))
            if builder is None or not self.authz.match(builder["name"], self.builder):
                return None
        return endpointmatchers.Match(self.master, buildrequest=buildrequest)


_MATCHERS = {
    "force": endpointmatchers.ForceBuildEndpointMatcher,
    "stop": endpointmatchers.StopBuildEndpointMatcher,
    "cancel": CancelBuildRequestEndpointMatcher,
    "rebuild": endpointmatchers.RebuildBuildEndpointMatcher,
}


def make_matcher(rule: AccessRule) -> Any:
    if rule.action == "control":
        return endpointmatchers.AnyControlEndpointMatcher(role=rule.role)
    if rule.action == "view":
        return endpointmatchers.AnyEndpointMatcher(role=rule.role)
    return _MATCHERS[rule.action](builder=rule.builders, role=rule.role)


class RolesFromLogin(RolesFromBase):
    """`users` for anyone logged in (user info with a username)."""

    def getRolesFromUser(self, userDetails: dict[str, Any]) -> list[str]:
        return [USERS] if userDetails.get("username") else []


class RolesFromGroupMembership(RolesFromBase):
    """`role` for members of any of `groups` (GitHub organisations, from the OAuth user info)."""

    def __init__(self, role: str, groups: list[str]):
        super().__init__()
        self.role = role
        self.groups = set(groups)

    def getRolesFromUser(self, userDetails: dict[str, Any]) -> list[str]:
        member_of = userDetails.get("groups") or []
        return [self.role] if self.groups.intersection(member_of) else []


def make_role_matchers(settings: Settings) -> list[Any]:
    matchers: list[Any] = [RolesFromLogin()]
    if settings.www.admins:
        matchers.append(util.RolesFromUsername(roles=[ADMINS], usernames=list(settings.www.admins)))
    if settings.www.admin_groups:
        matchers.append(RolesFromGroupMembership(ADMINS, list(settings.www.admin_groups)))
    return matchers


def make_authz(settings: Settings) -> util.Authz:
    """A fresh `util.Authz` for `c['www']['authz']`."""
    return util.Authz(
        allowRules=[make_matcher(rule) for rule in access_table(settings)],
        roleMatchers=make_role_matchers(settings),
    )
