"""A stand-in for GitHub's REST API on 127.0.0.1 that can be made slow.

It answers what a master may call, after `delay_seconds`: `POST
/repos/<owner>/<name>/statuses/<sha>` (recorded in `statuses`: sha, state, context, description),
`GET /repos/<owner>/<name>/commits/<sha>` and `GET /repos/<owner>/<name>/pulls/<n>/files` (the two
calls Buildbot's stock hook makes for a pull request; recorded in `calls`). Every request is in
`calls` with the time it arrived, so a test can tell whether the webhook waited on the API.
"""

from __future__ import annotations

import json
import re
import threading
import time

from render_standin import _Server

STATUS = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$")


class GitHubStandin(_Server):
    def __init__(self, delay_seconds: float = 0.0):
        self.delay_seconds = delay_seconds
        self.statuses: list[dict] = []
        self.calls: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def handle(self, method, raw_path, headers, body):
        with self.lock:
            self.calls.append((time.monotonic(), method, raw_path))
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        match = STATUS.match(raw_path)
        if method == "POST" and match:
            data = json.loads(body or b"{}")
            with self.lock:
                self.statuses.append({"repo": f"{match.group(1)}/{match.group(2)}", "sha": match.group(3), **data})
            return 201, {"state": data.get("state"), "context": data.get("context")}
        if method == "GET" and "/commits/" in raw_path:
            return 200, {"commit": {"message": "a change"}}
        if method == "GET" and raw_path.endswith("/files"):
            return 200, [{"filename": "app.txt"}]
        return 404, {"message": "Not Found"}

    def statuses_for(self, sha: str) -> dict[str, str]:
        """context -> the newest state posted to `sha`."""
        with self.lock:
            return {s["context"]: s["state"] for s in self.statuses if s["sha"] == sha}
