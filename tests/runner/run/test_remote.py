"""Remote targets (runner/run/remote.py): a server the runner did not start, here a real one the test
starts on loopback and owns; the runner must load it, leave it running, and say what it knows."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from support import REPO
from support.runs import compose

from runner.run import procs, sweep
from runner.run.experiment import run_experiment


@pytest.fixture
def running_server(tmp_path):
    """A project server the test started itself: for the runner, one already running elsewhere."""
    log = tmp_path / "their_server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servers.select", "--host", "127.0.0.1", "--port", "0"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        line = procs.wait_for_line(log, "READY ", proc, 10)
        assert line, log.read_text()
        yield proc, int(line.split()[2]), log
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_remote_target_is_loaded_not_started_nor_stopped(running_server, tmp_path):
    proc, port, log = running_server
    job = tmp_path / "job"
    job.mkdir()
    cfg = compose("server=remote", "server.target_host=127.0.0.1", f"server.target_port={port}", "load=smoke")
    result = run_experiment(cfg, job)

    assert result.outcome == "ok", result.detail
    assert result.metrics.requests > 0 and result.metrics.failures == 0
    assert result.server["remote"] is True and result.server["started_by_runner"] is False
    assert result.server["served"] is None and "count-mismatch" not in result.flags
    target = {"host": "127.0.0.1", "port": port, "remote": True, "started_by_runner": False}
    assert result.provenance["target"] == target
    assert result.resources["server"]["cpu_pct"] is None  # not ours to sample
    assert f"--host http://127.0.0.1:{port}" in result.load["command"]
    assert proc.poll() is None, "the runner stopped a server it did not start"
    proc.terminate()
    proc.wait(10)
    served = int(log.read_text().split("SERVED", 1)[1].split()[0])
    assert abs(served - result.metrics.total_requests) <= 0.005 * served  # what the check would have said


def test_an_unreachable_target_is_recorded_and_locust_never_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = compose("server=remote", f"server.target_port={port}", "server.ready_timeout_s=0.5", "load=smoke")
    result = run_experiment(cfg, tmp_path)
    assert result.outcome == "server_failed_to_start"
    assert f"remote target 127.0.0.1:{port} did not accept a connection within 0.5 s" in result.detail
    assert not (tmp_path / "locust.log").exists()


def test_a_non_loopback_target_needs_the_explicit_switch():
    errors = sweep.validate_argv(["server=remote", "server.target_host=10.0.0.7", "server.target_port=80"])
    assert any("server.target_host: '10.0.0.7' is not a loopback address" in e for e in errors), errors
    allowed = ["server=remote", "server.target_host=10.0.0.7", "server.target_port=80", "run.allow_remote=true"]
    assert sweep.validate_argv(allowed) == []
    errors = sweep.validate_argv(["server=remote", "server.target_port=0"])
    assert any("server.target_port: must be 1..65535" in e for e in errors), errors
