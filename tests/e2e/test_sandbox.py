"""End to end: a root master in local mode runs every job command in its own bubblewrap sandbox.

One real master (as root, jobs as `namaskah-job`, `[workers] max_jobs = 4`, reuse off) polls a scratch
repository whose pipeline replays the security probe of issue 21:
- `lint` (every branch, a virtualenv from requirements.txt): on branch `evil` it writes a `.pth` file
  into the virtualenv it runs in, a file into its pip cache, into `$HOME/.cache` and into `/tmp`; on
  `main` it reports which of those it finds. Main's next `lint` must not run the `.pth` (it prints
  "POISONED" when Python starts) nor see the other files.
- `hold` (a `codecov_token` secret, sleeping) and `snoop` (no secret) run at the same time on `evil`:
  snoop reads every `/proc/*/environ` it can see for 25 s and must never find the token.
- `daemon` starts `setsid nohup sleep 31337` and ends: that process must be gone with its build.
- `linger` (branch `linger`) starts `setsid nohup sleep 31338` and sleeps; the master is then killed
  (SIGKILL, as a crash): nothing of the job may survive it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets as pysecrets
import signal
import subprocess
import time

import pytest

from harness import ROOT, commit_file, git, running, start_master, step_logs, wait_for
from jobs_support import JOB_USER as USER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(os.geteuid() != 0, reason="the job user is used by a master running as root"),
]

TOKEN = "cov-" + pysecrets.token_hex(16)
DAEMON, LINGER, LINGER_FG = ["sleep", "31337"], ["sleep", "31338"], ["sleep", "31339"]
PIPELINE = """\
version: 1
python: "3.11"
requirements: [requirements.txt]
jobs:
  lint:
    steps:
      - {name: probe, run: python probe.py poison}
      - {name: use, run: python -c "print('the venv python ran')"}
  hold:
    requirements: []
    branches: [evil]
    secrets: [codecov_token]
    steps:
      - {name: hold, run: sleep 30}
  snoop:
    requirements: []
    branches: [evil]
    steps:
      - {name: snoop, run: python3 probe.py snoop}
  daemon:
    requirements: []
    branches: [evil]
    steps:
      - {name: daemon, run: "setsid nohup sleep 31337 >/dev/null 2>&1 </dev/null & echo started"}
  linger:
    requirements: []
    branches: [linger]
    steps:
      - {name: linger, run: "setsid nohup sleep 31338 >/dev/null 2>&1 </dev/null & sleep 31339"}
"""
PROBE = r"""
import glob, hashlib, os, site, sys, time

PTH = "import sys; sys.stderr.write('POISONED: code from branch evil ran in ' + sys.executable + '\\n')\n"


def targets():
    return {
        "venv": os.path.join(site.getsitepackages()[0], "zz_poison.pth"),
        "pip cache": os.path.join(os.environ["PIP_CACHE_DIR"], "poison.txt"),
        "home": os.path.join(os.environ["HOME"], ".cache", "poison.txt"),
        "tmp": "/tmp/namaskah-poison.txt",
    }


def poison():
    branch = os.environ.get("NAMASKAH_CI_BRANCH")
    print("HOME=" + os.environ["HOME"])
    print("TMPDIR=" + os.environ["TMPDIR"])
    for what, path in targets().items():
        if branch == "evil":
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as handle:
                    handle.write(PTH)
                print(f"POISON {what}: wrote {path}")
            except OSError as exc:
                print(f"POISON {what}: refused {path}: {exc.strerror}")
        else:
            print(f"TRACE {what}: {'FOUND' if os.path.exists(path) else 'absent'} {path}")


def snoop():
    deadline = time.time() + 25
    seen = set()
    while time.time() < deadline:
        for path in glob.glob("/proc/[0-9]*/environ"):
            seen.add(path)
            try:
                with open(path, "rb") as handle:
                    items = handle.read().split(b"\0")
            except OSError:
                continue
            for item in items:
                if item.startswith(b"CODECOV_TOKEN="):
                    digest = hashlib.sha256(item[len("CODECOV_TOKEN="):]).hexdigest()
                    print(f"SNOOP found CODECOV_TOKEN sha256={digest} in {path}")
                    return
        time.sleep(0.3)
    print(f"SNOOP no CODECOV_TOKEN in any environ visible ({len(seen)} processes seen)")


{"poison": poison, "snoop": snoop}[sys.argv[1]]()
"""


def processes(argv: list[str]) -> list[int]:
    """Pids (host view) whose command line is exactly `argv`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = [part.decode(errors="replace") for part in handle.read().split(b"\0")[:-1]]
        except OSError:
            continue
        if command == argv:
            found.append(int(entry))
    return found


