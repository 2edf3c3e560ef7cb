"""Dashboard benchmark: time to first byte of the dashboard pages with 1,000 pipelines in the database.

A real master (tests/support/harness.py) on a scratch repository holding the reference service is
started once (so Buildbot creates its schema, builders, master and workers), stopped, and its
SQLite database is filled with synthetic history: `--pipelines` pipeline builds, each with the
seed's eight check builds as triggered children (steps, properties, coverage, a failing step now
and then), a deploy build when the pipeline passed on a deploy branch, and now and then an
analysis build. Then the master starts again and each dashboard page is requested `--requests`
times in a row (after one warm-up request); time to first byte is from sending the request to
the status line and headers (the app answers in one piece, so it is the whole page's time).

    .venv/bin/python bench/dashboard_bench.py                      # 1,000 pipelines, 15 requests a page
    .venv/bin/python bench/dashboard_bench.py --pipelines 200 --requests 5 --keep

Prints min / median / max per page and writes `bench/results/<date>-dashboard.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import http.client
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "master", ROOT / "tests" / "support"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bench import stats  # noqa: E402 (after the sys.path insert)
from harness import CHECK_BUILDERS, VENV_BIN, RunningMaster, make_service_repo, start_master, wait_for  # noqa: E402 (after the sys.path insert)
from www_support import outside_urls_env  # noqa: E402 (after the sys.path insert)

TARGET_MS = 300.0
PAGES = {
    "pipelines (web UI, index.html)": "plugins/wsgi_dashboards/pipelines/index.html",
    "pipelines page 1": "plugins/wsgi_dashboards/pipelines/",
    "pipelines page 20": "plugins/wsgi_dashboards/pipelines/?page=20",
    "deploys": "plugins/wsgi_dashboards/deploys/",
    "trends (last 30)": "plugins/wsgi_dashboards/trends/",
    "trends (last 100)": "plugins/wsgi_dashboards/trends/?last=100",
    "REST: 25 pipeline builds with properties": "api/v2/builders/pipeline/builds?order=-number&limit=25&property=*",
}
TARGETED = ("pipelines (web UI, index.html)", "pipelines page 1", "pipelines page 20")
JOB_STEPS = ("worker preparation", "checkout", "job definition", "virtualenv", "run", "publish reports")
PIPELINE_STEPS = ("worker preparation", "pipeline file", "checks", "analysis", "deploy gate")
DEPLOY_STEPS = ("configuration", "pipeline gate", "deploy hook", "wait until live", "health check", "smoke tests")


def log(message: str) -> None:
    print(f"[dashboard-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclasses.dataclass
class Filler:
    """Inserts synthetic builds straight into Buildbot's tables (the master is stopped meanwhile)."""

    db: sqlite3.Connection
    builders: dict[str, int]
    masterid: int
    numbers: dict[int, int] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"builds": 0, "steps": 0, "properties": 0})

    def build(self, builder, start, end, results, props, parent=None, steps=(), state=""):
        builderid = self.builders[builder]
        cursor = self.db.execute(
            "INSERT INTO buildsets (external_idstring, reason, submitted_at, complete, complete_at, results,"
            " parent_buildid, parent_relationship) VALUES (NULL, ?, ?, 1, ?, ?, ?, ?)",
            ("synthetic", int(start), int(end), results, parent, "Triggered from" if parent else None),
        )
        bsid = cursor.lastrowid
        cursor = self.db.execute(
            "INSERT INTO buildrequests (buildsetid, builderid, priority, complete, results, submitted_at,"
            " complete_at, waited_for) VALUES (?, ?, 0, 1, ?, ?, ?, ?)",
            (bsid, builderid, results, int(start) - 2, int(end), 1 if parent else 0),
        )
        brid = cursor.lastrowid
        number = self.numbers.get(builderid, 0) + 1
        self.numbers[builderid] = number
        cursor = self.db.execute(
            "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, started_at, complete_at,"
            " locks_duration_s, state_string, results) VALUES (?, ?, ?, NULL, ?, ?, ?, 0, ?, ?)",
            (number, builderid, brid, self.masterid, int(start), int(end), state or "build successful", results),
        )
        buildid = cursor.lastrowid
        rows = [(buildid, name, json.dumps(value), "synthetic") for name, value in props.items()]
        self.db.executemany("INSERT INTO build_properties (buildid, name, value, source) VALUES (?, ?, ?, ?)", rows)
        step_rows = []
        at = start
        share = (end - start) / max(1, len(steps))
        for index, (name, step_result, text) in enumerate(steps):
            step_rows.append((index, name, buildid, int(at), int(at + share), text, step_result, "[]", 0))
            at += share
        self.db.executemany(
            "INSERT INTO steps (number, name, buildid, started_at, complete_at, state_string, results, urls_json,"
            " hidden) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            step_rows,
        )
        self.counts["builds"] += 1
        self.counts["steps"] += len(step_rows)
        self.counts["properties"] += len(rows)
        return buildid, number


