"""The report's tables: cells (runs aggregated over `run.repeat`), the rankings, and markdown rendering.

Strategy:
- Rows are ranked only against rows run under the same conditions (the frame's `group`, see
  runner/report/runs.py): one sub-table per group, in order of first appearance.
- Two shapes. No cell with two complete runs (finished, not partial, with numbers): a ranking row is
  a run. Otherwise a ranking row is a cell: the medians of its complete runs, n, Student t's 95%
  interval of the mean (runner/report/stats.py), overlapping intervals share a rank ("2="), and a third
  table lists every run, failed ones included. Nothing is dropped.
- Everything here is pure and deterministic (fixed formats and tie-breaks), so the report built from
  it is tested against an exact string.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd

from runner.record import natural_key
from runner.report import stats
from runner.report.columns import COLUMNS, DTYPES, IDENTITY, MISSING, NUMBERS, SHOWN_ORDER
from runner.result import OUTCOMES
from runner.run.diagnosis import DIAGNOSES
from runner.run.validity import LEGEND as FLAG_LEGEND

_OUTCOME_ORDER = (*OUTCOMES, "incomplete", "corrupt", "unknown_schema")
INTERVALS = tuple(c.name for c in COLUMNS if c.interval)  # "rps" first: a cell's spread is of its RPS
_BOUNDS = ("rps_low", "rps_high", "rps_spread", *(f"{n}_{end}" for n in INTERVALS[1:] for end in ("low", "high")))
CELL_COLUMNS = ("cell", "group", *IDENTITY, "runs", "n", *_BOUNDS, *NUMBERS, "outcome", "flags", "why",
                "objectives")  # fmt: skip
WORKING = ("ok", "completed_with_errors")  # a run that finished: its numbers may say what the server can take
# a cell's numbers are medians: 37 and 38 failures make 37.5
_CELL_DTYPES = {name: DTYPES[name] for name in IDENTITY if name in DTYPES} | {"n": "Int64"}
_CELL_DTYPES |= {name: "Float64" for name in (*_BOUNDS, *NUMBERS)}
VARYING = tuple(c for c in COLUMNS if c.varying)  # shown only when they differ between runs; said once otherwise
CI = " [95% CI]"  # the header suffix of a median shown with its interval
TableColumn = tuple[str, str, str]  # header, frame column, format


def to_cells(frame: pd.DataFrame, unstable_spread: float) -> pd.DataFrame:
    """One row per cell (in order of first appearance): medians over its complete runs, n, the 95%
    intervals of mean RPS and mean response time, and flags (its runs', plus `unstable`). cells.csv."""
    rows = []
    for cell, group in frame.groupby("cell", sort=False):
        runs = group.to_dict("records")
        complete = [r for r in runs if is_complete(r)]
        row = {key: runs[0][key] for key in ("group", *IDENTITY)} | {"cell": cell, "n": len(complete)}
        row["runs"] = " ".join(r["run"] for r in runs)
        for name in NUMBERS:
            values = [float(r[name]) for r in complete if not is_missing(r[name])]
            row[name] = stats.median(values) if values else None
        for name in INTERVALS:
            row[f"{name}_low"], row[f"{name}_high"] = stats.mean_interval([r[name] for r in complete]) or (None, None)
        row["rps_spread"] = stats.spread([r["rps"] for r in complete])
        flags = {flag for r in complete for flag in split_flags(r["flags"])}
        if row["rps_spread"] is not None and row["rps_spread"] >= unstable_spread:
            flags.add("unstable")
        row["flags"] = ",".join(ordered_flags(flags))
        row["why"] = ",".join(ordered_kinds(kind for r in runs for kind in split_flags(r["why"])))
        row["objectives"] = "; ".join(dict.fromkeys(r["objectives"] for r in runs if r["objectives"]))
        tally = count_outcomes(r["outcome"] for r in runs)
        row["outcome"] = next(iter(tally)) if len(tally) == 1 else ", ".join(f"{n} {o}" for o, n in tally.items())
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CELL_COLUMNS)).astype(_CELL_DTYPES)


def is_missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def is_working(row: dict) -> bool:
    """A run whose numbers can rank: it finished (ok, or with failures) and at most run.validity.max_error_ratio
    of its requests failed (no `errors` flag). RPS counts failures, so a server that fails fast looks fast:
    a row whose requests all failed once ranked third."""
    return row["outcome"] in WORKING and "errors" not in split_flags(row["flags"])


