"""Comparing a sweep with a baseline: two real smoke sweeps, and an exact table over result.json files built here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from runner.record import load_runs
from runner.report.compare import compare, welch
from runner.result import RESULT_FILE, Metrics, RunResult, write_result


def write_run(root: Path, name: str, server: str, repeat: int, rps: float, p99: float, capacity: float | None = None,
              outcome: str = "ok") -> None:  # fmt: skip
    job = root / name
    job.mkdir(parents=True)
    config = {"server": {"name": server, "keepalive": True}, "load": {"users": 10, "spawn_rate": 10.0},
              "workload": {"name": "hello"}, "run": {"repeat": repeat, "validity": {"min_requests": 2000}}}  # fmt: skip
    metrics = Metrics(requests=int(rps * 10), failures=0, rps=rps, avg_ms=p99 / 3, median_ms=p99 / 3, p99_ms=p99)
    write_result(RunResult(outcome=outcome, config=config, metrics=metrics), job)
    if capacity is not None:
        data = json.loads((job / RESULT_FILE).read_text())
        data["capacity"] = {"steps": [], "max_rps": capacity, "users_at_max": 10, "stop_reason": "knee",
                            "stop_detail": ""}  # fmt: skip
        (job / RESULT_FILE).write_text(json.dumps(data))


BASELINE = [  # server, repeat, rps, p99, capacity
    ("select", 0, 1000.0, 10.0, 2000.0),
    ("select", 1, 1010.0, 11.0, 2050.0),
    ("thread", 0, 800.0, 20.0, None),
    ("thread", 1, 1200.0, 30.0, None),
    ("process", 0, 500.0, 40.0, None),
    ("single", 0, 100.0, 90.0, None),
]
NEW = [
    ("select", 0, 1500.0, 8.0, 3000.0),
    ("select", 1, 1510.0, 9.0, 3100.0),
    ("thread", 0, 820.0, 21.0, None),
    ("thread", 1, 1190.0, 29.0, None),
    ("process", 0, 600.0, 130.0, None),
    ("epoll", 0, 1800.0, 7.0, None),
]

EXPECTED = """\
| Row     |     n |   RPS (base → new) |   RPS change | RPS significant                     |   p99 ms (base → new) |   p99 ms change | p99 ms significant                  |   Capacity RPS (base → new) |   Capacity RPS change | Capacity RPS significant   |
|---------|-------|--------------------|--------------|-------------------------------------|-----------------------|-----------------|-------------------------------------|-----------------------------|-----------------------|----------------------------|
| select  | 2 → 2 |    1005.0 → 1505.0 |       +49.8% | yes (Welch t)                       |            10.5 → 8.5 |          -19.0% | no (Welch t)                        |             2025.0 → 3050.0 |                +50.6% | yes (Welch t)              |
| thread  | 2 → 2 |    1000.0 → 1005.0 |        +0.5% | no (Welch t)                        |               25 → 25 |           +0.0% | no (Welch t)                        |                           — |                     — | —                          |
| process | 1 → 1 |      500.0 → 600.0 |       +20.0% | no interval: single runs; within 3x |              40 → 130 |         +225.0% | no interval: single runs; beyond 3x |                           — |                     — | —                          |

