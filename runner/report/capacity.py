"""The report's capacity sections (the searches themselves: runner/capacity.py) and its sweep curves.

- Capacity (load=capacity, by users): servers ranked by maximum sustainable RPS, then each search's steps.
- Capacity by rate (load.capacity.by=rate): servers ranked by the highest offered rate they sustained,
  then each search's steps in the order measured (stepping up, then bisecting).
- "RPS and p99 vs users" (a load.users sweep) and its rate twin, "Corrected p99 and achieved rate vs
  offered rate" (a load.arrival_rate sweep): one row per (series, x) from `curve_table`.
The capacity sections' numbers are the capacity block's (result.json's `capacity`, read once with the
run: runner/record.py), never the run's own `metrics`, which cover the whole run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from runner.capacity import LOWER_BOUND, STOP_REASONS, plan_from
from runner.record import Run, lookup

MISSING = "—"


def report_sections(frame: Any, runs: list[Run]) -> str:
    """The capacity sections and the sweep curves for a report of `runs` (`frame`: their runs.to_frame);
    "" when the sweep has none of them."""
    searched = [run for run in runs if run.capacity]
    by_rate = [run for run in searched if run.capacity.get("by") == "rate"]
    by_users = [run for run in searched if run.capacity.get("by") != "rate"]
    sweep = frame[~frame["run"].isin([run.run for run in searched])]
    parts = [
        capacity_section(by_users),
        rate_capacity_section(by_rate),
        curves_section(sweep),
        rate_curves_section(sweep),
    ]
    return "\n".join(part for part in parts if part)


def capacity_section(runs: list[Run]) -> str:
    """Servers ranked by maximum sustainable RPS, then each run's steps, from each run's capacity block."""
    if not runs:
        return ""
    ranked, rows = _ranking(runs, "max_rps", lambda block: [
        _bounded(block, "max_rps", "{:.1f}"), _fmt(block.get("users_at_max"), "{:.0f}")])  # fmt: skip
    plan = plan_from(lookup(ranked[0].config, "load.capacity") or {})
    text = [
        "## Capacity\n",
        f"The most requests/s each server sustained within the SLO (at most {plan.max_failure_ratio:.1%} failed, "
        f"p99 at most {plan.max_p99_ms:g} ms), found by raising users from {plan.start_users} by {plan.step_users} "
        f"up to {plan.max_users}, {plan.step_s:g} s a step, each measured after its first {plan.ramp_s:g} s "
        "(load=capacity; runs with other settings say so in their config).\n",
        _table(["Rank", "Server", "Run", "Max RPS", "Users at max", "Stopped by", "Why"], rows, "rllrrll"),
        "",
        _stopped_by(ranked),
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


_CURVE_NUMBERS = {
    "users": ("rps", "goodput", "fail_pct", "p50_ms", "p95_ms", "p99_ms", "locust_cpu_pct", "server_cpu_pct"),
    "arrival_rate": ("intended_rps", "sent_rps", "rps", "fail_pct", "p50_ms", "p99_ms", "uncorrected_p99_ms",
                     "late", "dropped", "locust_cpu_pct", "server_cpu_pct"),
}  # fmt: skip


def curve_table(frame: Any, x: str = "users") -> Any:
    """Sweep curves: one row per (series, x) -- x is "users" (a load.users sweep) or "arrival_rate" (a
    load.arrival_rate sweep) --, numbers the median of the complete runs. `series` names the server plus
    whatever else differs (workload, spawn rate, settings, and the other of users and rate).
    Columns: series, server, x, n, _CURVE_NUMBERS[x]..., flags. Empty unless the runs differ in x."""
    import pandas as pd

    columns = ["series", "server", x, "n", *_CURVE_NUMBERS[x], "flags"]
    frame = frame[frame[x].notna()]
    if frame.empty or frame[x].nunique() < 2:
        return pd.DataFrame(columns=columns)
    other = "arrival_rate" if x == "users" else "users"
    keys = [k for k in ("workload", "spawn_rate", "settings", other) if frame[k].astype(str).nunique() > 1]
    rows = []
    for (server, *rest, value), runs in frame.groupby(["server", *keys, x], sort=True, dropna=False):
        label = ", ".join([str(server), *(f"{k} {v}" for k, v in zip(keys, rest, strict=True) if str(v))])
        complete = runs[~runs["partial"] & runs["rps"].notna()]
        row = {"series": label, "server": server, x: int(value) if x == "users" else float(value), "n": len(complete)}
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


def rate_curves_section(frame: Any) -> str:
    """The rate twin of "RPS and p99 vs users": a load.arrival_rate sweep, one row per offered rate; "" without one."""
    table = curve_table(frame, "arrival_rate")
    if table.empty:
        return ""
    text = ["## Corrected p99 and achieved rate vs offered rate\n",
            "How each server's tail latency and throughput change as the offered rate rises (a `load.arrival_rate=...` "
            "sweep, an open model). Each row: the median of the complete runs at that rate (n). p99 is corrected (from "
            "each request's intended send time), Uncorr. p99 from its actual send; Sent/s is the achieved send rate, "
            "RPS the answers per second; Late, Dropped: requests sent over 10 ms late, or never sent.\n"]  # fmt: skip
    formats = (("arrival_rate", "{:g}"), ("n", "{:.0f}"), ("sent_rps", "{:.1f}"), ("rps", "{:.1f}"),
               ("p50_ms", "{:g}"), ("p99_ms", "{:g}"), ("uncorrected_p99_ms", "{:g}"), ("late", "{:.0f}"),
               ("dropped", "{:.0f}"), ("fail_pct", "{:.2f}"), ("locust_cpu_pct", "{:.0f}"),
               ("server_cpu_pct", "{:.0f}"))  # fmt: skip
    headers = ["Offered/s", "n", "Sent/s", "RPS", "p50 ms", "p99 ms", "Uncorr. p99 ms", "Late", "Dropped", "Fail %",
               "Locust CPU %", "Server CPU %", "Flags"]  # fmt: skip
    for series, rows in table.groupby("series", sort=False):
        body = [[_fmt(row[k], f) for k, f in formats] + [row["flags"].replace(",", ", ")] for _, row in rows.iterrows()]
        text += [f"### {series}\n", _table(headers, body, "r" * len(formats) + "l"), ""]
    return "\n".join(text)


def rate_capacity_section(runs: list[Run]) -> str:
    """Servers ranked by the highest offered rate they sustained (load.capacity.by=rate), then each search's
    steps in the order measured, from each run's capacity block."""
    if not runs:
        return ""
    ranked, rows = _ranking(runs, "max_rate", _rate_cells)
    plan, pool = plan_from(lookup(ranked[0].config, "load.capacity") or {}), lookup(ranked[0].config, "load.users")
    text = [
        "## Capacity by rate\n",
        f"The highest arrival rate each server sustained (load=capacity, load.capacity.by=rate): an open model on a "
        f"pool of {pool} connections, from {plan.start_rate:g} requests/s x{plan.rate_growth:g} a "
        f"step while the SLO held (up to {plan.max_rate:g}/s), then bisection between the last good and the first "
        f"failed rate until they were within {plan.rate_precision:.0%}, at most {plan.max_steps} steps. "
        f"{plan.step_s:g} s a step, measured after its first {plan.ramp_s:g} s; after each step the arrivals stop "
        "until what is in flight is answered or times out (the drain, not measured), so every step starts from an "
        f"empty server. SLO: at most {plan.max_failure_ratio:.1%} failed, corrected p99 at most "
        f"{plan.max_p99_ms:g} ms, at least {1 - plan.max_late_ratio:.0%} of the requests due answered and sent on "
        "time.\n",
        _table(["Rank", "Server", "Run", "Max rate/s", "RPS at it", "Between", "Steps", "Stopped by", "Why"], rows,
               "rllrrrrll"),
        "",
        _stopped_by(ranked),
        "",
    ]  # fmt: skip
    for r in ranked:
        text.append(f"### {r.server} ({r.run}): steps by rate\n")
        steps = [[str(i)] + [_fmt(_rate_value(s, k), f) for k, f in _RATE_COLUMNS] + [s.get("verdict") or MISSING]
                 for i, s in enumerate(r.capacity.get("steps") or [], 1)]  # fmt: skip
        headers = ["Step", *(h for h, _, _ in _RATE_STEP_HEADERS), "Verdict"]
        text.append(_table(headers, steps, "r" * (len(_RATE_COLUMNS) + 1) + "l") if steps else "No step was measured.")
        text.append("")
    text.append(
        "Verdict, checked in this order: **slo-failures** more failed than the SLO allows; **generator-late** over "
        f"{plan.max_late_ratio:.0%} of the requests went out late with a connection free (Locust fell behind: a "
        "failure for the bisection, and a lower bound); **slo-p99** corrected p99 above the SLO; **slo-throughput** "
        f"the server answered fewer than {1 - plan.max_late_ratio:.0%} of the requests due in the window (it fell "
        "behind); **slo-late** late for want of a free connection, plus dropped, above the SLO; "
        "**generator-bound** the SLO held "
        f"with Locust on its core or waiting for it >= {plan.generator_cpu_pct:g}% (the search ends: a lower bound); "
        "**ok** met the SLO. Max rate is the best step that met the SLO; ≥ marks a lower bound. Offered/s: the "
        "rate the step asked for; Sent/s: sent in the window; RPS: answered in it; p99 is corrected, Uncorr. p99 "
        "from the actual send; Late+dropped %: sent late for want of a connection, or dropped, of those due; "
        "Drain s: after the step, unmeasured.\n"
    )
    return "\n".join(text)


