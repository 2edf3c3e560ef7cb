"""Local mode: one LocalWorker per builder slot, in the master's process (docker mode: workers/docker/).

Local mode runs every build on the master's host. Namaskah CI's helpers run
with the master's own Python from the master's package (`helpers/`); each
job's virtualenv is created with the interpreter `[workers] interpreters`
names for its Python version, found on the PATH or under pyenv
(`jobs/hostenv.py`). A missing interpreter is reported by the job's virtualenv
step, naming what to install.

A master running as root runs its jobs' commands as `[workers] job_user`
(`plan.job_user`; ci_step.py drops to it). When such a master starts, its
local workers (`JobUserLocalWorker`) close the master's files to that user and
open the way to the builder directories: the basedir 0711 (enter, not list),
`workers/` and each worker's directory 0711, every other entry of the basedir
(the database, twistd.log and its rotations, the poller's repository, the
reports) without group or other access, `[secrets] dir` 0700, the database
file 0600; a directory above the basedir or the cache that the user cannot
enter gets o+x (never r), unless it is someone's home, which is left alone and
named. A missing user does not stop the master: it says so, and each job then
fails naming the user and the fix. Any other master (not root, or `job_user = ""`)
says once what its jobs' sandbox keeps them from and what it does not
(`trust_notice`).
"""

from __future__ import annotations

import glob
import os
import pwd
import sys
from collections.abc import Generator
from typing import Any

from buildbot.plugins import worker
from twisted.internet import defer, threads
from twisted.python import log

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_job_user import Refused, open_way, private_dir
from namaskah_ci.jobs import engine_access
from namaskah_ci.jobs.hostenv import host_ca_env
from namaskah_ci.names import worker_name
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.settings import Settings
from namaskah_ci.workers.plan import WorkerPlan, builder_slots, pipeline_workers, reuse_worker

SANDBOX_KEEPS = (
    "each job command runs in its own bubblewrap sandbox: no other job's processes, its own /tmp and HOME, "
    "caches per branch, and nothing of the master's basedir (database, logs, other builds) or [secrets] dir "
    "mounted"
)


def trust_notice(euid: int, job_user: str) -> str:
    """What the log says, once, about who runs local jobs ('' when they run as `job_user`): what the sandbox
    keeps a branch from without a job user, and what it does not."""
    if euid != 0:
        who = pwd.getpwuid(euid).pw_name if euid in {p.pw_uid for p in pwd.getpwall()} else f"uid {euid}"
        return (
            f"local mode: the master runs as {who}, not root, so jobs run as {who} too: {SANDBOX_KEEPS}; "
            f"but the sandbox is then the only boundary between a branch's code and {who}'s files, and a job "
            f"with `tools: [docker]` of [workers] docker_socket_branches reaches the Docker engine (root on this "
            f"host) if {who} may use it; run the master as root with [workers] job_user, or use docker mode "
            '([workers] mode = "docker"), for branches you do not trust'
        )
    if not job_user:
        return (
            'local mode: [workers] job_user is "": jobs run as root without capabilities: '
            + SANDBOX_KEEPS
            + "; but they keep uid 0 (a way out of the sandbox is root's, and a job with `tools: [docker]` "
            "of [workers] docker_socket_branches reaches the Docker engine, root on this host); set job_user "
            "(scripts/create_job_user.sh), or use docker mode, for branches you do not trust"
        )
    return ""


def close_basedir(basedir: str, cache_dir: str) -> None:
    """The basedir 0711, `workers/` and each worker's directory 0711, the rest only the master's."""
    os.chmod(basedir, 0o711)
    cache = os.path.realpath(cache_dir)
    for entry in os.scandir(basedir):
        if entry.is_symlink() or os.path.realpath(entry.path) == cache:
            continue
        if entry.name == "workers" and entry.is_dir():
            os.chmod(entry.path, 0o711)
            for each in os.scandir(entry.path):
                if each.is_dir(follow_symlinks=False):
                    os.chmod(each.path, 0o711)
        else:
            os.chmod(entry.path, entry.stat().st_mode & 0o700)


def close_master_files(
    basedir: str, user: pwd.struct_passwd, secrets_dir: str, cache_dir: str, db_path: str
) -> list[str]:
    """As root: close the master's files to the job user, open the way to the builder directories (see the
    module docstring). Returns what to log."""
    lines: list[str] = []
    close_basedir(basedir, cache_dir)
    if os.path.isdir(secrets_dir):
        os.chmod(secrets_dir, 0o700)
    for path in [db_path + suffix for suffix in ("", "-journal", "-wal", "-shm")] if db_path else []:
        if os.path.isfile(path):
            os.chmod(path, 0o600)
    os.makedirs(cache_dir, exist_ok=True)
    for target in (basedir, cache_dir):  # each job's `own` step checks again (ci_step.py)
        try:
            lines += [
                f"job user {user.pw_name}: {opened} made enterable by other users (o+x, not listable) to reach {target}"
                for opened in open_way(target, user)
            ]
        except Refused as exc:
            lines.append(str(exc).replace("ci_step: ", "", 1))
    for what, path in (
        ("Namaskah CI's helpers", os.path.join(HELPERS_DIR, "ci_step.py")),
        ("the master's Python (helpers then run on the job's)", sys.executable),
    ):
        if private_dir(path, user):
            lines.append(f"job user {user.pw_name} cannot reach {what}: {private_dir(path, user)} is private")
    return lines


