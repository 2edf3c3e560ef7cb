"""Re-run only the failed jobs of a finished pipeline build (the "Re-run failed jobs" force form).

An admin names a finished `pipeline` build by its number. `RerunFailedScheduler`
checks it (it exists, it finished, some check did not pass) and starts a new
`pipeline` build of the same branch and revision, with `rerun_of` (that
build's number) and `rerun_kept` ({builder: result} of the checks that passed,
success or warnings). That build reads the same pipeline file, triggers only
the other checks (`steps/fanout.FanOut`), merges their results with the kept
ones into `check_results`, and its deploy gate decides again: it deploys when
every required check is green and the revision is still the newest of its
branch (`steps/gate.DeployGate`). A wrong build number is refused in the form,
naming the problem; nothing starts.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NoReturn

from buildbot.plugins import schedulers, util
from buildbot.schedulers.forcesched import CollectedValidationError
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.names import PROP_RERUN_OF
from namaskah_ci.triggers.force_params import ReasonParameter, source_taken_elsewhere

KEPT_RESULTS = ("success", "warnings")  # what a re-run keeps; every other check runs again


def kept_and_rerun(check_results: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """({builder: result} kept, [builders to run again]) of a pipeline's check results."""
    kept = {name: result for name, result in check_results.items() if result in KEPT_RESULTS}
    return kept, sorted(name for name in check_results if name not in kept)


def _refuse(message: str) -> NoReturn:
    raise CollectedValidationError({PROP_RERUN_OF: message})


def _prop(properties: dict[str, Any], name: str) -> Any:
    value = properties.get(name)
    return value[0] if isinstance(value, (list, tuple)) and value else None


class RerunFailedScheduler(schedulers.ForceScheduler):
    """A ForceScheduler on `pipeline` whose one field is the build to re-run (see the module docstring)."""

    @defer.inlineCallbacks
    def original(self, number: Any) -> Generator[Any, Any, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
        """(build, its properties, its source stamp) of pipeline build `number`, or a refusal."""
        if not isinstance(number, int) or number < 1:
            _refuse(f"{number!r} is not a build number")
        builder = yield self.master.data.get(("builders", names.PIPELINE))
        build = yield self.master.data.get(("builders", builder["builderid"], "builds", number)) if builder else None
        if not build:
            _refuse(f"there is no pipeline build #{number}")
        if not build["complete"]:
            _refuse(f"pipeline #{number} is still running: re-run its failed jobs once it finished")
        properties = yield self.master.data.get(("builds", build["buildid"], "properties"))
        request = yield self.master.data.get(("buildrequests", build["buildrequestid"]))
        buildset = yield self.master.data.get(("buildsets", request["buildsetid"]))
        return build, properties or {}, (buildset or {}).get("sourcestamps", [{}])[0]

    @defer.inlineCallbacks
    def addBuildsetForSourceStampsWithDefaults(
        self, reason: str, sourcestamps: Any = None, properties: Any = None, **kwargs: Any
    ) -> Generator[Any, Any, Any]:
        number = properties.getProperty(PROP_RERUN_OF)
        _build, props, stamp = yield self.original(number)
        check_results = _prop(props, names.PROP_CHECK_RESULTS)
        revision = _prop(props, "revision") or stamp.get("revision")
        if _prop(props, names.PROP_PIPELINE_ERROR) or not isinstance(check_results, dict) or not revision:
            _refuse(f"pipeline #{number} ran no checks (its pipeline file or revision was unusable): run the pipeline")
        kept, rerun = kept_and_rerun(check_results)
        if not rerun:
            _refuse(f"pipeline #{number} has no failed or cancelled jobs")
        properties.setProperty(names.PROP_RERUN_KEPT, kept, "Re-run failed jobs")
        properties.setProperty("revision", revision, "Re-run failed jobs")
        source = {
            "codebase": stamp.get("codebase", ""),
            "repository": stamp.get("repository", ""),
            "branch": stamp.get("branch") or _prop(props, "branch"),
            "revision": revision,
            "project": stamp.get("project", names.PROJECT),
        }
        reason = f"re-run of the failed jobs of pipeline #{number} ({', '.join(rerun)}): {reason}"
        result = yield super().addBuildsetForSourceStampsWithDefaults(
            reason, sourcestamps=[source], properties=properties, **kwargs
        )
        return result


def make_rerun_scheduler() -> RerunFailedScheduler:
    return RerunFailedScheduler(
        name=names.RERUN_SCHEDULER,
        builderNames=[names.PIPELINE],
        label="Re-run failed jobs",
        buttonName="Re-run failed jobs",
        reason=ReasonParameter(name="reason", label="Reason", default="re-run failed jobs", size=20),
        codebases=source_taken_elsewhere(),
        properties=[
            util.IntParameter(
                name=PROP_RERUN_OF,
                label="Pipeline build number (#) to re-run the failed jobs of",
                default=0,
                required=True,
            )
        ],
    )
