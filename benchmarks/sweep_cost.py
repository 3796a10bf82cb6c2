"""The fixed cost of a sweep: the command's wall time minus the sum of its jobs' own wall times
(each result.json's duration_s, run_experiment from its first step to its last). What is left is
the runner's own: imports, composing and checking the sweep, Hydra launching each job, the report.

Beside it, the runner's own CPU time (its process alone, not its children: read from /proc while
it runs), which a busy machine's waiting does not inflate: the runs' supervision is in it, the same
for every tree, and so is every CPU-bound part of the fixed cost.

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


def one_sweep(tree: Path, argv: list[str], out: Path) -> tuple[float, float, int, float]:
    """(wall s, the sum of the jobs' duration_s, jobs, the runner's own CPU s) of `python -m runner
    <argv>` from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    began = time.monotonic()
    with open(out.parent / f"{out.name}.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "runner", *argv, f"hydra.sweep.dir={out}"], env=env,
                                cwd=out.parent, stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        cpu = 0.0
        while proc.poll() is None:
            cpu = _own_cpu_s(proc.pid) or cpu
            time.sleep(0.02)
        wall = time.monotonic() - began
        log.seek(0)
        output = log.read()
    if proc.returncode not in (0, 3):  # 3: a run not ok (a busy machine's timeouts): its cost is still the sweep's
        raise RuntimeError(f"{tree}: exit {proc.returncode}: {output[-2000:]}")
    jobs = [json.loads(p.read_text())["duration_s"] for p in out.glob("*/result.json")]
    return wall, sum(jobs), len(jobs), cpu


def _own_cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` itself (/proc/PID/stat fields 14 and 15), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", default=f"this={REPO}", help="NAME=PATH,NAME=PATH: source trees to compare")
    parser.add_argument("argv", nargs="*", default=["-m", "load=smoke"], help="the sweep (after --)")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees.split(","))
    fixed: dict[str, list[float]] = {name: [] for name in trees}
    walls: dict[str, list[float]] = {name: [] for name in trees}
    cpus: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            names = list(trees)[r % len(trees) :] + list(trees)[: r % len(trees)]
            for name in names:
                wall, jobs_s, jobs, cpu = one_sweep(Path(trees[name]).resolve(), args.argv, Path(tmp) / f"{name}{r}")
                walls[name].append(wall)
                fixed[name].append(wall - jobs_s)
                cpus[name].append(cpu)
                print(f"round {r} {name}: wall {wall:.2f} s, {jobs} jobs {jobs_s:.2f} s, fixed {wall - jobs_s:.2f} s, "
                      f"runner CPU {cpu:.2f} s", flush=True)  # fmt: skip
    print(f"\n{' '.join(args.argv)}, {args.rounds} rounds\n")
    print("| tree | wall s (median) | fixed s (median) | fixed s (min-max) | runner CPU s (median) |")
    print("|---|---|---|---|---|")
    for name in trees:
        f = fixed[name]
        print(f"| {name} | {statistics.median(walls[name]):.2f} | {statistics.median(f):.2f} | "
              f"{min(f):.2f}-{max(f):.2f} | {statistics.median(cpus[name]):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
