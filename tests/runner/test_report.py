"""The sweep report: real job directories in tmp_path, one exact golden string, no mocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from runner.report import COLUMNS, Run, load_runs, render, to_frame, write_report
from runner.result import RESULT_FILE, Metrics, RunResult, write_result

PROVENANCE = {
    "git_commit": "0123abc",
    "hydra": "1.3.2",
    "locust": "2.47.0",
    "python": "3.11.9",
    "cores": 4,
    "cpu_model": "Test CPU @ 3.0GHz",
}
LOAD = {"users": 100, "spawn_rate": 100.0, "run_time_s": 10.0, "user_class": "fast"}

# job dir -> (server, keepalive, outcome, served, metrics); numbers made up but shaped like Locust's
FIXTURE = {
    "0": ("select", True, "ok", 152340, Metrics(152340, 0, 0.0, 12695.0, 0.0, 7.62, 0.4, 7.0, 13.0, 19.0, 45.1)),
    "1": (
        "thread",
        True,
        "completed_with_errors",
        98174,
        Metrics(98211, 37, 37 / 98211, 8184.3, 3.1, 11.84, 0.5, 9.0, 25.0, 61.0, 1034.2),
    ),
    "2": (
        "process",
        False,
        "server_crashed",
        None,
        Metrics(20417, 1203, 1203 / 20417, 2041.7, 120.3, 38.46, 0.9, 31.0, 88.0, 210.0, 3012.9, partial=True),
    ),
    "3": ("single", True, "server_failed_to_start", None, Metrics()),
}

EXPECTED = """\
# Stress test report: sweep

4 runs: 1 ok, 1 completed_with_errors, 1 server_failed_to_start, 1 server_crashed.
Machine: CPU: Test CPU @ 3.0GHz; cores: 4; Python: 3.11.9; Locust: 2.47.0; Hydra: 1.3.2; git commit: 0123abc.

## Table 1. Ranked by requests per second

|   Rank | Server   | Workload   | Keep-alive   |   Users |   Spawn rate |   Requests |   Failures |   Fail % |     RPS |   Avg ms |   p50 ms |   p95 ms |   p99 ms | Outcome                  |
|--------|----------|------------|--------------|---------|--------------|------------|------------|----------|---------|----------|----------|----------|----------|--------------------------|
|      1 | select   | hello      | yes          |     100 |          100 |     152340 |          0 |     0.00 | 12695.0 |      7.6 |      7.0 |     13.0 |     19.0 | ok                       |
|      2 | thread   | hello      | yes          |     100 |          100 |      98211 |         37 |     0.04 |  8184.3 |     11.8 |      9.0 |     25.0 |     61.0 | completed_with_errors    |
|      — | process  | hello      | no           |     100 |          100 |      20417 |       1203 |     5.89 |  2041.7 |     38.5 |     31.0 |     88.0 |    210.0 | server_crashed (partial) |
|      — | single   | hello      | yes          |     100 |          100 |          — |          — |        — |       — |        — |        — |        — |        — | server_failed_to_start   |

## Table 2. Ranked by average response time

|   Rank | Server   | Workload   | Keep-alive   |   Users |   Spawn rate |   Requests |   Failures |   Fail % |     RPS |   Avg ms |   p50 ms |   p95 ms |   p99 ms | Outcome                  |
|--------|----------|------------|--------------|---------|--------------|------------|------------|----------|---------|----------|----------|----------|----------|--------------------------|
|      1 | select   | hello      | yes          |     100 |          100 |     152340 |          0 |     0.00 | 12695.0 |      7.6 |      7.0 |     13.0 |     19.0 | ok                       |
|      2 | thread   | hello      | yes          |     100 |          100 |      98211 |         37 |     0.04 |  8184.3 |     11.8 |      9.0 |     25.0 |     61.0 | completed_with_errors    |
|      — | process  | hello      | no           |     100 |          100 |      20417 |       1203 |     5.89 |  2041.7 |     38.5 |     31.0 |     88.0 |    210.0 | server_crashed (partial) |
|      — | single   | hello      | yes          |     100 |          100 |          — |          — |        — |       — |        — |        — |        — |        — | server_failed_to_start   |

