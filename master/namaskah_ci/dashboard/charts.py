"""Charts as inline SVG drawn in Python: line charts and bar charts for the dashboard's trends.

Pure functions from numbers to an `<svg>` string: no JavaScript, no library, so a chart renders
wherever the HTML does (the web UI injects the dashboard's HTML into its page, where scripts would
not run anyway). Every label and tooltip is HTML-escaped; each point and bar carries a `<title>`
(the browser's tooltip) with its exact value. Nothing here imports Buildbot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from namaskah_ci.text import esc

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
RESULT_COLOURS = {
    "success": "#5cb85c",
    "warnings": "#f0ad4e",
    "failure": "#d9534f",
    "exception": "#b26fd0",
    "cancelled": "#9e9e9e",
    "skipped": "#8ecae6",
    "retry": "#e6b0aa",
    "running": "#e0c341",
}
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 14, 30, 34
LEGEND_ROW = 16
MAX_X_LABELS = 12


@dataclasses.dataclass(frozen=True)
class Series:
    """One line: a value (or None, a gap) per x position."""

    name: str
    values: tuple[float | None, ...]
    colour: str = ""


@dataclasses.dataclass(frozen=True)
class Bar:
    label: str
    value: float
    colour: str = PALETTE[0]
    tooltip: str = ""
    href: str = ""


def duration_text(seconds: float | None) -> str:
    """`42s`, `3m 05s`, `1h 02m`; `—` for no value."""
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0" + ("%" if unit == "%" else "")
    if unit == "s":
        return duration_text(value)
    if unit == "%":
        return f"{value:.1f}%" if value % 1 else f"{value:.0f}%"
    return f"{value:g}"


def nice_scale(top: float, steps: int = 4) -> tuple[float, float]:
    """(axis maximum, tick step): a round step so that `steps` ticks cover `top`."""
    if top <= 0 or not math.isfinite(top):
        return 1.0, 0.25
    raw = top / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step >= raw:
            break
    return step * math.ceil(top / step - 1e-9), step


def _duration_scale(top: float) -> tuple[float, float]:
    """Ticks at round durations (10 s, 30 s, 1 min, 5 min, ...) for axes in seconds."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step * 4 >= top:
            return step * max(1, math.ceil(top / step - 1e-9)), float(step)
    return nice_scale(top)


def _scale(values: Sequence[float], unit: str, y_max: float | None) -> tuple[float, float]:
    if y_max is not None:
        if unit == "%":
            return y_max, y_max / 4
        return _duration_scale(y_max) if unit == "s" else nice_scale(y_max)
    top = max(values) if values else 0.0
    return _duration_scale(top) if unit == "s" else nice_scale(top)


def _svg_open(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="nci-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
        f"<title>{esc(title)}</title>"
        f'<text x="{MARGIN_LEFT}" y="18" class="nci-chart-title">{esc(title)}</text>'
    )


def _y_axis(top: float, step: float, unit: str, plot_w: float, plot_h: float) -> list[str]:
    parts = []
    count = round(top / step) if step else 0
    for i in range(count + 1):
        value = step * i
        y = MARGIN_TOP + plot_h - plot_h * value / top
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="nci-grid"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="nci-tick">'
            f"{esc(value_text(value, unit))}</text>"
        )
    return parts


def _x_labels(labels: Sequence[str], xs: Sequence[float], baseline: float) -> list[str]:
    """Labels under the axis, every k-th one so that they never overlap (about 6.5 px a character)."""
    if not labels:
        return []
    room = (xs[-1] - xs[0]) / max(1, len(xs) - 1) if len(xs) > 1 else float("inf")
    widest = 6.5 * max(len(label) for label in labels) + 10
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS), math.ceil(widest / room) if room else 1)
    parts = []
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if i % every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{baseline + 16:.1f}" text-anchor="middle" class="nci-tick">{esc(label)}</text>'
            )
    return parts


def _legend(series: Sequence[Series], colours: Sequence[str], width: int, top: float) -> tuple[list[str], int]:
    """Legend entries laid out in rows under the plot; (svg parts, rows used)."""
    parts, x, row = [], float(MARGIN_LEFT), 0
    for item, colour in zip(series, colours, strict=True):
        span = 22 + 7 * len(item.name)
        if x + span > width - MARGIN_RIGHT and x > MARGIN_LEFT:
            x, row = float(MARGIN_LEFT), row + 1
        y = top + row * LEGEND_ROW
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 6:.1f}" width="12" height="4" fill="{esc(colour)}"/>'
            f'<text x="{x + 16:.1f}" y="{y:.1f}" class="nci-tick">{esc(item.name)}</text>'
        )
        x += span
    return parts, row + 1 if series else 0


def _x_positions(count: int, plot_w: float) -> list[float]:
    if count == 1:
        return [MARGIN_LEFT + plot_w / 2]
    gap = plot_w / max(1, count - 1)
    return [MARGIN_LEFT + gap * i for i in range(count)]


