"""REST answers for unknown ids and bad control calls: 4xx, never 500 (Buildbot 4.3.0 overrides).

Not filed upstream as one issue: each bullet below is its own reproduction
(a request and the 500 or 200 it got). Applied by `fixes.apply_all()` under
the package's version policy.

What Buildbot 4.3.0 does by itself, and what changes here:
- GET of an unknown id (`builds/999999`, `steps/…`, `logs/…/raw`,
  `forceschedulers/nosuch`, …) is already a 404. An id beyond SQLite's 64-bit
  integers (`builds/99999999999999999999999`) was a 500 (OverflowError) for
  GETs and control calls alike: such a path segment no longer matches a
  numeric pattern, so it is a 404 like any unknown path.
- Control calls on unknown ids answered 200 and did nothing (`stop` a build,
  `cancel` a build request, `enable` a scheduler) or 500 (`rebuild` a build:
  TypeError; `pause` a worker: buildbot's own `exceptions.exceptions` typo;
  `force` on an unknown force scheduler: AttributeError): they answer 404
  "no such …" now. An action an endpoint does not have answers 400 (was 501,
  or 500 on build requests), and `stop`/`rebuild` through
  `builders/<name>/builds/<n>` no longer fail with KeyError.
- `force` with an unknown `builderid`, a `builderid` or `builderNames` the
  scheduler does not serve, or a `builderNames` that is not a list of names:
  500 (TypeError/KeyError, raised even for anonymous callers inside the authz
  matcher) → 400 for admins, 403 for everyone else (the deny-by-default row
  decides, as for any other force). Upstream also let a scheduler's form force
  any builder named by `builderid`; only its own builders are accepted now.
- A force form's integer field (`priority`) beyond 64 bits was a 500
  (OverflowError while storing the build set) → a 400 naming the field
  (without a traceback in the log); an integer filter beyond 64 bits
  (`?buildid=…`) → 400 "invalid filter value"; any other number the database
  cannot hold (`?limit=…`) → 400 "a number in the request is out of range".
- Collections under an unknown parent that raised AttributeError (500):
  `builders/<unknown>/forceschedulers` and `builds/<unknown>/changes` are
  empty lists, like `builders/<unknown>/builds` upstream; a scheduler unknown
  under `masters/<id>/schedulers/<unknown>` is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from buildbot.data import (
    builders,
    buildrequests,
    builds,
    changes,
    exceptions,
    forceschedulers,
    schedulers,
    types,
    workers,
)
from buildbot.data.resultspec import ResultSpec
from buildbot.schedulers import forcesched
from buildbot.util import pathmatch
from buildbot.www import rest
from buildbot.www.rest import JSONRPC_CODES, BadJsonRpc2
from twisted.internet import defer

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]{1,19}")

# endpoint class → (what it is, for messages; the control actions Buildbot 4.3.0 implements on it)
CONTROLLED_ENDPOINTS: dict[type[Any], tuple[str, tuple[str, ...]]] = {
    builds.BuildEndpoint: ("build", ("stop", "rebuild")),
    buildrequests.BuildRequestEndpoint: ("build request", ("cancel", "set_priority")),
    workers.WorkerEndpoint: ("worker", ("stop", "pause", "unpause", "kill")),
    schedulers.SchedulerEndpoint: ("scheduler", ("enable",)),
    builders.BuilderEndpoint: ("builder", ()),
}
_originals: dict[tuple[type[Any], str], Any] = {}  # methods, and Matcher.type_fns


def db_integer(text: str | int) -> int:
    """A path's numeric id: decimal digits (or, from the master's own calls, an int) within SQLite's
    signed 64 bits; else ValueError, which makes the pattern not match."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"not a numeric id: {text!r}")
    if isinstance(text, str) and not _DECIMAL.fullmatch(text):
        raise ValueError(f"not a numeric id: {text!r}")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"numeric id out of range: {text!r}")
    return value


def _original(cls: type[Any], name: str) -> Any:
    """The upstream attribute, remembered the first time (so applying twice is harmless)."""
    if (cls, name) not in _originals:
        _originals[(cls, name)] = getattr(cls, name)
    return _originals[(cls, name)]


def _ident(kwargs: dict[str, Any]) -> str:
    return "/".join(str(value) for value in kwargs.values())


def bad_request(message: str, code: str = "invalid_params") -> BadJsonRpc2:
    return BadJsonRpc2(message, JSONRPC_CODES[code])


