"""The sweep report: a directory of runs -> `report.md` (rankings, legends, how to reproduce),
`results.csv` (one raw row per run) and, when runs were repeated, `cells.csv` (one row per cell).

Strategy:
- Loading is runner/runs.py: every job directory becomes one row of a flat frame, never raising,
  never inventing a number (unknown is shown as "—"). This module only aggregates and renders.
- Rows are ranked only against rows run under the same conditions (the frame's `group`). With several
  groups, each ranking table has one sub-table per group, in order of first appearance, under a `###`
  sub-heading naming the conditions that differ between groups.
- Two shapes. No cell with two complete runs (finished, not partial, with numbers): a ranking row is
  a run, as before repeats existed. Otherwise a ranking row is a cell: the medians of its complete
  runs, n, Student t's 95% interval of the mean (runner/stats.py), overlapping intervals share a
  rank ("2="), and a third table lists every run, failed ones included. Nothing is dropped.
- `to_frame` is the one flat table of runs (results.csv), `to_cells` its aggregate (cells.csv); both
  render through `_markdown`. `render` is pure and deterministic (fixed formats and tie-breaks, no
  clock), so it is tested against an exact string, as pyperf tests its markdown table.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from runner import compare, plots, stats
from runner.config import ValidityConfig
from runner.result import OUTCOMES, write_atomic
from runner.runs import DTYPES, IDENTITY, NUMBERS, as_float, describe, load_runs, lookup, natural_key, to_frame
from runner.validity import LEGEND as FLAG_LEGEND

MISSING = "—"
REPORT_FILE, CSV_FILE, CELLS_FILE = "report.md", "results.csv", "cells.csv"
_OUTCOME_ORDER = (*OUTCOMES, "incomplete", "corrupt")
_MEANING = {
    "completed_with_errors": "the run finished but some requests failed; see Failures and the run's `*_failures.csv`.",
    "server_failed_to_start": "the server never became ready, so no load was sent; see the run's `server.log`.",
    "server_crashed": "the server exited while under load; numbers, if any, cover only the time before the crash; "
    "see the run's `server.log`.",
    "loadgen_failed": "Locust itself failed, so its numbers are missing or untrustworthy; see the run's `locust.log`.",
    "timeout": "the run overran its hard deadline and was stopped; numbers, if any, are partial.",
    "interrupted": "the run was stopped by hand (Ctrl-C or SIGTERM) before it finished.",
    "incomplete": "the job directory has no `result.json`: the run was killed before it finished, or is still running.",
    "corrupt": "the run's `result.json` exists but cannot be read (truncated or not valid JSON); "
    "its numbers are unknown.",
}
# Known provenance keys, shown in this order with these labels; any other keys follow, sorted.
_PROVENANCE_LABELS = {
    "cpu_model": "CPU",
    "cores": "cores",
    "kernel": "kernel",
    "python": "Python",
    "locust": "Locust",
    "hydra": "Hydra",
    "git_commit": "git commit",
    "git_dirty": "uncommitted changes",
}
_WINDOWS = {  # metrics.window -> what the numbers cover
    "steady": "the steady window, from when every user had started plus the warm-up (`load.warmup_s`) until the "
    "run time ended: ramp-up is excluded",
    "whole-run": "the whole run, ramp-up included (the steady window was unavailable)",
    None: "not recorded (results of an older runner: ramp-up is likely included)",
}
_INTERVALS = ("rps_low", "rps_high", "rps_spread", "avg_ms_low", "avg_ms_high")
CELL_COLUMNS = ("cell", "group", *IDENTITY, "runs", "n", *_INTERVALS, *NUMBERS, "outcome", "flags")
# a cell's numbers are medians: 37 and 38 failures make 37.5
_CELL_DTYPES = {name: DTYPES[name] for name in IDENTITY if name in DTYPES} | {"n": "Int64"}
_CELL_DTYPES |= {name: "Float64" for name in (*_INTERVALS, *NUMBERS)}

# Table columns: header, frame column, format. "{}" columns are text (left-aligned), the rest numbers.
_VARYING = (  # shown only when they differ between runs; stated once above the tables otherwise
    ("Workload", "workload", "{}"),
    ("Keep-alive", "keepalive", "{}"),
    ("Users", "users", "{:.0f}"),
    ("Spawn rate", "spawn_rate", "{:g}"),
)
_MEASURED = (
    ("Requests", "requests", "{:.0f}"),
    ("Failures", "failures", "{:.0f}"),
    ("Fail %", "fail_pct", "{:.2f}"),
    ("RPS", "rps", "{:.1f}"),
    ("Goodput", "goodput", "{:.1f}"),
    ("Avg ms", "avg_ms", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("Server CPU %", "server_cpu_pct", "{:.0f}"),
    ("Locust CPU %", "locust_cpu_pct", "{:.0f}"),
    ("Peak mem MB", "peak_memory_mb", "{:.1f}"),
    ("Req/CPU-s", "requests_per_cpu_s", "{:.0f}"),
    ("Outcome", "outcome", "{}"),
    ("Flags", "flags", "{}"),
)
_CI = " [95% CI]"  # the header suffix of a median shown with its interval
# Column legend: "headers: text" per line; a line is shown when a table has one of its headers.
_COLUMN_LEGEND = """\
Rank: {rank}
Run: the run's directory, beside this report.
Workload: what the server did per request.
Keep-alive: whether the server kept connections open between requests.
Users: Locust's simulated users.
Spawn rate: users Locust started per second until all were running.
Settings: config keys without a column of their own in which this row differs from others.
Repeat: the run's `run.repeat`: which repetition of its cell it is.
n: the cell's complete runs (finished, not partial, with numbers); every number in the row is their median.
Requests, Failures, Fail %: Locust's counts over the measured window (see Measurement); Fail % is failures per \
100 requests.
RPS: requests per second as Locust counts them, failed requests included, so fast failures inflate it.
RPS [95% CI], Avg ms [95% CI]: the median of the cell's complete runs, then in brackets the 95% confidence \
interval of their mean (Student t; none when n is 1).
Goodput: successful requests per second: RPS without the failures.
Avg ms: mean response time (exact).
p50 ms, p95 ms, p99 ms: Locust's histogram percentiles, rounded to about 2 significant digits: do not rank on \
small differences.
Server CPU %, Locust CPU %: CPU time each process tree (children included) used over the measured window; \
100 = one core busy.
Peak mem MB: the server's largest memory during the run, children included, as PSS (a page shared by N \
processes counts 1/N in each).
Req/CPU-s: requests per CPU-second the server used in the measured window: what a request costs it, however \
hard it was pushed.
Outcome: how the run ended; "(partial)" marks numbers from a run that did not end cleanly.{outcome}
Flags: reasons to doubt the row, explained under Flags; empty when there are none.
—: unknown. A missing number is never shown as 0.
"""
_RANK = {
    False: 'place by the table\'s metric. "—" means not ranked: the run has no number for it, or only partial '
    "numbers. Unranked rows come last.",
    True: "place by the median of the table's metric. A cell whose interval overlaps that of the first cell of the "
    'tie group just above shares its rank, marked "=": the repeats do not tell them apart. Ties do not chain: a '
    'cell that overlaps only a later member of the group starts a new rank. "—" means not ranked: the cell has '
    "no complete run. Unranked rows come last.",
}


def to_cells(frame: pd.DataFrame, unstable_spread: float) -> pd.DataFrame:
    """One row per cell (in order of first appearance): medians over its complete runs, n, the 95%
    intervals of mean RPS and mean response time, and flags (its runs', plus `unstable`). cells.csv."""
    rows = []
    for cell, group in frame.groupby("cell", sort=False):
        runs = group.to_dict("records")
        complete = [r for r in runs if _complete(r)]
        row = {key: runs[0][key] for key in ("group", *IDENTITY)} | {"cell": cell, "n": len(complete)}
        row["runs"] = " ".join(r["run"] for r in runs)
        for name in NUMBERS:
            values = [float(r[name]) for r in complete if not _missing(r[name])]
            row[name] = stats.median(values) if values else None
        for name in ("rps", "avg_ms"):
            row[f"{name}_low"], row[f"{name}_high"] = stats.mean_interval([r[name] for r in complete]) or (None, None)
        row["rps_spread"] = stats.spread([r["rps"] for r in complete])
        flags = {flag for r in complete for flag in _split(r["flags"])}
        if row["rps_spread"] is not None and row["rps_spread"] >= unstable_spread:
            flags.add("unstable")
        row["flags"] = ",".join(_ordered_flags(flags))
        tally = _tally(r["outcome"] for r in runs)
        row["outcome"] = next(iter(tally)) if len(tally) == 1 else ", ".join(f"{n} {o}" for o, n in tally.items())
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CELL_COLUMNS)).astype(_CELL_DTYPES)


