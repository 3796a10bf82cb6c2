"""External servers (server.command): started, made ready, measured and torn down like ours, for real.

The reference servers need their own software: uvicorn (pip install -e '.[reference]') and nginx
(apt-get install nginx); their tests skip, saying so, where it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.runs import smoke

from runner.run import procs
from runner.run import server as server_mod
from runner.run.experiment import run_experiment

HAVE_UVICORN = all(importlib.util.find_spec(m) for m in ("uvicorn", "uvloop", "httptools"))
needs_uvicorn = pytest.mark.skipif(not HAVE_UVICORN, reason="uvicorn[httptools,uvloop] not installed: '.[reference]'")
needs_nginx = pytest.mark.needs("nginx")  # tests/conftest.py: skips where nginx is not installed, saying so

# our own select server, started as if it were someone else's, behind a shell that leaves a
# grandchild in the group and writes both pids: the teardown must take the whole group
WRAPPED_SELECT = (
    'sh -c \'echo $$ > "$3/leader.pid"; sleep 300 & echo $! > "$3/child.pid"; '
    'exec "$0" -m servers.select --host "$1" --port "$2"\' {python} {host} {port} {run_dir}'
)


def _compose(*overrides: str, command: str | None = None):
    cfg = smoke(*overrides)
    if command is not None:  # set after composing: a shell line is not Hydra override grammar
        cfg.server.command = command
    return cfg


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _get(host: str, port: int, target: str = "/") -> tuple[bytes, dict[str, str], bytes]:
    """(status line, headers with lower-case names, body) of one GET, Connection: close."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status.encode(), headers, body


def _nothing_left(result) -> None:
    """No process the run started is alive (the group's pids, whoever they are) and the port is closed."""
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        assert not any(word in cmdline for word in ("servers.", "uvicorn", "nginx", "locust")), cmdline
    port = result["server"]["listen_port"] if isinstance(result, dict) else result.server["listen_port"]
    assert _port_closed(port) and not server_mod.escapes.listeners(port), port


def test_an_external_server_is_measured_and_its_whole_group_torn_down(tmp_path):
    cfg = _compose("server=external", "server.name=wrapped-select", command=WRAPPED_SELECT)
    result = run_experiment(cfg, tmp_path)
    assert result.outcome == "ok", result.detail
    assert result.metrics.requests > 0 and result.metrics.failures == 0
    assert result.server["served"] is None  # select printed SERVED, but an external server's output is not ours
    assert "count-mismatch" not in result.flags
    assert result.config["server"]["name"] == "wrapped-select" and result.config["server"]["reference"] is False
    assert result.server["command_line"].startswith("/") and "{port}" not in result.server["command_line"]
    leader, child = (int((tmp_path / f"{n}.pid").read_text()) for n in ("leader", "child"))
    assert not _alive(leader) and not _alive(child)  # the grandchild ignored nothing: the group was killed
    _nothing_left(result)
    assert json.loads((tmp_path / "result.json").read_text())["server"]["served"] is None


# http.server has no SIGTERM handler of its own, so the ignored SIGTERM stays ignored across exec
DEAF_TO_SIGTERM = 'sh -c \'trap "" TERM; exec "$0" -m http.server "$1" --bind "$2"\' {python} {port} {host}'


def test_a_server_that_ignores_sigterm_is_killed_and_the_run_says_so(tmp_path):
    """Before, the kill after the grace showed only as exit_code -9 on an `ok` run."""
    from runner.report.document import write_report

    job = tmp_path / "0_deaf_hello_r0"
    job.mkdir()
    cfg = _compose(
        "server=external", "server.name=deaf", "server.grace_s=1", "load.run_time=1s", command=DEAF_TO_SIGTERM
    )
    result = run_experiment(cfg, job)
    assert result.server["exit_code"] == -9 and result.server["killed_at_stop"] is True
    assert "killed-at-stop" in result.flags
    assert "ignored SIGTERM for server.grace_s=1 s and was killed (SIGKILL)" in result.detail
    assert json.loads((job / "result.json").read_text())["flags"] == result.flags
    assert "- **killed-at-stop**: the server ignored SIGTERM" in write_report(tmp_path).read_text()
    _nothing_left(result)


def test_a_server_that_stops_on_sigterm_is_not_flagged(tmp_path):
    result = run_experiment(_compose("server=select", "load.run_time=1s"), tmp_path)
    assert result.server["exit_code"] == 0 and result.server["killed_at_stop"] is False
    assert "killed-at-stop" not in result.flags and "SIGKILL" not in result.detail


# a daemon beside the server: `setsid` leaves the command's process group and session
SLEEP_BESIDE = (
    'sh -c \'setsid sh -c "echo \\$\\$ > $3/daemon.pid; exec sleep 300" & '
    'exec "$0" -m http.server "$1" --bind "$2"\' {python} {port} {host} {run_dir}'
)
# a launcher: starts the real server in a session of its own, then exits 0 (at once, or once it listens)
LAUNCHER = (
    'sh -c \'setsid "$0" -m http.server "$1" --bind "$2" >/dev/null 2>&1 & echo $! > $3/daemon.pid; '
    "sleep $4' {python} {port} {host} {run_dir} "
)


