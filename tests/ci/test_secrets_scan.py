"""The secrets-scan job with a real gitleaks (scripts/install_deps.sh installs it: the pinned release,
else Debian's package) on real git repositories, through the local runner: this repository's own
history is clean; a secret added in an old commit and removed later is still found (full history),
in the SARIF report with its commit, and never printed."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from harness import ROOT, commit_file, git

pytestmark = pytest.mark.skipif(shutil.which("gitleaks") is None, reason="gitleaks is not installed (make test installs it)")
RUNNER = ROOT / "scripts" / "run_ci_checks.sh"


def run_scan(repo: Path, tmp: Path) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PIPELINE_SECRETS_DIR"] = str(tmp / "no-secrets")
    out = tmp / "results.json"
    done = subprocess.run([str(RUNNER), "secrets-scan", "--repo", str(repo), "--json", str(out),
                           "--state", str(tmp / "state")], capture_output=True, text=True, timeout=300, env=env)
    return done, json.loads(out.read_text())[0]


def fake_token() -> str:
    """Shaped like a GitHub personal access token (gitleaks' github-pat rule), made up now."""
    return "ghp_" + "".join(pysecrets.choice(string.ascii_letters + string.digits) for _ in range(36))


def test_this_repositorys_history_is_clean(tmp_path):
    done, result = run_scan(ROOT, tmp_path)
    assert result["result"] == "success", done.stdout[-3000:] + done.stderr[-2000:]
    sarif = json.loads((tmp_path / "state/reports/secrets-scan/reports/gitleaks.sarif").read_text())
    assert sarif["runs"][0]["results"] == []


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
