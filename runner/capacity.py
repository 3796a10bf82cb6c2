"""Capacity search (load=capacity): the most requests/s a server sustains within its service-level
objective, found by raising users in steps, and the report's Capacity and "RPS and p99 vs users" sections.

Strategy:
- One rule, used twice. Locust's shape (runner/locustfile.py) measures each step over its window
  (the step after its ramp), calls `decide` after every step and stops at the first step that is
  not "ok"; the runner reads the step file afterwards, recomputes every number from the same raw
  StatsEntry and window and calls `decide` again for the record. Same inputs, same pure function:
  the two agree, and if they ever do not, the record says so in `stop_detail`.
- A step's verdict, checked in this order: "slo-failures" (failure ratio above the SLO, or no
  request answered), "slo-p99" (p99 above the SLO), "generator-bound" (the SLO held but Locust
  wanted its core >= generator_cpu_pct of the window: running on it, or runnable and waiting for it
  behind other processes -- on a shared machine Locust starved at 34% CPU was as much the limit as
  one busy at 100%: the step measured Locust, so the search ends there instead of calling it the
  server's capacity), "knee" (the SLO held but RPS grew less than min_growth over the
  previous step: more users only queue), else "ok". All but "ok" end the search; so does the last
  step of the schedule ("max-users").
- Maximum sustainable RPS: the best step that met the SLO ("ok", "knee" or "generator-bound").
  When the search stopped at "generator-bound" or "max-users" it is a lower bound, not the server's
  capacity: the stop reason says so and the report prints it as "≥ N".
- `collect` turns the step file into result.json's `capacity` block (each step's server CPU from
  the runner's Sampler series) and makes the run-level metrics those of the best step's window
  (or, when no step met the SLO, of the step that ended the search), so the sweep's ordinary
  tables stay meaningful for capacity runs.
Locust imports this module (in capacity mode only), so pandas, tabulate and the result loaders are
imported where they are used, not at the top.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import fields
from pathlib import Path
from typing import Any

from runner.config import CapacityConfig

STEPS_FILE = "locust_capacity.json"
SUSTAINED = ("ok", "knee", "generator-bound")  # verdicts of steps that met the SLO
LOWER_BOUND = ("generator-bound", "max-users")  # stop reasons after which the server could take more
STOP_REASONS = {
    "slo-failures": "a step failed more requests than the SLO allows",
    "slo-p99": "a step's p99 exceeded the SLO",
    "knee": "RPS stopped growing as users were added",
    "generator-bound": "Locust reached its CPU limit (busy, or waiting for its core) while the SLO still held: "
    "the server's capacity is higher than measured, and the order among such servers is Locust's",
    "max-users": "every step met the SLO up to load.capacity.max_users: the capacity is higher",
    "incomplete": "Locust stopped before the search decided (a crash, a timeout or Ctrl-C)",
    "no-steps": "no step was measured",
}
STEP_KEYS = ("users", "start", "end", "requests", "rps", "goodput", "failure_ratio", "p50_ms", "p95_ms", "p99_ms",
             "locust_cpu_pct", "locust_wait_pct", "server_cpu_pct", "verdict")  # fmt: skip


# --- the schedule and the decision (pure) -------------------------------------------------------


def plan_from(section: Any) -> CapacityConfig:
    """A CapacityConfig from the config's load.capacity (DictConfig, dataclass or dict)."""
    get = section.get if isinstance(section, dict) else lambda key, default: getattr(section, key, default)
    return CapacityConfig(**{f.name: get(f.name, f.default) for f in fields(CapacityConfig)})


def plan_json(section: Any) -> str:
    """The plan as Locust's --capacity argument."""
    plan = plan_from(section)
    return json.dumps({f.name: getattr(plan, f.name) for f in fields(CapacityConfig)}, sort_keys=True)


def users_schedule(plan: CapacityConfig) -> list[int]:
    """Users of each step: start_users, + step_users, ... up to max_users."""
    return list(range(int(plan.start_users), int(plan.max_users) + 1, int(plan.step_users)))


def schedule_s(plan: CapacityConfig) -> float:
    """The longest the search can take: every step, each rounded up to Locust's one-second shape tick."""
    return len(users_schedule(plan)) * (math.ceil(plan.step_s) + 1) + 1


