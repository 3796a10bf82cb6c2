"""What the runner itself costs: a sweep's wall time beyond the run time it measures.

Two numbers, from one sweep's directory and its wall time:
- per job: the job's wall time minus its run time (`load.run_time`). A job's wall time runs from
  Hydra writing its `.hydra/config.yaml` (before the job's code starts) to its `result.json`
  (written last), so it holds starting the server, waiting until it is ready, starting Locust,
  ramp-up, the run, stopping both and writing the record.
- fixed: the sweep's wall time minus the sum of its jobs' wall times: starting Python and Hydra,
  checking every sweep point, composing, and writing the report at the end.
Beside them, each server's median RPS over the rounds: what the runs measured, which a cheaper runner
must leave as it was. And the runner's own CPU time (its process alone, not its children: read from /proc while
it runs), which a busy machine's waiting does not inflate: the runs' supervision is in it, the same
for every tree, and so is every CPU-bound part of the fixed cost.

Given several source trees (`--trees old,new`, each a checkout), the sweeps run interleaved, in a
rotated order, so that a shared machine's drift spreads over all of them; each tree's code is the
one that runs (PYTHONPATH and the working directory are the tree's). A performance claim: it lives
here, not in a timed test.

    python benchmarks/overhead.py [--trees .,/tmp/old] [--rounds 3] [-- server=single,thread,process,select]
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

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SWEEP = ["server=single,thread,process,select"]


def sweep(tree: Path, overrides: list[str], into: Path) -> tuple[float, float]:
    """Run one sweep of `tree`'s code into `into`: (its wall time, the runner process's own CPU time), seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "runner", "-m", *overrides, f"hydra.sweep.dir={into}"]
    began = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        cpu = 0.0
        while proc.poll() is None:
            cpu = _own_cpu_s(proc.pid) or cpu
            time.sleep(0.02)
        wall = time.monotonic() - began
        log.seek(0)
        output = log.read()
    if proc.returncode not in (0, 3):  # 3: some run was not ok -- still a sweep whose costs count
        raise SystemExit(f"{tree}: the sweep exited {proc.returncode}:\n{output[-2000:]}")
    return wall, cpu


def _own_cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` itself (/proc/PID/stat fields 14 and 15), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def job_spans(directory: Path) -> list[tuple[float, float, str, float | None]]:
    """(wall time, run time, server, RPS) of each job under a sweep directory."""
    spans = []
    for path in sorted(directory.glob("*/result.json")):
        began = (path.parent / ".hydra" / "config.yaml").stat().st_mtime
        result = json.loads(path.read_text())
        run_time, rps = float(result["load"]["run_time_s"]), result["metrics"].get("rps")
        spans.append((path.stat().st_mtime - began, run_time, result["config"]["server"]["name"], rps))
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", default=str(REPO), help="comma-separated checkouts to compare (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="the sweep's overrides (default: the four classic servers)")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    overrides = args.overrides or DEFAULT_SWEEP
    rows, per_tree = [], {t: {"job": [], "fixed": [], "cpu": []} for t in trees}
    rps: dict[str, dict[Path, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="overhead-") as scratch:
        for round_ in range(args.rounds):
            for tree in trees[round_ % len(trees) :] + trees[: round_ % len(trees)]:
                into = Path(scratch) / f"{tree.name}-{round_}"
                wall, cpu = sweep(tree, overrides, into)
                spans = job_spans(into)
                extra = [span - run for span, run, _, _ in spans]
                fixed = wall - sum(span for span, _, _, _ in spans)
                for _, _, server, value in spans:
                    if value is not None:
                        rps.setdefault(server, {}).setdefault(tree, []).append(value)
                per_tree[tree]["job"] += extra
                per_tree[tree]["fixed"].append(fixed)
                per_tree[tree]["cpu"].append(cpu)
                rows.append([str(tree), round_, f"{wall:.2f}", len(spans), f"{sum(s[1] for s in spans):g}",
                             f"{statistics.median(extra):.2f}", f"{fixed:.2f}", f"{cpu:.2f}"])  # fmt: skip
    print(f"sweep: python -m runner -m {' '.join(overrides)}\n")
    headers = ["tree", "round", "wall s", "jobs", "run time s", "job - run time s (median)", "fixed s", "runner CPU s"]
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    summary = [[str(t), f"{statistics.median(v['job']):.2f}", f"{statistics.median(v['fixed']):.2f}",
                f"{min(v['fixed']):.2f}-{max(v['fixed']):.2f}", f"{statistics.median(v['cpu']):.2f}"]
               for t, v in per_tree.items()]  # fmt: skip
    print()
    headers = [
        "tree",
        "job - run time s (median of all jobs)",
        "fixed s (median)",
        "fixed s (min-max)",
        "runner CPU s (median)",
    ]
    print(tabulate(summary, headers=headers, tablefmt="github", disable_numparse=True))
    print()
    table = [[server, *(f"{statistics.median(by_tree[t]):.0f}" if t in by_tree else "-" for t in trees)]
             for server, by_tree in rps.items()]  # fmt: skip
    print(tabulate(table, headers=["server", *(f"RPS, {t} (median)" for t in trees)], tablefmt="github",
                   disable_numparse=True))  # fmt: skip


if __name__ == "__main__":
    main()
