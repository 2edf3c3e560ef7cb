"""The Buildbot 4.3 fixes master.cfg applies (namaskah_ci/fixes/patches.py), checked on Buildbot's own classes."""

from __future__ import annotations

from pathlib import Path

import pytest
from buildbot.util import pathmatch

from namaskah_ci.fixes import patches


@pytest.fixture
def fixed_matcher(monkeypatch):
    monkeypatch.setattr(pathmatch.Matcher, "_compile", pathmatch.Matcher._compile)  # undone after the test
    patches.apply_matcher_compile_fix()
    compiled = []
    compile_once = pathmatch.Matcher._compile

    def counting(self):
        compiled.append(len(self._patterns))
        compile_once(self)

    monkeypatch.setattr(pathmatch.Matcher, "_compile", counting)
    return compiled


def test_upstream_recompiles_on_every_lookup(monkeypatch):
    """The bug the fix is for: still there in the installed Buildbot (drop the fix when this fails)."""
    monkeypatch.setattr(pathmatch.Matcher, "_compile", patches._original_compile)
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
    cfg = (Path(__file__).resolve().parents[2] / "master" / "master.cfg").read_text()
    assert "apply_all as apply_buildbot_fixes" in cfg and "\napply_buildbot_fixes()" in cfg


def test_the_index_page_opens_the_dashboard_at_the_root(monkeypatch, tmp_path):
    from buildbot.www import config as www_config

    from namaskah_ci.fixes import patches

    monkeypatch.setattr(www_config.IndexResource, "__init__", www_config.IndexResource.__init__)
    monkeypatch.setattr(www_config.IndexResource, "_namaskah_home", None, raising=False)
    (tmp_path / "index.html").write_text("<head>\n  <!-- BUILDBOT_CONFIG_PLACEHOLDER -->\n</head>")
    patches.apply_home_page()
    patches.apply_home_page()  # idempotent
    index = www_config.IndexResource.__new__(www_config.IndexResource)
    www_config.IndexResource.__init__(index, master=None, staticdir=str(tmp_path))
    assert index.index_template.count('"#/pipelines"') == 1
    assert index.index_template.index("location.replace") < index.index_template.index("BUILDBOT_CONFIG_PLACEHOLDER")
