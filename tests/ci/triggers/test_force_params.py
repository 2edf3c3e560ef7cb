"""Force-form fields (namaskah_ci/triggers/force_params.py): what each accepts and refuses, and that every
ForceScheduler of the real config refuses bad input with a message naming the field and queues
nothing. Also the REST overrides' pure parts (fixes/rest_errors.py): numeric ids and integer fields.
"""

from __future__ import annotations

from typing import Any

import pytest
from buildbot.schedulers.forcesched import CollectedValidationError, ForceScheduler, IntParameter, ValidationError
from twisted.internet import defer

from namaskah_ci.config import build_config
from namaskah_ci.fixes import rest_errors
from namaskah_ci.settings import load_settings
from namaskah_ci.triggers.force_params import (
    BranchParameter,
    ReasonParameter,
    RevisionParameter,
    branch_problem,
    reason_problem,
    revision_problem,
)

SHELL = "; rm -rf / $(id) `x`"
HUGE = "a" * 10_000


def value(parameter, *given):
    """What the form field makes of the posted value(s) (Buildbot's own entry point)."""
    return parameter.getFromKwargs({parameter.fullName: list(given)})


def refused(parameter, given) -> str:
    with pytest.raises(ValidationError) as caught:
        value(parameter, given)
    message = str(caught.value)
    assert message.startswith(parameter.name + ": "), message
    assert len(message) < 200, "a refusal quotes at most a short part of the value"
    return message


@pytest.mark.parametrize("revision", ["abcdef1", "ABCDEF1234", "0" * 40, " 1234567 "])
def test_revisions_are_commit_ids(revision):
    assert value(RevisionParameter(name="revision", default=""), revision) == revision.strip().lower()


@pytest.mark.parametrize(
    "revision, fragment",
    [
        ("abc123", "7 to 40"),
        ("g" * 7, "7 to 40"),
        ("a" * 41, "got 41"),
        (HUGE, "got 10000"),
        (SHELL, "7 to 40"),
        ("HEAD", "7 to 40"),
        ("main", "7 to 40"),
        ("--upload-pack=x", "7 to 40"),
        ("abc def1", "7 to 40"),
    ],
)
def test_other_revisions_are_refused(revision, fragment):
    message = refused(RevisionParameter(name="revision", default=""), revision)
    assert fragment is None or fragment in message


def test_an_empty_revision_is_the_newest_unless_required():
    assert value(RevisionParameter(name="revision", default="")) == ""
    assert value(RevisionParameter(name="revision", default=""), "  ") == ""
    with pytest.raises(ValidationError, match="needs to be specified"):
        value(RevisionParameter(name="revision", required=True))


@pytest.mark.parametrize("branch", ["main", "develop", "feature/login-429", "release/1.2.x", "fix_é", "a+b=c"])
def test_branches_follow_git_ref_names(branch):
    assert value(BranchParameter(name="branch", default="main"), branch) == branch


@pytest.mark.parametrize(
    "branch, fragment",
    [
        (SHELL, "spaces"),
        ("a b", "spaces"),
        ("a..b", "'..'"),
        ("-x", "'-'"),
        ("x\x00y", "control"),
        ("x\ty", "control"),
        ("x\x7f", "control"),
        ("a.lock", ".lock"),
        ("/a", "'/'"),
        ("a/", "'/'"),
        ("a//b", "'//'"),
        (".a", "'.'"),
        ("a/.b", "'.'"),
        ("a.", "'.'"),
        ("@", "'@'"),
        ("a@{1}", "'@{'"),
        ("a~1", "'~'"),
        ("a^", "'^'"),
        ("a:b", "':'"),
        ("a?", "'?'"),
        ("a*", "'*'"),
        ("a[b", "'['"),
        ("a\\b", "'\\\\'"),
        ("$(id)", "'$'"),
        ("`x`", "'`'"),
        ("a;b", "';'"),
        ("a|b", "'|'"),
        ("a&b", "'&'"),
        ("a>b", "'>'"),
        ("x" * 201, "at most 200"),
        (HUGE, "got 10000"),
    ],
)
def test_other_branches_are_refused(branch, fragment):
    message = refused(BranchParameter(name="branch", default="main"), branch)
    assert fragment in message, message


def test_an_empty_branch_is_the_default():
    assert value(BranchParameter(name="branch", default="develop"), "") == "develop"
    assert value(BranchParameter(name="branch", default="develop")) == "develop"


def test_reasons_are_one_short_line():
    reason = ReasonParameter(name="reason", required=True)
    assert value(reason, "  hotfix for #42: roll forward  ") == "hotfix for #42: roll forward"
    assert value(reason, "x" * 500) == "x" * 500
    assert "at most 500" in refused(reason, "x" * 501)
    assert "got 10000" in refused(reason, HUGE)
    for bad in ("two\nlines", "bell\x07", "esc\x1b[31m", "line\u2028sep"):
        assert "control characters" in refused(reason, bad)
    with pytest.raises(ValidationError, match="needs to be specified"):
        value(reason, "   ")
    assert value(ReasonParameter(name="reason", default="force build")) == "force build"


@pytest.mark.parametrize("given", [5, None, {"x": 1}, ["nested"], True])
def test_values_that_are_not_text_are_refused(given):
    for parameter in (
        RevisionParameter(name="revision", default=""),
        BranchParameter(name="branch", default="m"),
        ReasonParameter(name="reason", default="r"),
    ):
        assert "must be text" in refused(parameter, given)


