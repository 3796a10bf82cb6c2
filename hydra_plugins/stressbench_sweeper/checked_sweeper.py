"""The sweeper of `python -m runner -m ...` (conf/hydra/sweeper/checked.yaml): Hydra's basic sweeper,
but every point is composed and checked before the first job starts, and composed once.

Strategy: runner/run/sweep.py `plan` expands the sweep and composes and checks every point; any
problem stops the sweep with exit 2 (sweep.Refused) before the sweep directory exists. The launcher
(Hydra's basic one, or submitit's) is given a config loader that hands it each point's config as
`plan` composed it. One batch: the launchers run every point of it in order, or as cluster jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from runner.run import spare, sweep


class CheckedSweeper(Sweeper):
    def __init__(self, params: dict[str, str] | None = None) -> None:
        self.params = params  # an experiment's sweep; `plan` reads it from the config, beside the command line

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.loader = sweep.ComposedOnce(hydra_context.config_loader)
        self.hydra_context = HydraContext(config_loader=self.loader, callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        here = self.config.hydra.launcher._target_.endswith(".BasicLauncher")  # the jobs run in this process
        if here:
            spare.prepare(1)  # the first job's Locust imports while the sweep is planned (runner/run/spare.py)
        points, errors, left_out = sweep.plan(self.loader, self.config)  # `arguments`: the config's task overrides
        if errors:
            raise sweep.Refused(errors)
        sweep.say_left_out(left_out)
        sweep.begin(len(points), spares=here)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        results = self.launcher.launch(points, initial_job_idx=0)
        for result in results:
            _ = result.return_value  # a job that raised: re-raised here, as the basic sweeper does
        return [results]
