"""What the reports dashboard lists: each build's reports with their kind and what they say.

`ReportReader` tells a report's kind from the file itself (the pipeline file's `kind:` is not kept
beside the upload): Cobertura XML → coverage (percent of lines), JUnit XML → tests passed, failed
and skipped, SARIF → findings by severity, a directory with an `index.html` → an HTML report, any
other `.json`/`.html` → JSON or HTML. Parsing goes through `report_kinds` (size-bounded, never
raising) and is cached per file (path, size and mtime), so a listing re-reads only new uploads.
Symbolic links are never followed. The HTML functions are pure and escape every name.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import os
import threading
from collections.abc import Sequence
from urllib.parse import quote

from namaskah_ci.dashboard.layout import Links, document
from namaskah_ci.reports import kinds as report_kinds
from namaskah_ci.text import esc

MAX_ENTRIES = 400  # files looked at in one build's directory
SARIF_PEEK = 65536
BUILDS_PER_PAGE = 50


@dataclasses.dataclass(frozen=True)
class Report:
    path: str  # relative to the build's directory; directories end with "/"
    kind: str  # coverage, junit, sarif, html, json, xml, file
    summary: str = ""

    @property
    def name(self) -> str:
        return self.path.rstrip("/")


def junit_text(counts: dict[str, int]) -> str:
    failed = counts["failures"] + counts["errors"]
    passed = max(0, counts["tests"] - failed - counts["skipped"])
    return f"{counts['tests']} tests: {passed} passed, {failed} failed, {counts['skipped']} skipped"


def sarif_text(levels: dict[str, int]) -> str:
    total = sum(levels.values())
    if not total:
        return "no findings"
    order = ["error", "warning", "note", "none"]
    ranked = sorted(levels.items(), key=lambda item: (order.index(item[0]) if item[0] in order else 9, item[0]))
    return f"{total} finding{'' if total == 1 else 's'}: " + ", ".join(f"{n} {level}" for level, n in ranked)


def _looks_like_sarif(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(SARIF_PEEK)
    except OSError:
        return False
    return b'"runs"' in head and (b"sarif" in head.lower() or b'"tool"' in head)


def describe_file(path: str) -> tuple[str, str]:
    """(kind, what it says) of one uploaded file."""
    lower = path.lower()
    if lower.endswith(".xml"):
        percent, _ = report_kinds.coverage_percent(path)
        if percent is not None:
            return "coverage", f"{percent}% of lines covered"
        counts, _ = report_kinds.junit_counts(path)
        if counts is not None:
            return "junit", junit_text(counts)
        return "xml", ""
    if lower.endswith(".sarif") or (lower.endswith(".json") and _looks_like_sarif(path)):
        findings, problem = report_kinds.sarif_findings(path)
        if findings is not None:
            return "sarif", sarif_text(findings["levels"])
        return "sarif", problem
    if lower.endswith(".json"):
        return "json", ""
    if lower.endswith((".html", ".htm")):
        return "html", ""
    return "file", ""


class ReportReader:
    """`describe_file` with a bounded cache keyed by (path, size, mtime)."""

    def __init__(self, size: int = 5000):
        self.size = size
        self.cache: collections.OrderedDict[tuple[str, int, int], tuple[str, str]] = collections.OrderedDict()
        self.lock = threading.Lock()  # the web server answers several requests at once

    def describe(self, path: str) -> tuple[str, str]:
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            return "file", ""
        key = (path, info.st_size, info.st_mtime_ns)
        with self.lock:
            known = self.cache.get(key)
        if known is not None:
            return known
        said = describe_file(path)
        with self.lock:
            self.cache[key] = said
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return said

    def build_reports(self, build_dir: str) -> list[Report]:
        """The reports under a build's directory: files, and HTML reports (directories with an index)."""
        found: list[Report] = []
        pending = [""]
        while pending and len(found) < MAX_ENTRIES:
            relative = pending.pop(0)
            try:
                entries = sorted(os.scandir(os.path.join(build_dir, relative)), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                name = f"{relative}{entry.name}"
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if os.path.isfile(os.path.join(entry.path, "index.html")):
                        found.append(Report(name + "/", "html", "HTML report"))
                    else:
                        pending.append(name + "/")
                elif entry.is_file(follow_symlinks=False):
                    found.append(Report(name, *self.describe(entry.path)))
                if len(found) >= MAX_ENTRIES:
                    break
        return found


def subdirectories(path: str) -> list[str]:
    """The directories in `path`, symbolic links left out (a listing never reads outside the root)."""
    try:
        return [e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def build_numbers(builder_dir: str) -> list[str]:
    """The build directories of a builder's reports, newest (highest number) first."""
    return sorted((n for n in subdirectories(builder_dir) if n.isdigit()), key=int, reverse=True)


def headline(reports: Sequence[Report]) -> str:
    """What a build's reports say, on one line (the kinds that have figures)."""
    parts = [f"{r.kind}: {r.summary}" for r in reports if r.kind in ("coverage", "junit", "sarif") and r.summary]
    others = sorted({r.kind for r in reports if r.kind in ("html", "json")})
    return "; ".join(parts + [f"{kind} report" for kind in others])


def mtime_text(path: str) -> str:
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        return ""
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- pages -------------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[str], css: str) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    return f'<div class="nci-scroll"><table class="nci-table {css}"><tr>{head}</tr>{"".join(rows)}</table></div>'


def root_page(root: str, reader: ReportReader, links: Links, prefix: str = "") -> str:
    """Every builder with reports, its newest build and what that build's reports say; `prefix`:
    from the page to the reports root (the web UI shows this page at its own root)."""
    names = sorted(subdirectories(root))
    rows = []
    for name in names:
        numbers = build_numbers(os.path.join(root, name))
        newest = ""
        if numbers:
            said = headline(reader.build_reports(os.path.join(root, name, numbers[0])))
            newest = f'<a href="{prefix}{quote(name)}/{numbers[0]}/">#{numbers[0]}</a> {esc(said)}'
        rows.append(
            f'<tr><td><a href="{prefix}{quote(name)}/">{esc(name)}</a></td>'
            f"<td>{len(numbers)}</td><td>{newest}</td></tr>"
        )
    body = _table(("Builder", "Builds", "Newest build's reports"), rows, "nci-reports") if rows else "<p>(empty)</p>"
    intro = '<p class="nci-small">Reports the jobs uploaded (kept [checks] report_retention_days).</p>'
    return document("Reports", "reports", intro + body, links)


def builder_page(builder: str, builder_dir: str, reader: ReportReader, links: Links, page: int = 1) -> str:
    numbers = build_numbers(builder_dir)
    shown = numbers[(page - 1) * BUILDS_PER_PAGE : page * BUILDS_PER_PAGE]
    rows = []
    for number in shown:
        reports = reader.build_reports(os.path.join(builder_dir, number))
        kinds = ", ".join(sorted({r.kind for r in reports}))
        rows.append(
            f'<tr><td><a href="{number}/">#{number}</a></td>'
            f"<td>{esc(mtime_text(os.path.join(builder_dir, number)))}</td><td>{esc(kinds)}</td>"
            f"<td>{esc(headline(reports))}</td></tr>"
        )
    others = sorted(n for n in _names(builder_dir) if n not in numbers)
    rows += [f'<tr><td><a href="{quote(n)}">{esc(n)}</a></td><td></td><td></td><td></td></tr>' for n in others]
    pager = []
    if page > 1:
        pager.append(f'<a href="?page={page - 1}">← newer</a>')
    if len(numbers) > page * BUILDS_PER_PAGE:
        pager.append(f'<a href="?page={page + 1}">older →</a>')
    nav = f'<div class="nci-pager"><a href="../">all builders</a>{"".join(pager)}</div>'
    body = nav + (
        _table(("Build", "Uploaded", "Kinds", "What they say"), rows, "nci-reports") if rows else "<p>(empty)</p>"
    )
    return document(f"Reports of {builder}", "reports", body, links)


def _names(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def build_page(
    title: str,
    reports: Sequence[Report],
    links: Links,
    build_href: str | None = None,
    up_label: str = "all builds",
    files: str = "",
) -> str:
    """`files`: where the files of this directory are linked ("": beside the page; else the URL of the
    same directory on another origin, `[www] reports_url`)."""
    rows = []
    for report in reports:
        href = files + quote(report.path)
        rows.append(
            f'<tr class="nci-report nci-kind-{esc(report.kind)}"><td><a href="{href}">{esc(report.name)}</a></td>'
            f"<td>{esc(report.kind)}</td><td>{esc(report.summary)}</td></tr>"
        )
    build = f'<a href="{esc(build_href)}">the build</a>' if build_href else ""
    nav = f'<div class="nci-pager"><a href="../">{esc(up_label)}</a>{build}</div>'
    table = _table(("Report", "Kind", "What it says"), rows, "nci-reports") if rows else "<p>(empty)</p>"
    return document(title, "reports", nav + table, links)