def render(
    frame: pd.DataFrame,
    title: str,
    provenance: dict[str, Any] | None,
    validity: dict[str, Any] | None = None,
    figures: str = "",
) -> str:
    """The report as markdown: figures (markdown from runner/plots.py, first, so a reader sees the result
    before any table), summary, rankings, legends, notes on every non-ok outcome, how to reproduce.
    `validity` holds the flag thresholds (config run.validity); missing ones take ValidityConfig's defaults."""
    if frame.empty:
        return f"# {title}\n\nNo runs were found.\n"
    thresholds = _thresholds(validity)
    cells = to_cells(frame, thresholds["unstable_spread"])
    repeated = bool((cells["n"] > 1).any())
    tables = _tables(frame, cells) if repeated else _tables(frame)
    headers = {header for _, columns, _ in tables for header, _, _ in columns}
    parts = [
        f"# {title}\n",
        figures,
        _summary(frame, cells if repeated else None, provenance or {}),
        *[f"## {heading}\n\n{table}\n" for heading, _, table in tables],
        _column_legend(headers, repeated, grouped=len(_groups(frame)) > 1),
        _flags_legend(frame, cells, thresholds),
        f"## Measurement\n\n{_window(frame)}\n{_pinning(frame)}\n",
        _notes(frame),
        _reproduce(frame, repeated),
    ]
    return "\n".join(part for part in parts if part)


