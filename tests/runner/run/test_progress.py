"""The live progress line: its format, its source file, quiet without a terminal, live on one (a real pty)."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO

from runner.run.progress import Line, format_line, read_last


def test_the_line_says_job_server_time_rps_and_failures() -> None:
    assert format_line(3, 8, "select", 4.2, 10, 3822.4, 0) == (
        "job 3/8  select  4/10 s (6 s left)  3,822 req/s  0 failures"
    )
    assert format_line(1, None, "thread", 12.0, 10, None, 1) == "job 1  thread  12/10 s (0 s left)  — req/s  1 failure"
    assert format_line(2, 4, "single", None, 10, None, None) == "job 2/4  single  starting  — req/s  — failures"


def test_read_last_skips_a_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    assert read_last(path) is None
    path.write_text('{"rps": 1.0}\n{"rps": 2.0}\n{"rps": 3')
    assert read_last(path) == {"rps": 2.0}


def test_no_terminal_no_output(tmp_path: Path) -> None:
    stream = io.StringIO()  # not a TTY, as in CI
    with Line("select", 10, tmp_path / "progress.jsonl", stream=stream, job=1, jobs=2) as line:
        line.tick(force=True)
    assert stream.getvalue() == ""


@pytest.mark.slow
def test_a_captured_sweep_prints_no_progress_lines(smoke_sweeps) -> None:
    output = smoke_sweeps[0].output
    assert "\r" not in output and "job 1/" not in output
    assert "select: ok" in output  # the job's one-line summary is still there


@pytest.mark.slow
def test_on_a_terminal_a_real_run_shows_a_live_line_then_erases_it(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "runner", "server=select", "load=smoke", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(argv, cwd=REPO, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    lines = re.findall(r"\r(job 1/1  select  (?:starting|\d+/2 s \(\d+ s left\))  [^\r]*?)\x1b\[K", text)
    assert lines, text[-2000:]
    assert any(re.search(r"  [\d,]+ req/s  0 failures$", line) for line in lines), lines  # a live number was shown
    assert "\r\x1b[K" in text  # erased before the job's summary line


def test_the_sweep_size_counts_command_line_and_experiment_sweeps() -> None:
    from runner.run.sweep import dry_run

    def sweep_size(argv: list[str]) -> int:
        plan = dry_run(argv)
        assert plan.errors == []
        return len(plan.points)

    assert sweep_size(["server=select", "load=smoke"]) == 1  # not a multirun
    assert sweep_size(["-m", "server=single,thread,process,select", "run.repeat=0,1", "load=smoke"]) == 8
    assert sweep_size(["-m", "experiment=matrix"]) == 36  # 4 servers x 3 workloads x 3 repeats, from the file
    assert sweep_size(["-m", "experiment=matrix", "server=select"]) == 9  # the command line narrows it
