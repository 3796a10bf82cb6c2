"""Real smoke sweeps shared by the report tests (figures, comparison, progress): made once per session."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Sweep:
    path: Path
    output: str  # the CLI's stdout and stderr, captured (not a terminal)


def run_sweep(path: Path, *overrides: str) -> Sweep:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "load=smoke", *overrides, f"hydra.sweep.dir={path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Sweep(path, proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def smoke_sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sweep, Sweep]:
    """Two real sweeps of two servers, each run twice: (baseline select+thread, new select+single). 3 s runs:
    the shortest that leave two whole seconds of samples for the over-time figure."""
    root = tmp_path_factory.mktemp("sweeps")
    return (
        run_sweep(root / "old", "server=select,thread", "run.repeats=2", "load.run_time=3s"),
        run_sweep(root / "new", "server=select,single", "run.repeats=2", "load.run_time=3s"),
    )