def _daemon(job: Path) -> int:
    return int((job / "daemon.pid").read_text())


def test_a_daemon_the_command_starts_beside_the_server_is_found_and_stopped(tmp_path):
    """Before, `setsid sleep 300 &` outlived the run, which was ok with nothing said."""
    result = run_experiment(_compose("server=external", "load.run_time=1s", command=SLEEP_BESIDE), tmp_path)
    assert result.outcome == "ok", result.detail
    daemon = _daemon(tmp_path)
    assert not _alive(daemon)
    [found] = result.server["escaped"]
    assert (found["pid"], found["command"], found["session"], found["listening"]) == (
        daemon,
        "sleep 300",
        daemon,
        False,
    )
    assert f"left pid {daemon} (`sleep 300`, session {daemon}) outside its process group" in result.detail
    _nothing_left(result)


@pytest.mark.parametrize("exits_after_s", [0, 2], ids=["at-once", "once-it-listens"])
def test_a_launcher_that_daemonizes_the_server_leaves_nothing_running(tmp_path, exits_after_s):
    """Before, the real server stayed listening after the run (its launcher had exited 0)."""
    cfg = _compose("server=external", "load.run_time=4s", command=LAUNCHER + str(exits_after_s))
    result = run_experiment(cfg, tmp_path)
    daemon, port = _daemon(tmp_path), result.server.get("listen_port")
    assert not _alive(daemon)
    if exits_after_s == 0:  # failed to start: nothing was measured, and the message says what was found
        assert result.outcome == "server_failed_to_start"
        assert "exited with status 0 before it answered" in result.detail
        assert f"left pid {daemon} (`{sys.executable} -m http.server" in result.detail
        port = int(result.detail.split("before it answered on port ")[1].split()[0])
    else:  # it passed for the server until the launcher exited: a crash, and the daemon is named
        assert result.outcome == "server_crashed", result.detail
        [found] = result.server["escaped"]
        assert found["pid"] == daemon and found["session"] == daemon and found["listening"] is True
        assert f"session {daemon}, listening on port {port}) outside its process group" in result.detail
    _nothing_left({"server": {"listen_port": port}} if exits_after_s == 0 else result)


def test_a_daemon_that_clears_its_environment_is_named_not_stopped(tmp_path):
    """Without the run's mark it cannot be told from a stranger that took the port: the runner stops
    only what it can tell it started, and says who is still listening."""
    cfg = _compose("server=external", "load.run_time=4s", command=LAUNCHER.replace("setsid", "setsid env -i") + "2")
    result = run_experiment(cfg, tmp_path)
    daemon, port = _daemon(tmp_path), result.server["listen_port"]
    try:
        assert result.outcome == "server_crashed", result.detail
        assert _alive(daemon) and result.server["escaped"] == []
        assert [s["pid"] for s in result.server["strangers"]] == [daemon]
        assert f"pid {daemon} (`{sys.executable} -m http.server {port}" in result.detail
        assert f"still listens on port {port}; it does not carry this run's mark" in result.detail
    finally:
        psutil.Process(daemon).kill()


def test_server_port_is_the_external_servers_port(tmp_path):
    port = procs.free_port("127.0.0.1")
    cfg = _compose("server=external", f"server.port={port}", "load.run_time=1s", command=DEAF_TO_SIGTERM)
    result = run_experiment(cfg, tmp_path)
    assert result.server["listen_port"] == port and f" {port} " in result.server["command_line"] + " "
    assert result.metrics.requests and not result.metrics.failures, result.detail
    _nothing_left(result)


def test_an_external_command_that_exits_at_once_failed_to_start(tmp_path):
    command = "{python} -c 'import sys; print(\"no luck on {port}\"); sys.exit(3)'"
    result = run_experiment(_compose("server=external", command=command), tmp_path)
    assert result.outcome == "server_failed_to_start"
    assert "exited with status 3 before it answered" in result.detail
    assert "no luck on" in result.detail  # the log tail
    assert not (tmp_path / "locust.log").exists()  # Locust never started


def test_an_external_command_that_never_listens_times_out(tmp_path):
    cfg = _compose("server=external", "server.ready_timeout_s=0.5", command="sleep 30 {port}")
    started = time.monotonic()
    result = run_experiment(cfg, tmp_path)
    assert result.outcome == "server_failed_to_start"
    assert "did not listen on port" in result.detail
    assert time.monotonic() - started < 10
    left = [p for p in psutil.Process().children(recursive=True) if p.name() == "sleep" and _alive(p.pid)]
    assert not left


def test_a_program_that_is_not_installed_failed_to_start_saying_so(tmp_path):
    result = run_experiment(_compose("server=external", command="no-such-server-here --port {port}"), tmp_path)
    assert result.outcome == "server_failed_to_start"
    assert "cannot run 'no-such-server-here': no such program" in result.detail


