"""How many requests/s each load generator gets from the same server: every Locust user class
(`loop`, `fast`, `http`) beside `wrk -t1 -c100` as the reference.

Per server (--servers, default epoll): the server is started once, as the runner starts it
(runner/run/server.py), hello workload, pinned to the first core; each generator in turn runs on the
second core against it -- Locust exactly as the runner runs it (runner/run/load.py's command line, its
steady window read from the per-phase files), wrk as benchmarks/raw_speed.py runs it. Rounds
interleave in a rotated order, so a shared machine's drift spreads over all generators, and the
ratios (x FastHttpUser, x wrk) are medians of each round's own ratio: the two ran seconds apart.
CPU % is over the measured window (Locust: its steady window; wrk: its whole run, from rusage);
generator us/req is the generator's CPU time per request.

A performance claim, so it lives here and not in a timed test.

    python benchmarks/generator_ceiling.py [--servers epoll,select] [--rounds 3] [--duration 6]
                                           [--users 100] [--generators loop,fast,http,wrk]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_speed import Started, run_wrk, tree_cpu_s  # noqa: E402

from runner.run import load, procs  # noqa: E402
from runner.run.resources import Sampler, summarize  # noqa: E402

GENERATORS = ("loop", "fast", "http", "wrk")
LABELS = {"loop": "loop (one engine per process)", "fast": "fast (FastHttpUser)", "http": "http (HttpUser)",
          "wrk": "wrk -t1 (reference)"}  # fmt: skip


def run_locust(started: Started, server, user_class: str, args: argparse.Namespace, cpu: int | None, out: Path):
    """One Locust run as the runner makes it; (req/s, Locust CPU %, server CPU %) over its steady window."""
    cfg = copy.deepcopy(started.cfg)
    cfg.load.user_class, cfg.load.users, cfg.load.spawn_rate = user_class, args.users, float(args.users)
    cfg.load.run_time, cfg.load.warmup_s = f"{args.duration}s", 1.0
    out.mkdir(parents=True, exist_ok=True)
    told = load.told(cfg, out, 1)
    argv = load.locust_argv(told, server.host, server.port, out)
    proc = procs.spawn(argv, out / load.LOCUST_LOG, cpus={cpu} if cpu is not None else None)
    with Sampler(locust=proc.pid, server=server.proc.pid) as sampler:
        try:
            proc.wait(load.deadline_s(cfg, told))
        finally:
            procs.terminate(proc, 1.0)
    metrics = load.read_stats(out)
    if metrics is None or not metrics.window_bounds or not metrics.rps:
        raise RuntimeError(f"Locust ({user_class}) measured nothing: see {out / load.LOCUST_LOG}")
    start, end = metrics.window_bounds
    locust = summarize(sampler.series["locust"], start, end, 1)
    served = summarize(sampler.series["server"], start, end, 1)
    return metrics.rps, locust["cpu_pct"], served["cpu_pct"], metrics.failures


def run_generator(name: str, started: Started, server, args, cpu: int | None, out: Path) -> dict:
    if name != "wrk":
        rps, gen_cpu, server_cpu, failures = run_locust(started, server, name, args, cpu, out)
        return {"rps": rps, "gen_cpu_pct": gen_cpu, "server_cpu_pct": server_cpu, "errors": failures}
    cpu_before, wall_before = tree_cpu_s(server.proc.pid), time.monotonic()
    result = run_wrk(server.port, args, args.duration, cpu, out.with_suffix(".wrk.log"))
    server_cpu = 100 * (tree_cpu_s(server.proc.pid) - cpu_before) / (time.monotonic() - wall_before)
    return {"rps": result["rps"], "gen_cpu_pct": result["wrk_cpu_pct"], "server_cpu_pct": server_cpu,
            "errors": result["errors"] + result["non2xx"]}  # fmt: skip


def _ratio(rounds: list[dict], reference: list[dict]) -> str:
    theirs = {r["round"]: r["rps"] for r in reference}
    ratios = [r["rps"] / theirs[r["round"]] for r in rounds if theirs.get(r["round"])]
    return f"{statistics.median(ratios):.2f}" if ratios else "—"


def table(results: dict[str, list[dict]]) -> str:
    rows = []
    for name, rounds in results.items():
        if not rounds:
            continue
        rps = [r["rps"] for r in rounds]
        per_request = [1e6 * r["gen_cpu_pct"] / 100 / r["rps"] for r in rounds if r["gen_cpu_pct"] and r["rps"]]
        rows.append({
            "generator": LABELS.get(name, name),
            "req/s (median)": f"{statistics.median(rps):,.0f}",
            "req/s (min–max)": f"{min(rps):,.0f}–{max(rps):,.0f}" if len(rps) > 1 else "",
            "generator CPU %": f"{statistics.median(r['gen_cpu_pct'] or 0 for r in rounds):.0f}",
            "server CPU %": f"{statistics.median(r['server_cpu_pct'] or 0 for r in rounds):.0f}",
            "generator us/req": f"{statistics.median(per_request):.1f}" if per_request else "—",
            "errors": sum(r["errors"] or 0 for r in rounds),
            "x FastHttpUser": _ratio(rounds, results.get("fast") or []),
            "x wrk": _ratio(rounds, results.get("wrk") or []),
        })  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(nothing ran)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="epoll", help="comma-separated server configs")
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6, help="seconds each generator runs (Locust: steady part)")
    parser.add_argument("--users", type=int, default=100, help="Locust users = wrk connections")
    parser.add_argument("--out", type=Path, help="directory for logs (default: a temporary one)")
    args = parser.parse_args()
    args.connections = args.users  # run_wrk's name for it
    out = args.out or Path(tempfile.mkdtemp(prefix="generator-ceiling-"))
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, gen_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    generators = args.generators.split(",")
    print(f"server on CPU {server_cpu}, generator on CPU {gen_cpu}; {args.users} users/connections, "
          f"{args.duration} s per run, {args.rounds} interleaved rounds; logs in {out}", file=sys.stderr)  # fmt: skip
    for name in args.servers.split(","):
        results: dict[str, list[dict]] = {g: [] for g in generators}
        started = Started(name, out / name, server_cpu)
        with started as server:
            for r in range(args.rounds):
                for gen in generators[r % len(generators) :] + generators[: r % len(generators)]:
                    print(f"{name}: round {r + 1}/{args.rounds}: {gen}", file=sys.stderr)
                    try:
                        result = run_generator(gen, started, server, args, gen_cpu, out / name / f"r{r}_{gen}")
                    except (RuntimeError, ValueError) as exc:
                        print(f"  failed: {exc}", file=sys.stderr)
                        continue
                    results[gen].append({**result, "round": r})
        alive = "keep-alive" if started.cfg.server.keepalive else "a connection per request"
        print(f"\n### {name} (hello, {alive}, {args.users} users/connections)\n")
        print(table(results))
    print(f"\nlogs: {out}")


if __name__ == "__main__":
    main()
