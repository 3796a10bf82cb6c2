"""python -m runner [-m] [overrides]: one stress test, or a sweep of them with -m.

Thin on purpose: validate every sweep point and the output directory (exit 2 before anything
starts), then let Hydra compose each job's config and call run_experiment. The exit status says
whether every run ended `ok` (runner/run/exits.py lists the codes), and so does the last console line.

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

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import config as config_mod
from runner.run import callbacks, exits, procs, progress, sweep, tenancy
from runner.run.experiment import OutputDirUnusable, RunDirTaken, check_fresh, check_output_dir, run_experiment

EXIT_CONFIG_ERROR = exits.EXIT_REFUSED
EXIT_SIGNALLED = 128  # + the signal's number, as a shell reports a command a signal ended
DEFAULT_OUTPUTS = "outputs"  # conf/hydra/default.yaml: outputs/runs/..., outputs/sweeps/...

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


def output_root(argv: list[str]) -> tuple[str, str]:
    """(the Hydra key, its value) for where this command writes: the override if given (an
    experiment file's own hydra.sweep.dir is not seen here: each job checks its directory too)."""
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    for arg in argv:
        name, _, value = arg.lstrip("+").partition("=")
        if name == key:
            return key, value
    return key, DEFAULT_OUTPUTS


def sweep_size(argv: list[str]) -> int | None:
    """How many jobs this command launches, counted as Hydra's basic sweeper counts them: the named
    experiment's `hydra.sweeper.params`, then the command line's overrides (a later key wins). For the
    progress line's "job i/N"; None when it cannot tell."""
    if not {"-m", "--multirun"} & set(argv):
        return 1
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [a for a in argv if not a.startswith("-") and not a.lstrip("~+").startswith("hydra.")]
    parser = OverridesParser.create()
    try:
        fixed = [o.input_line for o in parser.parse_overrides(task) if not o.is_sweep_override()]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_mod.CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.params or {}).items()]
        batches = BasicSweeper.split_arguments(parser.parse_overrides(params + task), None)
        return sum(len(batch) for batch in batches)
    except Exception:  # the count only labels the progress line
        return None
    finally:
        GlobalHydra.instance().clear()


def main() -> None:
    try:
        argv = sweep.expand_repeats(sys.argv[1:])
    except ValueError as exc:
        print(f"configuration refused, nothing was started:\n  {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.argv[1:] = argv  # Hydra reads sys.argv
    if not any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "--info") for a in argv):
        errors = sweep.validate_argv(argv)
        key, value = output_root(argv)
        try:
            check_output_dir(Path(value))
            if any(a.lstrip("+").startswith(f"{key}=") for a in argv):  # not outputs/, where every run goes
                check_fresh(Path(value))
        except OutputDirUnusable as exc:
            errors.append(f"{key}={value}: {exc}")
        if errors:
            print("configuration refused, nothing was started:", file=sys.stderr)
            for error in errors:
                print(f"  {error}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
        jobs = sweep_size(argv)
        if jobs:
            os.environ[progress.JOBS_ENV] = str(jobs)
        lock, warning = tenancy.hold()  # held until this process ends
        if warning:
            print(warning, file=sys.stderr, flush=True)
    procs.stop_on_signals()  # SIGTERM, SIGHUP: as Ctrl-C, from here on
    logging.raiseExceptions = False  # a log line a full disk refused: no traceback per line on the console
    try:
        _job()
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
    code, line = exits.verdict(_sweep_dir or callbacks.sweep_dir or _run_dir)  # runner/run/exits.py: 0 or 3
    if line:
        print(line, file=sys.stderr)
    sys.exit(code)


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