def kill_leftovers() -> list[int]:
    """The probe processes still alive (this test started them), killed by their ids."""
    left = [pid for argv in (DAEMON, LINGER, LINGER_FG) for pid in processes(argv)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def job_build(master, builder: str, revision: str):
    try:
        done = master.finished_builds(builder)
    except Exception:  # the builder appears with the first pipeline that has it
        return None
    found = [b for b in done if b["properties"].get("namaskah_revision", [None])[0] == revision]
    return found[-1] if found else None


def wait_job(master, builder: str, revision: str) -> dict:
    return wait_for(f"the {builder} build of {revision[:8]}", lambda: job_build(master, builder, revision), 600, 2)


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), USER], check=True, timeout=60)
    tmp = tmp_path_factory.mktemp("sandbox")
    (tmp / "secrets").mkdir(mode=0o700)
    (tmp / "secrets" / "codecov_token").write_text(TOKEN + "\n")
    (tmp / "secrets" / "codecov_token").chmod(0o600)
    repo = tmp / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(PIPELINE)
    (repo / "probe.py").write_text(PROBE)
    (repo / "requirements.txt").write_text("# nothing to install: a virtualenv with pip only\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the security probe's pipeline")
    env = {
        "PIPELINE_PIPELINE_FIRST_RUN": "true",
        "PIPELINE_WORKERS_CACHE_DIR": str(tmp / "cache"),
        "PIPELINE_WORKERS_MAX_JOBS": "4",
        "PIPELINE_PIPELINE_REUSE": "false",
    }
    extra = '[pipeline]\njob_secrets = ["codecov_token"]\n'
    try:
        with running(lambda: start_master(tmp, repo, extra, env=env, seed=False)) as master:
            first = wait_job(master, "lint", git(repo, "rev-parse", "HEAD"))
            assert first["results"] == 0, master.build_text(first)
            yield master, repo, tmp
    finally:
        kill_leftovers()


@pytest.fixture(scope="module")
def evil(sandboxed):
    """The branch's pipeline: lint's poisoning attempt, hold + snoop at once, the daemon."""
    master, repo, _ = sandboxed
    revision = commit_file(repo, "evil.txt", "a branch of any contributor\n", "evil", branch="evil")
    return {job: wait_job(master, job, revision) for job in ("lint", "hold", "snoop", "daemon")}


@pytest.fixture(scope="module")
def main_again(sandboxed, evil):
    """Main's next lint, after the branch's."""
    master, repo, _ = sandboxed
    git(repo, "checkout", "-q", "main")
    revision = commit_file(repo, "main.txt", "main moves on\n", "main again")
    return wait_job(master, "lint", revision)


def test_a_branch_job_cannot_alter_what_mains_job_runs(sandboxed, evil, main_again):
    master = sandboxed[0]
    branch = step_logs(master, evil["lint"])["probe"][1]
    main = master.build_text(main_again)
    print("BRANCH:", "\n".join(line for line in branch.splitlines() if line.startswith(("POISON", "HOME"))))
    print("MAIN:", "\n".join(line for line in main.splitlines() if line.startswith(("TRACE", "POISONED", "HOME"))))
    assert "POISON venv: refused" in branch and "Read-only file system" in branch, branch
    assert "POISONED" not in main, main
    assert main_again["results"] == 0
    for what in ("venv", "pip cache", "home", "tmp"):
        assert f"TRACE {what}: absent" in main, (what, main)


def test_home_and_tmp_are_private_per_build(sandboxed, evil, main_again):
    master = sandboxed[0]
    for build in (evil["lint"], main_again):
        text = step_logs(master, build)["probe"][1]
        (home,) = [line for line in text.splitlines() if line.startswith("HOME=")]
        (tmpdir,) = [line for line in text.splitlines() if line.startswith("TMPDIR=")]
        assert home.endswith("/.namaskah-ci/tmp/home") and tmpdir.endswith("/.namaskah-ci/tmp"), (home, tmpdir)
        assert "/var/lib/" not in home


def test_a_job_cannot_read_another_running_jobs_environment(sandboxed, evil):
    master = sandboxed[0]
    hold = step_logs(master, evil["hold"])["hold"][0]
    snoop_step, snoop = step_logs(master, evil["snoop"])["snoop"]
    print("SNOOP:", [line for line in snoop.splitlines() if line.startswith("SNOOP")])
    assert hashlib.sha256(TOKEN.encode()).hexdigest() not in snoop and "SNOOP found" not in snoop, snoop
    assert "SNOOP no CODECOV_TOKEN" in snoop
    overlap = min(hold["complete_at"], snoop_step["complete_at"]) - max(hold["started_at"], snoop_step["started_at"])
    assert overlap >= 5, (hold, snoop_step)  # they ran at the same time: the probe means something


def test_a_daemon_started_by_a_job_is_gone_when_its_build_ends(sandboxed, evil):
    master = sandboxed[0]
    assert "started" in step_logs(master, evil["daemon"])["daemon"][1]
    left = processes(DAEMON)
    print("DAEMON left after its build:", left)
    assert left == []


def test_nothing_of_a_job_survives_the_master_being_killed(sandboxed):
    master, repo, _ = sandboxed
    revision = commit_file(repo, "linger.txt", "stays\n", "linger", branch="linger")

    def running():
        try:
            builds = [
                b for b in master.builds("linger") if b["properties"].get("namaskah_revision", [None])[0] == revision
            ]
        except Exception:
            return None
        return builds and processes(LINGER) and processes(LINGER_FG)

    wait_for("the linger job's processes", running, 600, 1)
    master.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (processes(LINGER) or processes(LINGER_FG)):
        time.sleep(0.2)
    left = {"daemon": processes(LINGER), "command": processes(LINGER_FG)}
    print("LINGER left after the master's death:", left)
    assert left == {"daemon": [], "command": []}
