"""python -m runner [-m] [overrides]: one stress test, or a sweep of them with -m.

Thin on purpose: Hydra composes the config; our sweeper (a sweep) or the run callback (a single run)
checks it and the output directory, exit 2 before anything starts (runner/run/sweep.py); then each
job calls run_experiment. A composition error comes up here (callbacks.explain_composition) to be
said in the runner's words, exit 2 too. The exit status says whether every run ended `ok`
(runner/run/exits.py lists the codes), and so does the last console line.

Ctrl-C, SIGTERM, SIGHUP: Hydra has no interrupt handling of its own. KeyboardInterrupt (SIGTERM and
SIGHUP raise one too: runner/run/procs.py) goes up through it (it catches Exception only) from wherever
it lands -- inside a run, which then records itself `interrupted` after stopping Locust and the
server, or in Hydra's few milliseconds between runs -- and main() catches it: it writes the report
of the runs on disk (Hydra skips on_multirun_end) and exits 128 + the signal: 130 (SIGINT), 143
(SIGTERM), 129 (SIGHUP), as a shell reports a command that signal ended.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.stressbench_sweeper.checked_sweeper import CheckedSweeper
from runner import config as config_mod
from runner.run import callbacks, exits, procs, sweep
from runner.run.experiment import OutputDirUnusable, RunDirTaken, check_output_dir, run_experiment

EXIT_CONFIG_ERROR = exits.EXIT_REFUSED
EXIT_SIGNALLED = 128  # + the signal's number, as a shell reports a command a signal ended

_sweep_dir: Path | None = None  # where an interrupted sweep's report goes; set by its first job
_run_dir: Path | None = None  # the last job's directory: a single run's verdict


@hydra.main(config_path=str(config_mod.CONF_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> None:
    global _sweep_dir, _run_dir
    hydra_cfg = HydraConfig.get()
    _run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        _sweep_dir = Path(hydra_cfg.sweep.dir)
    try:
        run_experiment(cfg, _run_dir, list(hydra_cfg.overrides.task))
    except OutputDirUnusable as exc:  # raised here Hydra would print a traceback, then start the next job
        code = EXIT_CONFIG_ERROR if isinstance(exc, RunDirTaken) else exits.EXIT_OUTPUT_LOST
        raise exits.SweepStopped(f"job {hydra_cfg.job.num} not started: {exc}", code) from exc
    if hydra_cfg.mode == RunMode.MULTIRUN:  # before Hydra writes the next job's .hydra/ (a traceback)
        try:
            check_output_dir(_run_dir)
        except OutputDirUnusable as exc:
            raise exits.SweepStopped(f"stopped after job {hydra_cfg.job.num}: {exc}", exits.EXIT_OUTPUT_LOST) from exc


def main() -> None:
    try:
        argv = sweep.expand_repeats(sys.argv[1:])
    except ValueError as exc:
        _refuse(sweep.Refused([str(exc)]))
    sys.argv[1:] = argv  # Hydra reads sys.argv
    procs.stop_on_signals()  # SIGTERM, SIGHUP: as Ctrl-C, from here on
    logging.raiseExceptions = False  # a log line a full disk refused: no traceback per line on the console
    # Hydra's scan finds plugins on sys.path's hydra_plugins/ only, not through an editable install's finder
    Plugins.instance().register(CheckedSweeper)
    callbacks.explain_composition()
    try:
        _job()
    except sweep.Refused as refused:
        _refuse(refused)
    except KeyboardInterrupt as interrupt:
        for signum in procs.STOP_SIGNALS:  # the children are stopped; let the report finish
            signal.signal(signum, signal.SIG_IGN)
        print(f"interrupted by {procs.stopped_by(interrupt)}", file=sys.stderr)
        _report_so_far()
        sys.exit(EXIT_SIGNALLED + procs.signal_of(interrupt))  # 130 for SIGINT, 143 SIGTERM, 129 SIGHUP
    except exits.SweepStopped as stop:
        print(stop, file=sys.stderr)
        _report_so_far()
        sys.exit(stop.code)
    except (HydraException, OmegaConfBaseException) as exc:
        if callbacks.composed:  # HYDRA_FULL_ERROR was the user's own: a job's error, Hydra's traceback
            raise
        _refuse(sweep.Refused([sweep.explain(exc, [a for a in argv if not a.startswith("-")])]))
    code, line = exits.verdict(_sweep_dir or callbacks.sweep_dir or _run_dir)  # runner/run/exits.py: 0 or 3
    if line:
        print(line, file=sys.stderr)
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown of pandas, matplotlib and Hydra's modules (0.3-0.7 s
    measured, all of it after the last line): every run and the report are on disk and every child
    is stopped; only the logs and the console are left to flush."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _refuse(refused: sweep.Refused) -> NoReturn:
    print(refused, file=sys.stderr)
    sys.exit(refused.code)


def _report_so_far() -> None:
    """A stopped sweep's report of the runs on disk (Hydra skips on_multirun_end)."""
    sweep_dir = _sweep_dir or callbacks.sweep_dir
    if sweep_dir is None or not sweep_dir.is_dir():
        return
    from runner.report.document import write_report

    try:
        print(f"report of the runs so far: {write_report(sweep_dir)}", file=sys.stderr)
    except Exception as exc:  # the runs are on disk whatever happens here
        print(f"no report ({exc}); retry: python -m runner.report {sweep_dir}", file=sys.stderr)
