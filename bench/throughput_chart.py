"""The throughput benchmark's chart (matplotlib): the four-branch run as a timeline, one row per job
build coloured by branch, with the machine floor marked; beside it the full pipeline against the
docs-only one and the tree-equal push's time to its deploy."""

from __future__ import annotations

from pathlib import Path

COLOURS = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a")


def render_throughput(path: Path, doc: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = doc["rounds"]
    chosen = sorted(rounds, key=lambda r: r["four_branches"]["over_floor"])[len(rounds) // 2]
    four = chosen["four_branches"]
    rows = []
    for index, pipeline in enumerate(four["pipelines"]):
        for name, job in sorted(pipeline["jobs"].items(), key=lambda item: item[1]["start"] or 0):
            if job["start"] is not None and job["end"] is not None:
                rows.append((index, name, job))
    rows.sort(key=lambda row: row[2]["start"])
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(13, 1.8 + 0.22 * len(rows)), gridspec_kw={"width_ratios": [3, 1]}
    )
    for y, (branch, name, job) in enumerate(rows):
        left.barh(y, job["end"] - job["start"], left=job["start"], color=COLOURS[branch % len(COLOURS)], height=0.7)
        left.text(job["end"] + 0.5, y, name, va="center", fontsize=6)
    left.axvline(four["floor_s"], color="#c62828", linestyle="--", linewidth=1)
    left.text(four["floor_s"], -1, f" floor {four['floor_s']:.0f}s", color="#c62828", fontsize=8)
    left.axvline(four["wall"], color="#424242", linewidth=1)
    left.text(four["wall"], len(rows), f" last verdict {four['wall']:.0f}s", fontsize=8, va="top")
    left.set_yticks([])
    left.invert_yaxis()
    left.set_xlabel("seconds after the four pushes")
    left.set_title(
        f"four branches at once: wall / floor {four['over_floor']:.2f} (jobs {four['jobs_cpu_s']:.0f} "
        f"CPU-s / capacity {four['capacity']:.2f}; round {chosen['round']}, {doc['date']})",
        fontsize=9,
    )
    left.legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS],
        labels=[f"feature/bench-{i}" for i in range(4)],
        fontsize=7,
        loc="upper right",
    )
    left.grid(axis="x", alpha=0.3)
    labels = ["full pipeline", "docs-only commit", "tree-equal → deploy started"]
    values = [chosen["full"]["wall"], chosen["docs"]["wall"], chosen["tree_equal_to_deploy_s"]]
    right.barh(range(3), values, color=["#607d8b", "#2e7d32", "#1565c0"], height=0.6)
    for y, value in enumerate(values):
        right.text(value + 0.5, y, f"{value:.1f}s", va="center", fontsize=8)
    right.set_yticks(range(3), labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlim(0, max(values) * 1.3)
    right.set_title(f"reuse: docs-only / full {chosen['ratios']['docs_over_full']:.3f}", fontsize=9)
    right.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
