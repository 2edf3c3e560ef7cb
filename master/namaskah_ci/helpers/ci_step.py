#!/usr/bin/env python3
"""Run one command of a job in the job's own environment, never the worker's.

    ci_step.py --job-dir DIR venv --python python3.11 --cache-root CACHE [-r FILE ...]
    ci_step.py --job-dir DIR run -- bash -e -o pipefail -c 'pytest tests/unit'
    ci_step.py --job-dir DIR own                          (root, job user: before the commands)
    ci_step.py --job-dir DIR collect-reports -- PATH ...  (root, job user: after them)

The master writes DIR (`.namaskah-ci/` beside the checkout) before the job's
commands: `job.json` (the job's environment and base PATH), `secrets/NAME`
files (mode 0600) and `helpers/`. Every command is started with exactly:
PATH (the job's virtualenv or interpreter first, then the base PATH), HOME,
LANG, a per-build TMPDIR, the environment in `job.json` (the pipeline file's
`env` and Namaskah CI's NAMASKAH_CI_* variables), the service URLs named in
`job.json` (DATABASE_URL, REDIS_URL: from DIR/services.env, which ci_services.py
writes 0600 in local mode; else, outside a sandbox, from the worker's environment,
e.g. a docker worker container's), and the job's secrets, upper-cased. Nothing
else of the worker's environment (the master's, for local workers) reaches the
command. `venv` finds or builds the job's
cached virtualenv (ci_venv.py) and records it in DIR/venv for later commands.

When `job.json` has a `sandbox` (local mode), each command runs in a bubblewrap
sandbox (ci_sandbox.py): its own PID namespace, the checkout and DIR/tmp
writable, HOME DIR/tmp/home (this build's), its ref's caches (`sandbox.cache`;
the default branch's `sandbox.seed` read-only) writable only by `venv`, the
virtualenv read-only to every other command, nothing of the master's basedir
or secrets; every process of the command dies when it ends, when the build is
stopped and when the master dies (this helper waits for the sandbox, dies with
its parent, and reports a command killed by a signal as killed by it). When
`job.json` names a `user` (local mode, master running as root), this helper
starts as root, reads the secret files, and runs the command as that user (in
a sandbox: bwrap as root, then setpriv): no supplementary groups, the user's
own group, no way back to root. `venv` runs ci_venv.py as the user, over
cache directories it first hands to it; a helper started with the master's
Python runs with the job's interpreter if the user cannot run the master's.
`own` gives the checkout and TMPDIR to the user; `collect-reports` copies the
declared reports into DIR/reports (root's) without ever following a symlink,
so a report linked to a file the job cannot read is skipped, not published.
Nothing here follows a symlink the job could have planted (ci_job_user.py and
ci_reports.py have that side). A missing user, or an interpreter or checkout the user cannot
reach, fails naming it and the fix. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # mypy reads the siblings as modules of the helpers package; a job imports them from here
    import pwd

    from namaskah_ci.helpers import ci_env, ci_job_user, ci_reports, ci_sandbox, ci_venv
else:
    import ci_env
    import ci_job_user
    import ci_reports
    import ci_sandbox
    import ci_venv

HERE = os.path.dirname(os.path.abspath(__file__))


def read_job(job_dir: str) -> dict[str, Any]:
    with open(os.path.join(job_dir, "job.json"), encoding="utf-8") as handle:
        job: dict[str, Any] = json.load(handle)
    return job


def recorded_venv(job_dir: str) -> str:
    try:
        with open(os.path.join(job_dir, "venv"), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def read_secrets(job_dir: str) -> dict[str, str]:
    found: dict[str, str] = {}
    directory = os.path.join(job_dir, "secrets")
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                found[name] = handle.read().strip()
    return found


def read_services(job_dir: str) -> dict[str, str]:
    """The job's service URLs, passwords and all (DIR/services.env, written by ci_services.py)."""
    try:
        with open(os.path.join(job_dir, "services.env"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def interpreter_dir(job: dict[str, Any], base_path: str) -> str:
    found: str = shutil.which(job.get("interpreter", ""), path=base_path) or job.get("interpreter", "")
    return os.path.dirname(found) if os.path.isabs(found) else ""


def job_environment(
    job_dir: str,
    job: dict[str, Any],
    environ: Mapping[str, str],
    with_venv: bool = True,
    home: str = "",
    strict: bool = False,
) -> dict[str, str]:
    """The environment a job's command starts with (see the module docstring); `home`: the job user's;
    `strict`: a step of the file, whose every `${NAME}` must be defined (ci_env.apply)."""
    job_dir = os.path.abspath(job_dir)
    base_path = job.get("path", os.defpath)
    venv = recorded_venv(job_dir) if with_venv else ""
    first = os.path.join(venv, "bin") if venv else interpreter_dir(job, base_path)
    env = {
        "PATH": os.pathsep.join(part for part in (first, base_path) if part),
        "HOME": home or environ.get("HOME") or job_dir,
        "LANG": "C.UTF-8",
        "TMPDIR": os.path.join(job_dir, "tmp"),
    }
    given, from_file = job.get("env", {}), job.get("file_env", [])
    env.update((name, value) for name, value in given.items() if name not in from_file)
    services = read_services(job_dir)
    for name in job.get("pass", []):
        value = services.get(name) or ("" if "sandbox" in job else environ.get(name))  # never the master's
        if value:
            env[name] = value
    secrets = read_secrets(job_dir)
    env.update(secrets)
    if venv:
        env["VIRTUAL_ENV"] = venv
        env.update(ci_venv.step_env(job, venv))  # `uv run` / `poetry run` use it (an `install:`)
    env["NAMASKAH_CI_HELPERS"] = HERE
    env["NAMASKAH_CI_ENV"] = ci_env.env_file(env["TMPDIR"])
    # the file's env last, `${NAME}` expanded in order; the services' and secrets' variables keep theirs
    kept = {*secrets, *(name for name in job.get("pass", []) if name in env)}
    ci_env.apply(env, ((name, given[name]) for name in from_file if name in given), "env", kept, strict)
    return env


def job_home(job_dir: str, job: dict[str, Any], user: pwd.struct_passwd | None) -> str:
    """HOME for the command ('' outside a sandbox without a user: the worker's); as root, made the user's."""
    if user:
        return ci_job_user.prepare_user(job_dir, user, private="sandbox" in job)
    if "sandbox" not in job:
        return ""
    home = os.path.join(os.path.abspath(job_dir), "tmp", "home")
    os.makedirs(home, mode=0o700, exist_ok=True)
    return home


def checkout_root(job_dir: str) -> str:
    """The checkout the command works in: the directory beside DIR that holds the working directory."""
    cwd = os.getcwd()
    builder = os.path.dirname(os.path.abspath(job_dir))
    relative = os.path.relpath(cwd, builder)
    if relative == "." or relative.startswith(".."):
        return cwd
    return os.path.join(builder, relative.split(os.sep)[0])


def sandbox(
    job_dir: str,
    job: dict[str, Any],
    env: dict[str, str],
    user: pwd.struct_passwd | None,
    writable: list[str],
    readonly: list[str],
    workdir: str = "",
) -> list[str]:
    """The bwrap command line (up to the command) for this job: the checkout and TMPDIR writable, plus
    `writable`; the system, the interpreter, the base PATH, the helpers and `readonly` read-only. Run
    as root, bwrap sets the sandbox up and setpriv then becomes the user."""
    box, base_path = job["sandbox"], job.get("path", os.defpath)
    shown = ci_sandbox.host_readonly(job.get("interpreter", ""), base_path, HERE)
    if user:  # what the user cannot reach on the host stays out of its sandbox too (a pyenv under /root)
        shown = [path for path in shown if not ci_job_user.private_dir(os.path.join(path, "x"), user)]
    as_root = os.geteuid() == 0
    return ci_sandbox.sandbox_argv(
        ci_sandbox.find_bwrap(base_path),
        workdir=workdir or os.getcwd(),
        writable=[checkout_root(job_dir), env["TMPDIR"], *writable],
        readonly=shown + readonly,
        hidden=box.get("hide", []),
        tools=box.get("tools", []),
        as_root=as_root,
        switch_to=(ci_sandbox.find_setpriv(base_path), user.pw_uid, user.pw_gid) if user and as_root else (),
    )


def job_python(job: dict[str, Any]) -> str:
    """The job's interpreter (helpers run on it inside a sandbox: the master's Python is not there)."""
    return shutil.which(job.get("interpreter", ""), path=job.get("path", os.defpath)) or "python3"


def lower_priority(job: dict[str, Any]) -> None:
    niceness = int(job.get("nice", 0))
    if niceness > 0:
        with contextlib.suppress(OSError):
            os.nice(niceness)


def run(
    job_dir: str, argv: list[str], workdir: str = "", step_env: Sequence[tuple[str, str]] = (), step: bool = False
) -> int:
    """`argv` in the job's environment, then what earlier steps wrote to $NAMASKAH_CI_ENV, then the
    step's own `env`; in `workdir` (the step's working directory, relative to the checkout root). `step`:
    one of the file's steps (a `${NAME}` not defined fails it; Namaskah CI's commands leave the variable out)."""
    job = read_job(job_dir)
    user = ci_job_user.job_user(job)
    env = job_environment(job_dir, job, dict(os.environ), home=job_home(job_dir, job, user), strict=step)
    os.makedirs(env["TMPDIR"], exist_ok=True)
    env.update(ci_env.read_env_file(env["NAMASKAH_CI_ENV"], user.pw_uid if user else None))
    ci_env.apply(env, step_env, "step env")
    cwd = ci_env.working_directory(checkout_root(job_dir), workdir) if workdir else ""
    lower_priority(job)
    if "sandbox" in job:
        return run_sandboxed(job_dir, job, env, user, argv, cwd)
    if user:
        ci_job_user.drop_to(user)  # the secrets are in `env` already: their files are root's
        if argv[0] == sys.executable and not os.access(argv[0], os.X_OK):
            # a helper, started with the master's Python, which only root can run: use the job's
            argv = [job.get("interpreter") or "python3", *argv[1:]]
    if cwd:
        os.chdir(cwd)  # as the job's user
    program = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    try:
        os.execve(program, argv, env)
    except OSError as exc:
        if user and isinstance(exc, PermissionError):
            print(ci_job_user.cannot_run(user, program), file=sys.stderr)
        else:
            print(f"ci_step: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127


def run_sandboxed(
    job_dir: str, job: dict[str, Any], env: dict[str, str], user: pwd.struct_passwd | None, argv: list[str], cwd: str
) -> int:
    """The command in its sandbox, as the user; its virtualenv read-only, its branch's pip cache writable."""
    if argv[0] == sys.executable:
        argv = [job_python(job), *argv[1:]]  # a helper: on the job's Python
    box = job["sandbox"]
    venv, pip_cache = recorded_venv(job_dir), env.get("PIP_CACHE_DIR", "")
    writable = [pip_cache] if ci_sandbox.inside(pip_cache, box.get("cache", "")) else []
    caches = [os.path.join(cache, "venvs") for cache in (box.get("cache"), box.get("seed")) if cache]
    # the ref's and the seed's venvs
    readonly = [path for path in caches if ci_sandbox.inside(path, os.path.dirname(path))]
    if venv and not ci_sandbox.inside(venv, *caches):
        print(f"ci_step: {venv} is not a virtualenv of this ref's cache or the default branch's", file=sys.stderr)
        return 2
    outside, prefix = ci_env.loader_apart(env, sandbox(job_dir, job, env, user, writable, readonly, cwd))
    ci_sandbox.check(prefix[0])
    ci_sandbox.die_with_parent()  # a master that dies takes this process, and so the sandbox, with it
    return ci_sandbox.exit_like(subprocess.run(prefix + argv, env=outside, check=False).returncode)


def version_problem(
    python: str, expected: str, env: dict[str, str], run_as: dict[str, Any], prefix: Sequence[str] = ()
) -> str:
    """'' when `python` is the Python version the job asks for (NAMASKAH_CI_PYTHON)."""
    program = shutil.which(python, path=env["PATH"]) or python
    try:
        done = subprocess.run(
            [*prefix, program, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
            **run_as,
        )
    except OSError:
        return ""  # ci_venv.py names a missing interpreter
    found = done.stdout.strip()
    if done.returncode == 0 and expected and found != expected:
        return (
            f"ci_step: {python} is Python {found}, but the job asks for Python {expected} "
            "(check [workers] interpreters; in docker mode a forced build of a job whose Python changed "
            "runs in its last known image: run it through the pipeline)"
        )
    return ""


def venv_caches(
    job: dict[str, Any], env: dict[str, str], user: pwd.struct_passwd | None, cache_root: str
) -> tuple[str, str]:
    """(the cache the virtualenv step writes, the seed it reads), ready for it: in a sandbox the ref's
    own (`sandbox.cache`, under root's `refs/`) and the default branch's (`sandbox.seed`); the job
    user's to write (as root), refs unused for long removed."""
    box = job.get("sandbox")
    seed = ""
    if box is not None:
        cache_root, seed = box.get("cache") or cache_root, box.get("seed", "")
        ci_venv.ref_dir(cache_root)
    if user:
        ci_job_user.share_cache(os.path.abspath(cache_root), env.get("PIP_CACHE_DIR", ""), user)
        ci_job_user.open_way(os.path.abspath(cache_root), user)
    elif box is not None:
        for path in filter(None, (os.path.join(cache_root, "venvs"), env.get("PIP_CACHE_DIR", ""))):
            os.makedirs(path, exist_ok=True)
    if box is not None:
        removed = ci_venv.prune_refs(cache_root, (seed,))
        if removed:
            print(f"ci_step: removed the caches unused for 14 days of: {', '.join(removed)}")
        seed = seed if seed and os.path.isdir(seed) and not os.path.islink(seed) else ""
    return cache_root, seed


def venv(job_dir: str, python: str, cache_root: str, requirements: list[str]) -> int:
    """Find or build the virtualenv; sandboxed, in the branch's own cache (`sandbox.cache`, the only
    command that writes it) or, read-only, the default branch's (`sandbox.seed`)."""
    job = read_job(job_dir)
    user = ci_job_user.job_user(job)
    env = job_environment(job_dir, job, dict(os.environ), with_venv=False, home=job_home(job_dir, job, user))
    os.makedirs(env["TMPDIR"], exist_ok=True)
    lower_priority(job)
    program = shutil.which(python, path=env["PATH"]) or python
    if user and not ci_job_user.runnable_by(user, program):
        raise ci_job_user.Refused(ci_job_user.cannot_run(user, program))
    cache_root, seed = venv_caches(job, env, user, cache_root)
    helper_python = program if user and not ci_job_user.runnable_by(user, sys.executable) else sys.executable
    prefix: list[str] = []
    run_as = ci_job_user.as_user(user)
    if "sandbox" in job:
        helper_python = program  # the master's Python is not in the sandbox
        env, prefix = ci_env.loader_apart(env, sandbox(job_dir, job, env, user, [cache_root], [seed] if seed else []))
        ci_sandbox.check(prefix[0])
        ci_sandbox.die_with_parent()
        run_as = {}  # bwrap starts as this process's user; the sandbox switches to the job user
    problem = version_problem(python, job.get("env", {}).get("NAMASKAH_CI_PYTHON", ""), env, run_as, prefix)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    command = [*prefix, helper_python, os.path.join(HERE, "ci_venv.py"), "--python", python, "--cache-root", cache_root]
    command += ["--seed", seed] if seed else []
    for path in requirements:
        command += ["-r", path]
    if "install" in job:  # in the job's working directory (relative to the checkout root), checked as a step's
        relative = job.get("working_directory") or ""
        root = checkout_root(job_dir)
        project = ci_env.working_directory(root, relative) if relative else root
        command += ["--install", json.dumps(job["install"]), "--project-dir", project]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False, **run_as)
    sys.stdout.write(done.stdout)
    found = [line[len("VENV=") :].strip() for line in done.stdout.splitlines() if line.startswith("VENV=")]
    if done.returncode or not found:
        return done.returncode or 1
    with open(os.path.join(job_dir, "venv"), "w", encoding="utf-8") as handle:
        handle.write(found[-1] + "\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-dir", required=True, help="the job's directory written by the master")
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("venv", help="find or build the job's virtualenv")
    v.add_argument("--python", required=True)
    v.add_argument("--cache-root", required=True)
    v.add_argument("-r", "--requirement", action="append", default=[])
    r = sub.add_parser("run", help="run a command in the job's environment")
    r.add_argument("--workdir", default="", help="the step's working directory, relative to the checkout root")
    r.add_argument("--env", action="append", default=[], help="NAME=VALUE: the step's own env, in order")
    r.add_argument("--step", action="store_true", help="a step of the pipeline file: every ${NAME} must be defined")
    r.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("own", help="as root: give the checkout and TMPDIR to the job user")
    c = sub.add_parser("collect-reports", help="as root: copy the declared reports into DIR/reports")
    c.add_argument("--max-bytes", type=int, default=0, help="the job's reports together ([limits] report_bytes)")
    c.add_argument("--max-files", type=int, default=0, help="files in them together ([limits] report_files)")
    c.add_argument("paths", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.action == "venv":
            return venv(args.job_dir, args.python, args.cache_root, args.requirement)
        if args.action == "own":
            return ci_job_user.own(read_job(args.job_dir), args.job_dir)
        if args.action == "collect-reports":
            paths = args.paths[1:] if args.paths[:1] == ["--"] else args.paths
            job = read_job(args.job_dir)
            return ci_reports.collect_reports(job, args.job_dir, paths, args.max_bytes, args.max_files)
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run: no command given")
        step_env = [(name, value) for name, _, value in (pair.partition("=") for pair in args.env)]
        return run(args.job_dir, command, args.workdir, step_env, args.step)
    except (ci_job_user.Refused, ci_sandbox.Unavailable, ci_env.EnvProblem) as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