def protect_logs(basedir: str, db_path: str) -> None:
    """twistd.log, its rotations and the database stay 0600 (run before each build: a cheap backstop)."""
    for path in glob.glob(os.path.join(glob.escape(basedir), "twistd.log*")) + ([db_path] if db_path else []):
        if os.path.isfile(path) and os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)


def private_twistd_log() -> bool:
    """The master's LogFile creates twistd.log (and each rotation) 0600, not by the umask."""
    from twisted.logger import globalLogPublisher
    from twisted.python.logfile import BaseLogFile

    for observer in getattr(globalLogPublisher, "_observers", []):
        legacy = getattr(observer, "legacyObserver", None)
        logfile = getattr(getattr(getattr(legacy, "__self__", None), "write", None), "__self__", None)
        if isinstance(logfile, BaseLogFile):
            logfile.defaultMode = 0o600
            return True
    return False


_STARTED: set[tuple[str, str]] = set()  # (basedir, job_user) this process has prepared and announced


class JobUserLocalWorker(worker.LocalWorker):
    """A LocalWorker whose jobs' commands run as `job_user` (see the module docstring)."""

    def checkConfig(
        self,
        name: str,
        job_user: str = "",
        secrets_dir: str = "",
        cache_dir: str = "",
        db_path: str = "",
        **kwargs: Any,
    ) -> None:
        super().checkConfig(name, **kwargs)

    @defer.inlineCallbacks
    def reconfigService(
        self,
        name: str,
        job_user: str = "",
        secrets_dir: str = "",
        cache_dir: str = "",
        db_path: str = "",
        **kwargs: Any,
    ) -> Generator[Any, Any, None]:
        yield super().reconfigService(name, **kwargs)
        self.job_user: str = job_user
        self.db_path: str = db_path
        key = (self.master.basedir, job_user)
        if key in _STARTED:
            return
        _STARTED.add(key)
        notice = trust_notice(os.geteuid(), job_user)
        if notice:
            log.msg(notice)
            return
        try:
            user = pwd.getpwnam(job_user)
        except KeyError:
            log.msg(
                f"local mode: the job user {job_user!r} does not exist: every job fails until it does: "
                f"create it with scripts/create_job_user.sh {job_user} as root (`make up` does), or set "
                '[workers] job_user = "" (jobs then run as root without capabilities: only their sandbox '
                "keeps them from the host)"
            )
            return
        if not private_twistd_log():
            log.msg("job user: twistd.log's next rotation may be readable until a build starts (LogFile not found)")
        basedir = os.path.abspath(self.master.basedir)
        try:
            lines = yield threads.deferToThread(  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
                close_master_files, basedir, user, secrets_dir, cache_dir, db_path
            )
        except OSError as exc:
            lines = [f"job user {job_user}: could not close the master's files to it: {exc}"]
        log.msg(
            f"local mode: jobs' commands run as {job_user} (uid {user.pw_uid}), not root: it cannot read "
            "[secrets] dir, the master's database or its logs"
        )
        for line in lines:
            log.msg(line)

    def buildStarted(self, wfb: Any) -> None:
        super().buildStarted(wfb)
        if self.job_user and os.geteuid() == 0:
            basedir = os.path.abspath(self.master.basedir)
            threads.deferToThread(protect_logs, basedir, self.db_path).addErrback(log.err)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated


def make_local_plan(settings: Settings) -> WorkerPlan:
    return WorkerPlan(
        runner=sys.executable,
        cache_root=str(settings.cache_dir),
        nice_commands=True,
        base_env=host_ca_env(),
        job_user=settings.workers.job_user if os.geteuid() == 0 else "",
        slots=builder_slots(settings),
        docker_socket_branches=engine_access.allowed_branches(settings),  # as docker mode: the sandbox's socket
    )


def make_local_workers(settings: Settings, jobs: list[str], registry: Registry) -> list[Any]:
    """The pipeline's workers and each job builder's slots (the deploy builders one worker each), as
    `JobUserLocalWorker`s, and `reuse`."""
    plan = make_local_plan(settings)
    guarded = {"secrets_dir": str(settings.secrets_dir), "cache_dir": str(settings.cache_dir)}
    database = settings.database_url
    guarded["db_path"] = database[len("sqlite:///") :] if database.startswith("sqlite:///") else ""
    names = [*pipeline_workers(settings)]
    for builder in jobs:  # job builders have their slots; the deploy builders one worker each (one at a time)
        names += plan.job_workers(builder) if registry.entry(builder) else [worker_name(builder)]
    return [*(JobUserLocalWorker(name, job_user=plan.job_user, **guarded) for name in names), reuse_worker()]