def is_complete(row: dict) -> bool:
    """Numbers a cell may aggregate: a working run that ended cleanly and has both ranked metrics."""
    return not row["partial"] and not is_missing(row["rps"]) and not is_missing(row["avg_ms"]) and is_working(row)


def split_flags(flags: Any) -> list[str]:
    return [] if is_missing(flags) or not flags else str(flags).split(",")


def ordered_flags(flags: Iterable[str]) -> list[str]:
    return _ordered(flags, list(FLAG_LEGEND))


def ordered_kinds(kinds: Iterable[str]) -> list[str]:
    """Diagnoses' kinds in runner/run/diagnosis.py's order, unknown ones last."""
    return _ordered(kinds, list(DIAGNOSES))


def _ordered(names: Iterable[str], known: list[str]) -> list[str]:
    return sorted(set(names), key=lambda f: (f not in known, known.index(f) if f in known else 0, f))


def count_outcomes(outcomes: Iterable[str]) -> dict[str, int]:
    """Outcome -> count, in the order OUTCOMES lists them, unknown ones last."""
    counts = Counter(outcomes)
    order = [o for o in _OUTCOME_ORDER if o in counts] + sorted(set(counts) - set(_OUTCOME_ORDER))
    return {o: counts[o] for o in order}


def _repeat(row: dict) -> int:
    return -1 if is_missing(row["repeat"]) else int(row["repeat"])


def same_for_every_run(frame: pd.DataFrame) -> dict[str, Any]:
    """The identity columns with one known value in every row: stated once instead of as a column."""
    return {c.name: frame[c.name].iloc[0] for c in VARYING if _one_value(frame[c.name].tolist())}


def _one_value(values: list[Any]) -> bool:
    first = values[0]
    return not is_missing(first) and first != "?" and all(not is_missing(v) and v == first for v in values)


def ranking_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(conditions in words, rows) of each group ranked on its own, in order of first appearance."""
    return [(str(label), rows) for label, rows in frame.groupby(frame["group"].fillna(""), sort=False)]


def _columns(frame: pd.DataFrame, kind: str) -> list[TableColumn]:
    """The columns of a table of `kind`: "runs" (a ranking of runs), "cells" (a ranking of cells) or
    "all" (every run of a sweep with repeats): the registry's, in its order, the run's directory first."""
    hidden = set(same_for_every_run(frame)) | {c.name for c in VARYING if frame[c.name].isna().all()}  # unknown
    if frame["arrival_rate"].isna().all():  # closed loops only: no open-model columns
        hidden |= {c.name for c in COLUMNS if c.open_model}
    if kind != "all":  # a sub-heading states what is the same within its group; keep-alive may be the server's
        groups = [rows for _, rows in ranking_groups(frame)]
        hidden |= {
            c.name for c in VARYING if c.name != "keepalive" and all(_one_value(g[c.name].tolist()) for g in groups)
        }
    for name in ("settings", "why", "objectives"):  # shown when some row has one
        if not frame[name].fillna("").astype(str).str.len().gt(0).any():
            hidden.add(name)
    only = {"run": "all", "repeat": "all", "n": "cells"}  # columns of one kind of table
    shown = [c for c in SHOWN_ORDER if c.header and c.name not in hidden and only.get(c.name, kind) == kind]
    return [(c.header + CI if kind == "cells" and c.interval else c.header, c.name, c.fmt) for c in shown]


def _ranked_order(frame: pd.DataFrame, metric: str, descending: bool) -> list[dict]:
    """Rows sorted for a ranking: ranked ones by the metric, then partial numbers, then none."""

    def order(row: dict) -> tuple:
        value = 0.0 if _group(row, metric) == 2 else float(row[metric])
        first_run = str(row.get("run", row.get("runs")))
        return _group(row, metric), -value if descending else value, str(row["server"]), natural_key(first_run)

    return sorted(frame.to_dict("records"), key=order)


def _group(row: dict, metric: str) -> int:
    """0 ranked; 1 listed without a rank (partial numbers, or a run that did not work: is_working); 2 no number.
    A cell's numbers are its complete runs' medians, so a cell with a number ranks."""
    if is_missing(row[metric]):
        return 2
    return 0 if "n" in row or (not row.get("partial", False) and is_working(row)) else 1


def _rankings(frame: pd.DataFrame, metric: str, descending: bool, columns: list, ties: bool = False) -> str:
    """One ranking per group, each under a `###` sub-heading naming its conditions when there are several."""
    groups = ranking_groups(frame)
    if len(groups) == 1:
        return _ranking(frame, metric, descending, columns, ties)
    return "\n\n".join(f"### {label}\n\n{_ranking(rows, metric, descending, columns, ties)}" for label, rows in groups)


def _ranking(frame: pd.DataFrame, metric: str, descending: bool, columns: list, ties: bool = False) -> str:
    rows = _ranked_order(frame, metric, descending)
    ranked = [row for row in rows if _group(row, metric) == 0]
    intervals = [_interval(row, metric) if ties else None for row in ranked]
    return markdown_table(rows, columns, stats.tied_ranks(intervals) + [MISSING] * (len(rows) - len(ranked)))


def _interval(row: dict, metric: str) -> stats.Interval:
    """The cell's 95% interval, or its one value when it has a single complete run."""
    low, high = row[f"{metric}_low"], row[f"{metric}_high"]
    value = float(row[metric])
    return (value, value) if is_missing(low) or is_missing(high) else (float(low), float(high))


