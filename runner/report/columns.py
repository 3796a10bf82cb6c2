"""The column registry: every column of the report's tables and of results.csv, one entry each.

Strategy:
- An entry says where the value comes from in a run's record (runner/record.py), its dtype in
  the frame, its header and format in the tables, and its line in the report's Columns legend. The
  frame (runner/report/runs.py), the tables (runner/report/tables.py), results.csv and the legend
  (runner/report/document.py) all read this one list, so adding a column is adding an entry here.
- `kind` says what a column is to the tables: "identity" (what ran: a cell is every run sharing these
  but for the repeat; `varying` ones are shown only where they differ), "number" (measured: a cell
  shows the median of its complete runs), "state" (how the run ended, per run) and "place" (where the
  run is and how to repeat it). "Settings", "cell" and "group" compare runs with each other, so
  runner/report/runs.py fills them (`value` None here); "n" exists only in a cell's row.
- Order is results.csv's; the tables keep it, with the run's directory and repeat first.
- Legend lines: a column with `legend` has a line; `legend_with` puts a column in another's line
  ("Requests, Failures, Fail %: ..."). Lines are shown for the columns a report's tables show.
- A value is never invented: unknown is None, shown as "—", written to the CSV as an empty cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.record import Run, text

MISSING = "—"


def as_float(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def as_int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Column:
    name: str  # in the frame, results.csv and cells.csv
    value: Callable[[Run], Any] | None  # from the record; None: filled by runner/report/runs.py (or a cell's)
    dtype: str = "object"  # the frame's: "Int64", "Float64", "boolean", "bool", "object"
    kind: str = "place"  # "identity" | "number" | "state" | "place" | "cell" (see the module docstring)
    header: str = ""  # in the tables; "" for a column only in results.csv
    fmt: str = "{}"  # "{}" is text (left-aligned); anything else a number (right-aligned)
    legend: str = ""  # its line in the Columns legend
    legend_with: str = ""  # or: the column whose legend line it shares
    varying: bool = False  # identity shown only where it differs between runs, else said once
    open_model: bool = False  # shown only when some run had an arrival rate (load.arrival_rate)
    interval: bool = False  # a cell shows the 95% interval of its runs' mean beside the median


def _metric(name: str, kind: Callable[[Any], Any] = as_float) -> Callable[[Run], Any]:
    return lambda run: kind(getattr(run.metrics, name))


def _used(side: str, name: str) -> Callable[[Run], float | None]:
    return lambda run: as_float(run.section("resources").get(side, {}).get(name))


def _fail_pct(run: Run) -> float | None:
    m = run.metrics
    requests, failures, ratio = as_int(m.requests), as_int(m.failures), as_float(m.failure_ratio)
    if ratio is None and requests and failures is not None:
        ratio = failures / requests
    return None if ratio is None else ratio * 100


def _users(run: Run) -> int | None:
    """load.users; None for a capacity search, whose users rose step by step (its steps say at which)."""
    return None if run.capacity else as_int(run.known("load.users"))


SEARCH_WINDOW = "capacity-search"  # a capacity search's numbers: every step at once, ranked by no table


def searched(frame: Any) -> Any:
    """Which rows of a frame are capacity searches: their numbers mix every step (users or rates rising), so
    the Capacity sections rank them, not Tables 1 and 2 or the RPS and latency figures."""
    return frame["window"] == SEARCH_WINDOW


def _window(run: Run) -> str | None:
    """metrics.window; "capacity-search" for a capacity search's steady window, which spans its steps."""
    window = run.metrics.window if isinstance(run.metrics.window, str) else None
    return SEARCH_WINDOW if window == "steady" and run.capacity else window


def _cpus(section: str) -> Callable[[Run], str | None]:
    """A section's `cpus` as "0" or "1-3"; "any" when it was not pinned (None); None when not recorded."""

    def value(run: Run) -> str | None:
        if "cpus" not in run.section(section):
            return None
        cpus = run.section(section)["cpus"]
        if cpus is None:
            return "any"
        if not isinstance(cpus, list) or not cpus or not all(isinstance(c, int) for c in cpus):
            return None
        spans: list[list[int]] = []
        for cpu in sorted(set(cpus)):
            if spans and cpu == spans[-1][1] + 1:
                spans[-1][1] = cpu
            else:
                spans.append([cpu, cpu])
        return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)

    return value


def _cores(run: Run) -> str | None:
    """The server's cores as a count, "2 (shared)" when Locust ran on them too, "any" when not pinned; None when not
    recorded. Older results recorded only the ids."""
    server = run.section("server")
    if "cpus" not in server:
        return None
    count = server.get("cores") if isinstance(server.get("cores"), int) else None
    if count is None and isinstance(server["cpus"], list):
        count = len(server["cpus"])
    if count is None:
        return "any"
    return f"{count} (shared)" if server.get("shared_cores") else str(count)


