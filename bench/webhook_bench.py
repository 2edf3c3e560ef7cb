#!/usr/bin/env python3
"""Benchmark of the GitHub hook's answer times while GitHub's API is slow.

    .venv/bin/python bench/webhook_bench.py [--rounds 5] [--api-delay 12]

A real master (local mode, free ports) polls a scratch repository with a one-job pipeline; its
`[github] api_url` is a stand-in that takes `--api-delay` seconds per call (commit statuses go
there). Each round delivers, signed and timed on the client: ping, an unused event (`create`), a
push, a form-encoded push, a pull request opened, synchronize, closed, and a redelivery. Target:
every answer within 1 s whatever the API does (GitHub gives up after 10 s). Results:
bench/results/<date>-webhook.json (per event and overall: min / median / max).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "master", ROOT / "tests" / "support"):
    sys.path.insert(0, str(extra))

from bench import stats  # noqa: E402 (after the sys.path insert)
from github_standin import GitHubStandin  # noqa: E402 (after the sys.path insert)
from github_support import Hook, pull_request  # noqa: E402 (after the sys.path insert)
from harness import commit_file, git, start_master, wait_poller_ready  # noqa: E402 (after the sys.path insert)
from www_support import (  # noqa: E402 (after the sys.path insert)
    WEBHOOK_SECRET,
    default_secrets,
    deliver,
    outside_urls_env,
    pull_request_payload,
    push_payload,
    signature_headers,
    write_secrets,
)

PIPELINE = 'version: 1\npython: "3.11"\nrequirements: []\njobs:\n  check:\n    steps: ["true"]\n'
TARGET_SECONDS = 1.0


def run(rounds: int, api_delay: float) -> dict:
    github = GitHubStandin(delay_seconds=api_delay).start()
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as scratch:
        tmp = Path(scratch)
        write_secrets(tmp / "secrets", {**default_secrets(), "github_token": "ghp_bench"})
        repo = tmp / "repo"
        repo.mkdir()
        (repo / ".namaskah-ci.yml").write_text(PIPELINE)
        (repo / "marker.txt").write_text("0\n")
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        env = {
            **outside_urls_env(),
            "PIPELINE_GITHUB_API_URL": github.url,
            "PIPELINE_GITHUB_REPOSITORY": "acme/namaskah",
            "PIPELINE_CHECKS_REQUIRED": "check",
            "PIPELINE_CHECKS_DISABLED": "",
            "PIPELINE_REPO_POLL_INTERVAL": "3600",
            "PIPELINE_GITHUB_MERGE_REF_WAIT_SECONDS": "0",
        }
        master = start_master(tmp, repo, env=env, seed=False)
        try:
            wait_poller_ready(master)
            hook = Hook(master)
            for index in range(rounds):
                hook.send("ping", {"zen": "bench", "hook_id": 1})
                hook.send("create", {"ref": f"t{index}", "ref_type": "tag"})
                sha = commit_file(repo, "marker.txt", f"{index}a\n", f"round {index}")
                _, delivery, body = hook.send("push", push_payload(sha))
                sha = commit_file(repo, "marker.txt", f"{index}b\n", f"round {index}, form")
                hook.send("push", push_payload(sha), form=True)
                number = 100 + index
                head, _ = pull_request(repo, number, "pr.txt", f"{index}\n")
                hook.send("pull_request", pull_request_payload(number, head, action="opened"))
                git(repo, "update-ref", "-d", f"refs/pull/{number}/merge")
                newer, _ = pull_request(repo, number, "pr.txt", f"{index} again\n")
                hook.send("pull_request", pull_request_payload(number, newer, action="synchronize"))
                hook.send("pull_request", pull_request_payload(number, newer, action="closed"))
                headers = {**signature_headers(WEBHOOK_SECRET, body), "X-GitHub-Delivery": delivery}
                started = time.monotonic()
                status, text = deliver(master, body, headers)
                hook.times.append(("redelivery", time.monotonic() - started))
                assert 200 <= status < 300 and "already processed" in text, (status, text)
            ignored = [text for text in hook.answers if "ignored" in text]
            assert len(ignored) == rounds, ignored  # only the `create` events: every other one was used
            master.wait_idle(600, 2)
            api_calls = len(github.calls)
        finally:
            master.stop()
            github.stop()
    kinds = sorted({kind for kind, _ in hook.times})
    overall = stats.summary(seconds for _, seconds in hook.times)
    return {
        "date": datetime.date.today().isoformat(),
        "api_delay_seconds": api_delay,
        "rounds": rounds,
        "target_seconds": TARGET_SECONDS,
        "met": overall["max"] is not None and overall["max"] <= TARGET_SECONDS,
        "overall": overall,
        "by_event": {kind: stats.summary(s for k, s in hook.times if k == kind) for kind in kinds},
        "github_api_calls": api_calls,  # commit statuses begun before the master stopped (none by the hook)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--api-delay", type=float, default=12.0)
    args = parser.parse_args(argv)
    doc = run(args.rounds, args.api_delay)
    out = ROOT / "bench" / "results" / f"{doc['date']}-webhook.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    overall = doc["overall"]
    print(
        f"{overall['n']} answers with a {args.api_delay:.0f} s GitHub API: median {overall['median']:.3f} s, "
        f"slowest {overall['max']:.3f} s (target <= {TARGET_SECONDS} s: {'met' if doc['met'] else 'MISSED'}); {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
