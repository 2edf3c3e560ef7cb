"""The benchmark's chart: a Gantt-style timeline of one pipeline run (each check job's start and
end after the push, the pipeline build, the change-detection phase) above the bars of the
sequential run of the same checks, on one time axis. matplotlib (bench/requirements.txt).
"""

from __future__ import annotations

from pathlib import Path


def render_timeline(path: Path, run: dict, sequential: list[dict], title: str) -> Path:
    """`run`: {"wall", "first_step", "critical_path": name, "jobs": {name: {"start", "end", "results"}}};
    `sequential`: [{"job", "start", "end", "result"}] (stats.sequential_bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = sorted(run["jobs"].items(), key=lambda item: (item[1]["start"] or 0, item[0]))
    others = sorted((run.get("other_builds") or {}).items())
    jobs += [(f"{name} (not in the verdict)", {**build, "other": True}) for name, build in others]
    rows = len(jobs) + 1
    seq_rows = len(sequential)
    horizon = max([run["wall"] or 0] + [bar["end"] for bar in sequential] + [1])
    figure, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(11, 1.6 + 0.38 * (rows + seq_rows)),
        sharex=True,
        gridspec_kw={"height_ratios": [rows + 0.5, seq_rows + 0.5]},
    )
    labels = []
    for index, (name, job) in enumerate(jobs):
        if job["start"] is None or job["end"] is None:
            continue
        colour = "#2e7d32" if job.get("results") == 0 else "#c62828"
        if name == run.get("critical_path"):
            colour = "#1565c0"
        hatch = None
        if job.get("other"):
            colour, hatch = "#d7ccc8", "//"
        top.barh(index, job["end"] - job["start"], left=job["start"], color=colour, height=0.6, hatch=hatch)
        top.text(job["end"] + horizon * 0.005, index, f"{job['end'] - job['start']:.1f}s", va="center", fontsize=8)
        labels.append((index, name))
    pipeline_row = len(jobs)
    top.barh(
        pipeline_row,
        run["wall"] - (run.get("first_step") or 0),
        left=run.get("first_step") or 0,
        color="#9e9e9e",
        height=0.6,
    )
    top.barh(pipeline_row, run.get("first_step") or 0, left=0, color="#ffb300", height=0.6)
    top.text(run["wall"] + horizon * 0.005, pipeline_row, f"verdict {run['wall']:.1f}s", va="center", fontsize=8)
    labels.append((pipeline_row, "pipeline (push → verdict)"))
    top.set_yticks([i for i, _ in labels], [n for _, n in labels], fontsize=9)
    top.invert_yaxis()
    top.set_title(title, fontsize=10)
    top.grid(axis="x", alpha=0.3)
    figure.legend(
        handles=[
            plt.Rectangle((0, 0), 1, 1, color=c)
            for c in ("#1565c0", "#2e7d32", "#c62828", "#ffb300", "#9e9e9e", "#d7ccc8")
        ],
        labels=[
            "critical path",
            "check passed",
            "check failed",
            "change detection",
            "pipeline build",
            "same push, outside the verdict",
        ],
        fontsize=7,
        loc="lower center",
        ncol=6,
        frameon=False,
    )
    for index, bar in enumerate(sequential):
        colour = "#607d8b" if bar.get("result") == "success" else "#e57373"
        bottom.barh(index, max(bar["end"] - bar["start"], horizon * 0.002), left=bar["start"], color=colour, height=0.6)
        bottom.text(bar["end"] + horizon * 0.005, index, f"{bar['end'] - bar['start']:.1f}s", va="center", fontsize=8)
    bottom.set_yticks(range(seq_rows), [f"{bar['job']}" for bar in sequential], fontsize=9)
    bottom.invert_yaxis()
    bottom.set_title("scripts/run_ci_checks.sh: the same checks one after another", fontsize=9)
    bottom.set_xlabel("seconds after the push (top) / after the script started (bottom)")
    bottom.grid(axis="x", alpha=0.3)
    bottom.set_xlim(0, horizon * 1.12)
    figure.tight_layout(rect=(0, 0.035, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
