"""Configs and sweeps as the runner makes them: `compose` is Hydra's compose of conf/ with overrides
(what one point of a sweep gets), `run_sweep` a real `python -m runner -m` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from runner.config import CONF_DIR
from support import REPO


def compose(*overrides: str, hydra: bool = False) -> DictConfig:
    """conf/config.yaml composed with `overrides` (Hydra's override grammar), as a sweep point is;
    `hydra`: with the hydra node too (launcher, sweeper)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def smoke(*overrides: str) -> DictConfig:
    """`compose` with load=smoke first: a short run, for tests that run one."""
    return compose("load=smoke", *overrides)


@dataclass
class Sweep:
    path: Path
    output: str  # the CLI's stdout and stderr, captured (not a terminal)


def run_sweep(path: Path, *overrides: str) -> Sweep:
    """A real smoke sweep into `path`; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "load=smoke", *overrides, f"hydra.sweep.dir={path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Sweep(path, proc.stdout + proc.stderr)
