"""Does the `contended` flag see a neighbour? The runner's own runs, quiet and beside a busy loop.

Each condition is a real `python -m runner` run (pinned as the runner pins: server on the first core,
Locust on the rest), read back from its result.json: RPS, each side's others' CPU (`others_pct`) and
run-queue wait (`wait_pct`), and whether it was flagged `contended`. Conditions, interleaved round by
round so that the machine's drift spreads over all of them:
- quiet-<server>: nothing else started;
- loop-free: one busy loop (`while True: pass`) the scheduler may move between cores;
- loop-server, loop-locust: the busy loop pinned to the server's core, or to Locust's.
The busy loop is this script's own child, started before the run and killed after it.

A measurement, so it lives here and not in a timed test (tests/runner/run/test_numbers.py checks the flag
against a pinned busy loop). docs/design.md quotes its table; runner/run/validity.py has the rule.

    python benchmarks/contention.py [--runs 10] [--quiet select,thread,process] [--busy select] [--run-time 8s]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def busy_loop(core: int | None) -> subprocess.Popen:
    pin = f"import os; os.sched_setaffinity(0, {{{core}}})\n" if core is not None else ""
    return subprocess.Popen([sys.executable, "-c", pin + "while True: pass"])


def one_run(server: str, run_time: str, where: Path) -> dict:
    argv = [sys.executable, "-m", "runner", f"server={server}", f"load.run_time={run_time}", f"hydra.run.dir={where}"]
    subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    result = json.loads((where / "result.json").read_text())
    server_side, locust = result["resources"].get("server", {}), result["resources"].get("locust", {})
    return {
        "rps": result["metrics"].get("rps"),
        "server others": server_side.get("others_pct"),
        "server wait": server_side.get("wait_pct"),
        "locust others": locust.get("others_pct"),
        "locust wait": locust.get("wait_pct"),
        "contended": "contended" in result.get("flags", []),
    }


def span(runs: list[dict], key: str, fmt: str = "{:.0f}") -> str:
    values = [r[key] for r in runs if r[key] is not None]
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}" if values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each condition")
    parser.add_argument("--quiet", default="select,thread,process", help="servers run with nothing beside them")
    parser.add_argument("--busy", default="select", help="the server run beside a busy loop")
    parser.add_argument("--run-time", default="8s")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("needs 2 cores: the runner pins the server and Locust apart only then")
    conditions = {f"quiet-{s}": (s, None, False) for s in args.quiet.split(",") if s}
    conditions |= {"loop-free": (args.busy, None, True), "loop-server": (args.busy, cores[0], True),
                   "loop-locust": (args.busy, cores[1], True)}  # fmt: skip
    rows: dict[str, list[dict]] = {name: [] for name in conditions}
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        for round_ in range(args.runs):
            for name, (server, core, busy) in conditions.items():
                hog = busy_loop(core) if busy else None
                try:
                    rows[name].append(one_run(server, args.run_time, Path(tmp) / f"{name}-{round_}"))
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                print(f"round {round_ + 1}/{args.runs} {name}: {rows[name][-1]}", file=sys.stderr, flush=True)
    print("| condition | flagged | req/s (min-max) | server others % | server wait % | locust others % "
          "| locust wait % |\n|:--|--:|:--|:--|:--|:--|:--|")  # fmt: skip
    for name, runs in rows.items():
        flagged = sum(r["contended"] for r in runs)
        cells = [span(runs, "rps", "{:,.0f}"), *(span(runs, f"{side} {what}") for side in ("server", "locust")
                                                  for what in ("others", "wait"))]  # fmt: skip
        print(f"| {name} | {flagged} of {len(runs)} | " + " | ".join(cells) + " |")
    print()
    for name, runs in rows.items():  # each run's figures, for the record
        print(f"{name}: " + "; ".join(
            f"{r['server others']:.0f}/{r['server wait']:.0f} {r['locust others']:.0f}/{r['locust wait']:.0f}"
            f"{' C' if r['contended'] else ''}" for r in runs
            if None not in (r["server others"], r["server wait"], r["locust others"], r["locust wait"])))  # fmt: skip


if __name__ == "__main__":
    main()