- Values are baseline → new, medians of each row's complete runs; n counts them. A row is a set of conditions (server, load, workload, run settings) present in both sweeps.
- Significant: with two or more runs on both sides, Welch's t-test on the runs' values at 95%; otherwise there is no interval (single runs), and a change counts only beyond the noise floor: the larger value over 3x the smaller (identical runs on a shared machine have differed by 2.7x).
- Added (only in the new sweep): epoll.
- Removed (only in the baseline): single.
"""  # noqa: E501 (a markdown table row cannot wrap)


def test_comparison_table_matches_golden_markdown(tmp_path: Path) -> None:
    for side, rows in (("old", BASELINE), ("new", NEW)):
        for i, (server, repeat, rps, p99, capacity) in enumerate(rows):
            write_run(tmp_path / side, f"{i}_{server}_r{repeat}", server, repeat, rps, p99, capacity)
    assert compare(load_runs(tmp_path / "old"), load_runs(tmp_path / "new")) == EXPECTED


def test_welch_needs_two_values_a_side_and_separates_only_clear_differences() -> None:
    assert welch([1.0], [2.0, 3.0]) is None
    assert welch([1000.0, 1010.0], [1500.0, 1510.0]) is True
    assert welch([800.0, 1200.0], [820.0, 1190.0]) is False
    assert welch([5.0, 5.0], [5.0, 5.0]) is False


@pytest.mark.slow
def test_two_real_sweeps_compare_matched_added_and_removed_rows(smoke_sweeps, tmp_path: Path) -> None:
    old = Path(shutil.copytree(smoke_sweeps[0].path, tmp_path / "old"))
    new = Path(shutil.copytree(smoke_sweeps[1].path, tmp_path / "new"))
    proc = subprocess.run([sys.executable, "-m", "runner.report", str(new), "--baseline", str(old)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = (new / "comparison.md").read_text()
    assert written in proc.stdout  # printed as written
    rows = [line for line in written.splitlines() if line.startswith("| select")]
    assert len(rows) == 1 and "| 2 → 2 |" in rows[0] and "(Welch t)" in rows[0]
    assert "Added (only in the new sweep): single." in written
    assert "Removed (only in the baseline): thread." in written
    assert "Capacity" not in written  # no capacity search ran


def test_the_cli_refuses_a_missing_baseline_with_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner.report", str(tmp_path), "--baseline", str(tmp_path / "no")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "no such directory" in proc.stderr


def _sweep(root: Path, rates: dict[str, list[float]]) -> Path:
    for server, values in rates.items():
        for repeat, rps in enumerate(values):
            write_run(root, f"{server}_r{repeat}", server, repeat, rps, 10.0)
    return root


def _gate(tmp_path: Path, new: dict[str, list[float]], old: dict[str, list[float]]) -> subprocess.CompletedProcess:
    _sweep(tmp_path / "new", new)
    _sweep(tmp_path / "old", old)
    return subprocess.run([sys.executable, "-c", "from runner.run.cli import command; command()", "compare",
                           str(tmp_path / "new"), str(tmp_path / "old"), "--fail-on-regression"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_regression_gate_fails_on_a_row_significantly_and_markedly_slower(tmp_path):
    old = {"select": [10_000.0, 10_300.0, 9_800.0], "thread": [5_000.0, 5_100.0, 4_900.0]}
    slower = {"select": [10_100.0, 9_900.0, 10_200.0], "thread": [3_000.0, 3_100.0, 2_950.0]}  # thread: -40%
    failed = _gate(tmp_path / "a", slower, old)
    assert failed.returncode == 6, failed.stdout + failed.stderr
    last = failed.stdout.splitlines()[-1]
    assert last.startswith("regression against ") and "thread: RPS 5,000.0 → 3,000.0 (-40.0%)" in last, last
    assert "select" not in last.split(": ", 1)[1]


@pytest.mark.parametrize(
    "new",
    [
        {"select": [10_000.0, 10_300.0, 9_800.0], "thread": [5_000.0, 5_100.0, 4_900.0]},  # the same sweep
        {"select": [9_000.0, 9_100.0, 8_950.0], "thread": [5_000.0, 5_100.0, 4_900.0]},  # -10%: significant, small
        {"select": [7_000.0], "thread": [5_000.0]},  # -30%, one run each: within the noise floor (3x)
    ],
    ids=["identical", "small", "single-runs"],
)
def test_the_regression_gate_passes_what_it_cannot_call_slower(tmp_path, new):
    old = {"select": [10_000.0, 10_300.0, 9_800.0], "thread": [5_000.0, 5_100.0, 4_900.0]}
    if len(new["select"]) == 1:
        old = {"select": [10_000.0], "thread": [5_000.0]}
    passed = _gate(tmp_path, new, old)
    assert passed.returncode == 0, passed.stdout + passed.stderr
