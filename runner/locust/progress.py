"""A Locust plugin (no users of its own) that appends one JSON line per second of what the run is doing
now: users, requests and failures so far, and the last second's RPS and response-time percentiles.

Why a file of our own: `--only-summary` silences Locust's periodic console tables, and its
`_stats_history.csv` does not say what is happening now -- its "Requests/s" is an average over a
window that ends 2 s before the last request and spans up to 10 s (0 during a run's first seconds), its
percentiles are cumulative since the start (without `--csv-full-history`), and the file is flushed
only every few seconds. Here the interval numbers are differences of two snapshots of Locust's own
totals (counts and response-time histogram), so they cover exactly the last interval. The runner
shows the last line live (runner/run/progress.py) and the report plots the series (runner/report/plots.py).

Loaded as a second locustfile (`-f runner/locust/locustfile.py,runner/locust/progress.py`): Locust merges
the files' users and listeners, and this one defines no user, so none is duplicated. It stays apart
from runner/locust/locustfile.py so the users can change without touching it. With `--processes`, only the
master writes, and its totals advance when workers report (every 3 s), so the series is coarser.
When the run time is over, a line says so at once (`"stopping": true`, in every line from then on).
"""

from __future__ import annotations

import json
import time

import gevent
from locust import events
from locust.runners import WorkerRunner
from locust.stats import calculate_response_time_percentile

INTERVAL_S = 1.0


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--progress-file", default="", help="append one JSON line per second of live numbers")


class _Writer:
    def __init__(self, environment, path: str) -> None:
        self.environment, self.path = environment, path
        self.started = time.time()
        self.last: tuple[float, int, int, dict] = (self.started, 0, 0, {})
        self.stopping = False  # the run time is over: every line from then on says so

    def line(self) -> dict:
        total = self.environment.stats.total
        now, requests, failures = time.time(), total.num_requests, total.num_failures
        histogram = dict(total.response_times)
        then, before, failed_before, seen = self.last
        self.last = (now, requests, failures, histogram)
        delta = {ms: n - seen.get(ms, 0) for ms, n in histogram.items() if n > seen.get(ms, 0)}
        count, elapsed = sum(delta.values()), max(now - then, 1e-9)

        def pct(fraction: float) -> float | None:
            return calculate_response_time_percentile(delta, count, fraction) if count else None

        runner = self.environment.runner
        return {
            "t": round(now, 3),
            "elapsed_s": round(now - self.started, 3),
            "users": runner.user_count if runner is not None else None,
            "requests": requests,
            "failures": failures,
            "rps": round((requests - before) / elapsed, 2),
            "failures_per_s": round((failures - failed_before) / elapsed, 2),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        }

    def write(self) -> None:
        line = self.line()
        if self.stopping:
            line["stopping"] = True
        with open(self.path, "a") as f:  # one short line per second: appends are whole lines
            f.write(json.dumps(line) + "\n")

    def loop(self) -> None:
        while True:
            gevent.sleep(INTERVAL_S)
            self.write()


_writer: _Writer | None = None


@events.test_start.add_listener
def _start(environment, **_kwargs) -> None:
    global _writer
    path = getattr(environment.parsed_options, "progress_file", "")
    if not path or isinstance(environment.runner, WorkerRunner) or _writer is not None:
        return
    _writer = _Writer(environment, path)
    gevent.spawn(_writer.loop)


@events.test_stopping.add_listener
def _stopping(**_kwargs) -> None:
    """The run time is over: a line at once that says so (the runner then starts the next job's Locust,
    runner/run/spare.py), covering the load up to now."""
    if _writer is not None:
        _writer.stopping = True
        try:
            _writer.write()
        except OSError:
            pass


@events.quitting.add_listener
def _quitting(**_kwargs) -> None:
    if _writer is not None:
        try:
            _writer.write()  # the last partial second
        except OSError:
            pass
