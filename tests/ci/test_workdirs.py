"""Where the master's state goes by default (workdirs.py, `[master] basedir = ""`), and the guard that
refuses a basedir whose job directories would sit inside a project (issue 23, item 1).

Before issue 23 the default was `.state/master` inside this checkout: every local job ran under this
repository's pyproject.toml, mypy.ini, .flake8 and .git, and a user's pytest took this checkout's rootdir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from namaskah_ci import workdirs
from namaskah_ci.config import ConfigError, build_config
from namaskah_ci.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_root_keeps_its_state_under_var_lib_and_a_user_under_local_state(tmp_path):
    checkout = tmp_path / "namaskah"
    name = workdirs.place_name(checkout)
    assert name.startswith("namaskah-") and len(name) == len("namaskah-") + 8
    assert workdirs.default_basedir(checkout, {}, euid=0) == Path("/var/lib/namaskah-ci") / name
    home = tmp_path / "home"
    assert workdirs.default_basedir(checkout, {}, euid=1000, home=home) == home / ".local/state/namaskah-ci" / name


def test_xdg_state_home_wins_when_absolute_and_is_ignored_when_relative(tmp_path):
    checkout, home = tmp_path / "ci", tmp_path / "home"
    name = workdirs.place_name(checkout)
    xdg = {"XDG_STATE_HOME": str(tmp_path / "state")}
    assert workdirs.default_basedir(checkout, xdg, euid=1000, home=home) == tmp_path / "state/namaskah-ci" / name
    assert workdirs.default_basedir(checkout, xdg, euid=0) == tmp_path / "state/namaskah-ci" / name
    relative = {"XDG_STATE_HOME": "state"}
    assert (
        workdirs.default_basedir(checkout, relative, euid=1000, home=home) == home / ".local/state/namaskah-ci" / name
    )


def test_two_checkouts_of_one_name_get_two_places(tmp_path):
    first, second = tmp_path / "a" / "namaskah", tmp_path / "b" / "namaskah"
    assert workdirs.place_name(first) != workdirs.place_name(second)
    assert workdirs.place_name(first) == workdirs.place_name(tmp_path / "a" / "x" / ".." / "namaskah")


def test_the_default_basedir_of_this_checkout_is_outside_it_and_outside_any_project(tmp_path):
    settings = load_settings({"XDG_STATE_HOME": str(tmp_path / "state")})
    assert settings.master.basedir == str(tmp_path / "state/namaskah-ci" / workdirs.place_name(ROOT))
    assert settings.basedir == Path(settings.master.basedir) and ROOT not in settings.basedir.parents
    assert settings.cache_dir == settings.basedir / "cache"
    assert settings.database_url == f"sqlite:///{settings.basedir / 'state.sqlite'}"
    machine_default = load_settings({}).basedir  # /var/lib/namaskah-ci/... as root, ~/.local/state/... otherwise
    assert ROOT not in machine_default.parents and machine_default != ROOT
    assert workdirs.config_ancestor(machine_default / "workers" / "local-lint" / "lint" / "build") is None


def test_the_setting_still_overrides_the_default(tmp_path):
    assert load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path / "m")}).basedir == tmp_path / "m"
    assert load_settings({"PIPELINE_MASTER_BASEDIR": "relative/m"}).basedir == ROOT / "relative/m"


@pytest.mark.parametrize("name", workdirs.PROJECT_FILES)
def test_the_guard_names_the_first_project_file_above_the_job_directories(tmp_path, name):
    project = tmp_path / "project"
    basedir = project / "ci" / "master"
    basedir.mkdir(parents=True)
    (project / name).mkdir() if name == ".git" else (project / name).write_text("")
    assert workdirs.config_ancestor(basedir) == project / name
    problem = workdirs.guard_problem(basedir)
    assert problem and problem.refuse, problem
    assert problem.line.startswith(f"[master] basedir {basedir} is inside a project: {project / name} is above")
    assert "set [master] basedir (PIPELINE_MASTER_BASEDIR)" in problem.line and "\n" not in problem.line


def under(root: Path):
    """`exists` seeing only what lies under `root` (this machine's /tmp may hold anyone's files)."""
    return lambda path: path.startswith(f"{root}/") and os.path.lexists(path)


def test_the_guard_passes_a_basedir_outside_any_project_and_follows_symlinks(tmp_path):
    outside = tmp_path / "state" / "master"
    outside.mkdir(parents=True)
    assert workdirs.config_ancestor(outside, under(tmp_path)) is None
    assert workdirs.guard_problem(outside, under(tmp_path)) is None
    project = tmp_path / "project"
    (project / "inner").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    link = tmp_path / "state" / "linked"
    os.symlink(project / "inner", link)  # the tools run in the real path (getcwd)
    assert workdirs.config_ancestor(link, under(tmp_path)) == project / "pyproject.toml"


def test_a_file_in_a_world_writable_sticky_directory_only_warns(tmp_path):
    shared = tmp_path / "tmp"
    (shared / "ci" / "master").mkdir(parents=True)
    shared.chmod(0o1777)  # as /tmp: anyone may put a file there
    (shared / "conftest.py").write_text("")
    problem = workdirs.guard_problem(shared / "ci" / "master")
    assert (
        problem and not problem.refuse and f"remove {shared / 'conftest.py'}, or set [master] basedir" in problem.line
    )


def test_the_old_default_inside_this_checkout_is_refused(tmp_path):
    assert workdirs.config_ancestor(ROOT / ".state" / "master") == ROOT / "pyproject.toml"


def test_a_local_master_inside_a_project_is_refused_when_its_config_is_built(tmp_path):
    basedir = tmp_path / "project" / "master"
    basedir.mkdir(parents=True)
    (tmp_path / "project" / "setup.cfg").write_text("[flake8]\n")
    env = {"PIPELINE_MASTER_BASEDIR": str(basedir), "PIPELINE_SECRETS_DIR": str(tmp_path / "secrets")}
    with pytest.raises(ConfigError, match=r"^\[master\] basedir .* is inside a project: .*/project/setup.cfg is"):
        build_config(load_settings(env))