def write_report(directory: Path | str) -> Path:
    """Write report.md, results.csv and (with repeats) cells.csv into `directory`, each atomically;
    return the report's path."""
    root = Path(directory)
    runs = load_runs(root)
    frame = to_frame(runs)
    provenance = next((run.provenance for run in runs if run.provenance), {})
    validity = next((v for run in runs if isinstance(v := lookup(run.config, "run.validity"), dict)), None)
    write_atomic(root / CSV_FILE, lambda f: f.write(frame.to_csv(index=False)))
    cells = to_cells(frame, _thresholds(validity)["unstable_spread"])
    if (cells["n"] > 1).any():
        write_atomic(root / CELLS_FILE, lambda f: f.write(cells.to_csv(index=False)))
    figures, skipped = plots.draw_all(root, frame, cells, runs) if runs else ([], [])
    title = f"Stress test report: {root.resolve().name}"
    report = render(frame, title, provenance, validity, plots.markdown(figures, skipped))
    return write_atomic(root / REPORT_FILE, lambda f: f.write(report))


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _complete(row: dict) -> bool:
    """Numbers a cell may aggregate: a run that ended cleanly and has both ranked metrics."""
    return not row["partial"] and not _missing(row["rps"]) and not _missing(row["avg_ms"])


def _split(flags: Any) -> list[str]:
    return [] if _missing(flags) or not flags else str(flags).split(",")


