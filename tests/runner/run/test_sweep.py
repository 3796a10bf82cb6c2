"""End to end: the real CLI, real servers, real Locust, a real report. Slow, and CI runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support.runs import compose

from runner.run.experiment import run_experiment

FOUR = ["single", "thread", "process", "select"]


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _no_survivors(result: dict) -> None:
    """Nothing the run started is alive and the server's port is closed."""
    for proc in psutil.Process().children(recursive=True):
        cmdline = " ".join(proc.cmdline())
        assert "servers." not in cmdline and "locust" not in cmdline, cmdline
    if result["server"].get("listen_port"):
        assert _port_closed(result["server"]["listen_port"])


def _tagged(tag: str) -> list[psutil.Process]:
    """Live processes whose environment holds STRESSBENCH_TEST_TAG=tag (a child inherits it, orphaned or not)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("STRESSBENCH_TEST_TAG") == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
def test_sweep_of_the_four_servers_writes_a_ranked_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "-m", f"server={','.join(FOUR)}", "load=smoke", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,  # works from any directory, not only the repository
        env={**os.environ, "STRESSBENCH_TEST_TAG": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not _tagged(str(tmp_path))  # no server, Locust or spare Locust outlives the sweep
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]
    assert sorted(r["config"]["server"]["name"] for r in results) == sorted(FOUR)
    # every job's Locust was a spare, started while the sweep was planned or a job before wound down; the
    # spares resumed when a run's Locust said it was stopping
    assert [r["load"]["spare"] for r in results] == [True, True, True, True]
    for progress in sweep.glob("*/locust_progress.jsonl"):
        assert any(json.loads(line).get("stopping") for line in progress.read_text().splitlines())
    for result in results:
        assert result["outcome"] == "ok", result["detail"]
        assert result["metrics"]["failures"] == 0
        assert result["metrics"]["requests"] > 0
        # Locust's whole-run count and the server's own count agree within 0.5%
        assert (
            abs(result["server"]["served"] - result["metrics"]["total_requests"]) <= 0.005 * result["server"]["served"]
        )
        assert result["metrics"]["window"] == "steady"
        assert result["resources"]["server"]["cpu_pct"] is not None
        assert "count-mismatch" not in result["flags"]
        assert result["server"]["exit_code"] == 0
        _no_survivors(result)
    for name in ["locust.html", "locust_stats.csv", "locust.json", "server.log", "locust.log"]:
        assert len(list(sweep.glob(f"*/{name}"))) == 4, name
    report = (sweep / "report.md").read_text()
    ok_rows = [line for line in report.splitlines() if line.startswith("|") and "| ok" in line]
    same = "The same table as Table 1" in report  # Table 2 says so instead of repeating the same rows
    assert len(ok_rows) == (4 if same else 8), report  # four rows in each ranking
    assert (sweep / "results.csv").exists()



def test_a_server_that_never_gets_ready_is_recorded_and_locust_never_starts(tmp_path):
    cfg = compose("server=thread", "load=smoke", "server.ready_timeout_s=0.001")
    result = run_experiment(cfg, tmp_path)
    assert result.outcome == "server_failed_to_start"
    assert "READY" in result.detail
    assert not (tmp_path / "locust.log").exists()
    assert json.loads((tmp_path / "result.json").read_text())["outcome"] == "server_failed_to_start"
    _no_survivors(result.to_dict())


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags come before the overrides
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            *flags,
            "load=smoke",
            "load.run_time=1s",
            *(a for a in args if a not in flags),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_sweep_with_a_run_not_ok_exits_3_and_says_so_last(tmp_path):
    """Before, a sweep whose every run failed exited 0: CI could not catch it. 0.001 s is too short
    for any server to print READY, so the first point is server_failed_to_start, the second ok."""
    sweep = tmp_path / "sweep"
    proc = _cli(tmp_path, "-m", "server=select", "server.ready_timeout_s=0.001,10", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == "1 of 2 runs did not finish (1 server_failed_to_start): exit status 3"
    outcomes = sorted(json.loads(p.read_text())["outcome"] for p in sweep.glob("*/result.json"))
    assert outcomes == ["ok", "server_failed_to_start"]
    report = (sweep / "report.md").read_text()  # the reason is in the report, not only on the console
    assert "  - `0_select_hello_r0`: server did not print READY within 0.001 s" in report, report

    single = _cli(tmp_path, "server=select", "server.ready_timeout_s=0.001", f"hydra.run.dir={tmp_path / 'one'}")
    assert single.returncode == 3, single.stderr[-3000:]
    assert single.stderr.splitlines()[-1] == "1 of 1 runs did not finish (1 server_failed_to_start): exit status 3"
    fine = _cli(tmp_path, "server=select", f"hydra.run.dir={tmp_path / 'two'}")
    assert fine.returncode == 0, fine.stderr[-3000:]
    assert fine.stderr.splitlines()[-1] == "1 of 1 run finished, every objective met"


@pytest.mark.slow
def test_a_broken_objective_exits_5_naming_the_rows_and_a_loose_one_exits_0(tmp_path):
    """run.slo: what a CI gate asks. p99 under 10 us cannot be met on loopback; under 10 s always is."""
    strict = _cli(tmp_path, "-m", "server=select,thread", "load=smoke", "run.slo.p99_ms=0.01",
                  f"hydra.sweep.dir={tmp_path / 'strict'}")  # fmt: skip
    assert strict.returncode == 5, strict.stderr[-3000:]
    last = strict.stderr.splitlines()[-1]
    assert last.startswith("2 of 2 runs broke an objective (run.slo): select (0_select_hello_r0): p99_ms ") and (
        "; thread (1_thread_hello_r0): p99_ms " in last and last.endswith(": exit status 5")
    ), last
    report = (tmp_path / "strict" / "report.md").read_text()
    assert "## Objectives" in report and "p99_ms" in report
    loose = _cli(tmp_path, "-m", "server=select,thread", "load=smoke", "run.slo.p99_ms=10000", "run.slo.min_rps=1",
                 f"hydra.sweep.dir={tmp_path / 'loose'}")  # fmt: skip
    assert loose.returncode == 0, loose.stderr[-3000:]
    assert loose.stderr.splitlines()[-1] == "2 of 2 runs finished, every objective met"


def test_server_port_names_the_port_and_one_in_use_is_refused_before_anything_starts(tmp_path):
    """server.port: a firewall rule or a colleague's client expects a port. One that something already
    holds is refused before the server and Locust start, naming the port and who holds it."""
    from runner.run.procs import free_port

    port = free_port("127.0.0.1")
    cfg = compose("server=select", "load=smoke", "load.run_time=1s", f"server.port={port}")
    for name in ("free", "taken"):
        (tmp_path / name).mkdir()
    result = run_experiment(cfg, tmp_path / "free")
    assert result.outcome == "ok", result.detail
    assert result.server["listen_port"] == port
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the run left TIME_WAITs on it
        other.bind(("127.0.0.1", port))
        other.listen()
        taken = run_experiment(cfg, tmp_path / "taken")
    assert taken.outcome == "server_failed_to_start"
    assert f"port {port} on 127.0.0.1 (server.port={port}): Address already in use, held by pid {os.getpid()}" in (
        taken.detail
    )
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["result.json"]  # no server.log, no locust.log
    _no_survivors(taken.to_dict())
