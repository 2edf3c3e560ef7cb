"""HTML of the deploy history and the trends pages (pure functions over `dashboard_deploys` and
`dashboard_trends` data; layout, links and escaping from `dashboard_html`, charts from `charts`)."""

from __future__ import annotations

from namaskah_ci.dashboard.charts import (
    PALETTE,
    RESULT_COLOURS,
    Bar,
    Series,
    bar_chart,
    duration_text,
    hbar_chart,
    line_chart,
)
from namaskah_ci.dashboard.deploys import DeployEntry, DeployHistory, EnvironmentHistory
from namaskah_ci.dashboard.layout import Links, badge, document, utc, when
from namaskah_ci.dashboard.trends import Trends
from namaskah_ci.text import esc, short

TREND_CHOICES = (10, 30, 100)


# --- deploy history ----------------------------------------------------------------------------
def _build_link(entry: DeployEntry, links: Links) -> str:
    build = entry.build
    return f'<a href="{esc(links.build(build))}">{esc(build.builder)} #{build.number}</a>'


def _who(entry: DeployEntry, links: Links, pipeline_builderid: int | None) -> str:
    text = esc(entry.who)
    if entry.gate_pipeline is not None and pipeline_builderid is not None:
        route = f"builders/{pipeline_builderid}/builds/{entry.gate_pipeline}"
        text = f'deploy gate of <a href="{esc(links.route(route))}">pipeline #{entry.gate_pipeline}</a>'
    if entry.reason and not entry.gate_pipeline:
        text += f'<span class="nci-small">{esc(entry.reason)}</span>'
    return text


def live_box(history: EnvironmentHistory, links: Links, now: float, pipeline_builderid: int | None) -> str:
    live = history.live
    if live.revision is None:
        css = "nci-live nci-unknown" if live.entry is not None else "nci-live nci-none"
        note = esc(live.note or "unknown")
        return f'<div class="{css}" data-environment="{esc(history.environment)}">Live now: {note}</div>'
    deploy_id = f", Render deploy <code>{esc(live.deploy_id)}</code>" if live.deploy_id else ""
    source = ""
    if live.entry is not None:
        who = esc(live.by) if live.by != live.entry.who else _who(live.entry, links, pipeline_builderid)
        source = f" — by {who} ({_build_link(live.entry, links)})"
    target = ""
    if history.rollback_target is not None:
        rb = history.rollback_target
        target = (
            f'<span class="nci-small">A forced rollback would go back to <code>{esc(short(rb.revision))}</code> '
            f"({_build_link(rb, links)}).</span>"
        )
    return (
        f'<div class="nci-live" data-environment="{esc(history.environment)}">Live now: '
        f'<code class="nci-live-revision" title="{esc(live.revision)}">{esc(short(live.revision))}</code>{deploy_id}, '
        f"since {when(live.since, now)} ({esc(utc(live.since))}){source}{target}</div>"
    )


def history_row(entry: DeployEntry, links: Links, now: float, pipeline_builderid: int | None) -> str:
    build = entry.build
    said = build.state_string
    outcome = f'<span class="nci-small">{esc(said)}</span>' if said and entry.verification not in said else ""
    return (
        f'<tr data-buildid="{build.buildid}">'
        f"<td>{_build_link(entry, links)}</td><td>{esc(entry.kind)}</td>"
        f'<td><code title="{esc(entry.revision)}">{esc(short(entry.revision))}</code></td>'
        f"<td>{badge(build.result_name, links.build(build))}</td>"
        f'<td class="nci-gate" title="{esc(build.state_string)}">{esc(entry.verification)}{outcome}</td>'
        f"<td>{f'<code>{esc(entry.deploy_id)}</code>' if entry.deploy_id else '—'}</td>"
        f'<td class="nci-gate">{_who(entry, links, pipeline_builderid)}</td>'
        f"<td>{when(build.started_at, now)}</td><td>{esc(duration_text(build.duration(now)))}</td></tr>"
    )


