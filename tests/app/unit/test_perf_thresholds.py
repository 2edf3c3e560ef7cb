"""scripts/check_performance_thresholds.py on Locust-shaped CSV files: pass, breach, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "check_performance_thresholds.py"
HEADER = (
    '"Type","Name","Request Count","Failure Count","Median Response Time","Average Response Time",'
    '"Min Response Time","Max Response Time","Average Content Size","Requests/s","Failures/s",'
    '"50%","66%","75%","80%","90%","95%","98%","99%","99.9%","99.99%","100%"'
)


def row(kind: str, name: str, requests: int, failures: int, p95: str) -> str:
    return f'"{kind}","{name}",{requests},{failures},20,25.5,3,900,15,12.3,0.1,20,22,25,28,40,{p95},300,400,800,900,900'


def write(tmp_path: Path, rows: List[str], name: str = "perf_stats.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_a_run_within_the_baseline_passes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            row("GET", "/health", 900, 1, "120"),
            row("POST", "/api/v1/verifications", 100, 2, "480"),
            row("", "Aggregated", 1000, 3, "450"),
        ],
    )
    done = run(str(path))
    assert done.returncode == 0, done.stderr
    assert "1000 requests, 3 failures (0.30%), p95 450 ms" in done.stdout
    assert "OK" in done.stdout


def test_a_slow_p95_fails(tmp_path: Path) -> None:
    done = run(str(write(tmp_path, [row("", "Aggregated", 1000, 0, "500")])))
    assert done.returncode == 1
    assert "p95 response time 500 ms is not below 500 ms" in done.stderr


def test_too_many_errors_fail(tmp_path: Path) -> None:
    done = run(str(write(tmp_path, [row("", "Aggregated", 100, 5, "100")])))
    assert done.returncode == 1
    assert "error rate 5.00% (5/100) is not below 5%" in done.stderr


def test_both_breaches_are_reported(tmp_path: Path) -> None:
    done = run(str(write(tmp_path, [row("", "Aggregated", 10, 9, "2000")])))
    assert done.returncode == 1
    assert "p95" in done.stderr and "error rate" in done.stderr


def test_thresholds_can_be_changed(tmp_path: Path) -> None:
    path = write(tmp_path, [row("", "Aggregated", 100, 8, "700")])
    assert run(str(path), "--p95-ms", "800", "--max-error-rate", "10").returncode == 0


def test_the_csv_prefix_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, [row("", "Aggregated", 10, 0, "10")])
    assert run(str(tmp_path / "perf")).returncode == 0


def test_without_an_aggregated_row_the_endpoints_are_combined(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [row("GET", "/health", 50, 0, "100"), row("GET", "/slow", 50, 0, "600"), row("GET", "/none", 0, 0, "N/A")],
    )
    done = run(str(path))
    assert done.returncode == 1
    assert "100 requests" in done.stdout and "p95 600 ms" in done.stdout


def test_every_file_is_checked(tmp_path: Path) -> None:
    good = write(tmp_path, [row("", "Aggregated", 10, 0, "10")], "a_stats.csv")
    bad = write(tmp_path, [row("", "Aggregated", 10, 0, "900")], "b_stats.csv")
    done = run(str(good), str(bad))
    assert done.returncode == 1
    assert "b_stats.csv" in done.stderr and "a_stats.csv" not in done.stderr


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "file not found"),
        ("", "not a Locust stats CSV"),
        ("hello,world\n1,2\n", "not a Locust stats CSV"),
        (HEADER + "\n", "no statistics rows"),
        (HEADER + "\n" + row("", "Aggregated", 0, 0, "N/A") + "\n", "no requests were recorded"),
        (HEADER + "\n" + row("", "Aggregated", 10, 0, "fast") + "\n", "not a number"),
        (HEADER.replace('"95%",', "") + "\n", "missing column(s) 95%"),
        (b"\xff\xfe\x00garbage", "cannot be read"),
    ],
)
def test_missing_or_garbage_input_exits_2_naming_the_file(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "weird_stats.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    done = run(str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(path) in done.stderr
    assert problem in done.stderr


def test_no_arguments_is_a_usage_error() -> None:
    done = run()
    assert done.returncode == 2
    assert "usage" in done.stderr