def _ordered_flags(flags: Iterable[str]) -> list[str]:
    known = list(FLAG_LEGEND)
    return sorted(set(flags), key=lambda f: (f not in known, known.index(f) if f in known else 0, f))


def _tally(outcomes: Iterable[str]) -> dict[str, int]:
    """Outcome -> count, in the order OUTCOMES lists them, unknown ones last."""
    counts = Counter(outcomes)
    order = [o for o in _OUTCOME_ORDER if o in counts] + sorted(set(counts) - set(_OUTCOME_ORDER))
    return {o: counts[o] for o in order}


def _repeat(row: dict) -> int:
    return -1 if _missing(row["repeat"]) else int(row["repeat"])


def _thresholds(validity: dict[str, Any] | None) -> dict[str, Any]:
    defaults = asdict(ValidityConfig())
    given = {k: v for k, v in (validity or {}).items() if k in defaults and as_float(v) is not None}
    return defaults | given


def _same_for_every_run(frame: pd.DataFrame) -> dict[str, Any]:
    """The identity columns with one known value in every row: stated once instead of as a column."""
    return {column: frame[column].iloc[0] for _, column, _ in _VARYING if _one_value(frame[column].tolist())}


def _one_value(values: list[Any]) -> bool:
    first = values[0]
    return not _missing(first) and first != "?" and all(not _missing(v) and v == first for v in values)


def _groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(conditions in words, rows) of each group ranked on its own, in order of first appearance."""
    return [(str(label), rows) for label, rows in frame.groupby(frame["group"].fillna(""), sort=False)]


def _columns(frame: pd.DataFrame, kind: str) -> list[tuple[str, str, str]]:
    """The columns of a table of `kind`: "runs" (a ranking of runs), "cells" (a ranking of cells) or
    "all" (every run of a sweep with repeats)."""
    hidden = set(_same_for_every_run(frame))
    if kind != "all":  # a sub-heading states what is the same within its group; keep-alive may be the server's
        groups = [rows for _, rows in _groups(frame)]
        hidden |= {c for _, c, _ in _VARYING if c != "keepalive" and all(_one_value(g[c].tolist()) for g in groups)}
    columns = [("Run", "run", "{}")] if kind == "all" else []
    columns += [("Server", "server", "{}")] + [c for c in _VARYING if c[1] not in hidden]
    if frame["settings"].fillna("").astype(str).str.len().gt(0).any():
        columns.append(("Settings", "settings", "{}"))
    columns += [("Repeat", "repeat", "{:.0f}")] if kind == "all" else []
    columns += [("n", "n", "{:.0f}")] if kind == "cells" else []
    with_ci = ("rps", "avg_ms") if kind == "cells" else ()
    return columns + [(h + _CI if c in with_ci else h, c, fmt) for h, c, fmt in _MEASURED]


def _ranked_order(frame: pd.DataFrame, metric: str, descending: bool) -> list[dict]:
    """Rows sorted for a ranking: ranked ones by the metric, then partial numbers, then none."""

    def order(row: dict) -> tuple:
        value = 0.0 if _group(row, metric) == 2 else float(row[metric])
        first_run = str(row.get("run", row.get("runs")))
        return _group(row, metric), -value if descending else value, str(row["server"]), natural_key(first_run)

    return sorted(frame.to_dict("records"), key=order)


def _group(row: dict, metric: str) -> int:  # 0 ranked, 1 partial numbers, 2 no number
    return 2 if _missing(row[metric]) else int(bool(row.get("partial", False)))


def _rankings(frame: pd.DataFrame, metric: str, descending: bool, columns: list, ties: bool = False) -> str:
    """One ranking per group, each under a `###` sub-heading naming its conditions when there are several."""
    groups = _groups(frame)
    if len(groups) == 1:
        return _ranking(frame, metric, descending, columns, ties)
    return "\n\n".join(f"### {label}\n\n{_ranking(rows, metric, descending, columns, ties)}" for label, rows in groups)


def _ranking(frame: pd.DataFrame, metric: str, descending: bool, columns: list, ties: bool = False) -> str:
    rows = _ranked_order(frame, metric, descending)
    ranked = [row for row in rows if _group(row, metric) == 0]
    intervals = [_interval(row, metric) if ties else None for row in ranked]
    return _markdown(rows, columns, stats.tied_ranks(intervals) + [MISSING] * (len(rows) - len(ranked)))


def _interval(row: dict, metric: str) -> stats.Interval:
    """The cell's 95% interval, or its one value when it has a single complete run."""
    low, high = row[f"{metric}_low"], row[f"{metric}_high"]
    value = float(row[metric])
    return (value, value) if _missing(low) or _missing(high) else (float(low), float(high))


