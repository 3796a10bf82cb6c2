"""Spare Locust processes (runner/run/spare.py, runner/locust/spare.py), for real: a spare handed a
real Locust command line, paused and resumed, stopped by closing its stdin, and killed with the
runner. How a whole sweep uses them: tests/runner/run/test_sweep.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from runner.run import spare

VERSION = [sys.executable, "-m", "locust", "--version"]


@pytest.fixture(autouse=True)
def _no_spare_left():
    yield
    spare.discard()


def _waiting() -> list[psutil.Process]:
    """The spares as the machine shows them: children of the runner (this process) running the spare's
    module and not yet exited, oldest first."""
    spares = []
    for child in psutil.Process().children():
        try:
            if "runner.locust.spare" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                spares.append(child)
        except psutil.NoSuchProcess:
            pass
    return sorted(spares, key=lambda child: (child.create_time(), child.pid))


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_spare_becomes_the_locust_of_the_command_line_it_is_given(tmp_path):
    spare.prepare(1)
    log = tmp_path / "locust.log"
    proc = spare.take(VERSION, log, {sorted(os.sched_getaffinity(0))[-1]})
    assert proc is not None and proc.wait(30) == 0
    assert log.read_text().startswith("locust 2.")
    assert spare.take(VERSION, log, None) is None  # one spare for one job ahead: the next starts cold


def test_spares_are_paused_while_a_job_runs_and_resumed_when_it_stops(tmp_path):
    spare.prepare(3)
    first, second = _waiting()  # DEPTH of them, however many jobs follow
    taken = spare.take(VERSION, tmp_path / "locust.log", None)
    assert taken.pid == first.pid and taken.wait(30) == 0
    assert _wait_for(lambda: psutil.Process(second.pid).status() == psutil.STATUS_STOPPED)
    spare.prepare(2)  # that job's Locust is stopping: the paused one goes on, and one more starts
    assert psutil.Process(second.pid).status() != psutil.STATUS_STOPPED
    assert len(_waiting()) == 2


def test_a_spare_still_paused_when_taken_runs(tmp_path):
    """The job before ended without a stopping line (its Locust crashed or was killed): nothing resumed
    the spare it paused."""
    spare.prepare(2)
    assert spare.take(VERSION, tmp_path / "first.log", None).wait(30) == 0
    assert spare.take(VERSION, tmp_path / "second.log", None).wait(30) == 0


def test_discarding_ends_every_spare_at_once_even_mid_import(tmp_path):
    spare.prepare(2)
    procs = _waiting()
    spare.pause()
    began = time.monotonic()
    spare.discard()
    assert time.monotonic() - began < 0.5 and not _waiting()
    assert not any(proc.is_running() for proc in procs)  # ended and reaped, not left paused


def test_a_paused_spare_dies_with_the_runner(tmp_path):
    runner = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import os, time
            import psutil
            from runner.run import spare
            spare.prepare(1)
            time.sleep(0.3)
            spare.pause()
            print(psutil.Process().children()[0].pid, flush=True)
            os._exit(0)  # no discard: as if the runner were killed
        """)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    pid = int(runner.stdout)
    try:
        assert _wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    finally:
        if psutil.pid_exists(pid):  # the test failed: the spare is ours to end
            os.kill(pid, signal.SIGKILL)


def test_a_spare_that_died_is_not_taken_and_the_job_starts_locust_cold(tmp_path):
    spare.prepare(1)
    (dead,) = _waiting()
    os.kill(dead.pid, signal.SIGKILL)
    assert _wait_for(lambda: dead.status() == psutil.STATUS_ZOMBIE)  # dead, not yet reaped by the runner
    assert spare.take(VERSION, tmp_path / "locust.log", None) is None
    assert not _waiting() and not (tmp_path / "locust.log").exists()
