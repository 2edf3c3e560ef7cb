"""A job's reports are bounded, and no root action goes through a path the branch controls.

- `collect reports` (root, before the upload) copies at most `[limits]
  report_bytes` (bytes really read: a sparse 512 MiB file is read no further
  than the limit) and `report_files` of a job's reports, each refusal one line
  naming the limit.
- `report directories` runs as a job command (the job user's): a committed
  symlink `reports -> <a root-owned directory>` makes no root-owned directory
  there (today: `mkdir -p` as root created one).
- End to end (`-m e2e`, a real master in local mode): a job writing a sparse
  512 MiB report and 10,050 small files leaves at most the limits in the
  master's reports directory, with or without a job user (without one, only
  the upload bounds it); a committed `reports -> <master basedir>` leaves no
  directory in the basedir.
(The upload's own limits, step by step: test_steps_reports.py.)
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.job_steps import JobSetup, job_steps
from pipeline_support import job_of

LIMITS = load_settings({}).limits  # the shipped defaults: 256 MiB, 10000 files
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the job user needs a master running as root")
FILE = """
version: 1
jobs:
  big:
    steps: [x]
    reports:
      - {path: out/junit.xml, kind: junit}
      - {path: out/big.bin, kind: json}
      - {path: out/many, kind: html}
  linked:
    steps: [x]
    reports: [{path: reports/x/junit.xml, kind: junit}]
"""
PIPELINE = load_pipeline(FILE, ".namaskah-ci.yml")
MANY = LIMITS.report_files + 50


def builder_dir(path: Path, job: str, user: str = "") -> tuple[JobLayout, Path, Path]:
    """A builder directory as the worker leaves it after the checkout: root's job dir and checkout."""
    path.mkdir(mode=0o755)
    job_dir, checkout = path / ".namaskah-ci", path / "build"
    job_dir.mkdir()
    checkout.mkdir()
    layout = JobLayout(runner=sys.executable, helpers_dir=HELPERS_DIR, cache_root=str(path / "cache"), user=user)
    document = job_commands.job_document(
        job_of(PIPELINE, job), layout, interpreter=sys.executable, base_path="/usr/bin:/bin", worker_env={}
    )
    (job_dir / "job.json").write_text(json.dumps(document))
    return layout, job_dir, checkout


def tree_size(root: Path) -> tuple[int, int, int]:
    """(bytes, disk bytes, entries) under `root`."""
    size = disk = entries = 0
    for directory, dirs, files in os.walk(root):
        entries += len(dirs) + len(files)
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            size, disk = size + st.st_size, disk + st.st_blocks * 512
    return size, disk, entries


def test_collect_reports_refuses_a_sparse_512_mib_file_and_too_many_files_naming_the_limits(scratch):
    layout, job_dir, checkout = builder_dir(scratch / "b", "big")
    out = checkout / "out"
    (out / "many").mkdir(parents=True)
    (out / "junit.xml").write_text('<testsuite tests="1" failures="0"/>')
    with open(out / "big.bin", "wb") as handle:
        handle.truncate(512 << 20)  # sparse: no block on disk, 512 MiB to read
    for index in range(MANY):
        (out / "many" / f"f{index}.html").write_bytes(b"x")
    argv = job_commands.collect_reports_argv(layout, job_of(PIPELINE, "big"), LIMITS.report_bytes, LIMITS.report_files)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, timeout=300, check=False)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr  # the step warns (it is shown)
    assert (
        "collect-reports: report out/big.bin skipped: the job's reports exceed 256 MiB ([limits] report_bytes)"
        in done.stdout.splitlines()
    ), done.stdout
    assert "the job's reports exceed 10000 files ([limits] report_files)" in done.stdout, done.stdout
    collected = job_dir / "reports"
    assert (collected / "out" / "junit.xml").is_file() and not (collected / "out" / "big.bin").exists()
    size, _, entries = tree_size(collected)
    assert size <= LIMITS.report_bytes and entries <= LIMITS.report_files + 2  # + out/ and DIR/reports' own
    print(f"collect-reports: {took:.1f}s, kept {size} bytes in {entries} entries")