def step_numbers(
    entry: dict, start: float, end: float, users: int, locust_cpu_pct: float | None, locust_wait_pct: float | None
) -> dict:
    """A step's numbers (result.json's step shape, verdict not yet given) from one locust-serialized
    StatsEntry of its window [start, end] (with "hdr": its HDR histogram, for the percentiles) and
    Locust's CPU over it: used, and waited for (run queue)."""
    from runner.load import aggregate  # lazily: runner.load imports this module

    m = aggregate([entry], end - start, [entry["hdr"]] if entry.get("hdr") else None)
    return {
        "users": users, "start": start, "end": end, "requests": m.requests, "rps": m.rps, "goodput": m.goodput,
        "failure_ratio": m.failure_ratio, "p50_ms": m.median_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms,
        "locust_cpu_pct": locust_cpu_pct, "locust_wait_pct": locust_wait_pct, "server_cpu_pct": None, "verdict": None,
    }  # fmt: skip


def verdict(step: dict, previous: dict | None, plan: CapacityConfig) -> tuple[str, str]:
    """(verdict, the reason in words) of one step, given the step before it (None for the first)."""
    users = step["users"]
    if not step["requests"]:
        return "slo-failures", f"no request was answered at {users} users"
    if step["failure_ratio"] > plan.max_failure_ratio:
        return "slo-failures", (
            f"{step['failure_ratio']:.1%} of requests failed at {users} users "
            f"(SLO: at most {plan.max_failure_ratio:.1%})"
        )
    if step["p99_ms"] is not None and step["p99_ms"] > plan.max_p99_ms:
        return "slo-p99", f"p99 was {step['p99_ms']:g} ms at {users} users (SLO: at most {plan.max_p99_ms:g} ms)"
    cpu, wait = step["locust_cpu_pct"], step.get("locust_wait_pct") or 0.0
    if cpu is not None and cpu + wait >= plan.generator_cpu_pct:
        return "generator-bound", (
            f"Locust used {cpu:.0f}% of its core and waited for it {wait:.0f}% of the time at {users} users "
            f"(limit {plan.generator_cpu_pct:g}% together): the server answered {step['rps']:.0f} req/s within the "
            "SLO and can take more than Locust could send"
        )
    if previous is not None and previous["rps"]:
        growth = step["rps"] / previous["rps"] - 1
        if growth < plan.min_growth:
            return "knee", (
                f"RPS went from {previous['rps']:.0f} to {step['rps']:.0f} ({growth:+.1%}) as users went from "
                f"{previous['users']} to {users} (knee: less than {plan.min_growth:.0%})"
                + (f"; Locust used {cpu:.0f}% of its core, waited {wait:.0f}%" if cpu is not None else "")
            )
    return "ok", ""


def decide(steps: list[dict], plan: CapacityConfig) -> dict:
    """result.json's `capacity` block from the measured steps, in order: a verdict per step, the
    maximum sustainable RPS, the users at it, and why the search stopped. Steps after the first that
    is not "ok" are not judged (the search never runs them)."""
    judged: list[dict] = []
    reason, detail = None, ""
    for step in steps:
        v, why = verdict(step, judged[-1] if judged else None, plan)
        judged.append({**step, "verdict": v})
        if v != "ok":
            reason, detail = v, why
            break
    if reason is None:
        planned = users_schedule(plan)
        if not judged:
            reason, detail = "no-steps", "Locust measured no step"
        elif len(judged) >= len(planned):
            reason, detail = "max-users", f"every step met the SLO up to {judged[-1]['users']} users (max_users)"
        else:
            reason = "incomplete"
            detail = f"Locust stopped after {len(judged)} of {len(planned)} steps, before the search decided"
    sustained = [s for s in judged if s["verdict"] in SUSTAINED and s["rps"] is not None]
    best = max(sustained, key=lambda s: s["rps"], default=None)
    return {
        "steps": judged,
        "max_rps": best["rps"] if best else None,
        "users_at_max": best["users"] if best else None,
        "stop_reason": reason,
        "stop_detail": detail,
    }


# --- after the run: the step file -> result.json ------------------------------------------------


