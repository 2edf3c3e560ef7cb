#!/usr/bin/env python3
"""Wait until a URL answers with a 2xx status, or fail after a bounded time.

    ci_wait_http.py http://127.0.0.1:8000/health --timeout 60

For jobs that start a server in the background (the performance baseline):
exits 0 once the URL answers, 1 (naming the last error) when the timeout
passes first. Stdlib only; Python 3.9+.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request


def wait(url: str, timeout: float, interval: float = 0.5) -> str:
    """'' once the URL answers 2xx; the last error otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, timeout)) as response:  # nosec B310 - a job's own URL
                if 200 <= response.status < 300:
                    return ""
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(interval)
    return last


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    problem = wait(args.url, args.timeout)
    if problem:
        print(f"ci_wait_http: {args.url} did not answer within {args.timeout:.0f}s: {problem}", file=sys.stderr)
        return 1
    print(f"ci_wait_http: {args.url} answered after {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
