"""The fixed cost of a sweep: the command's wall time minus the sum of its jobs' own wall times
(each result.json's duration_s, run_experiment from its first step to its last). What is left is
the runner's own: imports, composing and checking the sweep, Hydra launching each job, the report.

Each round runs the same sweep once per source tree (--trees NAME=PATH, imported first through
PYTHONPATH), in a rotated order so that a shared machine's drift spreads over all of them; the table
gives each tree's median and range. A performance claim, so it lives here and not in a timed test.

    python benchmarks/sweep_cost.py [--rounds 3] [--trees old=/tmp/old,new=.] -- -m load=smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_sweep(tree: Path, argv: list[str], out: Path) -> tuple[float, float, int]:
    """(wall s, the sum of the jobs' duration_s, jobs) of `python -m runner <argv>` from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runner", *argv, f"hydra.sweep.dir={out}"], env=env, cwd=out.parent,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    wall = time.monotonic() - began
    if proc.returncode not in (0, 3):  # 3: a run not ok (a busy machine's timeouts): its cost is still the sweep's
        raise RuntimeError(f"{tree}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    jobs = [json.loads(p.read_text())["duration_s"] for p in out.glob("*/result.json")]
    return wall, sum(jobs), len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", default=f"this={REPO}", help="NAME=PATH,NAME=PATH: source trees to compare")
    parser.add_argument("argv", nargs="*", default=["-m", "load=smoke"], help="the sweep (after --)")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees.split(","))
    fixed: dict[str, list[float]] = {name: [] for name in trees}
    walls: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            names = list(trees)[r % len(trees) :] + list(trees)[: r % len(trees)]
            for name in names:
                wall, jobs_s, jobs = one_sweep(Path(trees[name]).resolve(), args.argv, Path(tmp) / f"{name}{r}")
                walls[name].append(wall)
                fixed[name].append(wall - jobs_s)
                print(f"round {r} {name}: wall {wall:.2f} s, {jobs} jobs {jobs_s:.2f} s, fixed {wall - jobs_s:.2f} s")
    print(f"\n{' '.join(args.argv)}, {args.rounds} rounds\n")
    print("| tree | wall s (median) | fixed s (median) | fixed s (min-max) |\n|---|---|---|---|")
    for name in trees:
        f = fixed[name]
        print(f"| {name} | {statistics.median(walls[name]):.2f} | {statistics.median(f):.2f} | "
              f"{min(f):.2f}-{max(f):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