def _flags(run: Run) -> str:
    flags = run.result.flags if run.result is not None and isinstance(run.result.flags, list) else []
    return ",".join(flag for flag in flags if isinstance(flag, str))


def _objectives(run: Run) -> str:
    """The run's broken objectives in words (runner/run/objectives.py); "met" when it set any beyond the default
    failure ratio and met them all; "" otherwise."""
    from runner.run.objectives import broken

    if said := broken(run.objectives):
        return "; ".join(said)
    return "met" if any(o.get("objective") != "max_failure_ratio" for o in run.objectives) else ""


def _why(run: Run) -> str:
    """The kinds of the run's diagnoses (runner/run/diagnosis.py), "listen-queue,delayed-ack"."""
    return ",".join(d["kind"] for d in run.diagnoses)


# fmt: off
COLUMNS: tuple[Column, ...] = (
    Column("server", lambda run: run.server, kind="identity", header="Server"),
    Column("workload", lambda run: text(run.known("workload.name")), kind="identity", header="Workload",
           varying=True, legend="what the server did per request."),
    Column("keepalive", lambda run: k if isinstance(k := run.known("server.keepalive"), bool) else None, "boolean",
           "identity", "Keep-alive", varying=True,
           legend="whether the server kept connections open between requests."),
    Column("users", _users, "Int64", "identity", "Users", "{:.0f}", varying=True,
           legend="Locust's simulated users."),
    Column("spawn_rate", lambda run: as_float(run.known("load.spawn_rate")), "Float64", "identity", "Spawn rate",
           "{:g}", varying=True, legend="users Locust started per second until all were running."),
    Column("cores", _cores, kind="identity", header="Cores", varying=True,
           legend="the cores the server ran on (run.server_cores; Locust on the others, one process each); "
           '"(shared)": the server took every core and Locust ran on them too; "any": not pinned.'),
    Column("arrival_rate", lambda run: as_float(run.known("load.arrival_rate")), "Float64", "identity", "Rate/s",
           "{:g}", varying=True,
           legend="load.arrival_rate, an open model: requests arrived at this rate whatever the server did, on a "
           "pool of at most Users connections (the default, none, is the closed loop: each user sends its next "
           "request when its response came). Its latencies (Avg ms and the percentiles, which rank it) are "
           "corrected: from each request's intended send time, so a request that waited for a connection or for a "
           "stalled server counts its wait."),
    Column("settings", None, kind="identity", header="Settings",
           legend="config keys without a column of their own in which this row differs from others."),
    Column("repeat", lambda run: as_int(run.known("run.repeat")), "Int64", header="Repeat", fmt="{:.0f}",
           legend="the run's `run.repeat`: which repetition of its cell it is."),
    Column("n", None, "Int64", "cell", "n", "{:.0f}",
           legend="the cell's complete runs (finished, not partial, with numbers); every number in the row is "
           "their median."),
    Column("requests", _metric("requests", as_int), "Int64", "number", "Requests", "{:.0f}",
           legend="Locust's counts over the measured window (see Measurement); Fail % is failures per 100 "
           "requests."),
    Column("failures", _metric("failures", as_int), "Int64", "number", "Failures", "{:.0f}", legend_with="requests"),
    Column("fail_pct", _fail_pct, "Float64", "number", "Fail %", "{:.2f}", legend_with="requests"),
    Column("rps", _metric("rps"), "Float64", "number", "RPS", "{:.1f}", interval=True,
           legend="requests per second as Locust counts them, failed requests included, so fast failures inflate "
           "it."),
    Column("goodput", _metric("goodput"), "Float64", "number", "Goodput", "{:.1f}",
           legend="successful requests per second: RPS without the failures."),
    Column("avg_ms", _metric("avg_ms"), "Float64", "number", "Avg ms", "{:.1f}", interval=True,
           legend="mean response time (exact)."),
    Column("p50_ms", _metric("median_ms"), "Float64", "number", "p50 ms", "{:g}",
           legend="percentiles of an HDR histogram of every response time in microseconds, to 3 significant digits "
           "(Locust's own histogram, rounded to whole milliseconds below 100 ms, only for a run without one)."),
    Column("p95_ms", _metric("p95_ms"), "Float64", "number", "p95 ms", "{:g}", legend_with="p50_ms"),
    Column("p99_ms", _metric("p99_ms"), "Float64", "number", "p99 ms", "{:g}", legend_with="p50_ms"),
    Column("uncorrected_p99_ms", _metric("uncorrected_p99_ms"), "Float64", "number", "Uncorr. p99 ms", "{:g}",
           open_model=True, legend="an open model's p99 from each request's actual send, as a closed loop would "
           "time it; far below p99 ms when requests waited (coordinated omission)."),
    Column("intended_rps", _metric("intended_rps"), "Float64", "number", "Intended/s", "{:.1f}", open_model=True,
           legend="requests per second that came due and that were sent, over the measured window."),
    Column("sent_rps", _metric("sent_rps"), "Float64", "number", "Sent/s", "{:.1f}", open_model=True,
           legend_with="intended_rps"),
    Column("late", _metric("late", as_int), "Int64", "number", "Late", "{:.0f}", open_model=True,
           legend="requests sent more than 10 ms after their intended time, and requests never sent because they "
           "waited longer than load.request_timeout_s for a free connection (counted, not logged as failures)."),
    Column("dropped", _metric("dropped", as_int), "Int64", "number", "Dropped", "{:.0f}", open_model=True,
           legend_with="late"),
    Column("max_ms", _metric("max_ms"), "Float64", "number"),
    Column("total_requests", _metric("total_requests", as_int), "Int64", "number"),  # whole run, ramp-up included
    Column("served", lambda run: as_int(run.section("server").get("served")), "Int64", "number"),  # its own count
    Column("server_cpu_pct", _used("server", "cpu_pct"), "Float64", "number", "Server CPU %", "{:.0f}",
           legend="CPU time each process tree (children included) used over the measured window; 100 = one core "
           "busy."),
    Column("locust_cpu_pct", _used("locust", "cpu_pct"), "Float64", "number", "Locust CPU %", "{:.0f}",
           legend_with="server_cpu_pct"),
    Column("peak_memory_mb", _used("server", "peak_memory_mb"), "Float64", "number", "Peak mem MB", "{:.1f}",
           legend="the server's largest memory during the run, children included, as PSS (a page shared by N "
           "processes counts 1/N in each)."),
    Column("requests_per_cpu_s", _used("server", "requests_per_cpu_s"), "Float64", "number", "Req/CPU-s", "{:.0f}",
           legend="requests per CPU-second the server used in the measured window: what a request costs it, "
           "however hard it was pushed."),
    Column("locust_us_per_request", _used("locust", "cpu_us_per_request"), "Float64", "number", "Locust us/req",
           "{:.1f}",
           legend="CPU microseconds Locust used per request in the same window: what a request costs the generator. "
           "With 1e6 / (Locust us/req) below the server's Req/CPU-s, one core of Locust cannot keep up with one of "
           "the server."),
    Column("outcome", lambda run: run.outcome, kind="state", header="Outcome",
           legend='how the run ended; "(partial)" marks numbers from a run that did not end cleanly.'),
    Column("partial", lambda run: run.metrics.partial is True, "bool", "state"),
    Column("flags", _flags, kind="state", header="Flags",
           legend="reasons to doubt the row, explained under Flags; empty when there are none."),
    Column("objectives", _objectives, kind="state", header="Objectives",
           legend="run.slo's objectives: each broken one with what was measured against its bound, \"met\" when "
           "every one set held; the failure ratio's (1% by default) is checked on every run. A broken one makes "
           "the command exit 5; Objectives below lists them."),
    Column("why", _why, kind="state", header="Why",
           legend="what the run showed about the server (the listen queue, delayed ACKs, a connection per request, "
           "malformed responses, requests never answered, an exit), each said with its numbers under Why below."),
    Column("window", _window, kind="state"),  # what the numbers cover: runner/report/document.py's _WINDOWS
    Column("server_cpus", _cpus("server"), kind="state"),  # "0", "1-3"; "any": not pinned; None: not recorded
    Column("locust_cpus", _cpus("load"), kind="state"),
    Column("cell", None),  # hash of the config but for run.repeat
    Column("group", None),  # the conditions the run is ranked under, in words ("" with one group)
    Column("run", lambda run: run.run, header="Run", legend="the run's directory, beside this report."),
    Column("rerun", lambda run: run.rerun),  # the command that repeats the run
)
# fmt: on
BY_NAME = {column.name: column for column in COLUMNS}
SHOWN_ORDER = (BY_NAME["run"], *(c for c in COLUMNS if c.name != "run"))  # the tables' and the legend's order
CSV = tuple(c.name for c in COLUMNS if c.kind != "cell")  # results.csv's columns, in order
IDENTITY = tuple(c.name for c in COLUMNS if c.kind == "identity")
NUMBERS = tuple(c.name for c in COLUMNS if c.kind == "number")
DTYPES = {c.name: c.dtype for c in COLUMNS if c.dtype != "object" and c.kind != "cell"}


def values(run: Run) -> dict[str, Any]:
    """The run's row: each column's value from its record (None for the ones runs.py fills)."""
    return {c.name: None if c.value is None else c.value(run) for c in COLUMNS if c.kind != "cell"}


def legend_lines(shown: set[str]) -> list[tuple[list[Column], str]]:
    """(its shown columns, text) of each legend line with a column in `shown`, in the tables' order."""
    lines = []
    for column in SHOWN_ORDER:
        if column.legend:
            named = [c for c in SHOWN_ORDER if column.name in (c.name, c.legend_with) and c.name in shown]
            if named:
                lines.append((named, column.legend))
    return lines
