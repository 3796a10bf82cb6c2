"""The report's scaling section: how each model's throughput grows with the cores it was given (a
`run.server_cores=1,2,...` sweep), beside the ideal line, and why a model stops scaling.

Strategy: from the report's frame (runner/report/runs.py), a series is a server under one set of
conditions (workload, users, rate, settings); its points are its core counts (the Cores column, what the
server actually had), each the median of its complete runs. Efficiency is RPS at N cores over N times the
RPS at the fewest cores measured, scaled to one (N x RPS at 1 when 1 was measured). A series whose last
point keeps less than STOPS of that is named with what its numbers show: a server that stayed near one
core's CPU (one thread runs its Python: the GIL, one event loop), one that used every core it had (each
request cost more), or one that had CPU to spare (it waited on something else: the load, the connections).
plots.py draws the same table as scaling.png.
"""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd

STOPS = 0.75  # efficiency below this at the last point: the model stopped scaling
_NUMBERS = ("rps", "requests_per_cpu_s", "server_cpu_pct", "locust_cpu_pct")
_SERIES = ("workload", "keepalive", "users", "arrival_rate", "settings")
_SHOWN = (("rps", "{:,.1f}"), ("ideal", "{:,.1f}"), ("efficiency", "{:.2f}"), ("requests_per_cpu_s", "{:,.0f}"),
          ("server_cpu_pct", "{:.0f}"), ("locust_cpu_pct", "{:.0f}"))  # fmt: skip
COLUMNS = ["series", "server", "cores", "shared", "n", *_NUMBERS, "ideal", "efficiency", "flags"]


def core_count(value: Any) -> int | None:
    """The Cores column's "2" or "2 (shared)" as 2; None for "any" or unknown."""
    head = str(value).split(" ", 1)[0] if value is not None and not pd.isna(value) else ""
    return int(head) if head.isdigit() else None


def scaling_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, cores) of every series measured on two or more core counts; empty otherwise."""
    frame = frame.assign(_cores=frame["cores"].map(core_count))
    frame = frame[frame["_cores"].notna()]
    if frame.empty or frame["_cores"].nunique() < 2:
        return pd.DataFrame(columns=COLUMNS)
    keys = [k for k in _SERIES if frame[k].astype(str).nunique() > 1]
    rows = []
    for (server, *rest), runs in frame.groupby(["server", *keys], sort=False, dropna=False):
        if runs["_cores"].nunique() < 2:
            continue
        label = ", ".join([str(server), *(f"{k} {v}" for k, v in zip(keys, rest, strict=True) if str(v))])
        points = []
        for cores, here in sorted(runs.groupby("_cores"), key=lambda kv: kv[0]):
            complete = here[~here["partial"] & here["rps"].notna()]
            point = {"series": label, "server": server, "cores": int(cores), "n": len(complete),
                     "shared": bool(here["cores"].astype(str).str.contains("shared").any())}  # fmt: skip
            for name in _NUMBERS:
                values = [float(v) for v in complete[name] if not pd.isna(v)]
                point[name] = statistics.median(values) if values else None
            point["flags"] = ",".join(sorted({f for flags in complete["flags"] for f in str(flags).split(",") if f}))
            points.append(point)
        base = next((p for p in points if p["rps"] is not None), None)
        for point in points:
            per_core = base["rps"] / base["cores"] if base else None
            point["ideal"] = per_core * point["cores"] if per_core else None
            point["efficiency"] = point["rps"] / point["ideal"] if point["ideal"] and point["rps"] is not None else None
            rows.append(point)
    return pd.DataFrame(rows, columns=COLUMNS)


def why_it_stops(points: pd.DataFrame) -> str | None:
    """Why a series stopped scaling, from its last point's numbers; None when it kept STOPS of the ideal."""
    last, first = points.iloc[-1], points.iloc[0]
    if last["efficiency"] is None or pd.isna(last["efficiency"]) or last["efficiency"] >= STOPS:
        return None
    cores, cpu = int(last["cores"]), last["server_cpu_pct"]
    kept = f"{last['efficiency']:.0%} of {cores} x its rate on {int(first['cores'])}"
    if cpu is None or pd.isna(cpu):
        return f"it kept {kept}; its CPU was not measured"
    if cpu < 130:
        return (f"it kept {kept}: its CPU stayed near one core ({cpu:.0f}% of {cores * 100}%), as a server does whose "
                "Python runs one thread at a time (the GIL, or one event loop)")  # fmt: skip
    if cpu >= 90 * cores:
        cost = ""
        if first["requests_per_cpu_s"] and last["requests_per_cpu_s"]:
            cost = (f"; a request cost more CPU there ({last['requests_per_cpu_s']:,.0f} requests per CPU-second, "
                    f"against {first['requests_per_cpu_s']:,.0f})")  # fmt: skip
        return f"it kept {kept} while using every core it had ({cpu:.0f}%){cost}"
    return (f"it kept {kept} with CPU to spare ({cpu:.0f}% of {cores * 100}%): it waited on something other than "
            "its cores (the load generator, its connections)")  # fmt: skip


def section(frame: pd.DataFrame) -> str:
    """The "Scaling with cores" section, a table per series; "" without a cores sweep."""
    table = scaling_table(frame)
    if table.empty:
        return ""
    text = ["## Scaling with cores\n",
            "How each server's throughput grows with the cores it was given (a `run.server_cores=...` sweep; Locust on "
            "the other cores, or sharing them: \"(shared)\"). Each row: the median of the complete runs on that many "
            "cores (n). Ideal is the rate on the fewest cores, times the cores; Efficiency, RPS over Ideal. "
            "`scaling.png` draws it.\n"]  # fmt: skip
    headers = ["Cores", "n", "RPS", "Ideal", "Efficiency", "Req/CPU-s", "Server CPU %", "Locust CPU %", "Flags"]
    stops = []
    for series, points in table.groupby("series", sort=False):
        body = [[f"{p['cores']}{' (shared)' if p['shared'] else ''}", f"{p['n']}",
                 *(_fmt(p[k], f) for k, f in _SHOWN), p["flags"].replace(",", ", ")] for _, p in points.iterrows()]
        rule = "|" + "|".join("--:" for _ in headers[:-1]) + "|:--|"
        lines = ["| " + " | ".join(headers) + " |", rule, *("| " + " | ".join(row) + " |" for row in body)]
        text += [f"### {series}\n", "\n".join(lines), ""]
        if (why := why_it_stops(points.reset_index(drop=True))) is not None:
            stops.append(f"- **{series}** stopped scaling: {why}.")
    if stops:
        text += ["Where scaling stopped:\n", *stops, ""]
    return "\n".join(text)


def _fmt(value: Any, fmt: str) -> str:
    return "—" if value is None or pd.isna(value) else fmt.format(value)
