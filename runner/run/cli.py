"""`stressbench` (or `python -m runner`) [-m] [overrides]: one stress test, or a sweep of them with -m;
`stressbench report DIR` and `stressbench compare NEW OLD` reach the reporter.

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


HELP = """\
stressbench: how a server's concurrency model changes what it can take.

  stressbench -m server=single,thread,process,select     the main job: the four classic servers, then a report
  stressbench server=select                               one run (100 users at 100/s for 10 s, hello)
  stressbench -m server=select,thread load.users=10,100   a sweep: every combination of the comma lists
  stressbench -m server=prefork,thread run.server_cores=1,2 workload=cpu   how each model scales with cores
  stressbench -cd DIR -m server=select,thread,mine        your server beside ours: DIR/server/mine.yaml holds
                                                          name: mine and command: "python my_server.py {port}"
  stressbench -m server=select run.slo.p99_ms=5           an objective: exit 5 when a run breaks it
  stressbench report DIR                                  write report.md and report.html for a directory of runs
  stressbench compare NEW OLD [--fail-on-regression]      compare with a baseline sweep (exit 6 when slower)
  stressbench --cfg job [overrides]                       print the composed config; --hydra-help: Hydra's own

Exit status: 0 every run finished and met its objectives, 2 refused (nothing started), 3 a run did not
finish, 4 output lost, 5 an objective broken, 6 a regression (compare), 128+N stopped by signal N.
Every key, the reports and the results: README.md and docs/ in the repository.
"""


def command() -> None:
    """The `stressbench` command: the reporter's words first, anything else is the runner's (Hydra's) command line."""
    word, *rest = sys.argv[1:] or [""]
    if word not in ("report", "compare"):
        main()
        return
    from runner.report.document import main as report

    if word == "compare":  # compare NEW OLD ...: the reporter's NEW --baseline OLD ...
        if len(rest) < 2 or rest[0].startswith("-") or rest[1].startswith("-"):
            print("usage: stressbench compare NEW OLD [--fail-on-regression] [--min-change X] [--noise-ratio X]",
                  file=sys.stderr)  # fmt: skip
            sys.exit(exits.EXIT_REFUSED)
        rest = [rest[0], "--baseline", *rest[1:]]
    sys.exit(report(rest))


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(HELP, end="")
        sys.exit(0)
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
    if _sweep_dir is None and callbacks.sweep_dir is None and _run_dir is not None:
        _report_one(_run_dir)
    code, line = exits.verdict(_sweep_dir or callbacks.sweep_dir or _run_dir)  # runner/run/exits.py
    if line:
        print(line, file=sys.stderr)
    _exit_now(code)


def _report_one(run_dir: Path) -> None:
    """A single run gets its report too, and says where its files are (a sweep's callback does both for it)."""
    from runner.report.document import write_report

    try:
        report = write_report(run_dir)
    except Exception as exc:  # the run is on disk whatever happens here
        print(f"files: {run_dir} (no report: {exc}; retry: python -m runner.report {run_dir})", file=sys.stderr)
        return
    print(f"files: {run_dir} (report: {report.name}, report.html; result.json)", file=sys.stderr)


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
