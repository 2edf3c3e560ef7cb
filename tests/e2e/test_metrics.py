"""End to end: a real master builds one commit, a real Prometheus server scrapes its /metrics.

One master (only `lint` in the pipeline) polls a scratch copy of the reference service; a commit on a
feature branch (no deploy, no analysis jobs) runs one pipeline. Then Debian's `prometheus` binary,
with its own config and storage in a temporary directory on a free port, scrapes the master's
/metrics every second, and PromQL through its HTTP API must give the pipeline's build count and the
result counters the REST API reports. A reconfig (SIGHUP) leaves /metrics served and its counters
as they were. A master with `[www] public_view = false` answers 403 to an anonymous scrape and the
metrics to a logged-in user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from buildbot.process.results import Results

from harness import RunningMaster, commit_file, free_port, make_service_repo, running, start_master, wait_for
from www_support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    ALL_BUT_LINT,
    Client,
    default_secrets,
    outside_urls_env,
    start_private_master,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

BRANCH = "metrics-e2e"  # not main/develop: nothing deploys, no analysis job runs
BUILD_TIMEOUT = 900


class Prometheus:
    """A Prometheus server scraping one target every second, in its own directory and process group."""

    def __init__(self, directory: Path, target_port: int):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("no prometheus binary: run scripts/install_deps.sh --with-browser (Debian: prometheus)")
        directory.mkdir(parents=True)
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: namaskah-ci\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read()

    def query(self, promql: str) -> list[dict]:
        answer = json.loads(self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def wait_ready(self, timeout: float = 60) -> None:
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited {self.process.returncode}:\n{self.log_path.read_text()}")
            return self.get("/-/ready")

        wait_for("prometheus to be ready", ready, timeout, interval=0.5)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def scrape(master: RunningMaster, client: Client | None = None) -> tuple[int, str, dict]:
    status, body, headers = (client or Client(master)).request("GET", "metrics")
    return status, body.decode("utf-8", "replace"), {k.lower(): v for k, v in headers}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A master that has run one pipeline (lint only) to its end; stopped whatever happens."""
    tmp = tmp_path_factory.mktemp("metrics")
    repo = make_service_repo(tmp / "repo")
    env = {"PIPELINE_CHECKS_DISABLED": ALL_BUT_LINT, **outside_urls_env()}
    with running(lambda: start_master(tmp, repo, env=env)) as master:
        revision = commit_file(repo, "docs/metrics-note.md", "scraped\n", "docs: a note", branch=BRANCH)
        master.pipeline_of(revision, BUILD_TIMEOUT)
        master.wait_idle(300, 2)
        yield master, tmp


@pytest.fixture(scope="module")
def prometheus(built):
    master, tmp = built
    server = Prometheus(tmp / "prometheus", master.www_port)
    try:
        server.wait_ready()
        wait_for("prometheus to scrape the master", lambda: server.value('up{job="namaskah-ci"}') == 1, 60, 1)
        yield server
    finally:
        server.stop()


def results_of(master: RunningMaster, builder: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for build in master.finished_builds(builder):
        counts[Results[build["results"]]] = counts.get(Results[build["results"]], 0) + 1
    return counts


def test_the_metrics_page_is_public_by_default(built):
    master, _ = built
    status, text, headers = scrape(master)
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in (
        "namaskah_ci_build_duration_seconds",
        "namaskah_ci_build_queue_seconds",
        "namaskah_ci_builds_total",
        "namaskah_ci_builds_running",
        "namaskah_ci_builds_pending",
        "namaskah_ci_coverage_percent",
        "namaskah_ci_deploys_total",
        "namaskah_ci_rollbacks_total",
    ):
        assert f"# HELP {name} " in text, name
    assert 'namaskah_ci_builds_running{builder="pipeline"} 0.0' in text
    assert 'namaskah_ci_builds_pending{builder="lint"} 0.0' in text


def test_prometheus_reads_the_build_count_and_results(built, prometheus):
    master, _ = built
    pipelines = results_of(master, "pipeline")
    lints = results_of(master, "lint")
    assert sum(pipelines.values()) == 1 and sum(lints.values()) == 1, (pipelines, lints)

    count = prometheus.value('sum(namaskah_ci_build_duration_seconds_count{builder="pipeline"})')
    assert count == 1
    by_result = {
        sample["metric"]["result"]: float(sample["value"][1])
        for sample in prometheus.query('namaskah_ci_builds_total{builder=~"pipeline|lint"} > 0')
        if sample["metric"]["builder"] == "pipeline"
    }
    assert by_result == {name: float(n) for name, n in pipelines.items()}
    lint_result = next(iter(lints))
    assert prometheus.value(f'namaskah_ci_builds_total{{builder="lint",result="{lint_result}"}}') == 1
    # the pipeline took as long as the REST API says (histogram sum, whole seconds of the timestamps)
    build = master.finished_builds("pipeline")[0]
    seconds = prometheus.value('sum(namaskah_ci_build_duration_seconds_sum{builder="pipeline"})')
    assert abs(seconds - (build["complete_at"] - build["started_at"])) <= 1
    assert prometheus.value('sum(namaskah_ci_build_queue_seconds_count{builder="lint"})') == 1
    assert prometheus.value("sum(namaskah_ci_builds_running)") == 0
    assert prometheus.value("sum(namaskah_ci_builds_pending)") == 0
    assert not prometheus.query("namaskah_ci_deploys_total")  # a feature branch never deploys


def test_a_reconfig_keeps_the_metrics_and_registers_nothing_twice(built):
    master, _ = built
    before = [line for line in scrape(master)[1].splitlines() if line.startswith("namaskah_ci_builds_total")]
    log_lines = master.twistd_log().count("configuration update complete")
    os.kill(master.process.pid, signal.SIGHUP)
    wait_for("the reconfig", lambda: master.twistd_log().count("configuration update complete") > log_lines, 60, 0.5)
    time.sleep(0.5)
    status, text, _ = scrape(master)
    assert status == 200
    assert [line for line in text.splitlines() if line.startswith("namaskah_ci_builds_total")] == before
    assert text.count("# HELP namaskah_ci_builds_total ") == 1
    assert "during reconfig" not in master.twistd_log()


def test_without_public_view_the_metrics_need_a_login(tmp_path):
    repo = make_service_repo(tmp_path / "repo")
    master = start_private_master(tmp_path, repo, default_secrets())
    try:
        status, text, _ = scrape(master)
        assert status == 403 and "namaskah_ci_" not in text
        status, text, _ = scrape(master, Client(master, ADMIN_USER, ADMIN_PASSWORD))
        assert status == 200 and "# HELP namaskah_ci_builds_total " in text
    finally:
        master.stop()
