"""Your own server, told truthfully: first servers (tests/data/first_servers) in one sweep with ours, each with
the outcome and the diagnosis it deserves; the diagnoses' rules one by one; readiness that does not break a naive
server; a rate never over a window shorter than the one measured; separate runs in one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support.runs import smoke

from runner.record import load_runs
from runner.report.document import write_report
from runner.result import Metrics, RunResult
from runner.run import load
from runner.run.diagnosis import diagnose
from runner.run.experiment import run_experiment

FIRST = REPO / "tests" / "data" / "first_servers"



def _result(outcome="ok", cpu=20.0, median=2.0, requests=10_000, failures=0, **extra) -> RunResult:
    metrics = Metrics(requests=requests, failures=failures, total_requests=requests, total_failures=failures,
                      median_ms=median, connections=extra.pop("connections", {}), retries=extra.pop("retries", 0),
                      reconnects=extra.pop("reconnects", 0),
                      failure_kinds=extra.pop("failure_kinds", None))  # fmt: skip
    resources = {"server": {"cpu_pct": cpu}, "tcp": extra.pop("tcp", {})}
    return RunResult(outcome=outcome, metrics=metrics, resources=resources, **extra)


def _kinds(result: RunResult, *overrides: str) -> list[str]:
    return [d["kind"] for d in diagnose(result, smoke(*overrides))]


# -- each rule, on the evidence that makes it and on evidence that does not -----------------------------------

OVERFLOW = {"listen_overflows": 212, "listen_drops": 212, "syn_retransmits": 69}


def test_a_listen_queue_needs_the_kernel_and_the_run_s_own_clients_to_agree():
    slow = {"slow_starts": 69, "slowest_start_ms": 3012.0}
    assert _kinds(_result(tcp=OVERFLOW, connections=slow)) == ["listen-queue"]
    said = diagnose(_result(tcp=OVERFLOW, connections=slow), smoke())[0]["says"]
    assert "69 new connections waited 1 s or more" in said and "the longest 3.0 s" in said and "212" in said
    assert _kinds(_result(tcp=OVERFLOW)) == []  # another program's overflow, this machine
    assert _kinds(_result(connections=slow)) == []  # slow, but the kernel turned nobody away
    assert _kinds(_result(tcp=OVERFLOW, connections=slow, median=2000.0)) == []  # every answer takes seconds


def test_a_delayed_ack_is_most_responses_in_two_parts_about_40_ms_apart_from_an_idle_server():
    waits = {"connections": {"split_waits": {"40": 3000, "43": 5000, "48": 1000}}}
    assert _kinds(_result(cpu=19.0, **waits)) == ["delayed-ack"]
    assert "a median 43 ms apart" in diagnose(_result(cpu=19.0, **waits), smoke())[0]["says"]
    assert _kinds(_result(cpu=95.0, **waits)) == []  # a busy server: slow for its own reasons
    assert _kinds(_result(connections={"split_waits": {"40": 100}})) == []  # a few: not the server's way
    assert _kinds(_result(connections={"split_waits": {"21": 9000}})) == []  # not a delayed ACK's wait


def test_a_connection_per_request_is_said_with_what_announced_the_closes():
    closes = {"connections": {"closes": {"HTTP/1.0": 9_900}}, "reconnects": 9_900}
    assert _kinds(_result(**closes)) == ["connection-per-request"]
    assert "(HTTP/1.0 x9,900)" in diagnose(_result(**closes), smoke())[0]["says"]
    silent = diagnose(_result(retries=9_000, reconnects=9_000), smoke())[0]["says"]
    assert "without saying so" in silent
    assert _kinds(_result(connections={"closes": {"Connection: close": 100}})) == []  # a few closes: keep-alive


def test_a_malformed_response_quotes_the_line():
    kinds = {"MalformedResponse(\"bad header line: b'Hello, World!'\")": 500}
    said = diagnose(_result(failures=500, failure_kinds=kinds), smoke())[0]
    assert said["kind"] == "malformed-response" and "for bad header line: b'Hello, World!'." in said["says"]


def test_unanswered_requests_are_the_server_s_when_it_sat_idle():
    hung = {"connections": {"timeouts": 100, "timeouts_reused": 100}}
    said = diagnose(_result(cpu=0.4, **hung), smoke())
    assert [d["kind"] for d in said] == ["unanswered"] and "stops reading a kept-alive connection" in said[0]["says"]
    assert _kinds(_result(cpu=80.0, **hung)) == []  # busy: overloaded, not deaf
    assert "never answered on them" in diagnose(_result(cpu=0.4, connections={"timeouts": 5}), smoke())[0]["says"]


def test_a_server_that_exited_is_said_with_its_status():
    crashed = _result(outcome="server_crashed", detail="server exited with status 1 during the run; log tail: boom")
    assert diagnose(crashed, smoke())[0]["says"].endswith("log tail: boom")


# -- the numbers a window can have ------------------------------------------------------------------------


def _phase_file(job: Path, steady_requests: int) -> None:
    entry = {"name": "x", "method": "ALL", "last_request_timestamp": 1_000.5, "start_time": 1_000.0,
             "num_requests": steady_requests, "num_none_requests": 0, "num_failures": 0, "total_response_time": 0.0,
             "max_response_time": 0.0, "min_response_time": None, "total_content_length": 0, "response_times": {},
             "num_reqs_per_sec": {}, "num_fail_per_sec": {}}  # fmt: skip
    stopping = {**entry, "num_requests": 100, "num_failures": 100, "response_times": {"5000": 100},
                "total_response_time": 500_000.0, "max_response_time": 5000.0, "min_response_time": 5000.0}  # fmt: skip
    data = {"pid": 1, "started": {"ramp": 999.0, "warmup": 1_000.0, "steady": 1_000.0, "stopping": 1_008.0},
            "ended": 1_009.0, "users": 100, "phases": {"ramp": entry, "warmup": entry, "steady": entry,
            "stopping": stopping}, "loop_s": {}, "loopers": {}}  # fmt: skip
    (job / "locust_phases_1.json").write_text(json.dumps(data))
    (job / "locust.json").write_text(json.dumps([{**stopping, "start_time": 999.0, "last_request_timestamp": 1_008.9}]))


def test_a_window_that_completed_nothing_has_no_rate_not_one_over_a_shorter_span(tmp_path):
    """100 timeouts logged at the stop, 1.8 ms apart, once made 56,269 req/s from the whole-run fallback."""
    _phase_file(tmp_path, 0)
    metrics = load.read_stats(tmp_path, 10.0)
    assert metrics.window == "steady" and metrics.window_s == 8.0 and metrics.requests == 0
    assert metrics.rps is None and metrics.goodput is None
    assert (metrics.total_requests, metrics.total_failures) == (100, 100)
    assert load.failures_sentence(metrics).startswith("no request completed in the measured window (8.0 s); 100 failed")


def test_the_whole_run_fallback_spans_the_run_time_at_least(tmp_path):
    _phase_file(tmp_path, 0)
    (tmp_path / "locust_phases_1.json").unlink()
    metrics = load.read_stats(tmp_path, 10.0)
    assert metrics.window == "whole-run" and metrics.window_s == 10.0 and metrics.rps == 10.0


# -- readiness ------------------------------------------------------------------------------------------------


def _first(name: str, *overrides: str):
    cfg = smoke("server=external", f"server.name={name}", *overrides)
    cfg.server.command = f"{{python}} {FIRST / f'{name}.py'} {{port}}"
    return cfg


def test_readiness_asks_an_http_question_so_a_server_that_dies_of_a_bare_connect_is_not_killed(tmp_path):
    """crash_on_empty.py parses whatever recv() returned: the old connect-and-close killed it, and the run blamed
    "another program" for the port."""
    (tmp_path / "http").mkdir()
    (tmp_path / "tcp").mkdir()
    result = run_experiment(_first("crash_on_empty", "load.run_time=2s"), tmp_path / "http")
    assert result.outcome == "ok", result.detail
    result = run_experiment(_first("crash_on_empty", "server.ready_probe=tcp"), tmp_path / "tcp")
    assert result.outcome == "server_failed_to_start"
    assert result.detail.startswith("external server exited with status 1 just after the readiness check's connect")
    assert "IndexError" in result.detail and "another program" not in result.detail


def test_a_server_that_accepts_and_never_answers_is_not_ready(tmp_path):
    cfg = smoke("server=external", "server.name=mute", "server.ready_timeout_s=3")
    cfg.server.command = "{python} -c " + repr(
        "import socket,sys,time; s=socket.create_server(('127.0.0.1', int(sys.argv[1]))); c=s.accept(); time.sleep(60)"
    ) + " {port}"
    result = run_experiment(cfg, tmp_path)
    assert result.outcome == "server_failed_to_start"
    assert "accepted connections, but the server did not answer `GET / HTTP/1.1` (the readiness probe)" in result.detail


# -- one table ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_separate_commands_under_the_same_load_land_in_one_table(tmp_path):
    """Your server run on its own, then select: one table, ranked together; the command says who the row is."""
    for where, argv in (("mine", ["-cd", str(FIRST), "server=httpserver_nodelay"]), ("ours", ["server=select"])):
        run = subprocess.run([sys.executable, "-m", "runner", *argv, "load=smoke", f"hydra.run.dir={tmp_path / where}"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert run.returncode in (0, 5), run.stderr  # 5: the listen queue's timeouts broke max_failure_ratio
    report = write_report(tmp_path).read_text()
    table = report.split("## Table 1.", 1)[1].split("\n## ", 1)[0]
    assert "###" not in table and "| httpserver_nodelay" in table and "| select" in table, table


# -- first servers beside ours, in one sweep ---------------------------------------------------------------------

OK = {"ok"}
LISTEN_TIMEOUTS = {"ok", "completed_with_errors"}  # a connection the listen queue dropped may outwait the 2 s timeout
EXPECTED = {  # server -> (outcomes it may end with, its diagnoses, ranked: True, False, or None for either)
    "select": (OK, [], True),
    "thread": (OK, [], True),
    "httpserver": (LISTEN_TIMEOUTS, ["listen-queue", "delayed-ack"], None),
    "httpserver_nodelay": (LISTEN_TIMEOUTS, ["listen-queue"], None),
    "crash_on_empty": (OK, ["connection-per-request"], True),
    "malformed": ({"completed_with_errors"}, ["malformed-response"], False),
    "forgetful_select": ({"completed_with_errors"}, ["unanswered"], False),
    "crash_after": ({"server_crashed"}, ["server-exited"], False),
}


@pytest.mark.slow
def test_first_servers_and_ours_in_one_sweep_each_told_truthfully(tmp_path):
    """A config directory of the user's own (-cd), one sweep, one table: no loadgen_failed, no "another program
    took it", no failing row ranked, and each first server's diagnoses (none for ours). spawn_rate 1000: the 100
    users connect within 0.1 s, so http.server's backlog of 5 overflows on any machine."""
    sweep = tmp_path / "sweep"
    argv = [sys.executable, "-m", "runner", "-cd", str(FIRST), "-m", f"server={','.join(EXPECTED)}",
            "load.run_time=5s", "load.spawn_rate=1000", "load.request_timeout_s=2",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert run.returncode == 3, run.stderr[-3000:]  # some runs did not finish, as they deserve (crash_after)
    jobs = {job.server: job for job in load_runs(sweep)}
    assert set(jobs) == set(EXPECTED)
    for server, (outcomes, kinds, _) in EXPECTED.items():
        job = jobs[server]
        assert job.outcome in outcomes, (server, job.outcome, job.detail)
        assert [d["kind"] for d in job.diagnoses] == kinds, (server, job.diagnoses)
        assert "another program" not in job.detail
    report = (sweep / "report.md").read_text()
    table = report.split("## Table 1.", 1)[1].split("\n## ", 1)[0]
    assert "###" not in table  # one table
    rows = [[cell.strip() for cell in line.split("|")[1:3]] for line in table.splitlines()[4:] if line.startswith("|")]
    ranked = [server for rank, server in rows if rank != "—"]
    assert [server for rank, server in rows][: len(ranked)] == ranked  # the ranked rows come first
    for server, (_, _, rank) in EXPECTED.items():
        assert rank is None or (server in ranked) == rank, (server, rows)
    assert "## Why" in report and "**listen-queue**" in report and "b'Hello, World!'" in report
