"""Hydra callback: check a single run before it starts; when a sweep ends, write its report into the
sweep directory. (A sweep's points are checked by its sweeper, runner/run/sweep.py.)

Hydra calls on_multirun_end only if every job returned (a job that raises aborts the sweep), which
is why jobs record bad outcomes instead of raising. The callback gets no job results, so the
report is built from what the jobs left on disk -- the same path `python -m runner.report DIR`
takes, so the two can never disagree.

Until Hydra has composed the command's config, HYDRA_FULL_ERROR is set (`explain_composition`), so
a composition error comes up to runner/run/cli.py to be explained in the runner's words and exit 2;
the first callback puts it back as it was, and a job's error is Hydra's to print again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.run import spare
from runner.run import sweep as sweep_mod

log = logging.getLogger(__name__)
sweep_dir: Path | None = None  # the sweep under way, for the runner's exit status (runner/run/exits.py)
composed = False  # Hydra composed the command's config: an exception from here on is not a configuration's
_FULL_ERROR = "HYDRA_FULL_ERROR"
_full_error: str | None = None  # its value before explain_composition


def explain_composition() -> None:
    """Let Hydra's composition errors through to the caller, until the first callback."""
    global _full_error
    _full_error = os.environ.get(_FULL_ERROR)
    os.environ[_FULL_ERROR] = "1"


def _composed() -> None:
    global composed
    composed = True
    if _full_error is None:
        os.environ.pop(_FULL_ERROR, None)
    else:
        os.environ[_FULL_ERROR] = _full_error


class ReportCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _composed()
        errors = sweep_mod.check(config) + sweep_mod.output_errors("hydra.run.dir", config.hydra.run.dir)
        if errors:
            raise sweep_mod.Refused(errors)
        sweep_mod.begin(1)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global sweep_dir  # here, not in a job: with the submitit launchers the jobs run in other processes
        _composed()
        sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from runner.report.document import write_report  # pandas and matplotlib: not for `python -m runner --help`

        spare.discard()  # spares no job took (a distributed master starts cold)
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            path = write_report(sweep_dir)
        except Exception:  # a report bug must not hide the runs: they are all on disk
            log.exception("could not write the report for %s; retry: python -m runner.report %s", sweep_dir, sweep_dir)
            return
        log.info("report: %s", path)
