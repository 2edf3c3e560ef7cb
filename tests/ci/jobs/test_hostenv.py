"""The interpreter lookup (jobs/hostenv.py) and the on-demand copy of a private Python (jobs/shared_pythons.py).

Real interpreters: the system's python3.11 and this host's pyenv versions (under /root, which the job
user cannot enter); a user other than root stands for the job user (`nobody`). The copy test copies a
real pyenv version (the smallest, ~2 s) into a temporary directory every user can enter.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from namaskah_ci.jobs import hostenv, shared_pythons

USER = "nobody"  # any user but root: what a root master's job user can run
SYSTEM_311 = "/usr/bin/python3.11"
PYENV_ROOT = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the job user is probed by a master running as root")
needs_311 = pytest.mark.skipif(not os.access(SYSTEM_311, os.X_OK), reason="needs the system's python3.11")


def run_as(user: str, *command: str) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user)
    try:
        return subprocess.run(
            list(command), capture_output=True, text=True, timeout=60, check=False, cwd="/",
            user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
        )  # fmt: skip
    except PermissionError as exc:  # the user cannot reach the program
        return subprocess.CompletedProcess(list(command), 126, "", str(exc))


@pytest.fixture
def private(tmp_path: Path) -> Path:
    """A directory only root can enter (pytest's own tmp directories are 0700 too)."""
    tmp_path.chmod(0o700)
    return tmp_path


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The copies' directory: a temporary one every user can enter (not under pytest's 0700 tmp)."""
    target = Path(tempfile.mkdtemp(prefix="namaskah-pythons-", dir="/tmp"))
    target.chmod(0o755)
    monkeypatch.setattr(shared_pythons, "SHARED_PYTHONS", str(target))
    try:
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


@as_root
@needs_311
def test_a_root_only_interpreter_first_on_path_is_passed_over_for_one_the_job_user_can_run(
    private: Path, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = private / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(SYSTEM_311)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    # the master itself could run either: it takes the first
    assert hostenv.find_interpreter({}, "3.11") == (str(bin_dir / "python3.11"), "")
    # its job user only the later one
    assert hostenv.find_interpreter({}, "3.11", USER) == (SYSTEM_311, "")
    assert hostenv.resolve_interpreter({"3.11": "python3.11"}, "3.11", USER) == SYSTEM_311
    # named in [workers] interpreters as a path the job user cannot run: still another one
    named = {"3.11": str(bin_dir / "python3.11")}
    assert hostenv.find_interpreter(named, "3.11", USER) == (SYSTEM_311, "")
    assert not list(shared.iterdir())  # nothing copied: the system's was there


@needs_311
def test_pyenvs_directories_on_the_path_come_after_the_systems_interpreter(
    private: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process started through a pyenv shim has the version's directory first on PATH."""
    version_bin = private / "pyenv" / "versions" / "3.11.99" / "bin"
    version_bin.mkdir(parents=True)
    (version_bin / "python3.11").symlink_to(SYSTEM_311)
    monkeypatch.setenv("PYENV_ROOT", str(private / "pyenv"))
    monkeypatch.setenv("PATH", f"{version_bin}:{private / 'pyenv' / 'shims'}:/usr/bin:/bin")
    candidates = hostenv.interpreter_candidates("python3.11", "3.11")
    assert candidates.index(SYSTEM_311) < candidates.index(str(version_bin / "python3.11"))
    assert hostenv.find_interpreter({}, "3.11") == (SYSTEM_311, "")


def test_a_version_the_host_lacks_is_one_line_naming_those_it_has() -> None:
    with pytest.raises(hostenv.MissingPython) as raised:
        hostenv.find_interpreter({}, "3.99")
    text = str(raised.value)
    assert text.startswith("python 3.99: not on this host; available: ") and "\n" not in text
    available = text.split("available: ")[1].split(";")[0].split(", ")
    assert available == hostenv.available_versions({}) and available
    assert "[workers] interpreters" in text and "pyenv install 3.99" in text
    assert hostenv.resolve_interpreter({}, "3.99") == "python3.99"  # the reuse key's: no exception
    with pytest.raises(hostenv.MissingPython, match=r"^python 3\.7: older than 3\.8, the oldest the job helpers run"):
        hostenv.find_interpreter({"3.7": "/no/such/python3.7"}, "3.7")


def smallest_private_version() -> tuple[str, str]:
    """(version, installation) of this host's smallest pyenv Python of 3.8 or newer that no system directory has."""
    found = []
    for prefix in glob.glob(os.path.join(PYENV_ROOT, "versions", "3.*")):
        version = ".".join(os.path.basename(prefix).split(".")[:2])
        if hostenv._version_key(version) < hostenv.OLDEST or glob.glob(f"/usr/*bin/python{version}"):
            continue
        if os.access(os.path.join(prefix, "bin", f"python{version}"), os.X_OK):
            size = sum(entry.stat().st_size for entry in Path(prefix, "lib").rglob("*") if entry.is_file())
            found.append((size, version, prefix))
    if not found:
        pytest.skip(f"no pyenv Python of 3.8 or newer in {PYENV_ROOT} that the system lacks")
    _, version, prefix = min(found)
    return version, prefix


@as_root
def test_a_private_pyenv_version_is_copied_for_the_job_user_at_its_first_use_once(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version, prefix = smallest_private_version()
    if run_as(USER, os.path.join(prefix, "bin", f"python{version}"), "-c", "").returncode == 0:
        pytest.skip(f"{USER} can run {prefix}: nothing to copy")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    found: list[tuple[str, str]] = []

    def lookup() -> None:
        found.append(hostenv.find_interpreter({}, version, USER))

    threads = [threading.Thread(target=lookup) for _ in range(2)]  # two jobs asking at once: one copy
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    copy = shared / os.path.basename(os.path.realpath(prefix))
    interpreter = str(copy / "bin" / f"python{version}")
    assert [path for path, _ in found] == [interpreter, interpreter]
    assert f"python {version}: copied {os.path.realpath(prefix)} to {copy}" in found[0][1]
    assert sorted(os.listdir(shared)) == [".lock", copy.name]  # no half copy left
    # the job user runs it, makes a virtualenv with it; its packages stayed behind
    probe = run_as(USER, interpreter, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])")
    assert probe.returncode == 0 and probe.stdout.strip() == version, probe.stderr
    site = copy / "lib" / f"python{version}" / "site-packages"
    assert not [entry for entry in site.iterdir() if entry.is_dir()]
    assert str(os.path.realpath(prefix)) not in shared_pythons._runpath(interpreter)
    # the next job takes the copy as it is
    assert hostenv.find_interpreter({}, version, USER) == (interpreter, "")


def test_something_that_is_no_installation_is_not_copied(shared: Path, tmp_path: Path) -> None:
    with pytest.raises(shared_pythons.ShareError, match="is not a Python installation"):
        shared_pythons.share(str(tmp_path))
    assert not list(shared.iterdir())