def markdown_table(rows: list[dict], columns: list[TableColumn], ranks: list[str] | None = None) -> str:
    lead = [] if ranks is None else ["Rank"]
    body = [([ranks[i]] if lead else []) + [_show(row, c, fmt) for _, c, fmt in columns] for i, row in enumerate(rows)]
    headers = lead + [header for header, _, _ in columns]
    align = ["right"] * len(lead) + ["left" if fmt == "{}" else "right" for _, _, fmt in columns]
    table = pd.DataFrame(body, columns=headers)
    return table.to_markdown(index=False, tablefmt="github", disable_numparse=True, colalign=align)


def _show(row: dict, column: str, fmt: str) -> str:
    if column in ("flags", "why"):
        return ", ".join(split_flags(row[column]))
    text = cell_text(row[column], fmt)
    if column == "outcome" and row.get("partial"):
        return f"{text} (partial)"
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if text != MISSING and not is_missing(low) and not is_missing(high):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text


def cell_text(value: Any, fmt: str) -> str:
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value).replace("|", "\\|")  # a "|" in a name would split the cell


def ranking_tables(frame: pd.DataFrame, cells: pd.DataFrame | None = None) -> list[tuple[str, list, str]]:
    """(heading, columns, markdown) of each table: two rankings of runs, or of cells plus every run."""
    if cells is None:
        columns = _columns(frame, "runs")
        by_rps = _rankings(frame, "rps", True, columns)
        return [
            ("Table 1. Ranked by requests per second", columns, by_rps),
            ("Table 2. Ranked by average response time", columns, _by_latency(frame, columns, by_rps)),
        ]
    ranked, every = _columns(frame, "cells"), _columns(frame, "all")
    table_1 = [row for _, rows in ranking_groups(cells) for row in _ranked_order(rows, "rps", True)]
    place = {row["cell"]: i for i, row in enumerate(table_1)}
    runs = sorted(frame.to_dict("records"), key=lambda r: (place[r["cell"]], _repeat(r), natural_key(r["run"])))
    by_rps = _rankings(cells, "rps", True, ranked, ties=True)
    return [
        ("Table 1. Cells ranked by requests per second", ranked, by_rps),
        ("Table 2. Cells ranked by average response time", ranked, _by_latency(cells, ranked, by_rps, ties=True)),
        ("Table 3. All runs", every, markdown_table(runs, every)),
    ]


def _by_latency(frame: pd.DataFrame, columns: list, table_1: str, ties: bool = False) -> str:
    """Table 2, or when it would be `table_1` again (the same rows, ranks and order), a sentence saying so: the
    same table twice, each 19 columns wide, told the reader nothing new."""
    table = _rankings(frame, "avg_ms", False, columns, ties)
    if table == table_1:
        return "The same table as Table 1: ranked by average response time, every row keeps its place and rank."
    return table
