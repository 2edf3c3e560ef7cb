"""The secrets-scan job with a real gitleaks (scripts/install_deps.sh installs it: the pinned release,
else Debian's package) on real git repositories, through the local runner: this repository's own
history is clean; a secret added in an old commit and removed later is still found (full history),
in the SARIF report with its commit, and never printed.

Reuse never hides what a scan would find (issue 21, item 5): a `history: full` job's reuse key holds
the revision and every branch and tag it fetches (unit tests below), and on a real master a token
added and removed in one push fails the scan although the push's tree was scanned clean (e2e)."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import string
import subprocess
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from harness import ROOT, commit_file, git
from jobs_support import job_python
from namaskah_ci.jobs.reuse import HistoryError, history_facts
from namaskah_ci.pipeline.inputs import key_document, reuse_key
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.text import short
from pipeline_support import job_of

needs_gitleaks = pytest.mark.skipif(
    shutil.which("gitleaks") is None, reason="gitleaks is not installed (make test installs it)"
)
RUNNER = ROOT / "scripts" / "run_ci_checks.sh"


def run_scan(repo: Path, tmp: Path) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PIPELINE_SECRETS_DIR"] = str(tmp / "no-secrets")
    out = tmp / "results.json"
    done = subprocess.run(
        [str(RUNNER), "secrets-scan", "--repo", str(repo), "--json", str(out), "--state", str(tmp / "state")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    return done, json.loads(out.read_text())[0]


def fake_token() -> str:
    """Shaped like a GitHub personal access token (gitleaks' github-pat rule), made up now."""
    return "ghp_" + "".join(pysecrets.choice(string.ascii_letters + string.digits) for _ in range(36))


@needs_gitleaks
def test_this_repositorys_history_is_clean(tmp_path):
    done, result = run_scan(ROOT, tmp_path)
    assert result["result"] == "success", done.stdout[-3000:] + done.stderr[-2000:]
    sarif = json.loads((tmp_path / "state/reports/secrets-scan/reports/gitleaks.sarif").read_text())
    assert sarif["runs"][0]["results"] == []


@needs_gitleaks
def test_a_secret_removed_later_is_still_found_in_its_commit_and_never_printed(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    pipeline = (ROOT / ".namaskah-ci.yml").read_text()
    commit_file(repo, ".namaskah-ci.yml", pipeline, "ci: the reference pipeline")
    commit_file(repo, "gitleaks.toml", (ROOT / "gitleaks.toml").read_text(), "ci: gitleaks rules")
    token = fake_token()
    planted = commit_file(repo, "deploy/settings.env", f"GITHUB_TOKEN={token}\n", "deploy settings")
    (repo / "deploy" / "settings.env").unlink()
    git(repo, "commit", "-q", "-am", "remove the token again")
    assert token not in (repo / ".namaskah-ci.yml").read_text() and not (repo / "deploy" / "settings.env").exists()
    done, result = run_scan(repo, tmp_path)
    assert result["result"] == "failure" and result["failed"] == ["gitleaks"], done.stdout[-3000:]
    sarif = json.loads((tmp_path / "state/reports/secrets-scan/reports/gitleaks.sarif").read_text())
    findings = sarif["runs"][0]["results"]
    assert [f["partialFingerprints"]["commitSha"] for f in findings] == [planted]
    assert token not in done.stdout + done.stderr and token not in json.dumps(sarif)


JOBS = load_pipeline(
    "version: 1\njobs:\n  scan:\n    history: full\n    steps: [gitleaks detect]\n  lint:\n    steps: [flake8]\n",
    ".namaskah-ci.yml",
)
SCAN, LINT = job_of(JOBS, "scan").to_dict(), job_of(JOBS, "lint").to_dict()
RUNTIME = {"mode": "local", "interpreter": "/usr/bin/python3.11"}


def test_a_full_history_job_has_no_key_without_its_history_and_its_history_is_in_the_key():
    with pytest.raises(ValueError, match="reads the whole history"):
        reuse_key(SCAN, "tree:abc", RUNTIME)
    key = reuse_key(SCAN, "tree:abc", RUNTIME, "revision:a refs:2:x")
    assert key == reuse_key(SCAN, "tree:abc", RUNTIME, "revision:a refs:2:x")  # the same revision may reuse
    assert key != reuse_key(SCAN, "tree:abc", RUNTIME, "revision:b refs:2:x")  # same tree, other commits
    assert key != reuse_key(SCAN, "tree:abc", RUNTIME, "revision:a refs:3:y")  # a branch or tag moved
    document = key_document(SCAN, "tree:abc", RUNTIME, "revision:a refs:2:x")
    assert document["key_version"] == 2 and document["history"] == "revision:a refs:2:x"


def test_a_job_that_reads_only_its_tree_keeps_one_key_across_histories():
    key = reuse_key(LINT, "tree:abc", RUNTIME)
    assert reuse_key(LINT, "tree:abc", RUNTIME, "revision:b refs:2:x") == key
    assert "history" not in key_document(LINT, "tree:abc", RUNTIME)


class HistoryFacts(unittest.TestCase):
    """`reuse.history_facts` on a real repository: the revision and every branch and tag."""

    def setUp(self):
        self.repo = Path(self.mktemp())
        self.repo.mkdir(parents=True)
        git(self.repo, "init", "-q", "-b", "main")
        self.first = commit_file(self.repo, "a.txt", "a\n", "first")

    @defer.inlineCallbacks
    def test_a_new_branch_or_tag_or_revision_changes_the_history_and_nothing_else_does(self):
        facts = yield history_facts(str(self.repo), self.first)
        self.assertEqual(facts, (yield history_facts(str(self.repo), self.first)))
        self.assertTrue(facts.startswith(f"revision:{self.first} refs:1:"), facts)
        git(self.repo, "branch", "feature/leak")
        with_branch = yield history_facts(str(self.repo), self.first)
        git(self.repo, "tag", "v1")
        with_tag = yield history_facts(str(self.repo), self.first)
        second = commit_file(self.repo, "a.txt", "b\n", "second")
        self.assertEqual(len({facts, with_branch, with_tag, (yield history_facts(str(self.repo), second))}), 4)

    @defer.inlineCallbacks
    def test_an_unreadable_repository_is_one_line_without_its_url(self):
        url = f"{self.repo}-missing-{fake_token()}"
        with self.assertRaises(HistoryError) as raised:
            yield history_facts(url, self.first)
        self.assertNotIn(url, str(raised.exception))
        self.assertIn("git ls-remote of the repository failed", str(raised.exception))


SCAN_PIPELINE = """\
version: 1
python: "3.11"
requirements: []
jobs:
  secrets-scan:
    inputs: ["**", "!docs/", "!*.md"]
    tools: [gitleaks]
    history: full
    steps:
      - name: gitleaks
        run: >-
          gitleaks detect --source . --config gitleaks.toml --redact --no-banner
          --report-format sarif --report-path reports/gitleaks.sarif
    reports:
      - {path: reports/gitleaks.sarif, kind: sarif}
"""


@pytest.fixture(scope="module")
def scan_story(tmp_path_factory):
    """A real master polling a scratch repository whose only job is the reference secrets-scan."""
    from deploy_story import Story
    from harness import running, start_master
    from www_support import ADMIN_USER, default_secrets, outside_urls_env, write_secrets

    tmp = tmp_path_factory.mktemp("scan-reuse")
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "feature/base")
    commit_file(repo, ".namaskah-ci.yml", SCAN_PIPELINE, "ci: the secrets scan")
    commit_file(repo, "gitleaks.toml", (ROOT / "gitleaks.toml").read_text(), "ci: gitleaks rules")
    write_secrets(tmp / "secrets", default_secrets())
    env = {
        **outside_urls_env(),
        "PIPELINE_WWW_ADMINS": ADMIN_USER,
        "PIPELINE_CHECKS_REQUIRED": "secrets-scan",
        "PIPELINE_CHECKS_DISABLED": "",
        "PIPELINE_WORKERS_INTERPRETERS": f"3.11={job_python()}",
    }
    with running(lambda: start_master(tmp, repo, env=env)) as master:
        yield Story(master, repo, None)


def scan_build(story, pipeline: dict) -> dict:
    """The pipeline's secrets-scan build (the newest one of its revision started after it)."""
    revision = story.prop(pipeline, "revision")
    builds = [
        b
        for b in story.master.finished_builds("secrets-scan")
        if story.prop(b, "namaskah_revision") == revision and b["started_at"] >= pipeline["started_at"]
    ]
    assert builds, f"no secrets-scan build of {revision[:8]}:\n{story.master.build_text(pipeline)[-3000:]}"
    return builds[-1]


def force_again(story, branch: str, revision: str) -> dict:
    from www_support import force

    before = len(story.master.finished_builds("pipeline"))
    force(story.admin, "pipeline", branch=branch, revision=revision, reason="again")
    return story.master.wait_builds("pipeline", before + 1, 300)[before]


@needs_gitleaks
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_token_added_and_removed_in_one_push_fails_the_scan_though_its_tree_was_scanned(scan_story):
    """Issue 21, item 5: the push's head has the tree of a revision scanned clean, but the commit before
    it held a token; gitleaks must look at that history (no reuse), and the push fails its scan. The
    same revision forced again, with nothing new in the repository, may reuse its scan."""
    story = scan_story
    base = commit_file(story.repo, "src/app.txt", "app 1\n", "the application")
    clean = story.master.pipeline_of(base)
    first = scan_build(story, clean)
    assert first["results"] == 0 and not story.prop(first, "namaskah_reused"), story.master.build_text(first)[-3000:]

    again = force_again(story, "feature/base", base)
    reused = scan_build(story, again)
    assert reused["results"] == 0 and story.prop(reused, "namaskah_reused"), reused["state_string"]
    assert f"reused from secrets-scan/{first['number']} (" in reused["state_string"]

    # one push of two commits: the token, then its removal (the tree is the scanned one again)
    token = fake_token()
    git(story.repo, "checkout", "-q", "--detach")
    planted = commit_file(story.repo, "deploy/settings.env", f"GITHUB_TOKEN={token}\n", "deploy settings")
    git(story.repo, "rm", "-q", "deploy/settings.env")
    git(story.repo, "commit", "-q", "-m", "remove the token again")
    head = git(story.repo, "rev-parse", "HEAD")
    assert git(story.repo, "rev-parse", f"{head}^{{tree}}") == git(story.repo, "rev-parse", f"{base}^{{tree}}")
    git(story.repo, "branch", "feature/leak", head)
    git(story.repo, "checkout", "-q", "feature/base")
    leak = story.master.pipeline_of(head)
    scan = scan_build(story, leak)
    reuse_log = story.master.build_text(leak)
    assert not story.prop(scan, "namaskah_reused"), f"{scan['state_string']}\n{reuse_log[-2000:]}"
    assert scan["results"] == 2 and leak["results"] == 2, scan["state_string"]
    text = story.master.build_text(scan)
    assert "== gitleaks:" in text and f"1 finding in {short(planted)}" in scan["state_string"], scan["state_string"]
    assert token not in text + reuse_log + story.master.twistd_log()

    # the scanned revision again: a run now fetches feature/leak too, so it is no longer the history
    # that was scanned clean, and a run (not the earlier result) says what gitleaks finds
    later = scan_build(story, force_again(story, "feature/base", base))
    assert not story.prop(later, "namaskah_reused") and later["results"] == 2, later["state_string"]
