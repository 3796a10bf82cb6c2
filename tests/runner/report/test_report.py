"""The sweep report: real job directories in tmp_path, exact golden strings, no mocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import REPO

from runner.record import Run, load_runs
from runner.report import stats
from runner.report.columns import COLUMNS as REGISTRY
from runner.report.columns import CSV as COLUMNS
from runner.report.columns import legend_lines
from runner.report.columns import values as row_values
from runner.report.document import CELLS_FILE, render, to_cells, write_report
from runner.report.runs import to_frame
from runner.result import RESULT_FILE, SCHEMA_VERSION, Metrics, RunResult, write_result

PROVENANCE = {
    "git_commit": "0123abc",
    "hydra": "1.3.2",
    "locust": "2.47.0",
    "python": "3.11.9",
    "cores": 4,
    "cpu_model": "Test CPU @ 3.0GHz",
}
LOAD = {"run_time_s": 10.0, "cpus": [1, 2, 3]}  # what Locust was given (result.load); the config says the rest


def resources(server_cpu: float, locust_cpu: float, rss: float, per_cpu_s: float, us_per_request=None) -> dict:
    return {
        "server": {"cpu_pct": server_cpu, "cpu_util": server_cpu / 100, "peak_memory_mb": rss, "peak_threads": 3,
                   "peak_fds": 110, "peak_children": 0, "requests_per_cpu_s": per_cpu_s},
        "locust": {"cpu_pct": locust_cpu, "cpu_util": locust_cpu / 300, "peak_memory_mb": 64.0,
                   "cpu_us_per_request": us_per_request},
    }  # fmt: skip


# job dir -> (server, keepalive, outcome, served, metrics, resources, flags); numbers made up, shaped like Locust's
FIXTURE = {
    "0": (
        "select",
        True,
        "ok",
        160012,
        Metrics(requests=152340, failures=0, failure_ratio=0.0, rps=12695.0, goodput=12695.0, avg_ms=7.62,
                median_ms=0.734, p95_ms=13.0, p99_ms=19.0, max_ms=45.1, window="steady", total_requests=160012),
        resources(61.2, 97.3, 21.4, 20743.6, 76.64),
        ["generator-bound"],
    ),
    "1": (
        "thread",
        True,
        "completed_with_errors",
        105065,
        Metrics(requests=98211, failures=37, failure_ratio=37 / 98211, rps=8184.3, goodput=8181.2, avg_ms=11.84,
                median_ms=9.0, p95_ms=25.0, p99_ms=61.0, max_ms=1034.2, window="steady", total_requests=105102),
        resources(100.4, 88.1, 35.2, 8151.7, 107.65),
        [],
    ),
    "2": (
        "process",
        False,
        "server_crashed",
        None,
        Metrics(requests=20417, failures=1203, failure_ratio=1203 / 20417, rps=2041.7, goodput=1921.4, avg_ms=38.46,
                median_ms=31.0, p95_ms=88.0, p99_ms=210.0, max_ms=3012.9, window="whole-run", partial=True),
        resources(23.0, 12.6, 180.3, 8877.0, 61.71),
        ["errors"],
    ),
    "3": ("single", True, "server_failed_to_start", None, Metrics(), {}, []),
}  # fmt: skip

EXPECTED = """\
# Stress test report: sweep

4 runs: 1 ok, 1 completed_with_errors, 1 server_failed_to_start, 1 server_crashed.
Machine: CPU: Test CPU @ 3.0GHz; cores: 4; Python: 3.11.9; Locust: 2.47.0; Hydra: 1.3.2; git commit: 0123abc.

**1 of 4 runs are generator-bound**: Locust, not the server, was the bottleneck, so their order ranks the load generator (see Flags).

Same for every run: workload hello, 100 users, spawn rate 100/s, server on 1 core.

## Table 1. Ranked by requests per second

|   Rank | Server   | Keep-alive   |   Requests |   Failures |   Fail % |     RPS |   Goodput |   Avg ms |   p50 ms |   p95 ms |   p99 ms |   Server CPU % |   Locust CPU % |   Peak mem MB |   Req/CPU-s |   Locust us/req | Outcome                  | Flags           |
|--------|----------|--------------|------------|------------|----------|---------|-----------|----------|----------|----------|----------|----------------|----------------|---------------|-------------|-----------------|--------------------------|-----------------|
|      1 | select   | yes          |     152340 |          0 |     0.00 | 12695.0 |   12695.0 |      7.6 |    0.734 |       13 |       19 |             61 |             97 |          21.4 |       20744 |            76.6 | ok                       | generator-bound |
|      2 | thread   | yes          |      98211 |         37 |     0.04 |  8184.3 |    8181.2 |     11.8 |        9 |       25 |       61 |            100 |             88 |          35.2 |        8152 |           107.7 | completed_with_errors    |                 |
|      — | process  | no           |      20417 |       1203 |     5.89 |  2041.7 |    1921.4 |     38.5 |       31 |       88 |      210 |             23 |             13 |         180.3 |        8877 |            61.7 | server_crashed (partial) | errors          |
|      — | single   | yes          |          — |          — |        — |       — |         — |        — |        — |        — |        — |              — |              — |             — |           — |               — | server_failed_to_start   |                 |

