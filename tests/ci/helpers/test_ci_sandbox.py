"""Each command of a local job runs in its own bubblewrap sandbox (`ci_step.py` + `ci_sandbox.py`).

Real processes, as root, with the real job user (`namaskah-job`, scripts/create_job_user.sh) and
bwrap: two builds' directories laid out as a local master leaves them, one of `main` and one of
the branch `evil`, one cache for both, a fake master basedir holding a world-readable database
file and a secrets directory. The helpers run directly, as the worker runs them; skipped, saying
why, when the tests do not run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_sandbox import DOCKER_SOCKETS, sandbox_argv
from namaskah_ci.helpers.ci_venv import STAMP, fingerprint, python_version, requirement_files
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.steps.job_steps import JobSetup
from pipeline_support import job_of

ROOT = Path(__file__).resolve().parents[3]
STEP = str(Path(HELPERS_DIR) / "ci_step.py")
USER = "namaskah-job"
PYTHON = "/usr/bin/python3"
TOKEN = "tok-5ec7e7-holder"
JOB = job_of(
    load_pipeline(
        "version: 1\nrequirements: [requirements.txt]\njobs:\n  lint:\n    secrets: [codecov_token]\n    steps: [x]\n",
        ".namaskah-ci.yml",
    ),
    "lint",
)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the job user and its sandbox are set up by root")
PTH = "import sys; sys.stderr.write('POISONED by evil\\n')\n"
POISON = """
import os, site, sys
for path in (os.path.join(site.getsitepackages()[0], "zz_poison.pth"), os.environ["PIP_CACHE_DIR"] + "/p.pth",
             sys.argv[1] + "/p.pth"):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write(sys.argv[2])
        print("wrote", path)
    except OSError as exc:
        print("refused", path, exc.strerror)
"""
SNOOP = """
import glob
pids = [p for p in glob.glob("/proc/[0-9]*")]
found = []
for pid in pids:
    try:
        items = open(pid + "/environ", "rb").read().split(b"\\0")
        found += [pid for item in items if item.startswith(b"CODECOV_TOKEN=")]
    except OSError:
        pass
print("visible", len(pids), "found", found)
"""


def processes(argv: list[str]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if [p.decode(errors="replace") for p in handle.read().split(b"\0")[:-1]] == argv:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def gone(argv: list[str], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while processes(argv) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not processes(argv)


def kill_all(*argvs: list[str]) -> None:
    for argv in argvs:
        for pid in processes(argv):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def job_user():
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), USER], check=True, timeout=60)
    return pwd.getpwnam(USER)


class Host:
    """A scratch host: a master basedir with two builds' directories, one cache, a secrets directory."""

    def __init__(self, top: Path, user: str = USER):
        self.top, self.user = top, user
        self.basedir, self.secrets, self.cache = top / "master", top / "secrets", top / "cache"
        self.basedir.mkdir(mode=0o711)
        (self.basedir / "state.sqlite").write_text("the master's database\n")  # world-readable on purpose
        (self.basedir / "state.sqlite").chmod(0o644)
        self.secrets.mkdir(mode=0o755)
        (self.secrets / "render_api_key").write_text("rnd-deploy-key\n")
        (self.secrets / "render_api_key").chmod(0o644)
        self.checkouts = {"main": self.build("local-lint-s0", "main"), "evil": self.build("local-lint-s1", "evil")}

    def layout(self, user: str) -> JobLayout:
        return JobLayout(
            runner=sys.executable,
            helpers_dir=HELPERS_DIR,
            cache_root=str(self.cache),
            user=user,
            sandbox=True,
            default_branch="main",
            hidden=(str(self.basedir), str(self.secrets), str(self.cache)),
        )

    def build(self, worker: str, branch: str, path: str = "/usr/bin:/bin") -> Path:
        builder = self.basedir / "workers" / worker / "lint"
        builder.mkdir(parents=True)
        for part in (self.basedir / "workers", builder.parent, builder):
            part.chmod(0o711)
        job_dir, checkout = builder / ".namaskah-ci", builder / "build"
        (job_dir / "secrets").mkdir(parents=True)
        checkout.mkdir()
        (checkout / "requirements.txt").write_text("# nothing\n")
        (checkout / "mine.txt").write_text(f"{branch}'s checkout\n")
        document = job_commands.job_document(
            JOB, self.layout(self.user), interpreter=PYTHON, base_path=path, worker_env={}, branch=branch
        )
        (job_dir / "job.json").write_text(json.dumps(document))
        return checkout

    def secret(self, branch: str, value: str) -> None:
        path = self.checkouts[branch].parent / ".namaskah-ci" / "secrets" / "CODECOV_TOKEN"
        path.write_text(value + "\n")
        path.chmod(0o600)

    def argv(self, branch: str, *args: str) -> list[str]:
        return [sys.executable, STEP, "--job-dir", "../.namaskah-ci", *args]

    def step(self, branch: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(branch, *args),
            cwd=self.checkouts[branch],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "HOME": "/root"},
            check=False,
        )

    def run(self, branch: str, *command: str) -> subprocess.CompletedProcess:
        return self.step(branch, "run", "--", *command)

    def main_venv(self) -> Path:
        """Main's cached virtualenv as ci_venv.py names it, made here without pip (no network)."""
        checkout = self.checkouts["main"]
        stamp = fingerprint(python_version(PYTHON), requirement_files([str(checkout / "requirements.txt")]))
        short = ".".join(python_version(PYTHON).split()[0].split(".")[:2])
        own = json.loads((checkout.parent / ".namaskah-ci" / "job.json").read_text())["sandbox"]["cache"]
        venv = Path(own) / "venvs" / f"py{short}-{stamp[:16]}"
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        (venv / STAMP).write_text(stamp + "\n")
        return venv