## Columns

- **Rank**: place by the table's metric. "—" means not ranked: the run has no number for it, or only partial numbers. Unranked rows come last.
- **Keep-alive**: whether the server kept connections open between requests.
- **Users**, **Spawn rate**: Locust's simulated users, and how many it started per second.
- **Requests**, **Failures**, **Fail %**: Locust's totals for the run; Fail % is failures per 100 requests.
- **RPS**: requests per second as Locust counts them, failed requests included, so fast failures inflate it.
- **Avg ms**: mean response time (exact).
- **p50 ms**, **p95 ms**, **p99 ms**: Locust's histogram percentiles, rounded to about 2 significant digits: do not rank on small differences.
- **Outcome**: how the run ended; "(partial)" marks numbers from a run that did not end cleanly.
- **—**: unknown. A missing number is never shown as 0.

`results.csv` beside this report holds the same rows unrounded, plus `max_ms`, `served` (SERVED: the server's own \
count of requests it answered, a cross-check on Requests) and `run` (the job directory).

## Notes

- **completed_with_errors** (thread): the run finished but some requests failed; see Failures and the run's \
`*_failures.csv`.
- **server_failed_to_start** (single): the server never became ready, so no load was sent; see the run's `server.log`.
- **server_crashed** (process): the server exited while under load; numbers, if any, cover only the time before \
the crash; see the run's `server.log`.
- **(partial)**: numbers from a run that did not end cleanly cover only part of it; they are shown but not ranked.
"""  # noqa: E501 (a markdown table row cannot wrap)


def write_hydra_config(job: Path, server: str, keepalive: bool = True) -> None:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(
        f"server:\n  name: {server}\n  keepalive: {str(keepalive).lower()}\n"
        "load:\n  users: 100\n  spawn_rate: 100.0\nworkload:\n  name: hello\n"
    )


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for job_name, (server, keepalive, outcome, served, metrics) in FIXTURE.items():
        job = root / job_name
        write_hydra_config(job, server, keepalive)
        result = RunResult(
            outcome=outcome,
            server={"name": server, "keepalive": keepalive, "served": served},
            load=dict(LOAD),
            workload={"name": "hello"},
            metrics=metrics,
            provenance=dict(PROVENANCE),
        )
        write_result(result, job)
    return root


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the table under `heading`, as lists of stripped cells."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_render_matches_golden_markdown(sweep: Path) -> None:
    frame = to_frame(load_runs(sweep))
    assert render(frame, "Stress test report: sweep", PROVENANCE) == EXPECTED


def test_write_report_writes_the_same_markdown(sweep: Path) -> None:
    path = write_report(sweep)
    assert path == sweep / "report.md"
    assert path.read_text() == EXPECTED


def test_rankings_order_each_table_by_its_metric_and_put_unranked_rows_last() -> None:
    runs = [
        Run(server="slow", outcome="ok", rps=500.0, avg_ms=40.0, run="0"),
        Run(server="fast", outcome="ok", rps=9000.0, avg_ms=9.0, run="1"),
        Run(server="lean", outcome="completed_with_errors", rps=7000.0, avg_ms=2.0, run="2"),
        Run(server="dead", outcome="server_failed_to_start", run="3"),
        Run(server="crashy", outcome="server_crashed", rps=99999.0, avg_ms=0.1, partial=True, run="4"),
    ]
    markdown = render(to_frame(runs), "t", {})
    by_rps = table_rows(markdown, "Ranked by requests per second")
    by_avg = table_rows(markdown, "Ranked by average response time")
    assert [(row[0], row[1]) for row in by_rps] == [
        ("1", "fast"),
        ("2", "lean"),
        ("3", "slow"),
        ("—", "crashy"),
        ("—", "dead"),
    ]
    assert [(row[0], row[1]) for row in by_avg] == [
        ("1", "lean"),
        ("2", "fast"),
        ("3", "slow"),
        ("—", "crashy"),
        ("—", "dead"),
    ]


def test_corrupt_and_incomplete_runs_are_rows_named_from_the_hydra_config(sweep: Path) -> None:
    corrupt = sweep / "4"
    write_hydra_config(corrupt, "epoll")
    whole = (sweep / "0" / RESULT_FILE).read_text()
    (corrupt / RESULT_FILE).write_text(whole[: len(whole) // 2])  # truncated JSON
    write_hydra_config(sweep / "5", "asyncio", keepalive=False)  # killed before result.json

    runs = {run.run: run for run in load_runs(sweep)}
    assert sorted(runs) == ["0", "1", "2", "3", "4", "5"]
    assert (runs["4"].outcome, runs["4"].server, runs["4"].workload, runs["4"].users) == (
        "corrupt",
        "epoll",
        "hello",
        100,
    )
    assert runs["4"].rps is None and runs["4"].requests is None
    assert (runs["5"].outcome, runs["5"].server, runs["5"].keepalive) == ("incomplete", "asyncio", False)
    assert runs["5"].spawn_rate == 100.0

    report = write_report(sweep).read_text()
    assert (
        "6 runs: 1 ok, 1 completed_with_errors, 1 server_failed_to_start, 1 server_crashed, 1 incomplete, 1 corrupt."
        in report
    )
    rows = table_rows(report, "Ranked by requests per second")
    assert {(row[1], row[-1]) for row in rows} >= {("epoll", "corrupt"), ("asyncio", "incomplete")}
    assert "- **corrupt** (epoll):" in report
    assert "- **incomplete** (asyncio):" in report


def test_a_run_without_a_readable_hydra_config_shows_question_marks(tmp_path: Path) -> None:
    job = tmp_path / "lonely"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("server: [unclosed\n")
    (job / RESULT_FILE).write_text("{not json")

    [run] = load_runs(tmp_path)
    assert (run.outcome, run.server, run.workload, run.users, run.run) == ("corrupt", "?", "?", None, "lonely")


def test_results_csv_round_trips_with_one_row_per_run(sweep: Path) -> None:
    write_report(sweep)
    frame = pd.read_csv(sweep / "results.csv", dtype={"run": str})
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(FIXTURE)
    assert list(frame["run"]) == ["0", "1", "2", "3"]
    assert list(frame["server"]) == ["select", "thread", "process", "single"]
    assert frame["rps"].tolist()[:3] == [12695.0, 8184.3, 2041.7]
    assert frame["rps"].isna().tolist() == [False, False, False, True]
    assert frame["partial"].tolist() == [False, False, True, False]
    assert frame["served"].tolist()[:2] == [152340, 98174]


def test_provenance_keys_render_in_a_stable_order_whatever_their_values() -> None:
    provenance = {
        **PROVENANCE,
        "nofile_limit": [1024, 4096],
        "git_dirty": True,
        "kernel": "6.1.0",
        "hostname": "bench1",
        "locust": None,
    }
    markdown = render(to_frame([Run(server="select", outcome="ok", rps=1.0, avg_ms=1.0)]), "t", provenance)
    assert markdown.splitlines()[3] == (
        "Machine: CPU: Test CPU @ 3.0GHz; cores: 4; kernel: 6.1.0; Python: 3.11.9; Locust: —; Hydra: 1.3.2; "
        "git commit: 0123abc; uncommitted changes: yes; hostname: bench1; nofile_limit: [1024, 4096]."
    )


def test_an_empty_directory_gives_a_report_saying_no_runs_were_found(tmp_path: Path) -> None:
    report = write_report(tmp_path).read_text()
    assert report == f"# Stress test report: {tmp_path.name}\n\nNo runs were found.\n"
    assert pd.read_csv(tmp_path / "results.csv").empty


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    repo = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", "runner.report", *args], cwd=repo, capture_output=True, text=True, timeout=60
    )


def test_cli_writes_the_report_and_prints_its_path(sweep: Path) -> None:
    (sweep / "1" / RESULT_FILE).write_text('{"outcome": "ok", "metr')  # a corrupt run is a row, not an error
    done = run_cli(str(sweep))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sweep / "report.md")
    assert "| corrupt " in (sweep / "report.md").read_text()


def test_cli_refuses_a_missing_directory_with_exit_2(tmp_path: Path) -> None:
    done = run_cli(str(tmp_path / "nope"))
    assert done.returncode == 2
    assert "no such directory" in done.stderr