def empty_chart(title: str, message: str, width: int = 760, height: int = 90) -> str:
    return (
        _svg_open(title, width, height)
        + f'<text x="{MARGIN_LEFT}" y="{height / 2 + 10:.0f}" class="nci-empty">{esc(message)}</text></svg>'
    )


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
    y_max: float | None = None,
    width: int = 760,
    height: int = 240,
    empty: str = "no data yet",
    x_titles: Sequence[str] | None = None,
    legend: bool = True,
) -> str:
    """One polyline per series over evenly spaced x positions; None values leave gaps.
    `x_titles`: what the tooltips call each x position (default: its label)."""
    series = [s for s in series if any(v is not None for v in s.values)]
    if not x_labels or not series:
        return empty_chart(title, empty, width)
    colours = [s.colour or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    keys, rows = _legend(series, colours, width, height + 6) if legend else ([], 0)
    total_h = height + rows * LEGEND_ROW
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    values = [v for s in series for v in s.values if v is not None]
    top, step = _scale(values, unit, y_max)
    xs = _x_positions(len(x_labels), plot_w)
    baseline = MARGIN_TOP + plot_h
    parts = [_svg_open(title, width, total_h), *_y_axis(top, step, unit, plot_w, plot_h)]
    parts += _x_labels(x_labels, xs, baseline)
    for item, colour in zip(series, colours, strict=True):
        path, points = [], []
        pen_up = True
        for i, value in enumerate(item.values[: len(xs)]):
            if value is None:
                pen_up = True
                continue
            y = baseline - plot_h * min(value, top) / top
            path.append(f"{'M' if pen_up else 'L'}{xs[i]:.1f},{y:.1f}")
            pen_up = False
            tip = f"{item.name} — {(x_titles or x_labels)[i]}: {value_text(value, unit)}"
            points.append(
                f'<circle cx="{xs[i]:.1f}" cy="{y:.1f}" r="3" fill="{esc(colour)}"><title>{esc(tip)}</title></circle>'
            )
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{esc(colour)}" stroke-width="2"/>')
        parts += points
    parts += keys
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    unit: str = "",
    y_max: float | None = None,
    width: int = 760,
    height: int = 240,
    empty: str = "no data yet",
) -> str:
    """Vertical bars, one per item, labelled under the axis (thinned when there are many)."""
    if not bars:
        return empty_chart(title, empty, width)
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    top, step = _scale([b.value for b in bars], unit, y_max)
    slot = plot_w / len(bars)
    bar_w = max(2.0, min(28.0, slot * 0.7))
    baseline = MARGIN_TOP + plot_h
    xs = [MARGIN_LEFT + slot * (i + 0.5) for i in range(len(bars))]
    parts = [_svg_open(title, width, height), *_y_axis(top, step, unit, plot_w, plot_h)]
    parts += _x_labels([b.label for b in bars], xs, baseline)
    for bar, x in zip(bars, xs, strict=True):
        h = plot_h * min(max(bar.value, 0.0), top) / top
        tip = bar.tooltip or f"{bar.label}: {value_text(bar.value, unit)}"
        rect = (
            f'<rect x="{x - bar_w / 2:.1f}" y="{baseline - h:.1f}" width="{bar_w:.1f}" height="{max(h, 1.0):.1f}" '
            f'fill="{esc(bar.colour)}"><title>{esc(tip)}</title></rect>'
        )
        parts.append(f'<a href="{esc(bar.href)}">{rect}</a>' if bar.href else rect)
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    title: str,
    bars: Sequence[Bar],
    unit: str = "",
    y_max: float | None = None,
    width: int = 760,
    label_width: int = 150,
    empty: str = "no data yet",
) -> str:
    """Horizontal bars, one row per item with its label on the left and its value on the right."""
    if not bars:
        return empty_chart(title, empty, width)
    row_h = 22
    height = MARGIN_TOP + row_h * len(bars) + 10
    left = label_width
    plot_w = width - left - 70
    top = y_max if y_max is not None else (max(b.value for b in bars) or 1.0)
    parts = [_svg_open(title, width, height)]
    for i, bar in enumerate(bars):
        y = MARGIN_TOP + row_h * i
        w = plot_w * min(max(bar.value, 0.0), top) / top if top else 0.0
        tip = bar.tooltip or f"{bar.label}: {value_text(bar.value, unit)}"
        label = f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="nci-tick">{esc(bar.label)}</text>'
        parts.append(f'<a href="{esc(bar.href)}">{label}</a>' if bar.href else label)
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{plot_w:.1f}" height="14" class="nci-track"/>'
            f'<rect x="{left}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="14" fill="{esc(bar.colour)}">'
            f"<title>{esc(tip)}</title></rect>"
            f'<text x="{left + plot_w + 6:.1f}" y="{y + 14}" class="nci-tick">{esc(value_text(bar.value, unit))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