@pytest.fixture
def host(job_user):
    top = Path(tempfile.mkdtemp(prefix="namaskah-sandbox-", dir="/tmp"))
    top.chmod(0o711)
    try:
        yield Host(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def ready(host: Host, *branches: str) -> None:
    for branch in branches:
        done = host.step(branch, "own")
        assert done.returncode == 0, done.stderr


# --- the caches: a branch cannot change what main's job runs ------------------------------------------


@as_root
def test_a_branch_job_cannot_change_the_virtualenv_or_caches_mains_job_uses(host):
    venv = host.main_venv()
    ready(host, "main", "evil")
    main_venv = host.step("main", "venv", "--python", PYTHON, "--cache-root", str(host.cache), "-r", "requirements.txt")
    assert main_venv.returncode == 0 and f"VENV={venv}" in main_venv.stdout, main_venv.stderr
    evil_venv = host.step("evil", "venv", "--python", PYTHON, "--cache-root", str(host.cache), "-r", "requirements.txt")
    assert evil_venv.returncode == 0, evil_venv.stderr
    assert f"VENV={venv}" in evil_venv.stdout and "the default branch's, read-only" in evil_venv.stderr
    main_pip = json.loads((host.checkouts["main"].parent / ".namaskah-ci" / "job.json").read_text())["env"][
        "PIP_CACHE_DIR"
    ]
    Path(main_pip).mkdir(parents=True, exist_ok=True)
    poison = host.run("evil", "python", "-c", POISON, main_pip, PTH)
    print("evil:", poison.stdout, poison.stderr)
    assert f"refused {venv}/lib/" in poison.stdout and "Read-only file system" in poison.stdout
    assert "wrote " in poison.stdout  # its own pip cache: writable, and only its own
    main = host.run("main", "python", "-c", "import sys; print(sys.prefix)")
    print("main:", main.stdout, main.stderr)
    assert main.returncode == 0 and main.stdout.strip() == str(venv) and "POISONED" not in main.stderr
    assert not list(venv.rglob("*.pth")) and not list(Path(main_pip).iterdir())


# --- processes: none visible, none left ---------------------------------------------------------------


@as_root
def test_a_job_cannot_see_another_running_jobs_processes_or_environment(host):
    ready(host, "main", "evil")
    host.secret("evil", TOKEN)
    holder = subprocess.Popen(
        host.argv("evil", "run", "--", "sleep", "31346"),
        cwd=host.checkouts["evil"],
        env={"PATH": "/usr/bin:/bin"},
        start_new_session=True,
    )
    try:
        _wait_for(["sleep", "31346"])
        snoop = host.run("main", "python3", "-c", SNOOP)
        print("snoop:", snoop.stdout, snoop.stderr)
        assert snoop.returncode == 0 and "found []" in snoop.stdout
        assert int(snoop.stdout.split()[1]) <= 3  # its init, its shell, itself: nobody else's
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(30)
    assert gone(["sleep", "31346"])


@as_root
def test_a_daemon_dies_with_the_command_that_started_it(host):
    ready(host, "evil")
    try:
        done = host.run("evil", "bash", "-c", "setsid nohup sleep 31347 >/dev/null 2>&1 </dev/null & echo started")
        assert done.returncode == 0 and "started" in done.stdout, done.stderr
        assert gone(["sleep", "31347"]), "the setsid daemon outlived its command"
    finally:
        kill_all(["sleep", "31347"])


@as_root
def test_a_stopped_build_and_a_dead_master_take_the_whole_sandbox(host):
    """The worker kills a stopped step's process group (SIGKILL); a master that dies kills nothing."""
    ready(host, "evil")
    line = "setsid nohup sleep {0} >/dev/null 2>&1 </dev/null & exec sleep {1}"
    try:
        stopped = subprocess.Popen(
            host.argv("evil", "run", "--", "bash", "-c", line.format(31348, 31349)),
            cwd=host.checkouts["evil"],
            env={"PATH": "/usr/bin:/bin"},
            start_new_session=True,
        )
        _wait_for(["sleep", "31348"], ["sleep", "31349"])
        os.killpg(stopped.pid, signal.SIGKILL)
        stopped.wait(30)
        assert gone(["sleep", "31348"]) and gone(["sleep", "31349"])
        # a master (the parent) SIGKILLed: the step, in a process group of its own, is not signalled
        start = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:], start_new_session=True); time.sleep(600)"
        step = host.argv("evil", "run", "--", "bash", "-c", line.format(31350, 31351))
        master = subprocess.Popen(
            [sys.executable, "-c", start, *step], cwd=host.checkouts["evil"], env={"PATH": "/usr/bin:/bin"}
        )
        _wait_for(["sleep", "31350"], ["sleep", "31351"])
        master.kill()
        master.wait(30)
        assert gone(["sleep", "31350"]) and gone(["sleep", "31351"]), "the job outlived the master"
    finally:
        kill_all(*(["sleep", str(n)] for n in range(31348, 31352)))


