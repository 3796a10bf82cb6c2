"""The report's figures over real sweeps (real servers, real Locust) and over result.json files built by hand
for what a smoke sweep cannot make quickly (a capacity search, a users sweep). No mocks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from runner.record import load_runs
from runner.report import plots
from runner.report.document import to_cells, write_report
from runner.report.runs import to_frame
from runner.result import RESULT_FILE, Metrics, RunResult, write_result
from runner.run.load import PROGRESS_FILE

PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.slow  # the session's sweeps run real servers and Locust


def images(report: str) -> list[str]:
    return re.findall(r"^!\[[^\]]+\]\(([^)]+)\)$", report, re.M)


def assert_pngs(directory: Path, names: list[str]) -> None:
    for name in names:
        data = (directory / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name  # a real picture, not an empty canvas


def test_a_real_sweep_report_opens_with_its_figures(smoke_sweeps, tmp_path: Path) -> None:
    sweep = Path(shutil.copytree(smoke_sweeps[0].path, tmp_path / "sweep"))
    report = write_report(sweep).read_text()
    shown = images(report)
    assert shown == ["rps.png", "latency.png", "tradeoff.png", "timeline.png"]
    assert_pngs(sweep, shown)
    # the report opens with the pictures: title, then the first image, before any table or summary
    lines = [line for line in report.splitlines() if line]
    assert lines[0].startswith("# ") and lines[1] == "![Requests per second per server](rps.png)"
    assert report.index("timeline.png") < report.index("## Table 1")
    # real runs leave the per-second progress file the over-time figure prefers to Locust's history
    assert all((job / PROGRESS_FILE).is_file() for job in sweep.glob("*_r*"))
    assert "p99 from each second's HDR histogram (microseconds" in report


def test_the_sweep_callback_already_wrote_the_figures(smoke_sweeps) -> None:
    sweep = smoke_sweeps[0].path
    assert_pngs(sweep, images((sweep / "report.md").read_text()))


def test_corrupt_and_partial_runs_do_not_break_the_figures(smoke_sweeps, tmp_path: Path) -> None:
    sweep = Path(shutil.copytree(smoke_sweeps[0].path, tmp_path / "sweep"))
    jobs = sorted(p for p in sweep.iterdir() if (p / RESULT_FILE).exists())
    (jobs[0] / RESULT_FILE).write_text('{"outcome": "ok", "metr')  # cut mid-write
    (jobs[1] / PROGRESS_FILE).write_text('{"elapsed_s": 1, "rps": 5')  # no whole line: falls back to the CSV
    (jobs[1] / "locust_stats_history.csv").write_text("Timestamp,User Count\n17957")
    (jobs[2] / RESULT_FILE).unlink()  # killed before it finished
    report = write_report(sweep).read_text()
    assert "corrupt" in report and "incomplete" in report
    shown = images(report)
    assert {"rps.png", "latency.png", "tradeoff.png", "timeline.png"} <= set(shown)
    assert_pngs(sweep, shown)


def test_a_figure_that_cannot_be_drawn_is_skipped_with_the_reason(smoke_sweeps, tmp_path: Path) -> None:
    runs = load_runs(smoke_sweeps[0].path)
    frame = to_frame(runs)
    cells = to_cells(frame, 0.1)
    broken = frame.drop(columns=["p99_ms"])  # what a bug in the tradeoff figure would look like
    figures, skipped = plots.draw_all(tmp_path, broken, cells, runs)
    assert "rps.png" in [f.file for f in figures]
    assert skipped == ["tradeoff.png was not drawn: KeyError: 'p99_ms'"]
    assert "- tradeoff.png was not drawn" in plots.markdown(figures, skipped)


CAPACITY_STEPS = [  # the shape runner/capacity.py writes (test data built by hand)
    (10, 950.0, 0.0, 12.0, "ok"),
    (20, 1800.0, 0.0, 15.0, "ok"),
    (40, 1850.0, 0.0, 40.0, "knee"),
]


def write_capacity_run(job: Path, server: str, steps: list[tuple], stop: str) -> None:
    job.mkdir(parents=True)
    config = {"server": {"name": server}, "load": {"users": 40}, "workload": {"name": "io"}}
    result = RunResult(outcome="ok", config=config,
                       metrics=Metrics(requests=1000, failures=0, rps=1800.0, avg_ms=5.0, median_ms=4.0, p95_ms=9.0,
                                       p99_ms=15.0, window="steady"))  # fmt: skip
    write_result(result, job)
    data = json.loads((job / RESULT_FILE).read_text())
    rows = [
        {"users": u, "start": 100.0 + i * 5, "end": 105.0 + i * 5, "requests": int(rps * 5), "rps": rps,
         "goodput": rps, "failure_ratio": fail, "p50_ms": p99 / 3, "p95_ms": p99 / 1.5, "p99_ms": p99,
         "locust_cpu_pct": 40.0, "server_cpu_pct": 80.0, "verdict": verdict}
        for i, (u, rps, fail, p99, verdict) in enumerate(steps)
    ]  # fmt: skip
    best = max((r for r in rows if r["verdict"] == "ok"), key=lambda r: r["rps"])
    data["capacity"] = {"steps": rows, "max_rps": best["rps"], "users_at_max": best["users"], "stop_reason": stop,
                        "stop_detail": "hand-made"}  # fmt: skip
    (job / RESULT_FILE).write_text(json.dumps(data))


def test_capacity_steps_are_drawn_when_a_search_ran(tmp_path: Path) -> None:
    write_capacity_run(tmp_path / "0", "select", CAPACITY_STEPS, "knee")
    bound = [(10, 500.0, 0.0, 5.0, "ok"), (20, 900.0, 0.0, 6.0, "generator-bound")]
    write_capacity_run(tmp_path / "1", "thread", bound, "generator-bound")
    runs = load_runs(tmp_path)
    assert runs[0].capacity["max_rps"] == 1800.0 and runs[0].outcome == "ok"
    report = write_report(tmp_path).read_text()
    assert "capacity.png" in images(report)
    assert_pngs(tmp_path, ["capacity.png"])


def test_a_users_sweep_draws_rps_and_p99_against_users(tmp_path: Path) -> None:
    for i, (users, rps, p99) in enumerate([(5, 900.0, 4.0), (10, 1500.0, 6.0), (20, 1700.0, 20.0)]):
        for server, scale in (("select", 1.0), ("thread", 0.7)):
            job = tmp_path / f"{i}_{server}"
            job.mkdir()
            config = {"server": {"name": server}, "load": {"users": users}, "workload": {"name": "hello"}}
            write_result(RunResult(outcome="ok", config=config,
                                   metrics=Metrics(requests=5000, failures=0, rps=rps * scale, avg_ms=2.0,
                                                   median_ms=2.0, p95_ms=p99 / 2, p99_ms=p99)), job)  # fmt: skip
    report = write_report(tmp_path).read_text()
    assert "users.png" in images(report)
    assert_pngs(tmp_path, ["users.png"])


SCALING = {  # server -> (RPS, server CPU %, Req/CPU-s) on 1 core and on 2: the CPU-bound sweep, by hand
    "prefork": ((3111.0, 99.0, 3142.0), (5909.0, 181.0, 3265.0)),
    "process": ((2804.0, 98.0, 2861.0), (5223.0, 171.0, 3054.0)),
    "thread": ((3154.0, 99.0, 3186.0), (2721.0, 110.0, 2474.0)),
    "select": ((3317.0, 99.0, 3351.0), (3104.0, 100.0, 3104.0)),
}
SCALING_SECTION = """\
## Scaling with cores

