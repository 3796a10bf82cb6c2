"""Distributed Locust (runner/run/distributed.py) for real: a master and local workers against a real
server on loopback; a worker SIGKILLed by pid mid-run; fewer workers than expected; the checks."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from support import REPO
from support.runs import compose

from runner.record import load_runs
from runner.report import workers as workers_report
from runner.run import distributed, procs, sweep
from runner.run.experiment import run_experiment


def _ours() -> list[psutil.Process]:
    """Live servers and Locusts (masters, workers) this test process started."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if ("servers." in cmdline or "locust" in cmdline) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_a_master_and_two_local_workers_count_what_the_server_served(tmp_path):
    cfg = compose("server=select", "load=distributed", "load.users=20", "load.spawn_rate=20", "load.run_time=3s")
    result = run_experiment(cfg, tmp_path)

    assert result.outcome == "ok", result.detail
    workers = result.workers
    assert (workers["expected"], workers["joined"], workers["local"], workers["lost"]) == (2, 2, 2, 0)
    assert len(workers["each"]) == 2
    for worker in workers["each"]:
        assert worker["local"] and worker["state"] == "joined" and worker["exit_code"] == 0
        assert worker["requests"] > 0 and 0 < worker["share"] < 1, worker
        assert worker["counted_by"] == "phase-file"
    phase_files = tmp_path.glob("locust_phases_*.json")
    assert {w["pid"] for w in workers["each"]} == {int(p.stem.rsplit("_", 1)[1]) for p in phase_files}
    assert sum(w["requests"] for w in workers["each"]) == result.metrics.total_requests
    served = result.server["served"]
    assert abs(served - result.metrics.total_requests) <= 0.005 * served, (served, result.metrics.total_requests)
    assert result.metrics.window == "steady" and not result.metrics.partial
    assert "--master" in result.load["command"] and result.load["exit_code"] == 0
    assert result.resources["locust"]["cpu_s_window"] > 0  # master + workers
    assert "| . | 2 of 2 | 0 |" in workers_report.section(load_runs(tmp_path))  # the report's section
    assert not _ours()
    assert _port_closed(result.server["listen_port"]) and _port_closed(workers["master_port"])


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_an_outcome_with_partial_numbers(tmp_path):
    cfg = compose("server=select", "load=distributed", "load.users=10", "load.spawn_rate=10", "load.run_time=20s")
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            workers = [p for p in _ours() if "--worker" in p.cmdline()]
            if len(workers) == 2 and (tmp_path / distributed.LEDGER).exists():
                time.sleep(4)  # mid-run: both sending load, and each reported to the master (every 3 s)
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    started = time.monotonic()
    result = run_experiment(cfg, tmp_path)
    killer.join(5)

    assert killed, "no worker was found to kill"
    assert time.monotonic() - started < 16, "the run went on after a worker died"
    assert result.outcome == "loadgen_failed"
    assert f"(pid {killed[0]}) was killed by signal 9" in result.detail, result.detail
    assert result.metrics.partial and result.metrics.requests
    dead = [w for w in result.workers["each"] if w["pid"] == killed[0]]
    assert dead and dead[0]["state"] == "died" and dead[0]["exit_code"] == -9
    assert dead[0]["requests"] > 0 and dead[0]["counted_by"] == "master"  # its reports before it died
    assert result.workers["lost"] == 1 and result.workers["joined"] == 2
    assert "(died)" in workers_report.section(load_runs(tmp_path))
    assert not _ours()


def test_too_few_workers_is_an_outcome_not_a_hang(tmp_path, capfd):
    cfg = compose(
        "server=select", "load=distributed", "load.workers=1", "load.expect_workers=2",
        "load.expect_workers_timeout_s=2", "load=smoke", "load.mode=distributed",
    )  # fmt: skip
    started = time.monotonic()
    result = run_experiment(cfg, tmp_path)
    assert time.monotonic() - started < 20
    assert result.outcome == "loadgen_failed"
    assert result.detail == "1 of 2 workers joined in 2 s", result.detail
    assert result.workers["joined"] == 1 and result.workers["expected"] == 2
    printed = capfd.readouterr().err
    assert "--worker --master-host 127.0.0.1 --master-port" in printed and "runner/locust/workers.py" in printed
    assert not _ours()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["load.mode=cluster"], "load.mode: 'cluster' is not one of local, distributed"),
        (["load.processes=2"], "load.processes: auto or 1 in distributed mode"),
        (["load.workers=3", "load.expect_workers=2"], "load.expect_workers: must be >= load.workers"),
        (["load.master_bind_host=0.0.0.0"], "load.master_bind_host: '0.0.0.0' is not loopback"),
        (["load.master_bind_port=70000"], "load.master_bind_port: must be 0"),
        (["load.workers=0"], "load.expect_workers: must be >= load.workers and >= 1"),
    ],
)
def test_bad_distributed_settings_are_refused_before_anything_starts(overrides, message):
    errors = sweep.validate_argv(["load=distributed", *overrides])
    assert any(message in e for e in errors), errors