_RATE_STEP_HEADERS = (("Offered/s", "rate", "{:g}"), ("Sent/s", "sent_rate", "{:.1f}"), ("RPS", "rps", "{:.1f}"),
                      ("Fail %", "fail_pct", "{:.2f}"), ("p50 ms", "p50_ms", "{:g}"), ("p99 ms", "p99_ms", "{:g}"),
                      ("Uncorr. p99 ms", "p99_uncorrected_ms", "{:g}"), ("Late+dropped %", "late_pct", "{:.2f}"),
                      ("Drain s", "drain_s", "{:.1f}"), ("Locust CPU %", "locust_cpu_pct", "{:.0f}"),
                      ("Server CPU %", "server_cpu_pct", "{:.0f}"))  # fmt: skip
_RATE_COLUMNS = tuple((k, f) for _, k, f in _RATE_STEP_HEADERS)


def _rate_value(step: dict, key: str) -> Any:
    if key == "fail_pct":
        return _fail_pct(step)
    if key == "late_pct":
        ratio = step.get("late_ratio")
        return None if ratio is None else 100 * ratio
    return step.get(key)


def _bounded(block: dict, key: str, fmt: str) -> str:
    """block[key] formatted, "≥ " before it when the search stopped before the server did."""
    text = _fmt(block.get(key), fmt)
    return f"≥ {text}" if text != MISSING and block.get("stop_reason") in LOWER_BOUND else text