def _markdown(rows: list[dict], columns: list[tuple[str, str, str]], ranks: list[str] | None = None) -> str:
    lead = [] if ranks is None else ["Rank"]
    body = [([ranks[i]] if lead else []) + [_show(row, c, fmt) for _, c, fmt in columns] for i, row in enumerate(rows)]
    headers = lead + [header for header, _, _ in columns]
    align = ["right"] * len(lead) + ["left" if fmt == "{}" else "right" for _, _, fmt in columns]
    table = pd.DataFrame(body, columns=headers)
    return table.to_markdown(index=False, tablefmt="github", disable_numparse=True, colalign=align)


def _show(row: dict, column: str, fmt: str) -> str:
    if column == "flags":
        return ", ".join(_split(row["flags"]))
    text = _cell(row[column], fmt)
    if column == "outcome" and row.get("partial"):
        return f"{text} (partial)"
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if text != MISSING and not _missing(low) and not _missing(high):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text


def _cell(value: Any, fmt: str) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value).replace("|", "\\|")  # a "|" in a name would split the cell


def _summary(frame: pd.DataFrame, cells: pd.DataFrame | None, provenance: dict[str, Any]) -> str:
    tally = _tally(frame["outcome"])
    count = f"{len(frame)} run{'s' if len(frame) != 1 else ''}"
    text = f"{count}: {', '.join(f'{n} {o}' for o, n in tally.items())}.\nMachine: {_provenance(provenance)}.\n"
    bound = sum("generator-bound" in _split(flags) for flags in frame["flags"])
    if bound:
        text += (
            f"\n**{bound} of {len(frame)} runs are generator-bound**: Locust, not the server, was the bottleneck, "
            "so their order ranks the load generator (see Flags).\n"
        )
    if cells is not None:
        sizes = frame.groupby("cell", sort=False).size()
        runs = f"{sizes.min()}" if sizes.min() == sizes.max() else f"{sizes.min()} to {sizes.max()}"
        text += (
            f"Repeats: {len(cells)} cells of {runs} runs (runs whose config differs only in `run.repeat`). "
            "Tables 1 and 2 rank cells, Table 3 lists every run.\n"
        )
    same = _same_for_every_run(frame)
    if same:
        text += f"\nSame for every run: {', '.join(describe(c, v) for c, v in same.items())}.\n"
    return text


def _tables(frame: pd.DataFrame, cells: pd.DataFrame | None = None) -> list[tuple[str, list, str]]:
    """(heading, columns, markdown) of each table: two rankings of runs, or of cells plus every run."""
    if cells is None:
        columns = _columns(frame, "runs")
        return [
            ("Table 1. Ranked by requests per second", columns, _rankings(frame, "rps", True, columns)),
            ("Table 2. Ranked by average response time", columns, _rankings(frame, "avg_ms", False, columns)),
        ]
    ranked, every = _columns(frame, "cells"), _columns(frame, "all")
    table_1 = [row for _, rows in _groups(cells) for row in _ranked_order(rows, "rps", True)]
    place = {row["cell"]: i for i, row in enumerate(table_1)}
    runs = sorted(frame.to_dict("records"), key=lambda r: (place[r["cell"]], _repeat(r), natural_key(r["run"])))
    return [
        ("Table 1. Cells ranked by requests per second", ranked, _rankings(cells, "rps", True, ranked, ties=True)),
        ("Table 2. Cells ranked by average response time", ranked, _rankings(cells, "avg_ms", False, ranked, True)),
        ("Table 3. All runs", every, _markdown(runs, every)),
    ]


