"""The report's Capacity and "RPS and p99 vs users" sections (the search itself: runner/capacity.py).

The Capacity section's numbers are the capacity block's (result.json's `capacity`, read once with the
run: runner/report/record.py), never the run's own `metrics`, which cover the whole run."""

from __future__ import annotations

import math
import statistics
from typing import Any

from runner.capacity import LOWER_BOUND, STOP_REASONS, plan_from
from runner.report.record import Run, lookup

MISSING = "—"


def report_sections(frame: Any, runs: list[Run]) -> str:
    """The Capacity and "RPS and p99 vs users" sections for a report of `runs` (`frame`: their
    runs.to_frame); "" when the sweep has neither."""
    searched = [run for run in runs if run.capacity]
    sweep = frame[~frame["run"].isin([run.run for run in searched])]
    parts = [capacity_section(searched), curves_section(sweep)]
    return "\n".join(part for part in parts if part)


def capacity_section(runs: list[Run]) -> str:
    """Servers ranked by maximum sustainable RPS, then each run's steps, from each run's capacity block."""
    if not runs:
        return ""

    def key(run: Run) -> tuple:
        best = run.capacity.get("max_rps")
        return (best is None, -(best or 0), run.run)

    ranked = sorted(runs, key=key)
    rows = []
    for place, r in enumerate(ranked, 1):
        block = r.capacity
        rows.append([str(place) if block.get("max_rps") is not None else MISSING, r.server, r.run,
                     _max_rps(block), _fmt(block.get("users_at_max"), "{:.0f}"),
                     block.get("stop_reason") or MISSING, block.get("stop_detail") or ""])  # fmt: skip
    plan = plan_from(lookup(ranked[0].config, "load.capacity") or {})
    text = [
        "## Capacity\n",
        f"The most requests/s each server sustained within the SLO (at most {plan.max_failure_ratio:.1%} failed, "
        f"p99 at most {plan.max_p99_ms:g} ms), found by raising users from {plan.start_users} by {plan.step_users} "
        f"up to {plan.max_users}, {plan.step_s:g} s a step, each measured after its first {plan.ramp_s:g} s "
        "(load=capacity; runs with other settings say so in their config).\n",
        _table(["Rank", "Server", "Run", "Max RPS", "Users at max", "Stopped by", "Why"], rows, "rllrrll"),
        "",
        "Stopped by: " + "; ".join(f"**{k}**: {v}" for k, v in STOP_REASONS.items()
                                   if any(r.capacity.get("stop_reason") == k for r in ranked)) + ".",
        "",
    ]  # fmt: skip
    for r in ranked:
        text.append(f"### {r.server} ({r.run}): steps\n")
        steps = [
            [_fmt(_fail_pct(s) if k == "fail_pct" else s.get(k), f) for k, f in _STEP_COLUMNS]
            + [s.get("verdict") or MISSING]
            for s in r.capacity.get("steps") or []
        ]
        headers = [h for h, _ in _STEP_HEADERS] + ["Verdict"]
        text.append(_table(headers, steps, "r" * len(_STEP_COLUMNS) + "l") if steps else "No step was measured.")
        text.append("")
    text.append(
        "Verdict: **ok** met the SLO and RPS grew; **knee** met the SLO but RPS grew less than "
        f"{plan.min_growth:.0%} over the step before; **slo-failures**, **slo-p99** breached the SLO; "
        f"**generator-bound** Locust used its core or waited for it >= {plan.generator_cpu_pct:g}% of the step. "
        "Max RPS is the best step that met the SLO; ≥ marks a lower bound (the search stopped before the server "
        "did). RPS counts failed requests; Goodput does not. CPU %: 100 = one core busy; Locust wait %: time Locust "
        "was ready to run but waited for its core (other processes had it).\n"
    )
    return "\n".join(text)


_STEP_HEADERS = (("Users", "users"), ("RPS", "rps"), ("Goodput", "goodput"), ("Fail %", "fail_pct"),
                 ("p50 ms", "p50_ms"), ("p95 ms", "p95_ms"), ("p99 ms", "p99_ms"),
                 ("Locust CPU %", "locust_cpu_pct"), ("Locust wait %", "locust_wait_pct"),
                 ("Server CPU %", "server_cpu_pct"))  # fmt: skip
