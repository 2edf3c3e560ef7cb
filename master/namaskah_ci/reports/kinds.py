"""What a job's reports say: coverage percent, JUnit counts, SARIF findings (no Buildbot here).

Read on the master after the upload (and by the local runner), from files the
job wrote, so every parser is bounded (size) and tolerant: a report it cannot
read gives None and a reason, never an exception.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from typing import Any, TypedDict

from namaskah_ci.text import short

MAX_BYTES = 50 * 1024 * 1024


class SarifFindings(TypedDict):
    levels: dict[str, int]  # level -> results
    commits: list[str]  # short shas, in the order met


def _xml_root(path: str) -> ElementTree.Element:
    if os.path.getsize(path) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return ElementTree.parse(path).getroot()  # nosec B314 - size-bounded; expat refuses entity expansion bombs


def coverage_percent(path: str) -> tuple[float | None, str]:
    """Line coverage of a Cobertura XML report (coverage.py's `--cov-report=xml`), in percent."""
    try:
        root = _xml_root(path)
        rate = root.get("line-rate")
        if root.tag != "coverage" or rate is None:
            return None, "not a Cobertura coverage report (no <coverage line-rate=...>)"
        return round(float(rate) * 100, 2), ""
    except (OSError, ValueError, ElementTree.ParseError) as exc:
        return None, f"unreadable coverage report: {exc}"


def junit_counts(path: str) -> tuple[dict[str, int] | None, str]:
    """{"tests", "failures", "errors", "skipped"} summed over the report's test suites."""
    try:
        root = _xml_root(path)
    except (OSError, ValueError, ElementTree.ParseError) as exc:
        return None, f"unreadable JUnit report: {exc}"
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if root.tag not in ("testsuite", "testsuites"):
        return None, "not a JUnit report (no <testsuite>)"
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            try:
                counts[key] += int(suite.get(key, "0"))
            except ValueError:
                return None, f"<testsuite {key}=...> is not a number"
    return counts, ""


def sarif_findings(path: str) -> tuple[SarifFindings | None, str]:
    """{"levels": {level: count}, "commits": [short sha, ...]} over every run of a SARIF report.

    Commits come from the results' `partialFingerprints.commitSha` (gitleaks writes them); the
    finding's text itself is never read back (gitleaks --redact has blanked the secret anyway)."""
    try:
        if os.path.getsize(path) > MAX_BYTES:
            return None, "SARIF report too large"
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        levels: dict[str, int] = {}
        commits: list[str] = []
        for run in document.get("runs", []):
            for result in run.get("results", []) or []:
                level = result.get("level", "warning")
                levels[level] = levels.get(level, 0) + 1
                commit = (result.get("partialFingerprints") or {}).get("commitSha", "")
                sha = short(commit) if commit else ""
                if sha and sha not in commits:
                    commits.append(sha)
        return {"levels": levels, "commits": commits}, ""
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        return None, f"unreadable SARIF report: {exc}"


def describe(kind: str, path: str) -> tuple[str, dict[str, Any]]:
    """A short text for the step summary and the values for build properties."""
    if kind == "coverage":
        percent, problem = coverage_percent(path)
        return (f"coverage {percent}%" if percent is not None else problem), {"coverage": percent}
    if kind == "junit":
        counts, problem = junit_counts(path)
        if counts is None:
            return problem, {}
        failed = counts["failures"] + counts["errors"]
        return f"{counts['tests']} tests, {failed} failed, {counts['skipped']} skipped", {"junit": counts}
    if kind == "sarif":
        findings, problem = sarif_findings(path)
        if findings is None:
            return problem, {}
        total = sum(findings["levels"].values())
        text = f"{total} finding{'' if total == 1 else 's'}"
        if findings["commits"]:
            text += f" in {', '.join(findings['commits'][:10])}" + (" …" if len(findings["commits"]) > 10 else "")
        return text, {"sarif": findings["levels"]}
    return "", {}


MASTER_FLOOR = "[checks] coverage_min"
REPORT_FLOOR = "the report's min"


def coverage_floor(own: int | None, master_default: int) -> tuple[int, str]:
    """The floor a coverage report is held to and where it came from: its own `min:` in the
    pipeline file, else the master's `[checks] coverage_min`."""
    if own is not None:
        return own, REPORT_FLOOR
    return master_default, MASTER_FLOOR


def coverage_verdict(percent: float | None, minimum: int, origin: str = MASTER_FLOOR) -> str:
    """'' when coverage meets its floor (`origin` names where the floor came from), else the reason."""
    if minimum <= 0:
        return ""
    if percent is None:
        return f"no coverage figure to check against {origin} ({minimum}%)"
    if percent < minimum:
        return f"coverage {percent}% is under {origin} ({minimum}%)"
    return ""