def _wait_for(*argvs: list[str]) -> None:
    deadline = time.monotonic() + 20
    while not all(processes(argv) for argv in argvs):
        assert time.monotonic() < deadline, f"{argvs} did not start"
        time.sleep(0.05)


# --- files: HOME and /tmp of the build's own, nothing of the master's ----------------------------------


@as_root
def test_home_and_tmp_are_private_to_each_build(host):
    ready(host, "main", "evil")
    evil = host.run("evil", "bash", "-c", 'echo "HOME=$HOME"; touch "$HOME/evil-home" /tmp/evil-tmp /var/tmp/evil')
    main = host.run("main", "bash", "-c", 'echo "HOME=$HOME"; ls -A "$HOME" /tmp /var/tmp')
    print(evil.stdout, main.stdout, main.stderr)
    assert evil.returncode == 0 and main.returncode == 0, (evil.stderr, main.stderr)
    for branch, done in (("evil", evil), ("main", main)):
        home = host.checkouts[branch].parent / ".namaskah-ci" / "tmp" / "home"
        assert f"HOME={home}" in done.stdout
    assert "evil" not in main.stdout.replace(str(host.top), "")


@as_root
def test_the_masters_files_other_builds_and_other_branches_caches_are_not_there(host):
    host.main_venv()
    ready(host, "main", "evil")
    venv = host.step("evil", "venv", "--python", PYTHON, "--cache-root", str(host.cache), "-r", "requirements.txt")
    assert venv.returncode == 0, venv.stderr
    (host.cache / "refs" / "someone-else").mkdir(parents=True)
    other = host.checkouts["main"] / "mine.txt"
    probe = (
        f"for p in {host.basedir}/state.sqlite {host.secrets}/render_api_key {other}; do "
        f"cat $p 2>&1 | head -c 300; echo; done; echo LISTED; ls -A {host.basedir} {host.cache}/refs {host.top}"
    )
    done = host.run("evil", "bash", "-c", probe)
    print(done.stdout, done.stderr)
    read, listed = done.stdout.split("LISTED")
    assert "the master's database" not in read and "rnd-deploy-key" not in read and "main's checkout" not in read
    assert read.count("No such file or directory") == 3
    names = {line.strip() for line in listed.splitlines() if line and not line.endswith(":")}
    assert names == {"workers", "main-0d6e4079e367", "evil-b5c1fb2efc6d", "master", "cache"}, names
    assert "evil's checkout" in host.run("evil", "cat", "mine.txt").stdout  # its own checkout is there


# --- what is missing fails in one line -----------------------------------------------------------------


