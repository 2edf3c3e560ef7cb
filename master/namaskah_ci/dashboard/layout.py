"""HTML of the dashboard pages: the layout, links, times, and the pipeline table (pure functions).

A page is rendered in one of two places:
- *embedded*: the web UI fetches `plugins/wsgi_dashboards/<name>/index.html` and puts the HTML
  into its own page at `/#/<name>` (scripts would not run there; none are used), so links are
  relative to the web UI's root;
- *standalone*: `plugins/wsgi_dashboards/<name>/?page=2` is a whole document, for the pages the
  web UI cannot show (it always fetches the first), so links climb back to the root.
`Links` holds the two prefixes. Every value that comes from a build is HTML-escaped here.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from urllib.parse import urlencode

from namaskah_ci.dashboard.charts import duration_text
from namaskah_ci.dashboard.data import Build
from namaskah_ci.dashboard.pipelines import Column, JobCell, PipelinePage, PipelineRow
from namaskah_ci.text import esc, short

DASHBOARDS = (("pipelines", "Pipelines"), ("deploys", "Deploys"), ("trends", "Trends"), ("reports", "Reports"))

CSS = """
.nci{font-size:13px;color:#222}
.nci h1{font-size:20px;margin:6px 0 10px}.nci h2{font-size:16px;margin:18px 0 6px}
.nci a{color:#1a5a96}.nci code{font-size:12px;background:#f3f3f3;padding:0 3px;border-radius:3px}
.nci-nav{margin:0 0 10px;color:#666}.nci-nav a{margin-right:12px}.nci-nav .nci-here{font-weight:bold}
.nci-scroll{overflow-x:auto;max-width:100%}
.nci table.nci-table{border-collapse:collapse;margin:4px 0 12px;background:#fff}
.nci-table th,.nci-table td{border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}
.nci-table th{background:#f5f5f5;font-weight:600;overflow-wrap:anywhere;min-width:48px}
.nci-table th.nci-analysis{color:#666;font-style:italic}
.nci-cell{min-width:56px;white-space:nowrap}.nci-cell a{text-decoration:none;color:inherit;font-weight:600}
.nci-dur,.nci-small{display:block;color:#555;font-size:11px;font-weight:normal}
.nci-fail{display:block;font-size:11px;color:#7a1010;white-space:normal;max-width:180px}
.nci-r-success{background:#dff0d8}.nci-r-warnings{background:#fcf0d2}.nci-r-failure{background:#f2dede}
.nci-r-exception{background:#ead5f3}.nci-r-cancelled,.nci-r-retry{background:#eee}.nci-r-skipped{background:#dcf0f7}
.nci-r-running{background:#fdf6c3}.nci-r-pending{background:#fafafa;color:#777}.nci-r-not-run{color:#999}
.nci-r-absent{color:#bbb;text-align:center}.nci-r-unknown{background:#eee}
.nci-badge{display:inline-block;padding:0 5px;border-radius:3px;font-size:11px;font-weight:600}
.nci-gate{max-width:260px;white-space:normal}.nci-none{color:#999}.nci-error{color:#7a1010;white-space:normal}
.nci-live{border:1px solid #cfe3cf;background:#f4fbf4;padding:6px 10px;margin:6px 0;border-radius:4px}
.nci-live.nci-unknown{border-color:#e8c3c3;background:#fdf3f3}.nci-live.nci-none{border-color:#ddd;background:#f7f7f7}
.nci-pager{margin:6px 0 12px}.nci-pager a,.nci-pager span{margin-right:12px}
.nci-chart{display:block;margin:8px 0 16px;background:#fff;border:1px solid #e5e5e5;max-width:100%;height:auto}
.nci-multiples{display:flex;flex-wrap:wrap;gap:0 12px;max-width:780px}.nci-multiples .nci-chart{margin:6px 0}
.nci-chart-title{font-size:13px;font-weight:600;fill:#222}.nci-tick{font-size:11px;fill:#555}
.nci-grid{stroke:#e8e8e8;stroke-width:1}.nci-track{fill:#f1f1f1}.nci-empty{font-size:12px;fill:#888}
"""
PAGE_CSS = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:12px 18px;background:#fafafa}"


@dataclasses.dataclass(frozen=True)
class Links:
    root: str  # from this page to the web UI's root
    dashboards: str  # from this page to plugins/wsgi_dashboards/
    embedded: bool

    def build(self, build: Build) -> str:
        return f"{self.root}#/{build.route}"

    def route(self, route: str) -> str:
        return f"{self.root}#/{route}"

    def standalone(self, name: str, **query: int | str | None) -> str:
        params = {k: v for k, v in query.items() if v is not None}
        return f"{self.dashboards}{name}/" + (f"?{urlencode(params)}" if params else "")


EMBEDDED = Links(root="", dashboards="plugins/wsgi_dashboards/", embedded=True)
STANDALONE = Links(root="../../../", dashboards="../", embedded=False)


def state_class(state: str) -> str:
    return "nci-r-" + "".join(ch if ch.isalnum() else "-" for ch in state.lower())


def utc(stamp: float | None) -> str:
    if stamp is None:
        return "—"
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def when(stamp: float | None, now: float) -> str:
    if stamp is None:
        return "—"
    iso = datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat()
    return f'<time datetime="{esc(iso)}" title="{esc(utc(stamp))}">{esc(ago(now - stamp))}</time>'


def badge(state: str, href: str = "", title: str = "") -> str:
    tip = f' title="{esc(title)}"' if title else ""
    label = f'<span class="nci-badge {state_class(state)}"{tip}>{esc(state)}</span>'
    return f'<a href="{esc(href)}">{label}</a>' if href else label


def nav(current: str, links: Links) -> str:
    items = []
    for name, caption in DASHBOARDS:
        css = ' class="nci-here"' if name == current else ""
        items.append(f'<a href="{esc(links.route(name))}"{css}>{esc(caption)}</a>')
    if not links.embedded:
        items.append(f'<a href="{esc(links.root)}">Buildbot</a>')
    elif current != "reports":  # the web UI shows only a page's first view
        items.append(f'<a href="{esc(links.standalone(current))}">full page</a>')
    return f'<div class="nci-nav">{"".join(items)}</div>'


def document(title: str, current: str, body: str, links: Links) -> str:
    """The page: a fragment for the web UI, or a whole document standing alone."""
    content = f'<div class="nci">{nav(current, links)}<h1>{esc(title)}</h1>{body}</div>'
    if links.embedded:
        return f"<style>{CSS}</style>{content}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} — Namaskah CI</title><style>{PAGE_CSS}{CSS}</style></head>"
        f"<body>{content}</body></html>"
    )


def message_page(title: str, current: str, text: str, links: Links) -> str:
    return document(title, current, f"<p>{esc(text)}</p>", links)


# --- the pipeline table ------------------------------------------------------------------------
def job_cell_html(cell: JobCell | None, links: Links, now: float) -> str:
    if cell is None or cell.state == "absent":
        return '<td class="nci-cell nci-r-absent" title="not in this revision\'s pipeline">·</td>'
    if cell.build is None:
        return f'<td class="nci-cell {state_class(cell.state)}">{esc(cell.state)}</td>'
    build = cell.build
    title = f"{build.builder} #{build.number}: {build.state_string}"
    if cell.attempts > 1:
        title += f" (attempt {cell.attempts})"
    parts = [
        f'<a href="{esc(links.build(build))}" title="{esc(title)}">{esc(cell.state)}</a>',
        f'<span class="nci-dur">{esc(duration_text(build.duration(now)))}</span>',
    ]
    if cell.failing_step:
        parts.append(f'<span class="nci-fail">failed step: {esc(cell.failing_step)}</span>')
    return f'<td class="nci-cell {state_class(cell.state)}">{"".join(parts)}</td>'


def deploy_html(row: PipelineRow, links: Links) -> str:
    if not row.deploys:
        return '<td class="nci-none">—</td>'
    parts = []
    for deploy in row.deploys:
        build = deploy.build
        deploy_id = f" <code>{esc(deploy.deploy_id)}</code>" if deploy.deploy_id else ""
        parts.append(
            f"<div>{esc(deploy.environment)} {badge(build.result_name, links.build(build), build.state_string)}"
            f"{deploy_id}</div>"
        )
    return f'<td class="nci-cell">{"".join(parts)}</td>'


def pipeline_cell(row: PipelineRow, links: Links, now: float) -> str:
    build = row.pipeline
    earlier = ""
    if row.earlier:
        runs = ", ".join(f'<a href="{esc(links.build(b))}">#{b.number}</a>' for b in row.earlier)
        earlier = f'<span class="nci-small">also {runs}</span>'
    return (
        f'<td class="nci-cell {state_class(build.result_name)}"><a href="{esc(links.build(build))}" '
        f'title="{esc(build.state_string)}">#{build.number}</a> {esc(build.result_name)}'
        f'<span class="nci-dur">{esc(duration_text(build.duration(now)))} · {when(build.started_at, now)}</span>'
        f"{earlier}</td>"
    )


def pipeline_row_html(row: PipelineRow, columns: Sequence[Column], links: Links, now: float) -> str:
    cells = [
        pipeline_cell(row, links, now),
        f'<td><code title="{esc(row.revision)} ({esc(row.origin or "pipeline file unknown")})">'
        f"{esc(short(row.revision))}</code></td>",
        f"<td>{esc(row.branch or '?')}</td>",
    ]
    if row.error and not any(c.build for c in row.cells.values()):
        cells.append(f'<td class="nci-error" colspan="{max(1, len(columns))}">{esc(row.error)}</td>')
    else:
        cells += [job_cell_html(row.cells.get(column.builder), links, now) for column in columns]
    cells.append(f'<td class="nci-gate">{esc(row.gate or ("…" if not row.pipeline.complete else "—"))}</td>')
    cells.append(deploy_html(row, links))
    return f'<tr data-revision="{esc(row.revision)}" data-branch="{esc(row.branch)}">{"".join(cells)}</tr>'


def column_header(column: Column) -> str:
    if column.kind == "analysis":
        return f'<th class="nci-analysis" title="outside the verdict (not waited for)">{esc(column.builder)}</th>'
    mark = ' <span title="required by the deploy gate">*</span>' if column.required else ""
    return f"<th>{esc(column.builder)}{mark}</th>"


def pager(page: PipelinePage, links: Links) -> str:
    parts = []
    if page.page > 1:
        parts.append(f'<a href="{esc(links.standalone("pipelines", page=page.page - 1))}">← newer</a>')
    count = f" of {page.pages}" if page.pages else ""
    total = f" ({page.total} pipeline builds)" if page.total is not None else ""
    parts.append(f"<span>page {page.page}{count}{total}</span>")
    if page.has_next:
        parts.append(f'<a href="{esc(links.standalone("pipelines", page=page.page + 1))}">older →</a>')
    return f'<div class="nci-pager">{"".join(parts)}</div>'


def pipelines_page(page: PipelinePage, links: Links, now: float) -> str:
    if not page.rows:
        body = (
            "<p>No pipeline has run yet: push a commit to a polled branch.</p>"
            if page.page == 1
            else ("<p>No pipelines on this page.</p>" + pager(page, links))
        )
        return document("Pipelines", "pipelines", body, links)
    header = (
        "<tr><th>Pipeline</th><th>Revision</th><th>Branch</th>"
        + "".join(column_header(c) for c in page.columns)
        + "<th>Deploy gate</th><th>Deploy</th></tr>"
    )
    rows = "".join(pipeline_row_html(row, page.columns, links, now) for row in page.rows)
    body = (
        '<p class="nci-small">One row per branch and revision, newest first; a cell is the job\'s last attempt '
        "(result, duration, and the first failing step). * = required by the deploy gate; "
        "<i>italic</i> = outside the verdict.</p>"
        f'{pager(page, links)}<div class="nci-scroll"><table class="nci-table nci-pipelines">{header}{rows}'
        f"</table></div>{pager(page, links)}"
    )
    return document("Pipelines", "pipelines", body, links)
