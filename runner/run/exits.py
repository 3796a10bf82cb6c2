"""The exit status of `python -m runner`, so that CI and scripts can tell a good sweep from a bad one:

    0        every run ended `ok`
    2        the configuration or the output directory was refused; nothing was started
    3        the sweep (or the single run) ran to its end, but some run did not end `ok`
             (completed_with_errors, server_failed_to_start, server_crashed, loadgen_failed, timeout,
             or no result.json at all)
    4        the sweep was stopped because its files could not be written (disk full, read-only)
    128 + N  stopped by signal N, as a shell reports it: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP

Hydra itself exits 1 on an error of its own (a traceback), which is why none of these is 1.
The verdict is read from what the runs left on disk (result.json), as the report is: it holds for
jobs that ran in other processes (the submitit launchers) too. The runner's last console line says it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

EXIT_REFUSED = 2
EXIT_RUNS_NOT_OK = 3
EXIT_OUTPUT_LOST = 4


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
    from runner.report.record import load_runs  # only once the runs are done

    runs = load_runs(directory)
    bad = Counter(run.outcome for run in runs if run.outcome != "ok")
    if not runs:
        return EXIT_RUNS_NOT_OK, f"no run recorded in {directory}: exit status {EXIT_RUNS_NOT_OK}"
    if not bad:
        return 0, f"{len(runs)} of {len(runs)} run{'s' if len(runs) > 1 else ''} ok"
    what = ", ".join(f"{n} {outcome}" for outcome, n in bad.most_common())
    return EXIT_RUNS_NOT_OK, f"{sum(bad.values())} of {len(runs)} runs not ok ({what}): exit status {EXIT_RUNS_NOT_OK}"
