"""Does distributed Locust (load.mode=distributed) generate more requests/s than one worker here?

Runs the real runner against the fastest built-in server (select, keep-alive, hello) with one
ordinary Locust process (load.mode=local) and with a master and 1 or 2 local workers, pinned and
unpinned, in one interleaved sweep (local runs appear twice per repeat: load.workers does not
apply to them), and prints one table from the runs' result.json files. On a 2-core machine,
pinned, every worker shares the one load core (the server has the other), so a second worker
cannot add CPU there; unpinned, the workers and the server share both cores. A performance
claim, so it lives here, not in a test.

    python benchmarks/distributed_ceiling.py [--repeats 2] [--run-time 8s] [--users 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--run-time", default="8s")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--out", type=Path, help="sweep directory (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="distributed-ceiling-"))
    cmd = [
        sys.executable, "-m", "runner", "-m",
        f"run.repeats={args.repeats}", "load=distributed", "load.mode=local,distributed", "load.workers=1,2",
        "run.pin=true,false",
        "server=select", "workload=hello", f"load.users={args.users}", f"load.run_time={args.run_time}",
        f"hydra.sweep.dir={out}",
    ]  # fmt: skip
    print("$", " ".join(cmd[1:]), file=sys.stderr)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 3):  # 3: some run was not ok -- data, in the table below (runner/run/exits.py)
        sys.exit(f"the sweep failed (exit {done.returncode})")
    rows = []
    for path in sorted(out.glob("*/result.json")):
        r = json.loads(path.read_text())
        shares = [w["share"] for w in r.get("workers", {}).get("each", []) if w.get("share") is not None]
        distributed = r["config"]["load"]["mode"] == "distributed"
        rows.append({
            "mode": r["config"]["load"]["mode"],
            "workers": r["config"]["load"]["workers"] if distributed else 0,
            "pinned": "yes" if r["config"]["run"]["pin"] else "no",
            "rps": r["metrics"]["rps"],
            "locust_cpu_pct": (r["resources"].get("locust") or {}).get("cpu_pct"),
            "server_cpu_pct": (r["resources"].get("server") or {}).get("cpu_pct"),
            "shares": "/".join(f"{s:.2f}" for s in shares),
            "ok": r["outcome"] == "ok",
            "generator_bound": "generator-bound" in r["flags"],
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    table = (
        frame.groupby(["mode", "workers", "pinned"])
        .agg(
            runs=("rps", "size"),
            ok=("ok", "sum"),
            rps_median=("rps", "median"),
            rps_min=("rps", "min"),
            rps_max=("rps", "max"),
            locust_cpu_pct=("locust_cpu_pct", "median"),
            server_cpu_pct=("server_cpu_pct", "median"),
            shares=("shares", "last"),
            generator_bound=("generator_bound", "sum"),
        )
        .reset_index()
    )
    print(table.to_markdown(index=False, floatfmt=".0f"))
    print(f"\nraw data: {out}/*/result.json, report: {out}/report.md")


if __name__ == "__main__":
    main()
