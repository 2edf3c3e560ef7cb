#!/usr/bin/env python3
"""Run a repository's pipeline jobs locally, one after another, without Buildbot.

    scripts/run_ci_checks.sh [BUILDER ...] [--repo PATH] [--json results.json]

The jobs come from the repository's `.namaskah-ci.yml` (its working tree; no
file: the master's default pipeline), read and validated by the same code as
the master's, and run with the same helpers, the same environment (built from
scratch: never this shell's) and the same settings (`PIPELINE_CONFIG`,
`PIPELINE_*`: `[checks] coverage_min`, `[pipeline] job_secrets`, `[workers]
interpreters`, `job_env`, `job_path`, the secrets directory). Default: every
check of the pipeline on the current branch; name builders (`lint
test-py3.11`, or `codeql`) to pick. Nothing is written into the repository:
each job runs in a checkout of its working tree as it is (`jobs/<builder>/build`:
a clone sharing the repository's objects on its branch, its tracked files as
they are now, its untracked ones that git does not ignore) with its directory
beside it, its PostgreSQL/Redis when it needs them (stopped afterwards whatever
happens), and its declared reports moved to `reports/<builder>/`, all under
`--state` (default: `<state root>/local-checks/<repository>-<hash>`, the state
root as the master's, namaskah_ci/workdirs.py: outside any project, so the
job's tools find only the repository's own configuration). Exits non-zero when
any job fails. It runs the jobs as the invoking user (never as a root master's
job user).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "master"))

from namaskah_ci import workdirs  # noqa: E402 (after the sys.path insert)
from namaskah_ci.helpers import HELPERS_DIR  # noqa: E402 (after the sys.path insert)
from namaskah_ci.jobs import commands as job_commands  # noqa: E402 (after the sys.path insert)
from namaskah_ci.jobs.hostenv import host_ca_env, resolve_interpreter  # noqa: E402 (after the sys.path insert)
from namaskah_ci.pipeline.model import FILE_NAME, PipelineError, PipelinePolicy, load_pipeline_file  # noqa: E402 (after the sys.path insert)
from namaskah_ci.pipeline.specs import JobSpec  # noqa: E402 (after the sys.path insert)
from namaskah_ci.reports import kinds as report_kinds  # noqa: E402 (after the sys.path insert)
from namaskah_ci.settings import Settings, load_settings  # noqa: E402 (after the sys.path insert)
from namaskah_ci.settings_checks import SettingsError  # noqa: E402 (after the sys.path insert)


def run(command: list[str], cwd: Path, env: dict | None = None) -> int:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=cwd, env=env, check=False).returncode


def capture(command: list[str], cwd: Path, env: dict | None = None) -> tuple[int, dict]:
    """Run a helper that prints KEY=VALUE lines (`env`: its environment's additions); its exit code and
    those values."""
    print("+", " ".join(command), flush=True)
    run_env = {**os.environ, **env} if env else None
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, text=True, check=False, env=run_env)
    values = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            values[key] = value.strip()
    return done.returncode, values


class LocalRun:
    def __init__(self, settings: Settings, repo: Path, state: Path, cache_root: Path | None = None):
        self.settings = settings
        self.repo = repo
        self.state = state
        self.cache_root = cache_root or state / "cache"

    def layout(self, job: JobSpec) -> job_commands.JobLayout:
        job_dir = self.state / "jobs" / job.builder / ".namaskah-ci"  # beside its checkout, as the master's
        return job_commands.JobLayout(sys.executable, HELPERS_DIR, str(self.cache_root), str(job_dir))

    def in_checkout(self, job: JobSpec) -> LocalRun:
        """This run in a fresh checkout of the repository's working tree, `jobs/<builder>/build` (`checkout_copy`):
        the job writes nothing into the repository."""
        build = self.state / "jobs" / job.builder / "build"
        shutil.rmtree(build.parent, ignore_errors=True)
        checkout_copy(self.repo, build)
        return LocalRun(self.settings, build, self.state, self.cache_root)

    def prepare(self, job: JobSpec, layout: job_commands.JobLayout, interpreter: str) -> set:
        """The job's directory as the master writes it; the secrets not configured."""
        job_dir = Path(layout.job_dir)
        shutil.rmtree(job_dir, ignore_errors=True)
        (job_dir / "secrets").mkdir(parents=True, mode=0o700)
        worker_env = {**dict(host_ca_env()), **self.settings.scanner_env, **self.settings.workers.job_env}
        document = job_commands.job_document(
            job,
            layout,
            interpreter=interpreter,
            base_path=self.settings.workers.job_path or os.defpath,
            worker_env=worker_env,
            branch=current_branch(self.repo),
            revision="",
            nice=False,
        )
        (job_dir / "job.json").write_text(json.dumps(document, indent=1))
        missing = set()
        for secret, variable in job_commands.secret_files(job).items():
            source = self.settings.secrets_dir / secret
            if not source.is_file() or not source.read_text().strip():
                missing.add(secret)
                continue
            target = job_dir / "secrets" / variable
            target.write_text(source.read_text().strip())
            target.chmod(0o600)
        return missing

    def run_job(self, job: JobSpec) -> dict:
        started = time.monotonic()
        layout = self.layout(job)
        interpreter = resolve_interpreter(self.settings.workers.interpreters, job.python)
        missing_secrets = self.prepare(job, layout, interpreter)
        services_dir = str(Path(layout.job_dir) / "services")
        failed: list[str] = []
        warned: list[str] = []

        def outcome() -> dict:
            result = "failure" if failed else ("warnings" if warned else "success")
            return {
                "job": job.builder,
                "result": result,
                "failed": failed,
                "warnings": warned,
                "seconds": round(time.monotonic() - started, 1),
            }

        created: list[Path] = []  # report directories made here, removed again when empty
        for report in job.reports:  # a report left by an earlier run must not count for this one
            stale = self.repo / report.path
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
            parent = stale.parent
            missing_parents = [p for p in [parent, *parent.parents] if not p.exists() and self.repo in p.parents]
            parent.mkdir(parents=True, exist_ok=True)
            created += missing_parents
        try:
            if job.tools and run(job_commands.tools_argv(layout, job), self.repo):
                failed.append("required tools")
                return outcome()
            if (job.requirements or job.install) and run(job_commands.venv_argv(layout, job, interpreter), self.repo):
                failed.append("virtualenv")
                return outcome()
            env = dict(os.environ)
            if job.services:
                run(job_commands.services_argv(layout, "stop", services_dir), self.repo)
                start = job_commands.services_argv(layout, "start", services_dir, job)
                rc, values = capture(start, self.repo, job_commands.services_password_env(job))  # the file's passwords
                if rc:
                    failed.append("services")
                    return outcome()
                env = {**env, **{k: v for k, v in values.items() if k in job_commands.service_env_names(job)}}
            for step in job.steps:
                if step.only_with_secret in missing_secrets:
                    print(f"- {step.name}: skipped: no {step.only_with_secret} secret", flush=True)
                    continue
                if run(job_commands.step_argv(layout, step), self.repo, env):
                    (warned if step.allow_failure else failed).append(step.name)
                    if not (step.continue_on_failure or step.allow_failure):
                        break
            self.check_reports(job, failed, warned)
        finally:
            if job.services:
                run(job_commands.services_argv(layout, "stop", services_dir), self.repo)
            self.collect_reports(job)
            for directory in created:  # innermost first
                with contextlib.suppress(OSError):
                    directory.rmdir()
            shutil.rmtree(Path(layout.job_dir) / "secrets", ignore_errors=True)
        return outcome()

    def check_reports(self, job: JobSpec, failed: list, warned: list) -> None:
        for report in job.reports:
            minimum, origin = report_kinds.coverage_floor(report.min, self.settings.checks.coverage_min)
            path = self.repo / report.path
            if not path.exists():
                (failed if report.kind == "coverage" and not failed and minimum else warned).append(
                    f"{report.path} not written"
                )
                continue
            text, values = report_kinds.describe(report.kind, str(path))
            if text:
                print(f"  {report.path}: {text}")
            if report.kind == "coverage" and not failed:
                problem = report_kinds.coverage_verdict(values.get("coverage"), minimum, origin)
                if problem:
                    failed.append(problem)

    def collect_reports(self, job: JobSpec) -> None:
        target = self.state / "reports" / job.builder
        shutil.rmtree(target, ignore_errors=True)
        for report in job.reports:
            source = self.repo / report.path
            if source.exists():
                (target / report.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(source), str(target / report.path))


def git_out(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False, timeout=300)


def checkout_copy(repo: Path, build: Path) -> None:
    """The repository's working tree as a job checkout in `build`: a clone of its HEAD sharing its objects
    (nothing is written into the repository) on its branch, then its tracked files as they are now and its
    untracked ones that git does not ignore; a directory that is no git repository is copied whole."""
    listed = git_out(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed.returncode != 0:
        shutil.copytree(repo, build, symlinks=True)
        return
    head = git_out(repo, "rev-parse", "-q", "--verify", "HEAD^{commit}").stdout.decode().strip()
    branch = current_branch(repo)
    build.parent.mkdir(parents=True, exist_ok=True)
    if head:
        on = ["-B", branch, head] if branch and branch != "HEAD" else ["--detach", head]
        for cwd, args in (
            (build.parent, ["clone", "-q", "--shared", "--no-checkout", str(repo), str(build)]),
            (build, ["checkout", "-q", *on]),
        ):
            done = git_out(cwd, *args)
            if done.returncode:
                raise SystemExit(f"cannot make a checkout of {repo} in {build}: {done.stderr.decode().strip()}")
    else:  # no commit yet
        build.mkdir()
        git_out(build, "init", "-q", *(["-b", branch] if branch and branch != "HEAD" else []))
    for name in sorted({os.fsdecode(item) for item in listed.stdout.split(b"\0") if item}):
        source, target = repo / name, build / name
        if source.is_symlink() or source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.is_file():
                target.unlink()
            shutil.copy2(source, target, follow_symlinks=False)
        elif not source.exists() and (target.is_symlink() or target.is_file()):
            target.unlink()  # tracked, deleted in the working tree


def current_branch(repo: Path) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=repo, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builders", nargs="*", help="jobs to run (default: the pipeline's checks on this branch)")
    parser.add_argument("--repo", default=".", help="the repository (default: the current directory)")
    parser.add_argument("--json", help="write per-job results and durations here")
    parser.add_argument(
        "--state",
        help="job checkouts, caches and reports (default: <state root>/local-checks/<repository>-<hash>, outside the "
        "repository: $XDG_STATE_HOME/namaskah-ci, else /var/lib/namaskah-ci as root, ~/.local/state/namaskah-ci)",
    )
    parser.add_argument("--cache-root", help="pip caches and virtualenvs (default: <state>/cache)")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return 2
    path = repo / FILE_NAME
    try:
        if path.is_file():
            pipeline = load_pipeline_file(str(path), FILE_NAME, PipelinePolicy.from_settings(settings))
        else:
            source = settings.pipeline_default_file
            pipeline = load_pipeline_file(str(source), str(source), PipelinePolicy.from_settings(settings))
            print(f"no {FILE_NAME} in {repo}: the default pipeline {source}")
    except PipelineError as exc:
        print(exc.summary, file=sys.stderr)
        return 2
    branch = current_branch(repo)
    if args.builders:
        unknown = [name for name in args.builders if pipeline.job(name) is None]
        if unknown:
            parser.error(f"unknown job(s): {', '.join(unknown)} (known: {', '.join(pipeline.builders)})")
        selected = [job for job in pipeline.jobs if job.builder in args.builders]  # in the file's order
    else:
        selected = [job for job in pipeline.verdict_jobs(branch) if job.builder not in settings.checks.disabled]
    state = (
        Path(args.state).resolve() if args.state else workdirs.state_root() / "local-checks" / workdirs.place_name(repo)
    )
    print(f"job checkouts and reports: {state}")
    runner = LocalRun(settings, repo, state, Path(args.cache_root).resolve() if args.cache_root else None)
    if os.geteuid() == 0 and runner.cache_root.is_dir() and runner.cache_root.stat().st_uid != 0:
        # e.g. a root master's cache: its job user (any branch's code) can change these virtualenvs
        print(
            f"warning: running as root over {runner.cache_root}, which another user can change: its "
            "virtualenvs run as root here",
            file=sys.stderr,
        )
    results = [runner.in_checkout(job).run_job(job) for job in selected]
    print("\nsummary:")
    for item in results:
        print(f"  {item['job']:<18} {item['result']:<8} {item['seconds']:7.1f}s {', '.join(item['failed'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(item["result"] == "failure" for item in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
