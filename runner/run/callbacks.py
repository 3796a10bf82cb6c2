"""Hydra callback: before a run or a sweep, refuse a directory that already holds one; when a sweep
ends, write its report into the sweep directory.

Hydra calls on_multirun_end only if every job returned (a job that raises aborts the sweep), which
is why jobs record bad outcomes instead of raising. The callback gets no job results, so the
report is built from what the jobs left on disk -- the same path `python -m runner.report DIR`
takes, so the two can never disagree.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.run.exits import EXIT_REFUSED, SweepStopped
from runner.run.experiment import RunDirTaken, check_fresh

log = logging.getLogger(__name__)
sweep_dir: Path | None = None  # the sweep under way, for the runner's exit status (runner/run/exits.py)


class ReportCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_taken("hydra.run.dir", Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global sweep_dir  # here, not in a job: with the submitit launchers the jobs run in other processes
        _refuse_taken("hydra.sweep.dir", Path(config.hydra.sweep.dir))  # old jobs would join the report
        sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from runner.report.document import write_report  # pandas and matplotlib: not for `python -m runner --help`

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            path = write_report(sweep_dir)
        except Exception:  # a report bug must not hide the runs: they are all on disk
            log.exception("could not write the report for %s; retry: python -m runner.report %s", sweep_dir, sweep_dir)
            return
        log.info("report: %s", path)


def _refuse_taken(key: str, path: Path) -> None:
    """Before Hydra writes into `path` (its .hydra/ would overwrite an old run's): as resolved, which
    runner/run/cli.py cannot see (an experiment's own directory, ${now:...} within the same second)."""
    try:
        check_fresh(path)
    except RunDirTaken as exc:
        raise SweepStopped(f"{key}: {exc}", EXIT_REFUSED) from exc
