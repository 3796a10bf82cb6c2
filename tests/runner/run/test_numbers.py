"""Numbers you can trust on a real machine (issue 13), for real: Little's law on the users' own loop, a ramp-up
longer than the run, and a busy core (the `contended` flag and the one-sweep-at-a-time lock).

Each test runs the real runner on real servers; none asserts a timing: what is checked is what the run
recorded (flags, users reached) under conditions made unmistakable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest
from support.runs import smoke

from runner.config import ValidityConfig
from runner.result import read_result
from runner.run import cores, resources, tenancy
from runner.run.experiment import run_experiment


def test_a_smoke_run_keeps_littles_law(tmp_path):
    """Every smoke run was flagged: its users spent ~20% of their cycle between requests, on the generator."""
    result = run_experiment(smoke(), tmp_path)
    assert result.outcome == "ok", result.detail
    assert result.metrics.users_reached == 5
    assert 4 <= result.metrics.loop_users <= 5.5, result.metrics
    assert "littles-law" not in result.flags


def test_locust_runs_for_its_whole_run_time(tmp_path):
    """Locust armed its --run-time timer on gevent's stale cached clock: runs ended 0.35-1.4 s early.
    A busy machine can only make a run longer than asked (a timer fires late, never early)."""
    import json

    result = run_experiment(smoke("load.run_time=3s"), tmp_path)
    assert result.outcome == "ok", result.detail
    (phases,) = [json.loads(p.read_text()) for p in tmp_path.glob("locust_phases_*.json")]
    ran = phases["started"]["stopping"] - phases["started"]["ramp"]
    assert ran >= 3.0 - 0.1, phases["started"]


def test_users_stuck_in_one_request_break_littles_law(tmp_path):
    """single with keep-alive serves one connection until it closes: the other users wait in a request that
    outlives the window, and their time is really lost."""
    result = run_experiment(smoke("server=single", "server.keepalive=true"), tmp_path)
    assert result.metrics.loop_users is None  # some user logged no cycle in the window
    assert "littles-law" in result.flags


def test_a_ramp_up_longer_than_the_run_records_the_users_reached(tmp_path):
    """`load.users=1000 load.run_time=4s` reached 400 and was reported as 1000, ok (validation now refuses it;
    run_experiment is called here without it, as a run that still falls short would be)."""
    result = run_experiment(smoke("load.users=40", "load.spawn_rate=10", "load.run_time=2s"), tmp_path)
    assert 0 < result.metrics.users_reached < 40, result.metrics
    assert "users-not-reached" in result.flags


# --- a busy machine: `contended`, and the one-sweep lock -----------------------------------------


def _others_now(seconds: float = 1.0) -> list[float]:
    """Each core's busy share (%) over `seconds`, psutil's reading, while this test sleeps: others' use."""
    return psutil.cpu_percent(interval=seconds, percpu=True)


def test_a_busy_loop_on_the_servers_core_is_contended(tmp_path):
    core = min(cores.split(True, 1, cores.available()).server or os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        result = run_experiment(smoke(), tmp_path)
    finally:
        hog.kill()
        hog.wait()
    others = result.resources["server"]["others_pct"]
    assert others > result.config["run"]["validity"]["max_others_pct"], result.resources
    assert "contended" in result.flags


def test_a_busy_loop_free_to_move_between_cores_is_contended(tmp_path):
    """The usual neighbour: the scheduler moves it between the server's core and Locust's. It halved select's rate,
    read 9-14% others' CPU when the cores' softirq time was left out of one side of the subtraction, and was never
    flagged; it makes select and Locust, one thread each, wait for their cores a quarter of the window."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = run_experiment(smoke("load=default", "load.run_time=4s"), tmp_path)
    finally:
        hog.kill()
        hog.wait()
    assert "contended" in result.flags, result.resources


def test_a_quiet_run_is_not_contended(tmp_path):
    """Only where the machine is quiet: a run on a busy one is contended, and says so."""
    limit = ValidityConfig().max_others_pct
    background = _others_now()
    if max(background) > limit / 2:
        shares = ", ".join(f"core {core}: {share:.0f}%" for core, share in enumerate(background))
        pytest.skip(f"the machine is busy: other processes used {shares} before the run")
    result = run_experiment(smoke(), tmp_path)
    assert result.resources["server"]["others_pct"] is not None
    assert "contended" not in result.flags, (result.resources, _others_now())


@pytest.mark.slow
def test_a_second_sweep_warns_names_the_first_and_is_contended(tmp_path, monkeypatch):
    """Two runners at once (their own lock file, so that nobody else's sweep counts): the second warns, naming
    the first by pid; its run, whose window lies inside the first's run, is flagged contended."""
    monkeypatch.setenv(tenancy.LOCK_ENV, str(tmp_path / "lock"))

    def runner(name: str, *overrides: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "runner", "load=smoke", *overrides, f"hydra.run.dir={tmp_path / name}"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = runner("first", "load.run_time=12s")
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "first" / "locust_progress.jsonl").exists():  # its Locust is running
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = runner("second", "load.run_time=3s")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert f"another stressbench sweep is running on this machine: pid {first.pid} (" in err
        assert first.poll() is None  # still running: the second's window lay inside it
    finally:
        first.communicate(timeout=120)  # its own end: the runner's teardown on a signal is not what is tested
    if len(os.sched_getaffinity(0)) <= 2:  # one core for both Locusts (more cores: each may have its own)
        assert "contended" in read_result(tmp_path / "second" / "result.json").flags
    third = runner("third", "load.run_time=2s")
    assert "another stressbench sweep" not in third.communicate(timeout=120)[1]  # the lock went with the first


def test_a_threads_wait_is_kept_when_it_exits():
    """Run-queue wait is summed as each thread's increase: a child that exits (a forked server's) keeps its share."""
    series = resources.Series()
    for t, waits in enumerate([{1: 0.0, 2: 1.0}, {1: 0.5, 2: 1.5}, {1: 0.7}, {1: 0.7, 3: 0.2}]):
        series.times.append(float(t))
        series.cpu_s.append(0.0)
        series.add_wait(waits)
    assert series.wait_s == pytest.approx([1.0, 2.0, 2.2, 2.4])  # thread 2 gone at 2: its 1.5 s stay
    assert series.wait_between(1.0, 3.0) == pytest.approx(0.4)
