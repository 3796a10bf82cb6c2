"""One live line per job while a sweep runs: `job 3/8  select  4/10 s (6 s left)  3822 req/s  0 failures`.

Why: Locust runs with `--only-summary` into its own log file, so without this a sweep is silent for
minutes. The numbers come from the JSON line runner/locust/progress.py appends every second (the
last second's RPS, failures so far). On a terminal the line is rewritten in place (carriage return,
erase to the end of line) and erased when the job ends, so the job's one-line summary from
runner/run/experiment.py takes its place. Anywhere else (CI, a file, a pipe) it prints nothing: that
summary already says how each job ended, and a log of carriage returns helps no one.

The job's place in the sweep: Hydra tells a job its index (`hydra.job.num`) but not the sweep's
size, so runner/run/cli.py counts the sweep points before it starts and passes the count down in
the environment (JOBS_ENV).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

JOBS_ENV = "STRESSBENCH_JOBS"  # how many jobs the sweep has, set by runner/run/cli.py
REFRESH_S = 0.5
STALE_S = 3.0  # a progress line older than this says nothing about "now"
_ERASE = "\033[K"


def format_line(
    job: int | None, jobs: int | None, server: str, elapsed_s: float | None, run_time_s: float,
    rps: float | None, failures: int | None,
) -> str:  # fmt: skip
    """The live line; unknown numbers are "—" (before Locust's first second, or a stalled Locust), and
    the time is "starting" until Locust's test has started (its own start-up takes a second or more)."""
    where = f"job {job}/{jobs}" if job and jobs else f"job {job}" if job else "job"
    if elapsed_s is None:
        when = "starting"
    else:
        when = f"{elapsed_s:.0f}/{run_time_s:.0f} s ({max(run_time_s - elapsed_s, 0.0):.0f} s left)"
    rate = "— req/s" if rps is None else f"{rps:,.0f} req/s"
    failed = "— failures" if failures is None else f"{failures:,} failure{'s' if failures != 1 else ''}"
    return f"{where}  {server}  {when}  {rate}  {failed}"


def read_last(path: Path) -> dict[str, Any] | None:
    """The last whole JSON line of a progress file; None if there is none yet (or it is unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 4096, 0))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for raw in reversed(lines[:-1]):  # the text after the last newline may be half-written
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        return data if isinstance(data, dict) else None
    return None


def job_number() -> int | None:
    """This job's 1-based index in a Hydra multirun, None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return int(HydraConfig.get().job.num) + 1 if HydraConfig.initialized() else None
    except Exception:  # no Hydra (a test calling run_experiment), or no job number
        return None


def jobs_in_sweep() -> int | None:
    value = os.environ.get(JOBS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class Line:
    """`with Line(...) as line: ... line.tick() ...`: tick as often as you like; it redraws at most every
    REFRESH_S, only on a terminal, and the line is erased on exit."""

    def __init__(
        self, server: str, run_time_s: float, progress_file: Path, stream: IO[str] | None = None,
        job: int | None = None, jobs: int | None = None,
    ) -> None:  # fmt: skip
        self.stream = stream if stream is not None else sys.stderr
        self.live = _is_tty(self.stream)
        self.server, self.run_time_s, self.path = server, run_time_s, Path(progress_file)
        self.jobs = jobs if jobs is not None else jobs_in_sweep()
        self.job = job if job is not None else job_number() or (1 if self.jobs == 1 else None)
        self.drawn = 0.0

    def __enter__(self) -> Line:
        self.tick(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live and self.drawn:
            self._write("\r" + _ERASE)

    def text(self) -> str:
        last = read_last(self.path) or {}
        t, since = last.get("t"), last.get("elapsed_s")  # when the line was written; seconds into Locust's test
        timed = isinstance(t, (int, float)) and isinstance(since, (int, float))
        elapsed = since + max(time.time() - t, 0.0) if timed else None
        rps, failures = last.get("rps"), last.get("failures")
        fresh = timed and time.time() - t < STALE_S and isinstance(rps, (int, float))
        return format_line(
            self.job, self.jobs, self.server, elapsed, self.run_time_s,
            rps if fresh else None, failures if isinstance(failures, int) else None,
        )  # fmt: skip

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not force and now - self.drawn < REFRESH_S):
            return
        self.drawn = now
        self._write("\r" + self.text() + _ERASE)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the run
            self.live = False


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
