"""The ci_pip_audit.py helper: where it finds the cache of job venvs, and how it splits its arguments."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "master" / "namaskah_ci" / "helpers" / "ci_pip_audit.py"


def load():
    spec = importlib.util.spec_from_file_location("ci_pip_audit", SCRIPT)
    assert spec is not None and spec.loader is not None, SCRIPT
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cache_root_is_the_one_holding_the_job_venv(monkeypatch, tmp_path):
    script = load()
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "cache" / "venvs" / "py3.11-abc"))
    assert script.default_cache_root() == str(tmp_path / "cache")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "elsewhere" / "venv"))
    assert script.default_cache_root() is None
    monkeypatch.delenv("VIRTUAL_ENV")
    assert script.default_cache_root() is None


def test_arguments_after_the_separator_go_to_pip_audit():
    script = load()
    own, _, rest = script._split(["-r", "requirements.txt", "--", "--strict", "--format", "json"])
    assert own == ["-r", "requirements.txt"] and rest == ["--strict", "--format", "json"]
    assert script._split(["-r", "x.txt"])[2] == []


def test_without_a_cache_root_it_fails_naming_why(monkeypatch, capsys):
    script = load()
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    assert script.main(["-r", "requirements.txt", "--", "--strict"]) == 2
    assert "--cache-root" in capsys.readouterr().err
