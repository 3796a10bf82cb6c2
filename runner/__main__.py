"""python -m runner [-m] [overrides]: one stress test, or a sweep of them with -m.

Thin on purpose: validate every sweep point (exit 2 before anything starts), then let Hydra
compose each job's config and call run_experiment.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import config as config_mod
from runner.experiment import run_experiment

EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130


@hydra.main(config_path=str(config_mod.CONF_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_experiment(cfg, job_dir, list(hydra_cfg.overrides.task))
    except KeyboardInterrupt:
        # Hydra stops the sweep and skips its callbacks: report the finished runs ourselves
        if hydra_cfg.mode == RunMode.MULTIRUN:
            from runner.report import write_report

            print(f"interrupted; report of finished runs: {write_report(job_dir.parent)}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def main() -> None:
    try:
        argv = config_mod.expand_repeats(sys.argv[1:])
    except ValueError as exc:
        print(f"configuration refused, nothing was started:\n  {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.argv[1:] = argv  # Hydra reads sys.argv
    if not any(a in ("-h", "--help", "--hydra-help", "-c", "--cfg", "--info") for a in argv):
        errors = config_mod.validate_argv(argv)
        if errors:
            print("configuration refused, nothing was started:", file=sys.stderr)
            for error in errors:
                print(f"  {error}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
    _job()


if __name__ == "__main__":
    main()