def fill(db_path: Path, pipelines: int, seed: int = 7) -> dict:
    """Write `pipelines` synthetic pipelines (one every 10 minutes, ending now) and their builds."""
    rng = random.Random(seed)
    db = sqlite3.connect(db_path)
    builders = {name: builderid for builderid, name in db.execute("SELECT id, name FROM builders")}
    (masterid,) = db.execute("SELECT id FROM masters ORDER BY id LIMIT 1").fetchone()
    filler = Filler(db, builders, masterid)
    checks = [name for name in CHECK_BUILDERS if name in builders]
    analysis = "codeql" if "codeql" in builders else None
    start = time.time() - pipelines * 600 - 3600
    live: dict[str, str] = {}  # environment -> the revision a failed deploy rolls back to
    for index in range(pipelines):
        t0 = start + index * 600
        branch = "main" if rng.random() < 0.7 else "develop"
        revision = f"{rng.getrandbits(160):040x}"
        results = {}
        children = []
        for name in checks:
            failed = rng.random() < (0.08 if name in ("lint", "integration") else 0.03)
            results[name] = "failure" if failed else "success"
            duration = rng.uniform(20, 60) if name != "integration" else rng.uniform(40, 110)
            failing = rng.randrange(4, len(JOB_STEPS)) if failed else None
            steps = [(s, 2 if i == failing else (0 if failing is None or i < failing else None), s)
                     for i, s in enumerate(JOB_STEPS)]  # fmt: skip
            props: dict[str, object] = {"status_context": name, "namaskah_revision": revision}
            if name.startswith("test-py") and not failed:
                props["coverage"] = round(rng.uniform(72, 90), 2)
            children.append((name, t0 + 3, t0 + 3 + duration, 2 if failed else 0, props, steps))
        passed = all(r == "success" for r in results.values())
        wall = max(c[2] for c in children) - t0 + 4
        gate = (
            "all 8 required checks passed: deploy requested"
            if passed
            else "not deploying: " + ", ".join(f"{n}: {r}" for n, r in results.items() if r != "success")
        )
        props = {  # the pipeline build's
            "revision": revision,
            "branch": branch,
            "check_results": results,
            "pipeline_jobs": checks,
            "pipeline_file": f".namaskah-ci.yml at {revision[:7]}",
        }
        steps = [(s, 0 if s != "checks" or passed else 2, gate if s == "deploy gate" else s) for s in PIPELINE_STEPS]
        pipeline_id, number = filler.build(
            "pipeline", t0, t0 + wall, 0 if passed else 2, props, steps=steps, state="build successful"
        )
        for name, begin, end, result, child_props, child_steps in children:
            filler.build(name, begin, end, result, child_props, parent=pipeline_id, steps=child_steps)
        if analysis and branch == "main" and index % 7 == 0:
            filler.build(analysis, t0 + wall, t0 + wall + 300, 0, {}, parent=pipeline_id, steps=[("run", 0, "run")])
        environment = {"main": "production", "develop": "staging"}[branch]
        if passed and f"deploy-{environment}" in builders:
            ok = rng.random() > 0.1
            deploy_props = {
                "deploy_environment": environment,
                "deploy_revision": revision,
                "render_deploy_id": f"dep-{rng.getrandbits(48):012x}",
                "gate_pipeline": f"pipeline #{number}",
                "deploy_started": True,
            }
            previous = live.get(environment)
            if ok:
                live[environment] = revision
                state = f"deployed {revision[:7]} to {environment}: live, healthy, smoke tests passed"
            else:
                back = {"rolled_back_to": previous, "rollback_health": "healthy"} if previous else {}
                deploy_props.update(deploy_failure="health check failed", **back)
                state = (
                    f"deployed {revision[:7]}, health check failed, rolled back to {(previous or '?')[:7]} (healthy)"
                )
            filler.build(
                f"deploy-{environment}", t0 + wall + 1, t0 + wall + 90, 0 if ok else 2, deploy_props,
                parent=pipeline_id, steps=[(s, 0, s) for s in DEPLOY_STEPS], state=state,
            )  # fmt: skip
    db.commit()
    db.close()
    return dict(filler.counts, pipelines=pipelines)