How each server's throughput grows with the cores it was given (a `run.server_cores=...` sweep; Locust on the \
other cores, or sharing them: "(shared)"). Each row: the median of the complete runs on that many cores (n). Ideal \
is the rate on the fewest cores, times the cores; Efficiency, RPS over Ideal. `scaling.png` draws it.

### prefork

| Cores | n | RPS | Ideal | Efficiency | Req/CPU-s | Server CPU % | Locust CPU % | Flags |
|--:|--:|--:|--:|--:|--:|--:|--:|:--|
| 1 | 1 | 3,111.0 | 3,111.0 | 1.00 | 3,142 | 99 | 12 |  |
| 2 (shared) | 1 | 5,909.0 | 6,222.0 | 0.95 | 3,265 | 181 | 12 |  |

### process

| Cores | n | RPS | Ideal | Efficiency | Req/CPU-s | Server CPU % | Locust CPU % | Flags |
|--:|--:|--:|--:|--:|--:|--:|--:|:--|
| 1 | 1 | 2,804.0 | 2,804.0 | 1.00 | 2,861 | 98 | 12 |  |
| 2 (shared) | 1 | 5,223.0 | 5,608.0 | 0.93 | 3,054 | 171 | 12 |  |

### thread

| Cores | n | RPS | Ideal | Efficiency | Req/CPU-s | Server CPU % | Locust CPU % | Flags |
|--:|--:|--:|--:|--:|--:|--:|--:|:--|
| 1 | 1 | 3,154.0 | 3,154.0 | 1.00 | 3,186 | 99 | 12 |  |
| 2 (shared) | 1 | 2,721.0 | 6,308.0 | 0.43 | 2,474 | 110 | 12 |  |