## Table 2. Ranked by average response time

The same table as Table 1: ranked by average response time, every row keeps its place and rank.

## Columns

- **Rank**: place by the table's metric. "—" means not ranked: the run has no number for it, has only partial \
numbers, or did not work: it did not finish (its outcome is neither ok nor completed_with_errors), or more than 1% of \
its requests failed (the `errors` flag). RPS counts failures, so a server that fails fast would look fast; its row is \
listed, below the ranked ones, with what it did. Unranked rows come last.
- **Keep-alive**: whether the server kept connections open between requests.
- **Requests**, **Failures**, **Fail %**: Locust's counts over the measured window (see Measurement); Fail % is \
failures per 100 requests.
- **RPS**: requests per second as Locust counts them, failed requests included, so fast failures inflate it.
- **Goodput**: successful requests per second: RPS without the failures.
- **Avg ms**: mean response time (exact).
- **p50 ms**, **p95 ms**, **p99 ms**: percentiles of an HDR histogram of every response time in microseconds, to 3 \
significant digits (Locust's own histogram, rounded to whole milliseconds below 100 ms, only for a run without one).
- **Server CPU %**, **Locust CPU %**: CPU time each process tree (children included) used over the measured window; \
100 = one core busy.
- **Peak mem MB**: the server's largest memory during the run, children included, as PSS (a page shared by N processes counts 1/N in each).
- **Req/CPU-s**: requests per CPU-second the server used in the measured window: what a request costs it, however \
hard it was pushed.
- **Locust us/req**: CPU microseconds Locust used per request in the same window: what a request costs the \
generator. With 1e6 / (Locust us/req) below the server's Req/CPU-s, one core of Locust cannot keep up with one of \
the server.
- **Outcome**: how the run ended; "(partial)" marks numbers from a run that did not end cleanly.
- **Flags**: reasons to doubt the row, explained under Flags; empty when there are none.
- **—**: unknown. A missing number is never shown as 0.

## Flags

- **generator-bound**: Locust used >= 90% of its cores while the server did not: the number measures the load \
generator, not the server. Give Locust more cores (it runs a process on each core it is given: a machine with \
more cores, or load=distributed workers on other machines); with load.user_class=fast or http, the default loop \
user costs about a tenth per request. An open model (load.arrival_rate) is also generator-bound when more than 1% of its \
requests were sent late although a connection was free and the server was below that share: the generator could \
not keep its own schedule. Seen in: select (0).
- **errors**: more than 1.0% of requests failed; RPS counts failures, so read goodput instead. Seen in: process (2).

## Measurement

- Window: numbers cover the steady window, from when every user had started plus the warm-up (`load.warmup_s`) \
until the run time ended: ramp-up is excluded. Except process (2): the whole run, ramp-up included (the steady \
window was unavailable).
- Pinning: server on CPU 0, Locust on CPUs 1-3.

## Notes

- **completed_with_errors** (thread): the run finished but some requests failed (Fail % counts those in the measured \
window; the run's `locust_failures.csv` lists each kind).
- **server_failed_to_start** (single): the server never became ready, so no load was sent.
- **server_crashed** (process): the server exited while under load; numbers, if any, cover only the time before \
the crash.
- **(partial)**: numbers from a run that did not end cleanly cover only part of it; they are shown but not ranked.

## Reproduce

One command per run, from the repository root (the comment is the run's directory):

```sh
python -m runner server=select   # 0
python -m runner server=thread   # 1
python -m runner server=process  # 2
python -m runner server=single   # 3
```

Raw data: `results.csv` beside this report has one row per run, unrounded, with more columns than the tables: \
`max_ms`; `total_requests` and `served`, Locust's and the server's own count over the whole run, ramp-up included; \
`window`, `repeat`, `cell` (runs of one cell differ only in `run.repeat`) and `rerun`. Each run's directory holds \
its `result.json`, Locust's CSV files and `locust.html`, `server.log` and `locust.log`.
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
    for job_name, (server, keepalive, outcome, served, metrics, used, flags) in FIXTURE.items():
        job = root / job_name
        write_hydra_config(job, server, keepalive)
        result = RunResult(
            outcome=outcome,
            server={"served": served, "cpus": [0]},
            load=dict(LOAD),
            config={
                "server": {"name": server, "keepalive": keepalive},
                "workload": {"name": "hello"},
                "load": {"users": 100, "spawn_rate": 100.0, "user_class": "fast"},
            },  # fmt: skip
            metrics=metrics,
            resources=used,
            flags=flags,
            provenance=dict(PROVENANCE),
            rerun=f"python -m runner server={server}",
        )
        write_result(result, job)
    return root


def table_rows(markdown: str, heading: str) -> list[dict[str, str]]:
    """The body rows of the table(s) under `heading`, sub-tables concatenated, as {header: stripped cell}."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines() if line[:1] == "|"]
    body = [line for line in lines if line != lines[0] and not set(line[0]) <= set("-")]
    return [dict(zip(lines[0], line, strict=True)) for line in body]


def sub_headings(markdown: str, heading: str) -> list[str]:
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line[4:] for line in section.splitlines() if line.startswith("### ")]


def values(runs: list[Run]) -> list[dict]:
    """Each run's row as the column registry reads it from its record."""
    return [row_values(run) for run in runs]


def test_render_matches_golden_markdown(sweep: Path) -> None:
    frame = to_frame(load_runs(sweep))
    assert render(frame, "Stress test report: sweep", PROVENANCE) == EXPECTED


def test_write_report_writes_the_same_markdown(sweep: Path) -> None:
    path = write_report(sweep)
    assert path == sweep / "report.md"
    text = path.read_text()  # EXPECTED, with the figures (tests/runner/report/test_plots.py) between title and summary
    title, rest = EXPECTED.split("\n", 1)
    assert text.startswith(title + "\n\n![") and text.endswith(rest)
    assert not (sweep / CELLS_FILE).exists()  # no repeats, no cells


def test_rankings_order_each_table_by_its_metric_and_put_unranked_rows_last(made: Any) -> None:
    runs = [
        made(server="slow", outcome="ok", rps=500.0, avg_ms=40.0, run="0"),
        made(server="fast", outcome="ok", rps=9000.0, avg_ms=9.0, run="1"),
        made(server="lean", outcome="completed_with_errors", rps=7000.0, avg_ms=2.0, run="2"),
        made(server="dead", outcome="server_failed_to_start", run="3"),
        made(server="crashy", outcome="server_crashed", rps=99999.0, avg_ms=0.1, partial=True, run="4"),
    ]
    markdown = render(to_frame(runs), "t", {})
    by_rps = table_rows(markdown, "Ranked by requests per second")
    by_avg = table_rows(markdown, "Ranked by average response time")
    assert [(row["Rank"], row["Server"]) for row in by_rps] == [
        ("1", "fast"),
        ("2", "lean"),
        ("3", "slow"),
        ("—", "crashy"),
        ("—", "dead"),
    ]
    assert [(row["Rank"], row["Server"]) for row in by_avg] == [
        ("1", "lean"),
        ("2", "fast"),
        ("3", "slow"),
        ("—", "crashy"),
        ("—", "dead"),
    ]
    assert "All runs" not in markdown  # one run per cell: the rankings already list every run


def test_runs_under_different_conditions_are_ranked_in_separate_sub_tables(made: Any) -> None:
    runs = [
        made(server="select", workload="hello", outcome="ok", rps=9000.0, avg_ms=2.0, run="0"),
        made(server="thread", workload="hello", outcome="ok", rps=8000.0, avg_ms=3.0, run="1"),
        made(server="select", workload="cpu", outcome="ok", rps=500.0, avg_ms=40.0, run="2"),
        made(server="thread", workload="cpu", outcome="ok", rps=700.0, avg_ms=30.0, run="3"),
    ]
    runs.append(made(server="epoll", workload="hello", outcome="ok", rps=8500.0, avg_ms=1.5, run="4"))  # fastest
    markdown = render(to_frame(runs), "t", {})
    assert [r["Server"] for r in table_rows(markdown, "Table 2. Ranked by average response time")][:3] == [
        "epoll", "select", "thread"]  # fmt: skip
    runs.pop()
    markdown = render(to_frame(runs), "t", {})
    for heading in ("Table 1. Ranked by requests per second", "Table 2. Ranked by average response time"):
        if heading.startswith("Table 2"):  # the same as Table 1, group by group: said in one sentence
            assert "## Table 2. Ranked by average response time\n\nThe same table as Table 1:" in markdown
            continue
        assert sub_headings(markdown, heading) == ["workload hello", "workload cpu"]  # first appearance
        rows = table_rows(markdown, heading)
        assert [(r["Rank"], r["Server"]) for r in rows] == [
            ("1", "select"),
            ("2", "thread"),
            ("1", "thread"),
            ("2", "select"),
        ]
        assert "Workload" not in rows[0]  # the sub-heading says it
    assert "## Table 1. Ranked by requests per second\n\n### workload hello\n\n| " in markdown
    assert "Each sub-table is ranked on its own" in markdown


def test_keepalive_splits_groups_only_when_a_command_sets_it(made: Any) -> None:
    runs = [
        made(server="select", keepalive=True, outcome="ok", rps=9000.0, avg_ms=2.0, run="0"),
        made(server="single", keepalive=False, outcome="ok", rps=2000.0, avg_ms=9.0, run="1"),  # its default
    ]
    assert "###" not in render(to_frame(runs), "t", {})
    runs.append(made(server="select", keepalive=False, outcome="ok", rps=3000.0, avg_ms=8.0, run="2",
                    rerun="python -m runner server=select server.keepalive=false"))  # fmt: skip
    markdown = render(to_frame(runs), "t", {})
    assert sub_headings(markdown, "Table 1.") == ["keep-alive yes", "keep-alive no"]
    rows = table_rows(markdown, "Table 1.")
    assert [(r["Rank"], r["Server"], r["Keep-alive"]) for r in rows] == [
        ("1", "select", "yes"),
        ("1", "select", "no"),
        ("2", "single", "no"),
    ]


def test_corrupt_and_incomplete_runs_are_rows_named_from_the_hydra_config(sweep: Path) -> None:
    corrupt = sweep / "4"
    write_hydra_config(corrupt, "epoll")
    whole = (sweep / "0" / RESULT_FILE).read_text()
    (corrupt / RESULT_FILE).write_text(whole[: len(whole) // 2])  # truncated JSON
    write_hydra_config(sweep / "5", "asyncio", keepalive=False)  # killed before result.json
    (sweep / "5" / ".hydra" / "overrides.yaml").write_text("- server=asyncio\n- server.keepalive=false\n")

    runs = {run.run: run for run in load_runs(sweep)}
    assert sorted(runs) == ["0", "1", "2", "3", "4", "5"]
    rows = {row["run"]: row for row in values(load_runs(sweep))}
    assert [rows["4"][c] for c in ("outcome", "server", "workload", "users")] == ["corrupt", "epoll", "hello", 100]
    assert rows["4"]["rps"] is None and rows["4"]["requests"] is None
    assert [rows["5"][c] for c in ("outcome", "server", "keepalive")] == ["incomplete", "asyncio", False]
    assert rows["5"]["spawn_rate"] == 100.0
    assert runs["5"].rerun == "python -m runner server=asyncio server.keepalive=false"  # from Hydra's overrides

    report = write_report(sweep).read_text()
    assert (
        "6 runs: 1 ok, 1 completed_with_errors, 1 server_failed_to_start, 1 server_crashed, 1 incomplete, 1 corrupt."
        in report
    )
    rows = table_rows(report, "Ranked by requests per second")
    assert {(row["Server"], row["Outcome"]) for row in rows} >= {("epoll", "corrupt"), ("asyncio", "incomplete")}
    assert "- **corrupt** (epoll):" in report
    assert "- **incomplete** (asyncio):" in report
    assert "python -m runner server=asyncio server.keepalive=false  # 5\n" in report
    assert "# 4: no command recorded\n" in report


def test_a_run_without_a_readable_hydra_config_shows_question_marks(tmp_path: Path) -> None:
    job = tmp_path / "lonely"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("server: [unclosed\n")
    (job / RESULT_FILE).write_text("{not json")

    [row] = values(load_runs(tmp_path))
    assert [row[c] for c in ("outcome", "server", "workload", "users", "run")] == ["corrupt", "?", "?", None, "lonely"]
    assert "| corrupt " in render(to_frame(load_runs(tmp_path)), "t", {})


# Run "0" of FIXTURE as the column registry (runner/report/columns.py) reads it from its record: one line per
# column, so a new column is its registry entry plus its line here. None: runner/report/runs.py fills it.
ROW_0 = {
    "server": "select", "workload": "hello", "keepalive": True, "users": 100, "spawn_rate": 100.0,
    "cores": "1", "arrival_rate": None, "settings": None, "repeat": None,
    "requests": 152340, "failures": 0, "fail_pct": 0.0, "rps": 12695.0, "goodput": 12695.0, "avg_ms": 7.62,
    "p50_ms": 0.734, "p95_ms": 13.0, "p99_ms": 19.0,
    "uncorrected_p99_ms": None, "intended_rps": None, "sent_rps": None, "late": None, "dropped": None,
    "max_ms": 45.1, "total_requests": 160012, "served": 160012,
    "server_cpu_pct": 61.2, "locust_cpu_pct": 97.3, "peak_memory_mb": 21.4, "requests_per_cpu_s": 20743.6,
    "locust_us_per_request": 76.64,
    "outcome": "ok", "partial": False, "flags": "generator-bound", "objectives": "", "why": "",
    "window": "steady", "server_cpus": "0", "locust_cpus": "1-3",
    "cell": None, "group": None, "run": "0", "rerun": "python -m runner server=select",
}  # fmt: skip


def test_each_column_reads_its_value_from_the_record(sweep: Path) -> None:
    assert values(load_runs(sweep))[0] == ROW_0
    assert list(ROW_0) == list(COLUMNS)  # results.csv's columns, in its order


def test_the_registry_names_each_column_once_and_explains_each_shown_one() -> None:
    names = [c.name for c in REGISTRY]
    assert len(names) == len(set(names))
    explained = {c.name for c in REGISTRY if c.legend}
    assert {c.legend_with for c in REGISTRY if c.legend_with} <= explained
    shown = {c.name for c in REGISTRY if c.header}
    assert {c.name for c in REGISTRY if c.header and not (c.legend or c.legend_with)} == {"server"}
    assert [" ".join(c.header for c in columns) for columns, _ in legend_lines(shown)][:3] == [
        "Run", "Workload", "Keep-alive"]  # fmt: skip


@pytest.mark.parametrize("version", [99, None, "2"])
def test_a_result_of_an_unknown_schema_is_said_not_misread(sweep: Path, version: Any) -> None:
    path = sweep / "0" / RESULT_FILE
    data = json.loads(path.read_text())
    data["schema_version"] = version
    path.write_text(json.dumps(data))
    run = load_runs(sweep)[0]
    assert (run.outcome, run.result, values([run])[0]["rps"]) == ("unknown_schema", None, None)
    assert f"schema_version {version!r}, and this runner reads 1 to {SCHEMA_VERSION}" in run.detail
    report = write_report(sweep).read_text()
    assert "- **unknown_schema** (select): the run's `result.json` has a `schema_version`" in report
    assert f"  - `0`: {path}: schema_version {version!r}" in report  # its reason, under Notes


def test_results_csv_round_trips_with_one_row_per_run(sweep: Path) -> None:
    write_report(sweep)
    frame = pd.read_csv(sweep / "results.csv", dtype={"run": str, "cell": str})
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(FIXTURE)
    assert list(frame["run"]) == ["0", "1", "2", "3"]
    assert list(frame["server"]) == ["select", "thread", "process", "single"]
    assert frame["rps"].tolist()[:3] == [12695.0, 8184.3, 2041.7]
    assert frame["rps"].isna().tolist() == [False, False, False, True]
    assert frame["partial"].tolist() == [False, False, True, False]
    assert frame["served"].tolist()[:2] == [160012, 105065]
    assert frame["total_requests"].tolist()[:2] == [160012, 105102]
    assert frame["goodput"].tolist()[:3] == [12695.0, 8181.2, 1921.4]
    assert frame["server_cpu_pct"].tolist()[:3] == [61.2, 100.4, 23.0]
    assert frame["locust_cpu_pct"].tolist()[:3] == [97.3, 88.1, 12.6]
    assert frame["peak_memory_mb"].tolist()[:3] == [21.4, 35.2, 180.3]
    assert frame["requests_per_cpu_s"].tolist()[:3] == [20743.6, 8151.7, 8877.0]
    assert frame["flags"].fillna("").tolist() == ["generator-bound", "", "errors", ""]
    assert frame["window"].tolist()[:3] == ["steady", "steady", "whole-run"]
    assert frame["rerun"].tolist()[0] == "python -m runner server=select"
    assert frame["cell"].nunique() == 4 and frame["cell"].str.len().eq(8).all()


def test_provenance_keys_render_in_a_stable_order_whatever_their_values(made: Any) -> None:
    provenance = {
        **PROVENANCE,
        "nofile_limit": [1024, 4096],
        "git_dirty": True,
        "kernel": "6.1.0",
        "hostname": "bench1",
        "locust": None,
    }
    markdown = render(to_frame([made(server="select", outcome="ok", rps=1.0, avg_ms=1.0)]), "t", provenance)
    assert markdown.splitlines()[3] == (
        "Machine: CPU: Test CPU @ 3.0GHz; cores: 4; kernel: 6.1.0; Python: 3.11.9; Locust: —; Hydra: 1.3.2; "
        "git commit: 0123abc; uncommitted changes: yes; hostname: bench1; nofile_limit: [1024, 4096]."
    )


def test_an_empty_directory_gives_a_report_saying_no_runs_were_found(tmp_path: Path) -> None:
    report = write_report(tmp_path).read_text()
    assert report == f"# Stress test report: {tmp_path.name}\n\nNo runs were found.\n"
    assert pd.read_csv(tmp_path / "results.csv").empty


# --- statistics ---------------------------------------------------------------------------------


def test_mean_interval_matches_a_hand_computed_student_t_interval() -> None:
    # mean 12, s = 2, t(0.975, df=2) = 4.303: 12 -/+ 4.303 * 2 / sqrt(3) = 12 -/+ 4.969
    low, high = stats.mean_interval([10, 12, 14])
    assert (round(low, 2), round(high, 2)) == (7.03, 16.97)
    assert stats.mean_interval([5.0]) is None
    assert stats.mean_interval([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert (stats.t_975(1), stats.t_975(30), stats.t_975(31), stats.t_975(1000)) == (12.706, 2.042, 1.96, 1.96)


def test_spread_and_median() -> None:
    assert stats.median([8000, 9200, 8400]) == 8400
    assert stats.spread([8000, 9200, 8400]) == pytest.approx(1200 / 8400)
    assert stats.spread([1.0]) is None


def test_tied_ranks_share_the_rank_of_the_group_leader_and_mark_it() -> None:
    intervals = [(10.0, 12.0), (11.0, 13.0), (5.0, 6.0), (5.5, 7.0), (5.8, 5.9), (1.0, 2.0)]
    assert stats.tied_ranks(intervals) == ["1=", "1=", "3=", "3=", "3=", "6"]
    assert stats.tied_ranks([None, (1.0, 2.0), None]) == ["1", "2", "3"]


def test_tied_ranks_do_not_chain_through_a_row_that_overlaps_both_neighbours() -> None:
    # B overlaps A and C, but C does not overlap A, the leader: C starts a new rank
    assert stats.tied_ranks([(10.0, 12.0), (11.0, 13.0), (12.5, 14.0)]) == ["1=", "1=", "3"]
    assert stats.tied_ranks([(10.0, 12.0), (11.0, 13.0), (12.5, 14.0), (13.5, 15.0)]) == ["1=", "1=", "3=", "3="]


def test_a_cell_takes_medians_of_its_complete_runs_even_between_two_counts(made: Any) -> None:
    runs = [
        made(server="s", outcome="completed_with_errors", requests=1000, failures=37, rps=100.0, avg_ms=1.0, run="0"),
        made(server="s", outcome="completed_with_errors", requests=1000, failures=38, rps=110.0, avg_ms=2.0, run="1"),
        made(server="s", outcome="server_crashed", requests=10, failures=9, rps=5.0, avg_ms=9.0, partial=True, run="2"),
    ]
    [cell] = to_cells(to_frame(runs), unstable_spread=0.1).to_dict("records")
    assert (cell["n"], cell["runs"], cell["failures"], cell["rps"], cell["avg_ms"]) == (2, "0 1 2", 37.5, 105.0, 1.5)
    assert cell["rps_spread"] == pytest.approx(10 / 105)
    assert (cell["flags"], cell["outcome"]) == ("", "2 completed_with_errors, 1 server_crashed")


# --- repeats ------------------------------------------------------------------------------------

# server -> RPS and avg ms of repeats 0, 1, 2: epoll and select overlap, thread spreads 14% (unstable)
REPEATS = {
    "epoll": ([12500.0, 12900.0, 12700.0], [7.9, 7.7, 8.0]),
    "select": ([12000.0, 12400.0, 12200.0], [8.3, 8.1, 8.2]),
    "thread": ([8000.0, 9200.0, 8400.0], [12.5, 10.9, 11.9]),
}


def config(server: str, repeat: int, **validity: float) -> dict:
    return {
        "server": {"name": server, "keepalive": True, "backlog": 1024},
        "load": {"name": "default", "users": 100, "spawn_rate": 100.0, "run_time": "10s", "user_class": "fast"},
        "workload": {"name": "hello", "path": "/"},
        "run": {"host": "127.0.0.1", "pin": True, "repeat": repeat, "validity": {"unstable_spread": 0.1, **validity}},
    }


def write_run(root: Path, name: str, cfg: dict, outcome: str = "ok", metrics: Metrics | None = None, **kw) -> None:
    job = root / name
    job.mkdir(parents=True)
    result = RunResult(
        outcome=outcome,
        server={"cpus": [0]},
        load={"cpus": [1]},
        metrics=metrics or Metrics(),
        config=cfg,
        rerun=f"python -m runner -m server={cfg['server']['name']} run.repeat={cfg['run']['repeat']}",
        **kw,
    )
    write_result(result, job)


@pytest.fixture
def repeats(tmp_path: Path) -> Path:
    """3 servers x 3 repeats, interleaved as `run.repeats=3` runs them, plus a crashed 4th thread repeat."""
    job = 0
    for repeat in range(3):
        for server, (rps, avg) in REPEATS.items():
            requests = int(rps[repeat] * 10)
            metrics = Metrics(
                requests=requests,
                failures=0,
                failure_ratio=0.0,
                rps=rps[repeat],
                goodput=rps[repeat],
                avg_ms=avg[repeat],
                median_ms=avg[repeat],
                window="steady",
            )
            used = resources(90.0 + repeat, 60.0, 20.0, requests / 9.0)
            write_run(tmp_path, f"{job}_{server}", config(server, repeat), metrics=metrics, resources=used)
            job += 1
    crashed = Metrics(requests=500, failures=0, rps=100.0, avg_ms=50.0, window="whole-run", partial=True)
    write_run(tmp_path, f"{job}_thread", config("thread", 3), "server_crashed", crashed)
    return tmp_path


def test_repeats_rank_cells_by_median_with_intervals_ties_and_instability(repeats: Path) -> None:
    report = write_report(repeats).read_text()
    assert "\n10 runs: 9 ok, 1 server_crashed.\n" in report
    assert "3 cells of 3 to 4 runs (runs whose config differs only in `run.repeat`)" in report
    same = "Same for every run: workload hello, keep-alive yes, 100 users, spawn rate 100/s, server on 1 core."
    assert same in report

    by_rps = table_rows(report, "Table 1. Cells ranked by requests per second")
    assert [(r["Rank"], r["Server"], r["n"], r["RPS [95% CI]"], r["Flags"], r["Outcome"]) for r in by_rps] == [
        ("1=", "epoll", "3", "12700.0 [12203.1, 13196.9]", "", "ok"),
        ("1=", "select", "3", "12200.0 [11703.1, 12696.9]", "", "ok"),
        ("3", "thread", "3", "8400.0 [7015.4, 10051.3]", "unstable", "3 ok, 1 server_crashed"),
    ]
    assert by_rps[0]["Avg ms [95% CI]"] == "7.9 [7.5, 8.2]"
    assert by_rps[0]["Server CPU %"] == "91"  # medians of the complete runs: 90, 91, 92

    # by average response time: epoll 7.9 [7.5, 8.2], select 8.2 [8.0, 8.4] (tied), thread 11.9 [9.8, 13.8] -- the
    # same ranks in the same order as Table 1, so Table 2 says so instead of repeating it
    assert "## Table 2. Cells ranked by average response time\n\nThe same table as Table 1:" in report

    everything = table_rows(report, "Table 3. All runs")
    assert [(r["Run"], r["Server"], r["Repeat"]) for r in everything] == [
        ("0_epoll", "epoll", "0"),
        ("3_epoll", "epoll", "1"),
        ("6_epoll", "epoll", "2"),
        ("1_select", "select", "0"),
        ("4_select", "select", "1"),
        ("7_select", "select", "2"),
        ("2_thread", "thread", "0"),
        ("5_thread", "thread", "1"),
        ("8_thread", "thread", "2"),
        ("9_thread", "thread", "3"),
    ]
    assert everything[-1]["Outcome"] == "server_crashed (partial)" and everything[-1]["RPS"] == "100.0"

    assert (
        "- **unstable**: repeats of this cell spread by >= 10% of their median. "
        "Seen in: thread (2_thread, 5_thread, 8_thread).\n" in report  # the complete runs it compared
    )
    assert "Except thread (9_thread): the whole run, ramp-up included" in report
    assert "python -m runner -m server=thread run.repeat=3  # 9_thread\n" in report

    cells = pd.read_csv(repeats / CELLS_FILE)
    assert cells["server"].tolist() == ["epoll", "select", "thread"]
    assert cells["n"].tolist() == [3, 3, 3]
    assert cells["rps"].tolist() == [12700.0, 12200.0, 8400.0]
    assert cells["rps_low"].round(2).tolist() == [12203.13, 11703.13, 7015.38]
    assert cells["flags"].fillna("").tolist() == ["", "", "unstable"]


def test_the_unstable_threshold_comes_from_the_runs_config(repeats: Path) -> None:
    for path in repeats.glob("*/result.json"):
        data = json.loads(path.read_text())
        data["config"]["run"]["validity"]["unstable_spread"] = 0.2
        path.write_text(json.dumps(data))
    report = write_report(repeats).read_text()
    assert "**unstable**" not in report
    assert [row["Flags"] for row in table_rows(report, "Table 1.")] == ["", "", ""]


def test_one_complete_run_per_cell_keeps_one_row_per_run(repeats: Path) -> None:
    for path in sorted(repeats.glob("[3-8]_*")):  # keep repeat 0, and the crashed run
        for file in path.iterdir():
            file.unlink()
        path.rmdir()
    report = write_report(repeats).read_text()
    assert "Table 1. Ranked by requests per second" in report and "All runs" not in report
    rows = table_rows(report, "Table 1. Ranked by requests per second")
    assert [(r["Rank"], r["Server"], r["RPS"]) for r in rows] == [
        ("1", "epoll", "12500.0"),
        ("2", "select", "12000.0"),
        ("3", "thread", "8000.0"),
        ("—", "thread", "100.0"),
    ]
    assert not (repeats / CELLS_FILE).exists()


# --- new fields, old results --------------------------------------------------------------------


def test_flags_legend_uses_the_runs_thresholds_and_lists_only_flags_that_occur(tmp_path: Path) -> None:
    metrics = Metrics(requests=900, failures=90, failure_ratio=0.1, rps=90.0, goodput=81.0, avg_ms=5.0)
    cfg = config("select", 0, max_error_ratio=0.05, min_requests=1000)
    write_run(tmp_path, "0", cfg, "completed_with_errors", metrics, flags=["errors", "few-requests", "mystery"])
    report = write_report(tmp_path).read_text()
    [row] = table_rows(report, "Ranked by requests per second")
    assert row["Flags"] == "errors, few-requests, mystery"
    flags = report.split("## Flags\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert flags == [
        "- **errors**: more than 5.0% of requests failed; RPS counts failures, so read goodput instead. "
        "Seen in: select (0).",
        "- **few-requests**: fewer than 1000 requests in the measured window: percentiles are mostly noise. "
        "Seen in: select (0).",
        "- **mystery**: a flag this report does not know. Seen in: select (0).",
    ]


def test_results_from_before_resources_and_flags_still_render(tmp_path: Path) -> None:
    job = tmp_path / "old"
    job.mkdir()
    old = {  # schema 1 as first written: no goodput, window, resources, flags, rerun or cpus
        "schema_version": 1,
        "outcome": "ok",
        "detail": "",
        "server": {"name": "select", "keepalive": True, "served": 1000, "exit_code": 0},
        "load": {"users": 10, "spawn_rate": 10.0, "run_time_s": 10.0, "user_class": "fast"},
        "workload": {"name": "hello"},
        "metrics": {"requests": 1000, "failures": 0, "failure_ratio": 0.0, "rps": 100.0, "avg_ms": 2.0,
                    "median_ms": 2.0, "p95_ms": 3.0, "p99_ms": 4.0, "max_ms": 5.0, "partial": False},
        "config": {},
        "provenance": {},
        "started_at": "2026-11-26T12:00:00+00:00",
        "duration_s": 11.0,
    }  # fmt: skip
    (job / RESULT_FILE).write_text(json.dumps(old))
    [row] = values(load_runs(tmp_path))
    assert [row[c] for c in ("outcome", "rps", "goodput", "server_cpu_pct", "flags", "window")] == [
        "ok",
        100.0,
        None,
        None,
        "",
        None,
    ]
    report = write_report(tmp_path).read_text()
    [row] = table_rows(report, "Ranked by requests per second")
    assert (row["Rank"], row["RPS"], row["Goodput"], row["Server CPU %"], row["Flags"]) == ("1", "100.0", "—", "—", "")
    assert "## Flags" not in report
    assert "- Window: not recorded (results of an older runner: ramp-up is likely included)." in report
    assert "- Pinning: not recorded." in report
    assert "# old: no command recorded" in report


def test_columns_that_differ_only_elsewhere_in_the_config_get_a_settings_column(tmp_path: Path) -> None:
    metrics = Metrics(requests=5000, failures=0, rps=500.0, avg_ms=2.0, window="steady")
    short, long = config("select", 0), config("select", 0)
    long["load"]["run_time"] = "1m"
    write_run(tmp_path, "0", short, metrics=metrics)
    write_run(tmp_path, "1", long, metrics=metrics)
    report = write_report(tmp_path).read_text()
    rows = table_rows(report, "Ranked by requests per second")
    assert [(r["Rank"], r["Server"], r["Settings"]) for r in rows] == [  # a different run time: ranked apart
        ("1", "select", "load.run_time=10s"),
        ("1", "select", "load.run_time=1m"),
    ]
    assert sub_headings(report, "Ranked by requests per second") == ["load.run_time=10s", "load.run_time=1m"]
    same = "Same for every run: workload hello, keep-alive yes, 100 users, spawn rate 100/s, server on 1 core."
    assert same in report


def test_pinning_line_names_the_runs_when_it_differs(made: Any) -> None:
    runs = [
        made(server="select", outcome="ok", rps=1.0, avg_ms=1.0, server_cpus="0", locust_cpus="1", run="0"),
        made(server="thread", outcome="ok", rps=1.0, avg_ms=1.0, server_cpus="any", locust_cpus="any", run="1"),
    ]
    markdown = render(to_frame(runs), "t", {})
    assert (
        "- Pinning: server on CPU 0, Locust on CPU 1 for select (0); not pinned (server and Locust may use every "
        "core) for thread (1).\n" in markdown
    )


# --- CLI ----------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    repo = REPO
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


def test_when_every_run_is_generator_bound_the_summary_compares_what_a_request_cost(made: Any) -> None:
    def run(server: str, per_cpu_s: float | None, flags: tuple[str, ...] = ("generator-bound",)) -> Run:
        return made(server=server, outcome="ok", rps=3900.0, requests_per_cpu_s=per_cpu_s, flags=flags, run=server)

    runs = [run("select", 20012.0), run("epoll", 30828.0), run("thread", None)]
    text = render(to_frame(runs), "t", {})
    assert "**3 of 3 runs are generator-bound**" in text
    assert "(Req/CPU-s, higher is cheaper): epoll 30,828, select 20,012.\n" in text  # thread: no number
    runs[1] = run("epoll", 30828.0, flags=())
    assert "Req/CPU-s, higher is cheaper" not in render(to_frame(runs), "t", {})  # not all: the tables say it


def test_open_model_runs_rank_by_corrected_latency_per_rate_and_show_the_schedule(made: Any) -> None:
    def run(server: str, rate: float, avg: float, p99: float, raw_p99: float, late: int, where: str) -> Run:
        numbers = {"rps": rate, "avg_ms": avg, "p99_ms": p99, "uncorrected_p99_ms": raw_p99, "intended_rps": rate}
        numbers |= {"sent_rps": rate, "late": late, "dropped": 0}
        return made(server=server, workload="io", arrival_rate=rate, outcome="ok", run=where, **numbers)

    runs = [
        run("single", 50.0, 11.0, 20.0, 19.0, 0, "0"),
        run("thread", 50.0, 10.5, 12.0, 11.9, 0, "1"),
        run("single", 150.0, 900.0, 2400.0, 20.0, 1200, "2"),
        run("thread", 150.0, 10.6, 13.0, 12.0, 0, "3"),
    ]
    markdown = render(to_frame(runs), "t", {})
    heading = "Table 2. Ranked by average response time"
    assert sub_headings(markdown, heading) == ["50 requests/s arriving", "150 requests/s arriving"]
    rows = table_rows(markdown, heading)
    assert [r["Server"] for r in rows] == ["thread", "single", "thread", "single"]  # corrected latency ranks
    assert (rows[3]["p99 ms"], rows[3]["Uncorr. p99 ms"], rows[3]["Late"], rows[3]["Dropped"]) == (
        "2400",
        "20",
        "1200",
        "0",
    )
    assert rows[3]["Intended/s"] == rows[3]["Sent/s"] == "150.0" and "Rate/s" not in rows[0]  # the sub-heading says it
    assert "**Uncorr. p99 ms**" in markdown and "**Late**, **Dropped**" in markdown
    closed = render(to_frame([made(server="select", outcome="ok", rps=9000.0, avg_ms=2.0, run="0")]), "t", {})
    assert "Rate/s" not in closed and "Uncorr." not in closed and "Late" not in closed  # a closed loop: as before