def test_problems_are_none_for_good_values():
    assert revision_problem("") is None and revision_problem("abcdef1") is None
    assert revision_problem("", allow_empty=False)
    assert branch_problem("main") is None and branch_problem("")
    assert reason_problem("") is None


# --- every force form of the real config ------------------------------------------------------


@pytest.fixture(scope="module")
def force_schedulers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forms")
    settings = load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp / "master"), "PIPELINE_SECRETS_DIR": str(tmp / "s")})
    result = []
    for scheduler in build_config(settings)["schedulers"]:
        if isinstance(scheduler, ForceScheduler):
            scheduler.reconfigService(**scheduler._config_kwargs)  # sets up the fields; no master needed
            result.append(scheduler)
    return result


def force(scheduler, **params):
    """(buildsets queued, the refusal's {field: message} or None)."""
    queued: list = []

    def record(**kwargs):
        queued.append(kwargs)
        return defer.succeed((1, {}))

    scheduler.addBuildsetForSourceStampsWithDefaults = record
    outcome: list = []
    scheduler.force("admin", **params).addCallbacks(
        lambda _: outcome.append(None),
        lambda failure: outcome.append(failure.trap(CollectedValidationError) and failure.value.errors),
    )
    return queued, outcome[0]


def needed(scheduler) -> dict:
    """Good values of the fields a form cannot go without (a build number, a pull request number)."""
    return {p.name: "3" for p in getattr(scheduler, "forcedProperties", []) if p.name in ("rerun_of", "pr_number")}


def typed_fields(scheduler) -> set[str]:
    fields = {"reason", *needed(scheduler)}
    for codebase in scheduler.forcedProperties:
        for field in getattr(codebase, "fields", []):
            if field.name in ("branch", "revision") and type(field).__name__ != "FixedParameter":
                fields.add(field.name)
    return fields


def test_the_config_has_the_forms_this_checks(force_schedulers):
    names = {s.name for s in force_schedulers}
    assert {"force_pipeline", "force_deploy_production", "force_rollback_production", "force_deploy_staging"} <= names
    for scheduler in force_schedulers:
        assert isinstance(scheduler.reason, ReasonParameter), scheduler.name
        for field in scheduler.forcedProperties[0].fields:
            if field.name == "revision" and type(field).__name__ != "FixedParameter":
                assert isinstance(field, RevisionParameter), scheduler.name
            if field.name == "branch" and type(field).__name__ != "FixedParameter":
                assert isinstance(field, BranchParameter), scheduler.name


@pytest.mark.parametrize("bad", ["", HUGE, SHELL])
def test_every_form_refuses_bad_input_naming_the_field_and_queues_nothing(force_schedulers, bad):
    for scheduler in force_schedulers:
        fields = typed_fields(scheduler)
        for field in sorted(fields):
            params = {"reason": "a reason", **needed(scheduler), field: bad}
            queued, errors = force(scheduler, **params)
            required = scheduler.reason.required if field == "reason" else field in needed(scheduler)
            if bad == "" and not required:
                assert errors is None and len(queued) == 1, (scheduler.name, field)  # empty: the default
                continue
            if bad == SHELL and field == "reason":  # free text, recorded as it is and never run
                assert errors is None and queued[0]["properties"].getProperty("reason") == SHELL
                continue
            assert queued == [], (scheduler.name, field, bad[:20])
            assert errors and field in errors, (scheduler.name, field, errors)


def test_every_form_takes_good_input(force_schedulers):
    for scheduler in force_schedulers:
        params = {
            "reason": "because",
            **needed(scheduler),
            **{f: "abcdef1" for f in typed_fields(scheduler) if f == "revision"},
        }
        queued, errors = force(scheduler, **params)
        assert errors is None and len(queued) == 1, scheduler.name
        (stamp,) = queued[0]["sourcestamps"]
        assert stamp["revision"] == params.get("revision", "")


# --- fixes/rest_errors: numeric path ids and integer fields -------------------------------------


def test_numeric_ids_fit_the_database():
    assert rest_errors.db_integer("42") == 42 and rest_errors.db_integer("-1") == -1
    assert rest_errors.db_integer(str(2**63 - 1)) == 2**63 - 1
    assert rest_errors.db_integer(7) == 7, "the master's own data calls pass ints"
    wrong: tuple[Any, ...] = (str(2**63), "9" * 30, "1_000", " 7", "+7", "٣", "", "x", 2**64, True, 1.5, None)
    for bad in wrong:  # wrong types too: refused at run time
        with pytest.raises(ValueError):
            rest_errors.db_integer(bad)


def test_integer_fields_fit_the_database(monkeypatch):
    monkeypatch.setattr(IntParameter, "parse_from_arg", rest_errors._bounded_int)
    priority = IntParameter(name="priority", default=0)
    assert priority.getFromKwargs({"priority": ["12"]}) == 12
    for bad, fragment in ((str(10**30), "between"), ("abc", "integer"), ({"x": 1}, "integer")):
        with pytest.raises(ValidationError, match=fragment):
            priority.getFromKwargs({"priority": [bad]})


def test_the_rest_overrides_are_one_of_the_fixes_master_cfg_applies():
    from namaskah_ci import fixes

    assert "rest_errors" in fixes.MODULES