### select

| Cores | n | RPS | Ideal | Efficiency | Req/CPU-s | Server CPU % | Locust CPU % | Flags |
|--:|--:|--:|--:|--:|--:|--:|--:|:--|
| 1 | 1 | 3,317.0 | 3,317.0 | 1.00 | 3,351 | 99 | 12 |  |
| 2 (shared) | 1 | 3,104.0 | 6,634.0 | 0.47 | 3,104 | 100 | 12 |  |

Where scaling stopped:

- **thread** stopped scaling: it kept 43% of 2 x its rate on 1: its CPU stayed near one core (110% of 200%), as a \
server does whose Python runs one thread at a time (the GIL, or one event loop).
- **select** stopped scaling: it kept 47% of 2 x its rate on 1: its CPU stayed near one core (100% of 200%), as a \
server does whose Python runs one thread at a time (the GIL, or one event loop).
"""


def test_a_cores_sweep_draws_scaling_and_names_the_models_that_stop(tmp_path: Path) -> None:
    from runner.report.scaling import section

    for i, (server, points) in enumerate(SCALING.items()):
        for cores, (rps, cpu, per_cpu_s) in zip((1, 2), points, strict=True):
            job = tmp_path / f"{i}{cores}_{server}"
            job.mkdir()
            config = {"server": {"name": server}, "load": {"users": 100}, "workload": {"name": "cpu"},
                      "run": {"server_cores": cores}}  # fmt: skip
            write_result(RunResult(
                outcome="ok", config=config, load={"cpus": [1] if cores == 1 else [0, 1]},
                server={"cpus": list(range(cores)), "cores": cores, "shared_cores": cores == 2},
                metrics=Metrics(requests=20_000, failures=0, rps=rps, avg_ms=30.0, median_ms=29.0, p95_ms=40.0,
                                p99_ms=50.0),
                resources={"server": {"cpu_pct": cpu, "requests_per_cpu_s": per_cpu_s}, "locust": {"cpu_pct": 12.0}},
            ), job)  # fmt: skip
    frame = to_frame(load_runs(tmp_path))
    assert section(frame) == SCALING_SECTION
    report = write_report(tmp_path).read_text()
    assert "scaling.png" in images(report) and SCALING_SECTION in report
    assert_pngs(tmp_path, ["scaling.png"])
    assert "### server on 2 cores\n" in report and "### server on 1 core\n" in report  # each ranked on its own