def restart(master: RunningMaster) -> RunningMaster:
    with open(master.basedir.parent / "master-stdout.log", "a") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [str(VENV_BIN / "buildbot"), "start", "--nodaemon", str(master.basedir)],
            env=master.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    again = RunningMaster(master.basedir, master.www_port, process, master.env)
    wait_for("the restarted master's REST API", lambda: process.poll() is None and again.api("builders"), 120)
    return again


def time_to_first_byte(port: int, path: str) -> tuple[float, float, int, int]:
    """(seconds to the status line and headers, seconds to the whole body, status, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.connect()
        begin = time.perf_counter()
        connection.request("GET", "/" + path)
        response = connection.getresponse()
        first = time.perf_counter()
        body = response.read()
        return first - begin, time.perf_counter() - begin, response.status, len(body)
    finally:
        connection.close()


def measure(port: int, requests: int) -> dict:
    figures: dict[str, dict] = {}
    for label, path in PAGES.items():
        cold, _, _, _ = time_to_first_byte(port, path)  # the first request: nothing cached yet
        ttfb, total, sizes = [], [], set()
        for _ in range(requests):
            first, whole, status, size = time_to_first_byte(port, path)
            if status != 200:
                raise SystemExit(f"{path}: HTTP {status}")
            ttfb.append(first * 1000)
            total.append(whole * 1000)
            sizes.add(size)
        summary = stats.summary(ttfb)
        figures[label] = {
            "path": path,
            "first_request_ttfb_ms": round(cold * 1000, 1),
            "ttfb_ms": summary,
            "total_ms": stats.summary(total),
            "bytes": max(sizes),
        }
        log(
            f"{label:42s} TTFB min {summary['min']:6.1f}  median {summary['median']:6.1f}  max {summary['max']:6.1f} ms"
            f"  (first request {cold * 1000:.0f} ms)"
        )
    return figures


def settings_env() -> dict:
    """Nothing runs on its own: no first-run pipeline, every check disabled, every outside URL closed."""
    env = {"PIPELINE_CHECKS_DISABLED": ",".join(CHECK_BUILDERS), **outside_urls_env()}
    from namaskah_ci.settings_sections import PipelineSection

    if "first_run" in {f.name for f in dataclasses.fields(PipelineSection)}:
        env["PIPELINE_PIPELINE_FIRST_RUN"] = "false"
    return env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/<date>-dashboard.json")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    master = None
    try:
        log(f"scratch directory {tmp}")
        repo = make_service_repo(tmp / "repo")
        master = start_master(tmp, repo, env=settings_env())
        master.stop()
        began = time.monotonic()
        counts = fill(master.basedir / "state.sqlite", args.pipelines)
        log(f"filled the database in {time.monotonic() - began:.1f}s: {counts}")
        master = restart(master)
        load_before = os.getloadavg()
        figures = measure(master.www_port, args.requests)
        load_after = os.getloadavg()
        worst = max(figures[label]["ttfb_ms"]["median"] for label in TARGETED)
        document = {
            "schema": 1,
            "date": datetime.date.today().isoformat(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in load_after],
            },
            "database": counts,
            "requests_per_page": args.requests,
            "pages": figures,
            "target": {
                "figure": "median TTFB of the pipelines pages (ms)",
                "target": TARGET_MS,
                "value": worst,
                "met": worst < TARGET_MS,
            },
        }
        output = args.output or ROOT / "bench" / "results" / f"{document['date']}-dashboard.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n")
        log(f"median TTFB of the pipelines pages: {worst:.1f} ms (target < {TARGET_MS:.0f} ms); wrote {output}")
        return 0 if worst < TARGET_MS else 1
    finally:
        if master is not None:
            master.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