_FORMATS = {"users": "{:.0f}", "rps": "{:.1f}", "goodput": "{:.1f}", "fail_pct": "{:.2f}", "p50_ms": "{:g}",
            "p95_ms": "{:g}", "p99_ms": "{:g}", "locust_cpu_pct": "{:.0f}", "locust_wait_pct": "{:.0f}",
            "server_cpu_pct": "{:.0f}"}  # fmt: skip
_STEP_COLUMNS = tuple((k, _FORMATS[k]) for _, k in _STEP_HEADERS)


def curve_table(frame: Any) -> Any:
    """Users-sweep curves: one row per (series, users), numbers the median of the complete runs.
    `series` names the server plus whatever else differs (workload, spawn rate, settings).
    Columns: series, server, users, n, rps, goodput, fail_pct, p50_ms, p95_ms, p99_ms, locust_cpu_pct,
    server_cpu_pct, flags. Empty unless the frame's runs differ in load.users."""
    import pandas as pd

    columns = ["series", "server", "users", "n", "rps", "goodput", "fail_pct", "p50_ms", "p95_ms", "p99_ms",
               "locust_cpu_pct", "server_cpu_pct", "flags"]  # fmt: skip
    frame = frame[frame["users"].notna()]
    if frame.empty or frame["users"].nunique() < 2:
        return pd.DataFrame(columns=columns)
    keys = [k for k in ("workload", "spawn_rate", "settings") if frame[k].astype(str).nunique() > 1]
    rows = []
    for (server, *rest, users), runs in frame.groupby(["server", *keys, "users"], sort=True, dropna=False):
        label = ", ".join([str(server), *(f"{k} {v}" for k, v in zip(keys, rest, strict=True) if str(v))])
        complete = runs[~runs["partial"] & runs["rps"].notna()]
        row = {"series": label, "server": server, "users": int(users), "n": len(complete)}
        for name in columns[4:-1]:
            values = [float(v) for v in complete[name] if not pd.isna(v)]
            row[name] = statistics.median(values) if values else None
        row["flags"] = ",".join(sorted({f for flags in complete["flags"] for f in str(flags).split(",") if f}))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def curves_section(frame: Any) -> str:
    """The "RPS and p99 vs users" section, one row per user count (curve_table); "" without a users sweep."""
    table = curve_table(frame)
    if table.empty:
        return ""
    text = ["## RPS and p99 vs users\n",
            "How each server's throughput and tail latency change as users are added (a `load.users=...` sweep). "
            "Each row: the median of the complete runs with that many users (n). RPS counts failed requests; "
            "Goodput does not.\n"]  # fmt: skip
    formats = (("users", "{:.0f}"), ("n", "{:.0f}"), ("rps", "{:.1f}"), ("goodput", "{:.1f}"), ("p99_ms", "{:g}"),
               ("fail_pct", "{:.2f}"), ("locust_cpu_pct", "{:.0f}"), ("server_cpu_pct", "{:.0f}"))  # fmt: skip
    headers = ["Users", "n", "RPS", "Goodput", "p99 ms", "Fail %", "Locust CPU %", "Server CPU %", "Flags"]
    for series, rows in table.groupby("series", sort=False):
        body = [[_fmt(row[k], f) for k, f in formats] + [row["flags"].replace(",", ", ")] for _, row in rows.iterrows()]
        text += [f"### {series}\n", _table(headers, body, "r" * len(formats) + "l"), ""]
    return "\n".join(text)


def _max_rps(block: dict) -> str:
    text = _fmt(block.get("max_rps"), "{:.1f}")
    return f"≥ {text}" if text != MISSING and block.get("stop_reason") in LOWER_BOUND else text


def _fail_pct(step: dict) -> float | None:
    ratio = step.get("failure_ratio")
    return None if ratio is None else 100 * ratio


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return MISSING


def _table(headers: list[str], rows: list[list[str]], align: str) -> str:
    from tabulate import tabulate

    colalign = ["left" if a == "l" else "right" for a in align]
    rows = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=colalign)