@as_root
def test_a_missing_bwrap_fails_naming_the_package(host, tmp_path):
    empty = host.top / "empty-bin"
    empty.mkdir()
    checkout = host.build("local-lint-s2", "evil", path=str(empty))
    done = subprocess.run(
        [sys.executable, STEP, "--job-dir", "../.namaskah-ci", "run", "--", "/bin/true"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "bwrap not found" in done.stderr and "apt-get install bubblewrap" in done.stderr


# --- without a job user: still sandboxed --------------------------------------------------------------


@as_root
def test_without_a_job_user_commands_are_sandboxed_as_the_masters_user(job_user):
    """A root master with job_user = "" (no capability in the sandbox), and a master running as nobody."""
    for runner_user in ("root", "nobody"):
        top = Path(tempfile.mkdtemp(prefix="namaskah-sandbox-", dir="/tmp"))
        top.chmod(0o711)
        try:
            host = Host(top, user="")
            checkout = host.checkouts["evil"]
            if runner_user == "nobody":
                nobody = pwd.getpwnam("nobody")
                for path in [checkout.parent, *checkout.parent.rglob("*")]:
                    os.chown(path, nobody.pw_uid, nobody.pw_gid)
            wrap: list[str] = []
            if runner_user == "nobody":
                runuser = shutil.which("runuser", path="/usr/sbin:/sbin")
                assert runuser is not None, "runuser (util-linux) runs the master's stand-in as nobody"
                wrap = [runuser, "-u", "nobody", "--"]
            done = subprocess.run(
                [
                    *wrap,
                    PYTHON,
                    STEP,
                    "--job-dir",
                    "../.namaskah-ci",
                    "run",
                    "--",
                    "bash",
                    "-c",
                    "id -u; ls /proc | grep -c '^[0-9]'; grep CapEff /proc/self/status; "
                    f"cat {host.basedir}/state.sqlite",
                ],
                cwd=checkout,
                capture_output=True,
                text=True,
                timeout=60,
                env={"PATH": "/usr/bin:/bin"},
                check=False,
            )
            print(runner_user, done.stdout, done.stderr)
            uid, count, caps = done.stdout.split("\n")[:3]
            assert uid == str(pwd.getpwnam(runner_user).pw_uid) and int(count) <= 4
            assert caps.split()[1] == "0000000000000000" and "No such file" in done.stderr
        finally:
            shutil.rmtree(top, ignore_errors=True)


# --- the Docker engine's socket: only builds of [workers] docker_socket_branches -------------------------

DOCKER_JOB = job_of(
    load_pipeline(
        "version: 1\njobs:\n  image:\n    requirements: []\n    tools: [docker]\n    steps: [x]\n", ".namaskah-ci.yml"
    ),
    "image",
)
SOCKET_PROBE = "for s in /run/docker.sock /var/run/docker.sock; do test -S $s && { echo socket; exit; }; done; echo no"


@as_root
@pytest.mark.skipif(not any(os.path.exists(path) for path in DOCKER_SOCKETS), reason="no Docker engine socket here")
def test_only_builds_of_docker_socket_branches_find_the_engines_socket_in_their_sandbox():
    """Without a job user a command runs as the master's user, whom the socket lets in (root here: root on
    the host). So, as in docker mode, only builds of [workers] docker_socket_branches get it: decided on
    the master (`JobSetup.engine_refusal`) and written into job.json; another branch, a pull request's
    merge ref and a fork's pull request named like an allowed branch find no socket in their sandbox."""
    top = Path(tempfile.mkdtemp(prefix="namaskah-sandbox-", dir="/tmp"))
    top.chmod(0o711)
    layout = JobLayout(
        runner=sys.executable,
        helpers_dir=HELPERS_DIR,
        cache_root=str(top / "cache"),
        sandbox=True,
        default_branch="main",
        hidden=(str(top / "cache"),),
    )
    setup = JobSetup(
        mode="local", layout=layout, repo_url="", base_path="/usr/bin:/bin", docker_socket_branches=("main",)
    )
    seen = {}
    try:
        for name, branch, fork in (
            ("main", "main", False),
            ("feature", "feature/x", False),
            ("pull", "refs/pull/7/merge", False),
            ("fork", "main", True),
        ):
            builder = top / name / "image"
            (builder / ".namaskah-ci").mkdir(parents=True)
            (builder / "build").mkdir()
            document = job_commands.job_document(
                DOCKER_JOB,
                layout,
                interpreter=PYTHON,
                base_path="/usr/bin:/bin",
                worker_env={},
                branch=branch,
                docker_socket=not setup.engine_refusal(branch, fork),
            )
            (builder / ".namaskah-ci" / "job.json").write_text(json.dumps(document))
            done = subprocess.run(
                [sys.executable, STEP, "--job-dir", "../.namaskah-ci", "run", "--", "bash", "-c", SOCKET_PROBE],
                cwd=builder / "build",
                capture_output=True,
                text=True,
                timeout=60,
                env={"PATH": "/usr/bin:/bin"},
                check=False,
            )
            seen[name] = done.stdout.strip() or done.stderr.strip()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert seen == {"main": "socket", "feature": "no", "pull": "no", "fork": "no"}


# --- the command line ----------------------------------------------------------------------------------


def test_a_hidden_tree_under_a_read_only_one_is_covered_before_what_is_allowed_in_it(tmp_path):
    visible = tmp_path / "etc-like"
    (visible / "namaskah" / "secrets").mkdir(parents=True)
    (visible / "cache" / "refs" / "main").mkdir(parents=True)
    argv = sandbox_argv(
        "bwrap",
        workdir="/w",
        writable=[str(visible / "cache" / "refs" / "main")],
        readonly=[str(visible)],
        hidden=[str(visible / "namaskah"), str(visible / "cache")],
    )
    flat = " ".join(argv)
    assert f"--tmpfs {visible}/namaskah" in flat and f"--tmpfs {visible}/cache " in flat
    assert flat.index(f"--tmpfs {visible}/cache ") < flat.index(f"--bind {visible}/cache/refs/main")
    assert flat.index(f"--ro-bind {visible} ") < flat.index(f"--tmpfs {visible}/cache ")
    for flag in ("--unshare-pid", "--die-with-parent", "--new-session", "--tmpfs /tmp"):
        assert flag in flat
    assert "--unshare-net" not in flat  # loopback services and the package registries


def test_caches_are_per_ref_with_the_default_branchs_as_seed():
    layout = JobLayout(
        runner="py", helpers_dir="/h", cache_root="/c", sandbox=True, default_branch="main", hidden=("/m",)
    )
    docs = {
        ref: job_commands.job_document(JOB, layout, interpreter="py", base_path="/bin", worker_env={}, branch=ref)
        for ref in ("main", "feature/x", "feature-x", "refs/pull/7/merge", "")
    }
    caches = {ref: doc["sandbox"]["cache"] for ref, doc in docs.items()}
    assert len(set(caches.values())) == 4 and caches[""] == caches["main"]
    assert all(cache.startswith("/c/refs/") for cache in caches.values())
    assert docs["main"]["sandbox"]["seed"] == "" and docs["feature/x"]["sandbox"]["seed"] == caches["main"]
    assert docs["feature/x"]["env"]["PIP_CACHE_DIR"] == caches["feature/x"] + "/pip-3.11"
    assert docs["main"]["sandbox"]["hide"] == ["/c", "/m"]
    unsandboxed = JobLayout(runner="py", helpers_dir="/h", cache_root="/c")  # docker mode: its own volumes
    plain = job_commands.job_document(JOB, unsandboxed, interpreter="py", base_path="/bin", worker_env={}, branch="x")
    assert "sandbox" not in plain and plain["env"]["PIP_CACHE_DIR"] == "/c/pip-3.11"


def test_a_refs_cache_unused_for_two_weeks_goes_but_never_the_default_branchs(tmp_path):
    from namaskah_ci.helpers.ci_venv import prune_refs

    refs = tmp_path / "refs"
    for name in ("main-1", "old-2", "recent-3", "mine-4"):
        (refs / name / "venvs").mkdir(parents=True)
    month_ago = time.time() - 30 * 86400
    for name in ("main-1", "old-2", "mine-4"):
        os.utime(refs / name, (month_ago, month_ago))
    assert prune_refs(str(refs / "mine-4"), (str(refs / "main-1"),)) == ["old-2"]
    assert sorted(p.name for p in refs.iterdir()) == ["main-1", "mine-4", "recent-3"]
    assert time.time() - (refs / "mine-4").stat().st_mtime < 60  # marked used


@as_root
def test_a_link_a_job_left_in_its_cache_never_mounts_another_branchs_cache(host):
    venv = host.main_venv()
    ready(host, "main", "evil")
    evil_cache = Path(
        json.loads((host.checkouts["evil"].parent / ".namaskah-ci" / "job.json").read_text())["sandbox"]["cache"]
    )
    assert (
        host.step(
            "evil", "venv", "--python", PYTHON, "--cache-root", str(host.cache), "-r", "requirements.txt"
        ).returncode
        == 0
    )
    (evil_cache / "pip-3.11").rmdir()
    (evil_cache / "pip-3.11").symlink_to(venv.parent)  # as a job of the branch could have left it
    done = host.run("evil", "bash", "-c", f"touch {venv.parent}/planted; echo $?")
    print(done.stdout, done.stderr)
    assert not (venv.parent / "planted").exists()
    (host.checkouts["evil"].parent / ".namaskah-ci" / "venv").write_text(str(host.secrets) + "\n")  # a forged record
    forged = host.run("evil", "ls", str(host.secrets))
    assert forged.returncode == 2 and "is not a virtualenv of this ref's cache" in forged.stderr