def collect(result: Any, job_dir: Path, section: Any, server_series: Any = None) -> None:
    """Set `result.capacity` from Locust's step file and make `result.metrics` the best step's window
    (see the module docstring); server CPU per step from the Sampler's `server_series`."""
    from runner.load import aggregate
    from runner.resources import summarize

    plan = plan_from(section)
    try:
        data = json.loads((Path(job_dir) / STEPS_FILE).read_text())
        raw = list(data["steps"])
        steps = [
            step_numbers(
                s["entry"], s["start"], s["end"], s["users"], s.get("locust_cpu_pct"), s.get("locust_wait_pct")
            )
            for s in raw
        ]
    except (OSError, ValueError, TypeError, KeyError):
        result.capacity = decide([], plan)
        result.capacity["stop_detail"] = f"Locust left no readable {STEPS_FILE}"
        return
    for step in steps:
        if server_series is not None:
            step["server_cpu_pct"] = summarize(server_series, step["start"], step["end"], 1)["cpu_pct"]
    block = decide(steps, plan)
    live = [s.get("verdict") for s in raw[: len(block["steps"])]], data.get("stop_reason")
    if live != ([s["verdict"] for s in block["steps"]], block["stop_reason"]):
        block["stop_detail"] += f" (the live search decided differently: {live[1]}, verdicts {live[0]})"
    result.capacity = block
    chosen = next((s for s in block["steps"] if s["users"] == block["users_at_max"]), None)
    chosen = chosen or (block["steps"][-1] if block["steps"] else None)
    if chosen is None:
        return
    entry = raw[block["steps"].index(chosen)]["entry"]
    totals = result.metrics
    metrics = aggregate([entry], chosen["end"] - chosen["start"])
    metrics.window, metrics.window_bounds = "capacity-step", [chosen["start"], chosen["end"]]
    metrics.total_requests, metrics.total_failures = totals.total_requests, totals.total_failures
    metrics.partial = totals.partial
    result.metrics = metrics
    result.load["users"] = chosen["users"]  # the users the run-level numbers were measured at


def write_steps(path: Path, steps: list[dict], block: dict) -> None:
    """Locust's step file: the raw steps (StatsEntry per window) and the live decision; atomic."""
    data = {
        "pid": os.getpid(),
        "steps": steps,
        "stop_reason": block["stop_reason"],
        "stop_detail": block["stop_detail"],
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, default=list)
    os.replace(tmp, path)


# --- the report's sections ----------------------------------------------------------------------

MISSING = "—"


def report_sections(frame: Any, root: Path) -> str:
    """The Capacity and "RPS and p99 vs users" sections for a report of the runs in `frame`
    (runs.to_frame's) under `root`; "" when the sweep has neither."""
    from runner.result import RESULT_FILE, read_result

    results = {}
    for run in frame["run"]:
        try:
            results[run] = read_result(Path(root) / run / RESULT_FILE)
        except (OSError, ValueError, TypeError):
            continue
    searched = {run: r for run, r in results.items() if isinstance(getattr(r, "capacity", None), dict)}
    sweep = frame[~frame["run"].isin(list(searched))]
    parts = [capacity_section(list(searched.items())), curves_section(sweep)]
    return "\n".join(part for part in parts if part)


def capacity_section(results: list[tuple[str, Any]]) -> str:
    """Servers ranked by maximum sustainable RPS, then each run's steps. `results`: (run dir, RunResult)."""
    if not results:
        return ""

    def key(item: tuple[str, Any]) -> tuple:
        best = item[1].capacity.get("max_rps")
        return (best is None, -(best or 0), item[0])

    ranked = sorted(results, key=key)
    rows = []
    for place, (run, r) in enumerate(ranked, 1):
        block = r.capacity
        rows.append([str(place) if block.get("max_rps") is not None else MISSING, _name(r), run,
                     _max_rps(block), _fmt(block.get("users_at_max"), "{:.0f}"),
                     block.get("stop_reason") or MISSING, block.get("stop_detail") or ""])  # fmt: skip
    plan = plan_from(((ranked[0][1].config or {}).get("load") or {}).get("capacity") or {})
    text = [
        "## Capacity\n",
        f"The most requests/s each server sustained within the SLO (at most {plan.max_failure_ratio:.1%} failed, "
        f"p99 at most {plan.max_p99_ms:g} ms), found by raising users from {plan.start_users} by {plan.step_users} "
        f"up to {plan.max_users}, {plan.step_s:g} s a step, each measured after its first {plan.ramp_s:g} s "
        "(load=capacity; runs with other settings say so in their config).\n",
        _table(["Rank", "Server", "Run", "Max RPS", "Users at max", "Stopped by", "Why"], rows, "rllrrll"),
        "",
        "Stopped by: " + "; ".join(f"**{k}**: {v}" for k, v in STOP_REASONS.items()
                                   if any(r.capacity.get("stop_reason") == k for _, r in ranked)) + ".",
        "",
    ]  # fmt: skip
    for run, r in ranked:
        text.append(f"### {_name(r)} ({run}): steps\n")
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


def _name(result: Any) -> str:
    return str((result.server or {}).get("name") or "?")


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
