"""How the suite runs on several workers (pytest-xdist, `make test`): which tests share a worker, and
in what order the workers take them.

`make test` runs `pytest -n <workers> --dist loadgroup`. Here each test gets an `xdist_group`: its
module, so a module's tests run on one worker, in their order, sharing its module-scoped master
(SPLIT_BY_PARAM: one group per value of a parametrized module fixture); the modules of one entry of
SHARED_GROUPS share one group (one worker, one after another), for modules that must not run beside
each other. Groups are handed out longest first, from the seconds
measured per group in `tests/durations.json` (a group missing there is guessed from its markers), so
the run does not end with one worker alone on a long module. Each run under xdist writes what it
measured to `test-artifacts/test-durations.json`: copy it over `tests/durations.json` when the
suite's shape changes. Without xdist (`pytest tests/ci/pipeline/test_inputs.py`) nothing here changes anything.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

# fixtures every tier shares (tests/support/ is on the path: pyproject's pythonpath)
pytest_plugins = ["jobs_support"]

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = ROOT / "tests" / "durations.json"
MEASURED = ROOT / "test-artifacts" / "test-durations.json"
SLOW_MARKERS = ("e2e", "docker", "browser")
GUESS_SLOW, GUESS_FAST = 30.0, 0.1  # seconds per test of a module durations.json does not know
# Modules (or every module under a directory ending in "/") that run one after another on one worker,
# in a group named after the entry's first path, and why.
SHARED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("tests/app/integration/",),  # one PostgreSQL and one Redis per worker session (its conftest)
)
# Modules whose module-scoped fixture is parametrized, one group per value (pytest sets the fixture up
# once per value anyway): {module: fixture}.
SPLIT_BY_PARAM = {"tests/e2e/test_reliability.py": "crash_story"}  # two masters (SQLite, PostgreSQL)


def group_of(item: pytest.Item) -> str:
    module = item.path.relative_to(ROOT).as_posix()
    for shared in SHARED_GROUPS:
        if any(module == path or (path.endswith("/") and module.startswith(path)) for path in shared):
            return shared[0]
    callspec = getattr(item, "callspec", None)
    if module in SPLIT_BY_PARAM and callspec and SPLIT_BY_PARAM[module] in callspec.params:
        # not "module[value]": xdist takes a node id ending in "]" for a parameter, not a group
        return f"{module}:{callspec.params[SPLIT_BY_PARAM[module]]}"
    return module


def distributed(config: pytest.Config) -> bool:
    """A worker or the controller of an xdist run with `--dist loadgroup`."""
    if hasattr(config, "workerinput"):  # xdist gives its workers `loadgroup` (and `dist = "no"`)
        return bool(getattr(config.option, "loadgroup", False))
    return bool(
        config.pluginmanager.hasplugin("xdist")
        and config.getoption("numprocesses", None)
        and config.getoption("dist", "no") == "loadgroup"
    )


def known_seconds() -> dict[str, float]:
    try:
        return json.loads(DURATIONS.read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        return {}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not distributed(config):
        return
    groups: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group_of(item)))
        groups[group_of(item)].append(item)
    seconds = known_seconds()

    def weight(name: str) -> float:
        if name in seconds:
            return seconds[name]
        slow = [i for i in groups[name] if any(i.get_closest_marker(m) for m in SLOW_MARKERS)]
        return GUESS_SLOW * len(slow) + GUESS_FAST * (len(groups[name]) - len(slow))

    order = sorted(groups, key=weight, reverse=True)  # dicts keep the collection order among equals
    items[:] = [item for name in order for item in groups[name]]


@pytest.fixture(autouse=True)
def _trial_case_working_directory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twisted trial test cases (Buildbot's step and fake-master tests) write into the working directory:
    a fake master's `basedir`, removed at its end, and `TestCase.mktemp()`'s directories. Each gets its
    own working directory (trial itself runs in `_trial_temp`), so that two such tests running at once
    on two workers, or in two sessions in one checkout, do not remove each other's `basedir`."""
    trial = sys.modules.get("twisted.trial.unittest")
    if trial is not None and isinstance(request.instance, trial.SynchronousTestCase):
        monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


_measured: dict[str, float] = defaultdict(float)
_measuring: list[bool] = []


def pytest_configure(config: pytest.Config) -> None:
    if distributed(config) and not hasattr(config, "workerinput"):  # the controller of an xdist run
        _measuring.append(True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _measuring:  # the workers' reports, their node ids "<path>::<test>@<group>"
        _measured[report.nodeid.rsplit("@", 1)[-1]] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _measured:
        return
    MEASURED.parent.mkdir(exist_ok=True)
    ranked = dict(sorted(((name, round(s, 1)) for name, s in _measured.items()), key=lambda kv: -kv[1]))
    MEASURED.write_text(
        json.dumps(
            {"about": "seconds per xdist group (setup + call + teardown) of one run", "seconds": ranked}, indent=1
        )
        + "\n"
    )