def _notes(frame: pd.DataFrame) -> str:
    notes = [
        f"- **{o}** ({', '.join(sorted(set(frame.loc[frame['outcome'] == o, 'server'])))}): "
        f"{_MEANING.get(o, 'an outcome this report does not know.')}"
        for o in _tally(frame["outcome"])
        if o != "ok"
    ]
    if frame["partial"].any():
        notes.append(
            "- **(partial)**: numbers from a run that did not end cleanly cover only part of it; "
            "they are shown but not ranked."
        )
    return "## Notes\n\n" + "\n".join(notes) + "\n" if notes else ""


def _column_legend(headers: set[str], repeated: bool, grouped: bool = False) -> str:
    outcome = " For a cell, how many of its runs ended which way." if repeated else ""
    rank = _RANK[repeated]
    if grouped:
        rank += (
            " Each sub-table is ranked on its own: its rows ran under the conditions its sub-heading names, and only "
            "the server differs."
        )
    lines = []
    for line in _COLUMN_LEGEND.format(rank=rank, outcome=outcome).splitlines():
        names, text = line.split(": ", 1)
        shown = [name for name in names.split(", ") if name in headers | {"Rank", "—"}]
        if shown:
            lines.append(f"- {', '.join(f'**{name}**' for name in shown)}: {text}")
    return "## Columns\n\n" + "\n".join(lines) + "\n"


