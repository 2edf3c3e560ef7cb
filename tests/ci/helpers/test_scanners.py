"""The scanners' helpers and settings: trivy's database (mirror, cache, skipped update) and pip-audit's
index reach the jobs from `[scanners]`; without a database container-scan fails saying exactly that;
SARIF findings are counted with their commits; a tool's version is shown even when it prints none.

trivy's database cannot be reached from this machine, so trivy is a stand-in script on PATH here:
what is tested is the helper's handling of its exit codes and messages, and the environment trivy
gets (it reads TRIVY_DB_REPOSITORY, TRIVY_CACHE_DIR and TRIVY_SKIP_DB_UPDATE itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci.reports.kinds import describe, sarif_findings
from namaskah_ci.settings import load_settings

HELPERS = Path(__file__).resolve().parents[3] / "master" / "namaskah_ci" / "helpers"


def fake(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text("#!/bin/sh\n" + body + "\n")
    (directory / name).chmod(0o755)


def scan(tmp_path: Path, trivy_body: str, **env: str) -> subprocess.CompletedProcess:
    fake(tmp_path / "bin", "trivy", trivy_body)
    environ = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), **env}
    return subprocess.run(
        [
            sys.executable,
            str(HELPERS / "ci_container_scan.py"),
            "scan",
            "--tag",
            "app:ci",
            "--sarif",
            str(tmp_path / "trivy.sarif"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def test_a_skipped_update_without_a_seeded_cache_fails_saying_so(tmp_path):
    done = scan(tmp_path, "exit 0", TRIVY_SKIP_DB_UPDATE="true", TRIVY_CACHE_DIR=str(tmp_path / "cache"))
    assert done.returncode == 2
    assert f"{tmp_path / 'cache'}/db/trivy.db does not exist" in done.stderr and "trivy_db_repository" in done.stderr


def test_a_seeded_cache_is_used_and_the_mirror_reaches_trivy(tmp_path):
    (tmp_path / "cache" / "db").mkdir(parents=True)
    (tmp_path / "cache" / "db" / "trivy.db").write_bytes(b"seeded")
    body = 'echo "$TRIVY_DB_REPOSITORY $TRIVY_CACHE_DIR $TRIVY_SKIP_DB_UPDATE $*" >> "$HOME.args"; exit 0'
    done = scan(
        tmp_path,
        body,
        TRIVY_SKIP_DB_UPDATE="true",
        TRIVY_CACHE_DIR=str(tmp_path / "cache"),
        TRIVY_DB_REPOSITORY="mirror.example/trivy-db:2",
    )
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "home.args").read_text().splitlines()
    assert len(calls) == 2 and all(c.startswith(f"mirror.example/trivy-db:2 {tmp_path / 'cache'} true") for c in calls)
    assert "--format sarif --output" in calls[0] and "--severity HIGH,CRITICAL --exit-code 1" in calls[0]


def test_a_database_that_cannot_be_downloaded_is_exit_2_naming_the_settings(tmp_path):
    body = 'echo "FATAL init error: DB error: failed to download vulnerability DB" >&2; exit 1'
    done = scan(tmp_path, body)
    assert done.returncode == 2
    assert "could not get its vulnerability database from trivy's default (ghcr.io)" in done.stderr


def test_findings_are_exit_1(tmp_path):
    done = scan(tmp_path, 'echo "Total: 3 (HIGH: 2, CRITICAL: 1)"; exit 1')
    assert done.returncode == 1 and "Total: 3" in done.stdout


def test_the_scanner_settings_become_every_jobs_environment(tmp_path):
    settings = load_settings(
        {
            "PIPELINE_MASTER_BASEDIR": str(tmp_path / "m"),
            "PIPELINE_SCANNERS_TRIVY_DB_REPOSITORY": "mirror.example/trivy-db:2",
            "PIPELINE_SCANNERS_TRIVY_SKIP_DB_UPDATE": "true",
            "PIPELINE_SCANNERS_PIP_AUDIT_INDEX_URL": "https://pypi.mirror.example/simple",
        }
    )
    assert settings.scanner_env == {
        "TRIVY_DB_REPOSITORY": "mirror.example/trivy-db:2",
        "TRIVY_SKIP_DB_UPDATE": "true",
        "PIP_AUDIT_INDEX_URL": "https://pypi.mirror.example/simple",
    }
    from namaskah_ci.builders.setup import make_job_setup
    from namaskah_ci.workers import make_plan

    setup = make_job_setup(settings, make_plan(settings))
    assert dict(setup.worker_env)["TRIVY_DB_REPOSITORY"] == "mirror.example/trivy-db:2"
    assert load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path / "m")}).scanner_env == {}


def test_sarif_findings_are_counted_with_their_commits(tmp_path):
    report = tmp_path / "gitleaks.sarif"
    results = [
        {"ruleId": "github-pat", "level": "error", "partialFingerprints": {"commitSha": "a" * 40}},
        {"ruleId": "generic-api-key", "partialFingerprints": {"commitSha": "b" * 40}},
        {"ruleId": "github-pat", "level": "error", "partialFingerprints": {"commitSha": "a" * 40}},
    ]
    report.write_text(json.dumps({"runs": [{"results": results}]}))
    findings, _ = sarif_findings(str(report))
    assert findings == {"levels": {"error": 2, "warning": 1}, "commits": ["a" * 7, "b" * 7]}
    assert describe("sarif", str(report))[0] == f"3 findings in {'a' * 7}, {'b' * 7}"
    report.write_text(json.dumps({"runs": [{"results": []}]}))
    assert describe("sarif", str(report))[0] == "0 findings"


def test_a_tool_without_a_version_of_its_own_is_still_named(tmp_path):
    fake(tmp_path / "bin", "gitleaks", 'echo "version is set by build process"')
    done = subprocess.run(
        [sys.executable, str(HELPERS / "ci_require_tools.py"), "gitleaks"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0
    assert f"gitleaks: {tmp_path / 'bin' / 'gitleaks'} (version is set by build process)" in done.stdout


@pytest.mark.skipif(not os.path.exists("/usr/bin/gitleaks"), reason="Debian's gitleaks is not installed here")
def test_debians_gitleaks_shows_its_package_version():
    done = subprocess.run(
        [sys.executable, str(HELPERS / "ci_require_tools.py"), "gitleaks"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0 and "Debian package gitleaks 8." in done.stdout
