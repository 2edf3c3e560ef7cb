"""End to end: a real master polls a scratch repository holding the reference service.

One commit on `main` gives one `pipeline` build and one build of every check
for that revision; the checks this machine can run succeed and the ones whose
tools are missing fail naming what to install. A second commit that breaks a
unit test fails both test builders and the pipeline.
"""

from __future__ import annotations

import shutil

import pytest

from harness import CHECK_BUILDERS, ROOT, commit_file, git, make_service_repo, running, start_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

CHECKS = CHECK_BUILDERS
BUILD_TIMEOUT = 900


def tool_available(tool: str) -> bool:
    return shutil.which(tool) is not None


def runnable_here() -> set[str]:
    """The checks that can succeed on this machine (their external tools and databases are reachable).

    container-scan needs trivy and secrets-scan gitleaks (not installable here); security's
    pip-audit needs PyPI's per-version JSON API, which this machine's package mirror does not serve.
    """
    runnable = set(CHECKS) - {"container-scan", "secrets-scan", "security"}
    if tool_available("gitleaks"):
        runnable.add("secrets-scan")
    return runnable


def step_text(master, build: dict) -> str:
    return master.build_text(build)


@pytest.fixture
def pipeline_master(tmp_path):
    repo = make_service_repo(tmp_path / "repo")
    with running(lambda: start_master(tmp_path, repo), idle_timeout=600) as master:
        yield master, repo


def test_commit_on_main_fans_out_to_every_check(pipeline_master):
    master, repo = pipeline_master
    good = commit_file(repo, "app/NOTES.md", "pipeline e2e\n", "docs: a note")
    pipeline = master.pipeline_of(good, BUILD_TIMEOUT, only=True)  # one pipeline build per new head
    results = {}
    for check in CHECKS:
        builds = master.builds_of(check, good)
        assert len(builds) == 1, f"{check}: expected one build for {good[:8]}, got {len(builds)}"
        results[check] = builds[0]["results"]
    failures = {name: step_text(master, master.builds_of(name, good)[0]) for name, r in results.items() if r != 0}
    for check in runnable_here():
        assert results[check] == 0, f"{check} failed:\n{failures.get(check, '')[-4000:]}"
    for check in {"container-scan", "secrets-scan"} - runnable_here():
        assert results[check] == 2, f"{check} should fail here (missing tool), got result {results[check]}"
        assert "missing tool" in failures[check], failures[check][-2000:]
    security = {s["name"]: s for s in master.steps(master.builds_of("security", good)[0])}
    assert security["bandit"]["results"] == 0 and security["bandit sarif"]["results"] == 0
    assert security["safety"]["state_string"].startswith("skipped: no safety_api_key secret")
    if results["security"] != 0:  # only pip-audit may fail, and only because it could not audit
        assert security["pip-audit"]["results"] == 2
        assert "could not be audited" in failures["security"] or "vulnerab" in failures["security"]
    summary = pipeline["state_string"]
    expected = 0 if runnable_here() == set(CHECKS) else 2
    assert pipeline["results"] == expected, summary
    fanout = next(s for s in master.steps(pipeline) if s["name"] == "checks")
    for check in CHECKS:
        assert check in fanout["state_string"], fanout["state_string"]
    # reports are uploaded and served
    test_build = master.builds_of("test-py3.11", good)[0]
    urls = [u for s in master.steps(test_build) for u in s["urls"]]
    names = {u["name"] for u in urls}
    assert {"reports", "coverage XML", "coverage HTML", "JUnit XML"} <= names, names
    coverage_url = next(u["url"] for u in urls if u["name"] == "coverage XML")
    relative = coverage_url.split("/plugins/", 1)[1]
    import urllib.request

    with urllib.request.urlopen(f"{master.url}plugins/{relative}", timeout=10) as response:
        assert b"<coverage" in response.read()
    # a push to main also runs static analysis (semgrep with the repository's rules: CodeQL is not installed)
    codeql = master.wait_builds("codeql", 1, BUILD_TIMEOUT)
    assert codeql[0]["results"] == 0, step_text(master, codeql[0])[-3000:]
    # and the seed's performance baseline: the service under Locust on its own PostgreSQL and Redis
    performance = master.wait_builds("performance", 1, BUILD_TIMEOUT)
    assert performance[0]["results"] == 0, step_text(master, performance[0])[-3000:]
    linked = {u["name"] for s in master.steps(performance[0]) for u in s["urls"]}
    assert {"Locust stats CSV", "Locust report"} <= linked, linked


def test_breaking_a_unit_test_fails_the_matrix_and_the_pipeline(pipeline_master):
    master, repo = pipeline_master
    broken = commit_file(
        repo,
        "tests/app/unit/test_zz_broken.py",
        "def test_deliberately_broken():\n    assert 1 + 1 == 3\n",
        "test: break the suite",
    )
    pipeline = master.pipeline_of(broken, BUILD_TIMEOUT)
    assert pipeline["results"] == 2
    for check in ("test-py3.9", "test-py3.11"):
        build = master.builds_of(check, broken)[0]
        assert build["results"] == 2, f"{check} should fail"
        assert "test_deliberately_broken" in step_text(master, build)
    assert "test-py3.9: failure" in pipeline["state_string"] or "failed" in pipeline["state_string"]
    assert git(repo, "rev-parse", "HEAD") == broken
    assert ROOT.exists()