def test_remote_workers_need_the_explicit_switch_and_get_the_exact_command():
    assert not sweep.validate_argv(
        ["load=distributed", "load.master_bind_host=0.0.0.0", "load.allow_remote_workers=true", "load.expect_workers=3"]
    )
    cfg = compose("load=distributed", "load.master_bind_host=10.1.2.3", "load.allow_remote_workers=true")
    command = distributed.remote_command(cfg, 5557)
    assert command.startswith("python -m locust -f runner/locust/locustfile.py,runner/locust/workers.py --worker")
    assert "--master-host 10.1.2.3 --master-port 5557" in command and "--phases-prefix" not in command


@pytest.mark.slow
def test_a_worker_started_by_hand_with_the_printed_command_joins_and_is_counted(tmp_path):
    """The remote-worker path on one machine: the runner starts one worker and expects two; the
    test starts the second one itself, with the command the runner prints for other machines."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = compose(
        "server=select", "load=distributed", "load.workers=1", "load.expect_workers=2", "load.users=10",
        "load.spawn_rate=10", "load.run_time=3s", f"load.master_bind_port={port}", "workload.path=/by-hand",
    )  # fmt: skip
    command = shlex.split(distributed.remote_command(cfg, port))
    command[0] = sys.executable  # the printed command says `python`: the same interpreter here
    log = open(tmp_path / "by_hand.log", "wb")  # noqa: SIM115 -- closed in the finally
    by_hand = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (tmp_path / "job").mkdir()
    try:
        result = run_experiment(cfg, tmp_path / "job")
        assert by_hand.wait(15) == 0  # the master told it to quit
    finally:
        procs.terminate(by_hand, 1)
        log.close()
    assert result.outcome == "ok", result.detail
    assert result.workers["joined"] == 2 and result.workers["local"] == 1
    mine = [w for w in result.workers["each"] if w["pid"] == by_hand.pid]
    assert mine and not mine[0]["local"] and mine[0]["requests"] > 0 and 0 < mine[0]["share"] < 1
    served = result.server["served"]
    assert abs(served - result.metrics.total_requests) <= 0.005 * served
    # the hand-started worker had no --path: it took the master's, so every request went to it
    assert {e["name"] for e in json.loads((tmp_path / "job" / "locust.json").read_text())} == {"/by-hand"}


def _stall_the_server(after_s: float, for_s: float) -> threading.Thread:
    """SIGSTOP the run's server (found among this process's children) `after_s` from now, for `for_s`."""

    def stall() -> None:
        time.sleep(after_s)
        server = next(p for p in psutil.Process().children(recursive=True) if "servers." in " ".join(p.cmdline()))
        server.send_signal(signal.SIGSTOP)
        time.sleep(for_s)
        server.send_signal(signal.SIGCONT)

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_the_open_model_over_workers_keeps_the_rate_counts_each_request_once_and_shows_a_stall(tmp_path):
    """Two workers keep 250/s each (the master's options carry each one's share), their schedules' counts and
    corrected and uncorrected histograms merge into the run's numbers, the server's count matches, and a 1 s
    SIGSTOP of the server shows in the corrected p99 as it does with one process (test_loop_user.py)."""
    cfg = compose("server=epoll", "load=distributed", "load.arrival_rate=500", "load.users=20", "load.run_time=10s")
    stall = _stall_the_server(5.5, 1.0)  # the workers join, then ramp 0.2 s and warm up 1 s: mid-window
    result = run_experiment(cfg, tmp_path)
    stall.join()
    m = result.metrics
    assert result.outcome == "ok", result.detail
    assert result.workers["joined"] == 2 and len(list(tmp_path.glob("locust_phases_*.json"))) == 2
    assert abs(m.intended_rps - 500) <= 0.02 * 500 and abs(m.sent_rps - m.intended_rps) <= 0.02 * m.intended_rps, m
    assert result.server["served"] == m.total_requests and "count-mismatch" not in result.flags
    assert m.p99_ms >= 900 and m.uncorrected_p99_ms <= m.p99_ms / 5, m
    assert m.late >= 400 and m.dropped <= 40, m  # a few due at each worker's very end find every connection busy


@pytest.mark.slow
def test_the_open_model_over_two_local_processes_keeps_the_rate_and_counts_each_request_once(tmp_path):
    cfg = compose("server=epoll", "load.processes=2", "load.arrival_rate=1000", "load.users=20", "load.run_time=6s")
    result = run_experiment(cfg, tmp_path)
    m = result.metrics
    assert result.outcome == "ok", result.detail
    assert result.load["processes_run"] == 2 and len(list(tmp_path.glob("locust_phases_*.json"))) == 2
    assert abs(m.intended_rps - 1000) <= 0.02 * 1000 and abs(m.sent_rps - m.intended_rps) <= 0.02 * m.intended_rps, m
    assert result.server["served"] == m.total_requests and m.p99_ms and m.uncorrected_p99_ms, m