def test_collect_reports_keeps_what_fits_exactly(scratch):
    layout, job_dir, checkout = builder_dir(scratch / "b", "big")
    (checkout / "out").mkdir()
    (checkout / "out" / "junit.xml").write_bytes(b"j" * 100)
    (checkout / "out" / "big.bin").write_bytes(b"b" * 28)
    argv = job_commands.collect_reports_argv(layout, job_of(PIPELINE, "big"), 128, 3)
    done = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == "", done.stdout
    assert (job_dir / "reports" / "out" / "big.bin").read_bytes() == b"b" * 28


@as_root
def test_report_directories_through_a_committed_symlink_make_nothing_as_root(scratch):
    layout, _, checkout = builder_dir(scratch / "b", "linked", user="nobody")
    outside = scratch / "outside"  # root's, as the master's basedir or / is
    outside.mkdir(mode=0o755)
    (checkout / "reports").symlink_to(outside)
    setup = JobSetup(mode="local", layout=layout, repo_url="/srv/app.git", base_path="/usr/bin:/bin")
    steps = job_steps(job_of(PIPELINE, "linked"), setup, sys.executable)
    names = [step.name for step in steps]
    assert names.index("job user") < names.index("report directories")
    own = next(step for step in steps if step.name == "job user")
    assert subprocess.run(own.command, cwd=checkout, capture_output=True, timeout=60, check=False).returncode == 0
    [mkdirs] = [step for step in steps if step.name == "report directories"]
    done = subprocess.run(
        mkdirs.command, cwd=checkout, capture_output=True, text=True, timeout=60, check=False
    )  # as root
    assert not (outside / "x").exists(), f"{outside / 'x'} made by root through reports -> {outside}"
    assert done.returncode != 0 and "Permission denied" in done.stderr, done.stderr


# --- end to end ---------------------------------------------------------------------------------

E2E_PIPELINE = """version: 1
python: "3.11"
requirements: []
jobs:
  big:
    steps:
      - name: write reports
        run: |
          mkdir -p out/many
          echo '<testsuite tests="1" failures="0"/>' > out/junit.xml
          truncate -s 512M out/big.bin
          cd out/many && seq -f 'f%g.html' 1 {many} | xargs touch
    reports:
      - {{path: out/junit.xml, kind: junit}}
      - {{path: out/big.bin, kind: json}}
      - {{path: out/many, kind: html}}
  linked:
    steps: ["true"]
    reports: [{{path: reports/x/junit.xml, kind: junit}}]
"""


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize("job_user", ["namaskah-job", ""], ids=["job-user", "no-job-user"])
def test_the_masters_reports_hold_at_most_the_limits(tmp_path, job_user):
    from harness import git, start_master, wait_for, wait_poller_ready

    if job_user and os.geteuid() != 0:
        pytest.skip("the job user needs a master running as root")
    basedir = tmp_path / "master"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(E2E_PIPELINE.format(many=MANY))
    os.symlink(basedir, repo / "reports")  # committed: reports/x/junit.xml leads into the master's basedir
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "reports")):
        git(repo, *args)
    master = start_master(tmp_path, repo, env={"PIPELINE_WORKERS_JOB_USER": job_user})
    try:
        wait_poller_ready(master)
        git(repo, "checkout", "-q", "-b", "feature/reports")
        (repo / "NOTES.md").write_text("go\n")
        git(repo, "add", "NOTES.md")
        git(repo, "commit", "-q", "-m", "a build")
        builds = {
            name: wait_for(f"a finished {name} build", functools.partial(master.finished_builds, name), 600)[0]
            for name in ("big", "linked")
        }
        big_text = master.build_text(builds["big"])
        master.wait_idle(300)
    finally:
        master.stop()
    limit_line = "report out/big.bin skipped: the job's reports exceed 256 MiB ([limits] report_bytes)"
    assert limit_line in big_text, big_text[-3000:]
    assert "exceed 10000 files ([limits] report_files)" in big_text, big_text[-3000:]
    size, disk, entries = tree_size(basedir / "reports")
    assert size <= LIMITS.report_bytes and disk <= LIMITS.report_bytes, (size, disk)
    assert entries <= LIMITS.report_files + 8, entries  # + builder/number/out directories
    if job_user:  # (without one, every job command is the master's user's: local mode trusts every branch)
        assert not (basedir / "x").exists(), "a directory made in the master's basedir through reports -> basedir"
    print(f"master's reports ({job_user or 'no job user'}): {size} bytes, {disk} on disk, {entries} entries")