def _who(rows: Iterable[dict]) -> str:
    """Runs named by server and directory, one group per cell: "select (0, 3), thread (1)"."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for row in rows:
        groups.setdefault(row["cell"], (row["server"], []))[1].append(row["run"])
    return ", ".join(f"{server} ({', '.join(runs)})" for server, runs in groups.values())


def _flags_legend(frame: pd.DataFrame, cells: pd.DataFrame, thresholds: dict[str, Any]) -> str:
    """Each flag that occurs: what it means, with these thresholds, and which runs (or cells) have it."""
    runs = frame.to_dict("records")
    having = {
        flag: [r for r in runs if flag in _split(r["flags"])] for flag in {f for r in runs for f in _split(r["flags"])}
    }
    unstable = set(cells.loc[cells["flags"].map(lambda flags: "unstable" in _split(flags)), "cell"])
    if unstable:  # a cell's flag: name the runs whose spread it measured
        having["unstable"] = [r for r in runs if r["cell"] in unstable and _complete(r)]
    lines = []
    for flag in _ordered_flags(having):
        try:
            text = FLAG_LEGEND[flag].format(**thresholds)
        except (KeyError, ValueError, IndexError):
            text = "a flag this report does not know."
        lines.append(f"- **{flag}**: {text} Seen in: {_who(having[flag])}.")
    return "## Flags\n\n" + "\n".join(lines) + "\n" if lines else ""


def _window(frame: pd.DataFrame) -> str:
    """What the numbers cover: the steady window, unless a run fell back to the whole run."""
    kinds: dict[str | None, list[dict]] = {}
    for row in frame.to_dict("records"):
        if not _missing(row["rps"]):
            window = None if _missing(row["window"]) or row["window"] not in _WINDOWS else row["window"]
            kinds.setdefault(window, []).append(row)
    if not kinds:
        return "- Window: no run has numbers."
    lead, *others = [kind for kind in _WINDOWS if kind in kinds]
    text = f"- Window: {'numbers cover ' if lead else ''}{_WINDOWS[lead]}."
    return text + "".join(f" Except {_who(kinds[kind])}: {_WINDOWS[kind]}." for kind in others)


def _pinning(frame: pd.DataFrame) -> str:
    """Where the server and Locust ran, e.g. "server on CPU 0, Locust on CPUs 1-3"."""
    groups: dict[tuple, list[dict]] = {}
    for row in frame.to_dict("records"):
        pins = tuple(None if _missing(row[c]) else row[c] for c in ("server_cpus", "locust_cpus"))
        if pins != (None, None):
            groups.setdefault(pins, []).append(row)
    if not groups:
        return "- Pinning: not recorded."
    described = [(_pins(*pins), rows) for pins, rows in groups.items()]
    if len(described) == 1:
        return f"- Pinning: {described[0][0]}."
    return "- Pinning: " + "; ".join(f"{text} for {_who(rows)}" for text, rows in described) + "."


def _pins(server: str | None, locust: str | None) -> str:
    if server == locust == "any":
        return "not pinned (server and Locust may use every core)"

    def where(name: str, cpus: str | None) -> str:
        if cpus is None:
            return f"{name} not recorded"
        if cpus == "any":
            return f"{name} not pinned"
        return f"{name} on CPU{'s' if ',' in cpus or '-' in cpus else ''} {cpus}"

    return f"{where('server', server)}, {where('Locust', locust)}"


def _reproduce(frame: pd.DataFrame, repeated: bool) -> str:
    rows = frame.to_dict("records")
    width = max((len(r["rerun"]) for r in rows if not _missing(r["rerun"]) and r["rerun"]), default=0)
    lines = [
        f"{r['rerun']:<{width}}  # {r['run']}"
        if not _missing(r["rerun"]) and r["rerun"]
        else f"# {r['run']}: no command recorded"
        for r in rows
    ]
    cells = (
        f" `{CELLS_FILE}` has one row per cell: `n`, the medians of its complete runs under the names `{CSV_FILE}` "
        "uses, the 95% intervals (`rps_low`, `rps_high`, `avg_ms_low`, `avg_ms_high`) and `rps_spread`."
        if repeated
        else ""
    )
    return (
        "## Reproduce\n\nOne command per run, from the repository root (the comment is the run's directory):\n\n"
        "```sh\n" + "\n".join(lines) + "\n```\n\n"
        f"Raw data: `{CSV_FILE}` beside this report has one row per run, unrounded, with more columns than the "
        "tables: `max_ms`; `total_requests` and `served`, Locust's and the server's own count over the whole run, "
        "ramp-up included; `window`, `repeat`, `cell` (runs of one cell differ only in `run.repeat`) and `rerun`."
        f"{cells} Each run's directory holds its `result.json`, Locust's CSV files and `locust.html`, `server.log` "
        "and `locust.log`.\n"
    )


def _provenance(provenance: dict[str, Any]) -> str:
    if not provenance:
        return "not recorded"
    keys = [k for k in _PROVENANCE_LABELS if k in provenance] + sorted(set(provenance) - set(_PROVENANCE_LABELS))
    return "; ".join(f"{_PROVENANCE_LABELS.get(k, k)}: {_cell(provenance[k], '{}')}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.report",
        description="Write report.md and results.csv for a directory of runs (a sweep, one run, or outputs/).",
    )
    parser.add_argument("directory", type=Path, help="directory searched recursively for job directories")
    parser.add_argument("--baseline", type=Path, help="an older sweep: also write and print comparison.md against it")
    parser.add_argument(
        "--noise-ratio", type=float, default=compare.NOISE_RATIO,
        help="without repeats, a change counts only if larger/smaller exceeds this (default %(default)g: measured, "
        "see runner/compare.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for directory in (args.directory, args.baseline):
        if directory is not None and not directory.is_dir():
            parser.error(f"{directory}: no such directory")  # exits 2
    print(write_report(args.directory))
    if args.baseline is not None:
        path, text = compare.write_comparison(args.directory, args.baseline, args.noise_ratio)
        print(f"{path}\n\n{text}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
