"""What the GitHub tests and the webhook benchmark share: signed, timed deliveries (`Hook`) and
pull requests made the way GitHub keeps them (`pull_request`: `refs/pull/<n>/head` and, unless it
conflicts, `refs/pull/<n>/merge`, the merge of head into base made with `git merge-tree`)."""

from __future__ import annotations

import json
import secrets as pysecrets
import subprocess
import time
import urllib.parse
from pathlib import Path

from harness import commit_file, git
from www_support import WEBHOOK_SECRET, deliver, signature_headers


class Hook:
    """Signed deliveries to the master, each answer timed."""

    def __init__(self, master):
        self.master = master
        self.times: list[tuple[str, float]] = []
        self.answers: list[str] = []
        self.count = 0

    def send(self, event: str, payload: dict, form: bool = False, delivery: str | None = None):
        self.count += 1
        delivery = delivery or f"delivery-{self.count}-{pysecrets.token_hex(4)}"
        text = json.dumps(payload)
        body = urllib.parse.urlencode({"payload": text}).encode() if form else text.encode()
        headers = signature_headers(WEBHOOK_SECRET, body, event=event)
        headers["X-GitHub-Delivery"] = delivery
        if form:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.monotonic()
        status, answer = deliver(self.master, body, headers)
        self.times.append((event, time.monotonic() - started))
        assert 200 <= status < 300, f"{event}: HTTP {status} {answer}"
        self.answers.append(answer.strip())
        return answer.strip(), delivery, body


def pull_request(
    repo: Path,
    number: int,
    name: str,
    content: str,
    conflict: bool = False,
    keep_branch: bool = False,
    pipeline: str | None = None,
) -> tuple[str, str | None]:
    """Make PR `number` as GitHub would: (head, merge commit or None when it conflicts)."""
    branch = f"pr-{number}"
    git(repo, "checkout", "-q", "-b", branch, "main")
    if conflict:
        (repo / "marker.txt").write_text(f"conflicting marker {number}\n")
    (repo / name).write_text(content)
    if pipeline:
        (repo / ".namaskah-ci.yml").write_text(pipeline)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"pull request {number}")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    if conflict:
        commit_file(repo, "marker.txt", f"main moved on before {number}\n", f"main changes the marker ({number})")
    git(repo, "update-ref", f"refs/pull/{number}/head", head)
    merged = subprocess.run(
        ["git", "-C", str(repo), "merge-tree", "--write-tree", "main", head],
        capture_output=True,
        text=True,
        check=False,
    )
    merge = None
    if merged.returncode == 0:
        tree = merged.stdout.split()[0]
        merge = git(repo, "commit-tree", tree, "-p", "main", "-p", head, "-m", f"Merge {head} into main")
        git(repo, "update-ref", f"refs/pull/{number}/merge", merge)
    if not keep_branch:
        git(repo, "branch", "-q", "-D", branch)
    return head, merge
