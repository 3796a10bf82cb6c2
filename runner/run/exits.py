"""The exit status of `python -m runner`, so that CI and scripts can tell a good sweep from a bad one:

    0        every run finished and met its objectives (run.slo.*: at most 1% of requests failed, by
             default; the last line still says how many failed)
    2        the configuration or the output directory was refused; nothing was started
    3        the sweep (or the single run) ran to its end, but some run did not finish
             (server_failed_to_start, server_crashed, loadgen_failed, timeout, or no result.json at all)
    4        the sweep was stopped because its files could not be written (disk full, read-only)
    5        every run finished, but some broke an objective (run.slo.p99_ms, min_rps,
             max_failure_ratio); the last line names the rows and by how much
    6        (the reporter, --fail-on-regression) a row is significantly slower than in the baseline
    128 + N  stopped by signal N, as a shell reports it: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP

Hydra itself exits 1 on an error of its own (a traceback), which is why none of these is 1.
The verdict is read from what the runs left on disk (result.json), through the record (runner/record.py), the
contract the reporter reads them through too, never through the reporter: it holds for jobs that ran in other
processes (the submitit launchers) too. The runner's last console line says it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from runner.record import load_runs

EXIT_REFUSED = 2
EXIT_RUNS_NOT_OK = 3
EXIT_OUTPUT_LOST = 4
EXIT_OBJECTIVES = 5
EXIT_REGRESSION = 6
FINISHED = ("ok", "completed_with_errors")


class SweepStopped(BaseException):
    """Stop the sweep, exit `code`: main() prints the message as one line and reports the runs so far.
    A BaseException, as KeyboardInterrupt is: Hydra turns an Exception into a traceback and exit 1."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def verdict(directory: Path | None) -> tuple[int, str]:
    """(exit status, the closing line) for the runs under `directory`, a sweep or one run."""
    if directory is None or not Path(directory).is_dir():
        return 0, ""
    from runner.run.objectives import broken

    runs = load_runs(directory)
    if not runs:
        return EXIT_RUNS_NOT_OK, f"no run recorded in {directory}: exit status {EXIT_RUNS_NOT_OK}"
    bad = Counter(run.outcome for run in runs if run.outcome not in FINISHED)
    failed = sum(run.metrics.total_failures or run.metrics.failures or 0 for run in runs)
    also = f"; {failed:,} request{'s' if failed != 1 else ''} failed" if failed else ""
    if bad:
        what = ", ".join(f"{n} {outcome}" for outcome, n in bad.most_common())
        line = f"{sum(bad.values())} of {len(runs)} runs did not finish ({what}){also}: exit status {EXIT_RUNS_NOT_OK}"
        return EXIT_RUNS_NOT_OK, line
    missed = {run.server + f" ({run.run})": said for run in runs if (said := broken(run.objectives))}
    if missed:
        named = "; ".join(f"{who}: {', '.join(said)}" for who, said in missed.items())
        return EXIT_OBJECTIVES, (f"{len(missed)} of {len(runs)} runs broke an objective (run.slo): {named}{also}: "
                                 f"exit status {EXIT_OBJECTIVES}")  # fmt: skip
    return 0, f"{len(runs)} of {len(runs)} run{'s' if len(runs) > 1 else ''} finished, every objective met{also}"
