#!/usr/bin/env python3
"""Check a Locust run against the performance baseline: p95 < 500 ms and error rate < 5 %.

    check_performance_thresholds.py [--p95-ms 500] [--max-error-rate 5] STATS [STATS ...]

STATS is a `*_stats.csv` file written by `locust --csv PREFIX` (or the PREFIX
itself). Each file's "Aggregated" row is checked (without one, the per-endpoint
rows: total requests and failures, and the worst p95). Exit codes: 0 within the
baseline, 1 past a threshold (each breach is printed), 2 when a file is missing,
unreadable or not a Locust stats file (the message names the file). Stdlib only.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

REQUIRED_COLUMNS = ("Name", "Request Count", "Failure Count", "95%")


class InputError(Exception):
    """The stats file cannot be used; the message names it."""


class Stats(NamedTuple):
    source: str
    requests: int
    failures: int
    p95_ms: float

    @property
    def error_rate(self) -> float:
        return 100.0 * self.failures / self.requests


def stats_path(argument: str) -> str:
    """`results` → `results_stats.csv` when only the --csv prefix was given."""
    if not argument.endswith(".csv") and not os.path.exists(argument):
        return f"{argument}_stats.csv"
    return argument


def _number(value: str | None, column: str, path: str) -> float:
    try:
        return float(value or "")
    except ValueError:
        raise InputError(f"{path}: column {column!r} holds {value!r}, not a number") from None


def read_stats(path: str) -> Stats:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: not a Locust stats CSV (missing column(s) {', '.join(missing)})")
            rows = list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    aggregated = [row for row in rows if row.get("Name") == "Aggregated"]
    chosen = aggregated or [row for row in rows if row.get("Name")]
    if not chosen:
        raise InputError(f"{path}: holds no statistics rows")
    requests = sum(int(_number(row["Request Count"], "Request Count", path)) for row in chosen)
    failures = sum(int(_number(row["Failure Count"], "Failure Count", path)) for row in chosen)
    if requests <= 0:
        raise InputError(f"{path}: no requests were recorded")
    p95 = max(_number(row["95%"], "95%", path) for row in chosen if int(float(row["Request Count"] or 0)) > 0)
    return Stats(path, requests, failures, p95)


def breaches(stats: Stats, p95_ms: float, max_error_rate: float) -> list[str]:
    found = []
    if stats.p95_ms >= p95_ms:
        found.append(f"{stats.source}: p95 response time {stats.p95_ms:.0f} ms is not below {p95_ms:.0f} ms")
    if stats.error_rate >= max_error_rate:
        found.append(
            f"{stats.source}: error rate {stats.error_rate:.2f}% ({stats.failures}/{stats.requests}) "
            f"is not below {max_error_rate:g}%"
        )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stats", nargs="+", help="Locust *_stats.csv file(s) or --csv prefix(es)")
    parser.add_argument("--p95-ms", type=float, default=500.0, help="p95 must stay below this (default 500)")
    parser.add_argument("--max-error-rate", type=float, default=5.0, help="percent; must stay below (default 5)")
    args = parser.parse_args(argv)
    failed: list[str] = []
    for argument in args.stats:
        try:
            stats = read_stats(stats_path(argument))
        except InputError as exc:
            print(f"check_performance_thresholds: {exc}", file=sys.stderr)
            return 2
        print(
            f"{stats.source}: {stats.requests} requests, {stats.failures} failures "
            f"({stats.error_rate:.2f}%), p95 {stats.p95_ms:.0f} ms"
        )
        failed += breaches(stats, args.p95_ms, args.max_error_rate)
    for line in failed:
        print(f"FAIL {line}", file=sys.stderr)
    if not failed:
        print(f"OK: p95 below {args.p95_ms:.0f} ms and error rate below {args.max_error_rate:g}%")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