def _existing_only(cls: type[Any], noun: str, actions: tuple[str, ...]) -> Callable[..., defer.Deferred[Any]]:
    upstream = _original(cls, "control")

    @defer.inlineCallbacks
    def control(self: Any, action: str, args: dict[str, Any], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        if action not in actions:
            supported = ", ".join(actions) or "none"
            raise bad_request(f"{noun}s have no action {action!r} (supported: {supported})", "method_not_found")
        entity = yield self.get(ResultSpec(), kwargs)
        if entity is None:
            raise exceptions.InvalidPathError(f"no such {noun}: {_ident(kwargs)}")
        if cls is builds.BuildEndpoint:  # upstream's stop needs a buildid or a builderid
            kwargs = {**kwargs, "buildid": entity["buildid"]}
        result = yield upstream(self, action, args, kwargs)
        return result

    return control


def _builder_names(upstream: Callable[..., Any]) -> Callable[..., defer.Deferred[list[str]]]:
    @defer.inlineCallbacks
    def computeBuilderNames(
        self: Any, builderNames: Any = None, builderid: Any = None
    ) -> Generator[Any, Any, list[str]]:
        """The scheduler's builders the call names; [] when it names none of them, or nothing that exists."""
        if builderNames is not None:
            if not isinstance(builderNames, list) or not all(isinstance(n, str) for n in builderNames):
                return []
            return sorted(set(builderNames).intersection(self.builderNames))
        if builderid is not None:
            if isinstance(builderid, bool) or not isinstance(builderid, (int, str)):
                return []
            try:
                number = db_integer(str(builderid))
            except ValueError:
                return []
            builder = yield self.master.data.get(("builders", number))
            if builder is None or builder["name"] not in self.builderNames:
                return []
            return [builder["name"]]
        names: list[str] = yield upstream(self, None, None)
        return names

    return computeBuilderNames


def _force_control(upstream: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    @defer.inlineCallbacks
    def control(self: Any, action: str, args: dict[str, Any], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        if action != "force":
            raise bad_request(f"force schedulers have no action {action!r} (supported: force)", "method_not_found")
        if "self" in args:
            raise bad_request("'self' is not a force parameter")
        name = kwargs["schedulername"]
        scheduler = yield self.findForceScheduler(name)
        if scheduler is None:
            raise exceptions.InvalidPathError(f"no such force scheduler: {name}")
        wanted = yield scheduler.computeBuilderNames(args.get("builderNames"), args.get("builderid"))
        if not wanted:
            given = args.get("builderid", args.get("builderNames"))
            raise bad_request(
                f"builderid/builderNames: {str(given)[:60]!r} names none of this scheduler's builders "
                f"({', '.join(scheduler.builderNames)})"
            )
        result = yield upstream(self, action, args, kwargs)
        return result

    return control


def _force_schedulers_get(upstream: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    @defer.inlineCallbacks
    def get(self: Any, resultSpec: Any, kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        if kwargs.get("builderid") is not None:
            builder = yield self.master.db.builders.getBuilder(kwargs["builderid"])
            if builder is None:
                return []
        result = yield upstream(self, resultSpec, kwargs)
        return result

    return get


def _changes_get(upstream: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    @defer.inlineCallbacks
    def get(self: Any, resultSpec: Any, kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        if "build_number" in kwargs or "buildid" in kwargs:
            buildid = (yield self.getBuildid(kwargs)) if "build_number" in kwargs else kwargs["buildid"]
            if buildid is None or (yield self.master.db.builds.getBuild(buildid)) is None:
                return []  # upstream: AttributeError, or every change for an unknown builder
        result = yield upstream(self, resultSpec, kwargs)
        return result

    return get


def _scheduler_get(upstream: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    @defer.inlineCallbacks
    def get(self: Any, resultSpec: Any, kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        if (yield self.master.db.schedulers.getScheduler(kwargs["schedulerid"])) is None:
            return None
        result = yield upstream(self, resultSpec, kwargs)
        return result

    return get


def _handle_errors(upstream: Callable[..., Any]) -> Callable[..., AbstractContextManager[None]]:
    @contextmanager
    def handleErrors(self: Any, writeError: Any) -> Iterator[None]:
        with upstream(self, writeError):
            try:
                yield
            except OverflowError:
                raise exceptions.InvalidQueryParameter("a number in the request is out of range") from None

    return handleErrors


def _bounded_int(self: Any, s: Any) -> int:
    """IntParameter's value: an integer the database can store (upstream: `int`, unbounded)."""
    try:
        value = int(s)
    except (TypeError, ValueError):
        raise forcesched.ValidationError(f"{self.name}: must be an integer, got {str(s)[:40]!r}") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise forcesched.ValidationError(f"{self.name}: must be between {INT64_MIN} and {INT64_MAX}")
    return value


def _bounded_value(self: Any, arg: Any) -> int:
    """An integer filter's value (upstream: `int`, unbounded)."""
    value = int(arg)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("out of range")
    return value


def apply() -> None:
    """Apply every override of this module (idempotent)."""
    pathmatch.Matcher.type_fns = {**_original(pathmatch.Matcher, "type_fns"), "n": db_integer}
    for cls, (noun, actions) in CONTROLLED_ENDPOINTS.items():
        cls.control = _existing_only(cls, noun, actions)
    endpoint = forceschedulers.ForceSchedulerEndpoint
    endpoint.control = _force_control(_original(endpoint, "control"))
    scheduler = forcesched.ForceScheduler
    scheduler.computeBuilderNames = _builder_names(_original(scheduler, "computeBuilderNames"))
    _original(forcesched.IntParameter, "parse_from_arg")
    forcesched.IntParameter.parse_from_arg = _bounded_int
    forcesched.IntParameter.debug = False  # a refused number is the caller's mistake: no traceback
    _original(types.Integer, "valueFromString")
    types.Integer.valueFromString = _bounded_value
    collection = forceschedulers.ForceSchedulersEndpoint
    collection.get = _force_schedulers_get(_original(collection, "get"))
    changes.ChangesEndpoint.get = _changes_get(_original(changes.ChangesEndpoint, "get"))
    schedulers.SchedulerEndpoint.get = _scheduler_get(_original(schedulers.SchedulerEndpoint, "get"))
    rest.V2RootResource.handleErrors = _handle_errors(_original(rest.V2RootResource, "handleErrors"))