def _fail_pct(step: dict) -> float | None:
    ratio = step.get("failure_ratio")
    return None if ratio is None else 100 * ratio


def _ranking(runs: list[Run], key: str, cells: Callable[[dict], list[str]]) -> tuple[list[Run], list[list[str]]]:
    """Runs by their capacity block's `key`, highest first (those without one last, unranked), and a row
    each: place, server, run, `cells(block)`, why the search stopped."""
    ranked = sorted(runs, key=lambda run: (run.capacity.get(key) is None, -(run.capacity.get(key) or 0), run.run))
    rows = [[str(place) if r.capacity.get(key) is not None else MISSING, r.server, r.run, *cells(r.capacity),
             r.capacity.get("stop_reason") or MISSING, r.capacity.get("stop_detail") or ""]
            for place, r in enumerate(ranked, 1)]  # fmt: skip
    return ranked, rows


def _rate_cells(block: dict) -> list[str]:
    low, high = (list(block.get("bracket") or []) + [None, None])[:2]
    return [_bounded(block, "max_rate", "{:g}"), _fmt(block.get("max_rps"), "{:.1f}"),
            f"{_fmt(low, '{:g}')} – {_fmt(high, '{:g}')}", str(len(block.get("steps") or []))]  # fmt: skip


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


def _stopped_by(ranked: list[Run]) -> str:
    """The legend of the stop reasons these searches ended by."""
    seen = {r.capacity.get("stop_reason") for r in ranked}
    return "Stopped by: " + "; ".join(f"**{k}**: {v}" for k, v in STOP_REASONS.items() if k in seen) + "."
