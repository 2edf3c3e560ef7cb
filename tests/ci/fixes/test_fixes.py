"""The Buildbot 4.3 fixes master.cfg applies (namaskah_ci/fixes/), checked on Buildbot's own classes, and their
one version policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from buildbot.util import pathmatch

from namaskah_ci import fixes
from namaskah_ci.fixes import home_page, matcher_compile


@pytest.fixture
def fixed_matcher(monkeypatch):
    monkeypatch.setattr(pathmatch.Matcher, "_compile", pathmatch.Matcher._compile)  # undone after the test
    matcher_compile.apply()
    compiled = []
    compile_once = pathmatch.Matcher._compile

    def counting(self):
        compiled.append(len(self._patterns))
        compile_once(self)

    monkeypatch.setattr(pathmatch.Matcher, "_compile", counting)
    return compiled


def test_upstream_recompiles_on_every_lookup(monkeypatch):
    """The bug the fix is for: still there in the installed Buildbot (drop the fix when this fails)."""
    monkeypatch.setattr(pathmatch.Matcher, "_compile", matcher_compile._original_compile)
    matcher = pathmatch.Matcher()
    matcher[("builds",)] = "builds"
    matcher[("builds", "n:buildid")] = "build"
    assert matcher[("builds", "7")] == ("build", {"buildid": 7})
    assert matcher._dirty is True


def test_the_table_is_compiled_once_per_change(fixed_matcher):
    matcher = pathmatch.Matcher()
    matcher[("builds",)] = "builds"
    matcher[("builds", "n:buildid")] = "build"
    for _ in range(5):
        assert matcher[("builds", "7")] == ("build", {"buildid": 7})
        assert matcher[("builds",)] == ("builds", {})
    assert fixed_matcher == [2]
    # a pattern added later is found: adding marks the table dirty again
    matcher[("builders", "i:name")] = "builder"
    assert matcher[("builders", "lint")] == ("builder", {"name": "lint"})
    assert matcher[("builds", "7")] == ("build", {"buildid": 7})
    assert fixed_matcher == [2, 3]
    with pytest.raises(KeyError):
        matcher[("nothing",)]


def test_master_cfg_applies_every_fix():
    cfg = (Path(__file__).resolve().parents[3] / "master" / "master.cfg").read_text()
    assert "from namaskah_ci.fixes import FixError, apply_all" in cfg and "\n    apply_all()" in cfg


def test_every_fix_module_is_applied_or_imported_by_its_one_user():
    folder = Path(fixes.__file__).parent
    modules = {path.stem for path in folder.glob("*.py")} - {"__init__"}
    # no apply(): imported by their user
    accessors = {"poller_reconfig", "status_repository", "metrics_resource", "docker_client"}
    assert set(fixes.MODULES) | accessors == modules
    for name in fixes.MODULES:
        assert "apply" in (folder / f"{name}.py").read_text(), name


def test_another_buildbot_version_refuses_to_start_in_one_line():
    fixes.check_version(fixes.CHECKED_AGAINST)
    with pytest.raises(fixes.FixError) as refused:
        fixes.apply_all("4.4.0")
    message = str(refused.value)
    assert "\n" not in message and "4.4.0" in message and "4.3.0" in message


def test_the_index_page_opens_the_dashboard_at_the_root(monkeypatch, tmp_path):
    from buildbot.www import config as www_config

    monkeypatch.setattr(www_config.IndexResource, "__init__", www_config.IndexResource.__init__)
    monkeypatch.setattr(www_config.IndexResource, "_namaskah_home", None, raising=False)
    (tmp_path / "index.html").write_text("<head>\n  <!-- BUILDBOT_CONFIG_PLACEHOLDER -->\n</head>")
    home_page.apply()
    home_page.apply()  # idempotent
    index = www_config.IndexResource.__new__(www_config.IndexResource)
    www_config.IndexResource.__init__(index, master=None, staticdir=str(tmp_path))
    assert index.index_template.count('"#/pipelines"') == 1
    assert index.index_template.index("location.replace") < index.index_template.index("BUILDBOT_CONFIG_PLACEHOLDER")
