"""How many requests/s can Locust generate on this machine, and does --processes help?

Runs the real runner against the fastest built-in server (select, hello workload) for every
combination of Locust processes and CPU pinning, repeated and interleaved, then prints one table.
A performance claim, so it lives here and not in a timed test.

    python benchmarks/generator_ceiling.py [--repeats 3] [--run-time 10s] [--users 100]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-time", default="10s")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--out", type=Path, help="sweep directory (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="generator-ceiling-"))
    cmd = [
        sys.executable, "-m", "runner", "-m",
        f"run.repeats={args.repeats}", "load.processes=1,2", "run.pin=true,false",
        "server=select", "workload=hello", f"load.users={args.users}", f"load.run_time={args.run_time}",
        f"hydra.sweep.dir={out}",
    ]  # fmt: skip
    print("$", " ".join(cmd[1:]), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = pd.read_csv(out / "results.csv")
    rows["processes"] = rows["settings"].str.extract(r"load.processes=(\d+)").fillna("1")
    rows["pinned"] = rows["settings"].str.contains("run.pin=false").map({True: "no", False: "yes"})
    table = (
        rows.groupby(["processes", "pinned"])
        .agg(
            runs=("rps", "size"),
            rps_median=("rps", "median"),
            rps_min=("rps", "min"),
            rps_max=("rps", "max"),
            locust_cpu_pct=("locust_cpu_pct", "median"),
            server_cpu_pct=("server_cpu_pct", "median"),
            generator_bound=("flags", lambda f: int(f.fillna("").str.contains("generator-bound").sum())),
        )
        .reset_index()
    )
    print(table.to_markdown(index=False, floatfmt=".0f"))
    print(f"\nraw data: {out}/results.csv, report: {out}/report.md")


if __name__ == "__main__":
    main()
