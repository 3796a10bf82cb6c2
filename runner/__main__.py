"""python -m runner [-m] [overrides]: one stress test, or a sweep of them with -m.

Thin on purpose: validate every sweep point and the output directory (exit 2 before anything
starts), then let Hydra compose each job's config and call run_experiment.

Ctrl-C: Hydra has no interrupt handling of its own. KeyboardInterrupt goes up through it (it
catches Exception only) from wherever it lands -- inside a run, which then records itself
`interrupted` after stopping Locust and the server, or in Hydra's few milliseconds between runs --
and main() catches it: it writes the report of the runs on disk (Hydra skips on_multirun_end) and
exits 130.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import config as config_mod
from runner.experiment import OutputDirUnusable, check_output_dir, run_experiment

EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUTPUTS = "outputs"  # conf/hydra/default.yaml: outputs/runs/..., outputs/sweeps/...

_sweep_dir: Path | None = None  # where an interrupted sweep's report goes; set by its first job


@hydra.main(config_path=str(config_mod.CONF_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> None:
    global _sweep_dir
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        _sweep_dir = Path(hydra_cfg.sweep.dir)
    run_experiment(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))


def output_root(argv: list[str]) -> tuple[str, str]:
    """(the Hydra key, its value) for where this command writes: the override if given (an
    experiment file's own hydra.sweep.dir is not seen here: each job checks its directory too)."""
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(argv) else "hydra.run.dir"
    for arg in argv:
        name, _, value = arg.lstrip("+").partition("=")
        if name == key:
            return key, value
    return key, DEFAULT_OUTPUTS


def main() -> None:
    try:
        argv = config_mod.expand_repeats(sys.argv[1:])
    except ValueError as exc:
        print(f"configuration refused, nothing was started:\n  {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.argv[1:] = argv  # Hydra reads sys.argv
    if not any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "--info") for a in argv):
        errors = config_mod.validate_argv(argv)
        key, value = output_root(argv)
        try:
            check_output_dir(Path(value))
        except OutputDirUnusable as exc:
            errors.append(f"{key}={value}: {exc}")
        if errors:
            print("configuration refused, nothing was started:", file=sys.stderr)
            for error in errors:
                print(f"  {error}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
    try:
        _job()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the children are stopped; let the report finish
        print("interrupted", file=sys.stderr)
        if _sweep_dir is not None:
            from runner.report import write_report

            try:
                print(f"report of the runs so far: {write_report(_sweep_dir)}", file=sys.stderr)
            except Exception as exc:  # the runs are on disk whatever happens here
                print(f"no report ({exc}); retry: python -m runner.report {_sweep_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