def test_the_report_says_why_a_server_failed_to_start_when_there_is_no_server_log(tmp_path):
    """Before, the report said "see the run's server.log", which a program that does not exist never wrote."""
    from runner.report.document import write_report

    job = tmp_path / "0_mine_hello_r0"
    job.mkdir()
    run_experiment(_compose("server=external", "server.name=mine", command="no-such-server-here {port}"), job)
    assert not (job / "server.log").exists()
    report = write_report(tmp_path).read_text()
    assert "see the run's `server.log`" not in report
    assert "  - `0_mine_hello_r0`: cannot run 'no-such-server-here': no such program on PATH" in report, report


def test_a_port_someone_else_listens_on_is_not_ready(tmp_path):
    """The port answers, but not from the server's tree: a program that took the port between our pick and the
    server's bind must not pass for the server, and is named (here: this test's own process)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = procs.spawn(["sleep", "30"], tmp_path / "server.log")
        try:
            why = server_mod.wait_ready(proc, "127.0.0.1", port, 5, None)
        finally:
            procs.terminate(proc, 1)
    assert f"port {port} answered, but pid {os.getpid()} (" in why and why.endswith("another program took it")


def test_a_command_without_port_is_refused_before_anything_starts(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "-m",
            "server=external",
            "server.command=my-server",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "server.command: 'my-server' has no {port}" in proc.stderr
    assert not sweep.exists()


@needs_uvicorn
@pytest.mark.slow
def test_a_sweep_with_uvicorn_marks_it_reference_in_result_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "server=select,uvicorn", "load=smoke", f"hydra.sweep.dir={sweep}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = (json.loads(p.read_text()) for p in sweep.glob("*/result.json"))
    results = {r["config"]["server"]["name"]: r for r in found}
    assert results["uvicorn"]["outcome"] == "ok", results["uvicorn"]["detail"]
    assert [results[name]["config"]["server"]["reference"] for name in ("uvicorn", "select")] == [True, False]
    assert results["uvicorn"]["server"]["served"] is None and results["select"]["server"]["served"] > 0
    assert results["uvicorn"]["metrics"]["failures"] == 0
    rows = [line for line in (sweep / "report.md").read_text().splitlines() if line.startswith("|")]
    assert any("| uvicorn (reference) |" in row for row in rows)
    assert any("| select " in row for row in rows) and not any("select (reference)" in row for row in rows)
    assert not any("server.command=" in row for row in rows)  # what differs with the server is the Server column


@needs_nginx
def test_nginx_runs_from_a_config_in_the_run_directory(tmp_path):
    result = run_experiment(_compose("server=nginx"), tmp_path)
    assert result.outcome == "ok", result.detail
    assert result.config["server"]["reference"] is True and result.server["served"] is None
    assert result.metrics.requests > 0 and result.metrics.failures == 0
    conf = (tmp_path / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{result.server['listen_port']} backlog=1024;" in conf
    assert str(tmp_path.resolve()) in conf and "{" + "port}" not in conf
    _nothing_left(result)  # master and worker


def _serve(cfg, directory: Path):
    directory.mkdir()
    return server_mod.start(cfg, directory, None)


@pytest.mark.parametrize(
    "name", [pytest.param("uvicorn", marks=needs_uvicorn), pytest.param("nginx", marks=needs_nginx)]
)
def test_a_reference_server_answers_hello_as_ours_does(tmp_path, name):
    ours, theirs = _serve(_compose("server=select"), tmp_path / "ours"), None
    try:
        theirs = _serve(_compose(f"server={name}"), tmp_path / name)
        expected, got = _get(ours.host, ours.port, "/any/path"), _get(theirs.host, theirs.port, "/any/path")
    finally:
        server_mod.stop(ours, 5)
        if theirs is not None:
            server_mod.stop(theirs, 5)
    assert got[0] == expected[0] == b"HTTP/1.1 200 OK"
    assert got[1]["content-type"] == expected[1]["content-type"]
    assert got[1]["content-length"] == expected[1]["content-length"] == "14"
    assert got[2] == expected[2] == b"Hello, World!\n"


@needs_uvicorn
def test_uvicorn_does_the_workload_it_is_given(tmp_path):
    """io waits (asyncio.sleep) before answering; size answers its size; keep-alive off closes."""
    cfg = _compose("server=uvicorn", "workload=io", "workload.params.io_ms=200", "server.keepalive=false")
    server = _serve(cfg, tmp_path / "io")
    try:
        started = time.monotonic()
        status, headers, body = _get(server.host, server.port)
        waited = time.monotonic() - started
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # asks for keep-alive, gets close
            data = b""
            while chunk := s.recv(65536):  # ends only because the server closes
                data += chunk
    finally:
        server_mod.stop(server, 5)
    assert status == b"HTTP/1.1 200 OK" and body == b"Hello, World!\n"
    assert waited >= 0.2
    assert b"connection: close" in data.lower()
    server = _serve(_compose("server=uvicorn", "workload=size", "workload.params.size_bytes=3000"), tmp_path / "size")
    try:
        status, headers, body = _get(server.host, server.port)
    finally:
        server_mod.stop(server, 5)
    assert (headers["content-type"], body) == ("application/octet-stream", b"x" * 3000)