def deploys_page(data: DeployHistory, links: Links, now: float) -> str:
    histories, pipeline_builderid = data.environments, data.pipeline_builderid
    if not histories:
        return document("Deploys", "deploys", "<p>No deploy environment is configured.</p>", links)
    sections = []
    for history in histories:
        branch = f' <span class="nci-small">deploys {esc(history.branch)}</span>' if history.branch else ""
        rows = "".join(history_row(e, links, now, pipeline_builderid) for e in history.entries)
        table = (
            '<div class="nci-scroll"><table class="nci-table nci-history"><tr><th>Build</th><th>Kind</th>'
            "<th>Revision</th><th>Result</th><th>Verification</th><th>Render deploy</th><th>Who / what</th>"
            f"<th>Started</th><th>Duration</th></tr>{rows}</table></div>"
            if rows
            else "<p>No deploy or rollback yet.</p>"
        )
        sections.append(
            f'<section class="nci-env" id="env-{esc(history.environment)}"><h2>{esc(history.environment)}{branch}</h2>'
            f"{live_box(history, links, now, pipeline_builderid)}{table}</section>"
        )
    return document("Deploys", "deploys", "".join(sections), links)


# --- trends ------------------------------------------------------------------------------------
def _choices(current: int, links: Links) -> str:
    parts = []
    for count in TREND_CHOICES:
        if count == current:
            parts.append(f"<span>last {count}</span>")
        else:
            parts.append(f'<a href="{esc(links.standalone("trends", last=count))}">last {count}</a>')
    return f'<div class="nci-pager">{"".join(parts)}</div>'


def job_multiples(labels: list[str], titles: list[str], jobs: list[Series]) -> str:
    """Duration per job: one small chart per job, all on the same scale."""
    values = [v for s in jobs for v in s.values if v is not None]
    if not values:
        return line_chart("Duration per job", labels, [], unit="s", empty="no finished job yet")
    top = max(values)
    charts = [
        line_chart(
            f"{s.name}: duration", labels, [Series(s.name, s.values, PALETTE[i % len(PALETTE)])], unit="s",
            y_max=top, width=372, height=170, x_titles=titles, legend=False,
        )
        for i, s in enumerate(jobs)
    ]  # fmt: skip
    return f'<div class="nci-multiples">{"".join(charts)}</div>'


def trend_charts(trends: Trends, links: Links) -> list[str]:
    labels, titles = list(trends.labels), list(trends.titles)
    wall = [
        Bar(
            label,
            value,
            RESULT_COLOURS.get(p.result_name, "#777"),
            f"{title}: {duration_text(value)}, {p.result_name}",
            links.build(p),
        )
        for label, title, value, p in zip(labels, titles, trends.wall, trends.pipelines, strict=True)
        if value is not None
    ]
    jobs = [Series(name, values) for name, values in trends.job_durations.items()]
    coverage = [Series(name, values) for name, values in trends.coverage.items()]
    rates = [
        Bar(
            name,
            100.0 * failed / runs,
            RESULT_COLOURS["failure"] if failed else RESULT_COLOURS["success"],
            f"{name}: {failed} failed of {runs} runs",
        )
        for name, failed, runs in trends.failure_rates
    ]
    to_live = [
        Bar(
            item.label,
            item.seconds,
            RESULT_COLOURS["success"],
            f"{item.title} to {item.environment}: {duration_text(item.seconds)}",
            links.route(item.route),
        )
        for item in trends.push_to_live
    ]
    return [
        bar_chart("Pipeline wall time", wall, unit="s", empty="no finished pipeline yet"),
        job_multiples(labels, titles, jobs),
        line_chart(
            "Coverage per revision",
            labels,
            coverage,
            unit="%",
            y_max=100,
            empty="no job published a coverage report",
            x_titles=titles,
        ),
        hbar_chart("Failure rate per job", rates, unit="%", y_max=100, empty="no finished job yet"),
        bar_chart("Push to deploy live", to_live, unit="s", empty="no deploy from these pipelines went live"),
    ]


def trends_page(trends: Trends, last: int, links: Links) -> str:
    count = len(trends.pipelines)
    intro = (
        f'<p class="nci-small">The last {count} pipeline build{"" if count == 1 else "s"}, oldest on the left. '
        "Jobs: their last attempt per pipeline. Failure rate: FAILURE or EXCEPTION over runs that ended "
        "success, warnings, failure or exception. Push to live: from the pipeline's build request to the end "
        "of the deploy its gate triggered (live, healthy, smoke tests passed).</p>"
    )
    body = intro + _choices(last, links) + '<div class="nci-charts">' + "".join(trend_charts(trends, links)) + "</div>"
    return document("Trends", "trends", body, links)
