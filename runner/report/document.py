"""The sweep report: a directory of runs -> `report.md`, `report.html` (the same text as one self-contained page:
runner/report/html.py), `results.csv` (one raw row per run) and, when runs were repeated, `cells.csv` (one row
per cell); CLI: `python -m runner.report DIR [--baseline OLD [--fail-on-regression]]`.

Strategy:
- Each part has its place: runner/record.py (a contract: the exit status reads it too) loads each job directory
  once (never raising, never inventing a number: unknown is shown as "—"); runner/report/columns.py says what
  each column is, and
  runner/report/runs.py lays the records out as one flat frame; runner/report/tables.py aggregates cells and
  renders the rankings; runner/report/plots.py draws the figures; runner/report/compare.py compares with a
  baseline sweep. Every section reads the loaded records, never result.json again.
- This module puts report.md together: the figures first (a reader sees the result before any table),
  then the summary, the rankings, the legends of the columns and flags, what the numbers cover, notes on
  every outcome that is not ok, and how to reproduce each run.
- `render` is pure and deterministic (fixed formats and tie-breaks, no clock), so it is tested against
  an exact string, as pyperf tests its markdown table; `write_report` adds the files and figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from runner.config import ValidityConfig
from runner.record import load_runs, lookup
from runner.report import capacity, compare, plots, scaling
from runner.report.columns import BY_NAME, SEARCH_WINDOW, as_float, legend_lines, searched
from runner.report.html import HTML_FILE, render_html
from runner.report.runs import describe, to_frame
from runner.report.tables import (
    CI,
    INTERVALS,
    cell_text,
    count_outcomes,
    is_complete,
    is_missing,
    ordered_flags,
    ranking_groups,
    ranking_tables,
    same_for_every_run,
    split_flags,
    to_cells,
)
from runner.report.workers import section as workers_section
from runner.result import write_atomic
from runner.run import exits
from runner.run.diagnosis import DIAGNOSES
from runner.run.validity import LEGEND as FLAG_LEGEND

REPORT_FILE, CSV_FILE, CELLS_FILE = "report.md", "results.csv", "cells.csv"
_MEANING = {
    "completed_with_errors": "the run finished but some requests failed (Fail % counts those in the measured window; "
    "the run's `locust_failures.csv` lists each kind).",
    "server_failed_to_start": "the server never became ready, so no load was sent.",
    "server_crashed": "the server exited while under load; numbers, if any, cover only the time before the crash.",
    "loadgen_failed": "Locust itself failed, so its numbers are missing or untrustworthy.",
    "timeout": "the run overran its hard deadline and was stopped; numbers, if any, are partial.",
    "interrupted": "the run was stopped by hand (Ctrl-C or SIGTERM) before it finished.",
    "incomplete": "the job directory has no `result.json`: the run was killed before it finished, or is still running.",
    "corrupt": "the run's `result.json` exists but cannot be read (truncated or not valid JSON); "
    "its numbers are unknown.",
    "unknown_schema": "the run's `result.json` has a `schema_version` this report does not know (written by a newer "
    "runner): rather than misread it, its numbers are not shown; report it with that runner.",
}
_REASONS = ("completed_with_errors", "server_failed_to_start", "server_crashed", "loadgen_failed", "timeout",
            "unknown_schema")  # outcomes whose Notes quote each run's detail: the report is where a reader looks
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
    "capacity-search": "a capacity search's whole search (load=capacity), every step from when the first one's users "
    "had started (see Capacity for each step's numbers)",
    "capacity-step": "a capacity search's best step (load=capacity), after that step's ramp (see Capacity): results "
    "of an older runner",
    None: "not recorded (results of an older runner: ramp-up is likely included)",
}

_CI_LEGEND = (
    "the median of the cell's complete runs, then in brackets the 95% confidence interval of their mean (Student t; "
    "none when n is 1)."
)
_NOT_RANKED = (
    "did not work: it did not finish (its outcome is neither ok nor completed_with_errors), or more than "
    "{max_error_ratio:.0%} of its requests failed (the `errors` flag). RPS counts failures, so a server that fails "
    "fast would look fast; its row is listed, below the ranked ones, with what it did"
)
_RANK = {
    False: 'place by the table\'s metric. "—" means not ranked: the run has no number for it, has only partial '
    f"numbers, or {_NOT_RANKED}. Unranked rows come last.",
    True: "place by the median of the table's metric. A cell whose interval overlaps that of the first cell of the "
    'tie group just above shares its rank, marked "=": the repeats do not tell them apart. Ties do not chain: a '
    'cell that overlaps only a later member of the group starts a new rank. "—" means not ranked: the cell has '
    f"no complete run (one that ended cleanly, with numbers, and worked; a run {_NOT_RANKED}). Unranked rows "
    "come last.",
}


def render(
    frame: pd.DataFrame,
    title: str,
    provenance: dict[str, Any] | None,
    validity: dict[str, Any] | None = None,
    figures: str = "",
    extra: str = "",  # sections placed after the tables: runner/capacity.py's Capacity and curves
    reasons: dict[str, str] | None = None,  # run -> its result's detail, told under Notes (_REASONS)
    why: dict[str, list[tuple[str, str]]] | None = None,  # run -> its diagnoses: (kind, what it says)
) -> str:
    """The report as markdown: figures (markdown from runner/report/plots.py, first, so a reader sees the result
    before any table), summary, rankings, legends, notes on every non-ok outcome, how to reproduce.
    `validity` holds the flag thresholds (config run.validity); missing ones take ValidityConfig's defaults."""
    if frame.empty:
        return f"# {title}\n\nNo runs were found.\n"
    thresholds = _thresholds(validity)
    ranked = frame[~searched(frame)]
    cells = to_cells(ranked, thresholds["unstable_spread"])
    repeated = bool((cells["n"] > 1).any())
    tables = (ranking_tables(ranked, cells) if repeated else ranking_tables(ranked)) if not ranked.empty else []
    shown = {name for _, columns, _ in tables for _, name, _ in columns}
    parts = [
        f"# {title}\n",
        figures,
        _summary(frame, cells if repeated else None, provenance or {}),
        _searches_note(frame),
        *[f"## {heading}\n\n{table}\n" for heading, _, table in tables],
        _why(frame, why or {}),
        _objectives(frame),
        extra,
        _column_legend(shown, repeated, thresholds, grouped=len(ranking_groups(frame)) > 1),
        _flags_legend(frame, cells, thresholds),
        f"## Measurement\n\n{_window(frame)}\n{_pinning(frame)}\n",
        _notes(frame, reasons or {}),
        _reproduce(frame, repeated),
    ]
    return "\n".join(part for part in parts if part)


def write_report(directory: Path | str, runs: list | None = None) -> Path:
    """Write report.md, report.html, results.csv and (with repeats) cells.csv into `directory`, each atomically,
    from its runs (`runs`, when the caller has loaded them already); return the report's path."""
    root = Path(directory)
    runs = load_runs(root) if runs is None else runs
    frame = to_frame(runs)
    provenance = next((p for run in runs if (p := run.section("provenance"))), {})
    validity = next((v for run in runs if isinstance(v := lookup(run.config, "run.validity"), dict)), None)
    write_atomic(root / CSV_FILE, lambda f: f.write(frame.to_csv(index=False)))
    cells = to_cells(frame, _thresholds(validity)["unstable_spread"])
    if (cells["n"] > 1).any():
        write_atomic(root / CELLS_FILE, lambda f: f.write(cells.to_csv(index=False)))
    figures, skipped = plots.draw_all(root, frame, cells, runs) if runs else ([], [])
    title = f"Stress test report: {root.resolve().name}"
    sections = "\n".join(filter(None, [scaling.section(frame[~searched(frame)]), capacity.report_sections(frame, runs),
                                       workers_section(runs)]))  # fmt: skip
    reasons = {run.run: " ".join(run.detail.split()) for run in runs if run.outcome in _REASONS and run.detail}
    why = {run.run: [(d["kind"], " ".join(str(d.get("says", "")).split())) for d in run.diagnoses] for run in runs}
    report = render(frame, title, provenance, validity, plots.markdown(figures, skipped), sections, reasons, why)
    page = render_html(report, root, title, _legend(_thresholds(validity)))
    write_atomic(root / HTML_FILE, lambda f: f.write(page))
    return write_atomic(root / REPORT_FILE, lambda f: f.write(report))


def _legend(thresholds: dict[str, Any]) -> dict[str, str]:
    """What each flag and diagnosis means, for report.html's tooltips: the Flags section's own words."""
    flags = {flag: text for flag in FLAG_LEGEND if (text := _flag_text(flag, thresholds)) is not None}
    return flags | DIAGNOSES


def _flag_text(flag: str, thresholds: dict[str, Any]) -> str | None:
    """A flag's meaning with these thresholds filled in; None for a flag this report does not know."""
    try:
        return FLAG_LEGEND[flag].format(**thresholds)
    except (KeyError, ValueError, IndexError):
        return None


def _searches_note(frame: pd.DataFrame) -> str:
    """Where capacity searches are ranked, when a sweep has any: not in Tables 1 and 2."""
    n = int(searched(frame).sum())
    if not n:
        return ""
    which = "Every run is" if n == len(frame) else f"{n} of {len(frame)} runs are"
    return (
        f"{which} a capacity search (load=capacity), ranked in its Capacity section below, not in the tables of "
        "fixed loads: a search's whole-run numbers mix every step. results.csv keeps them (window "
        f"`{SEARCH_WINDOW}`).\n"
    )


def _thresholds(validity: dict[str, Any] | None) -> dict[str, Any]:
    defaults = asdict(ValidityConfig())
    given = {k: v for k, v in (validity or {}).items() if k in defaults and as_float(v) is not None}
    return defaults | given


def _cost_hint(frame: pd.DataFrame) -> str:
    """When Locust limited every run, RPS cannot tell the servers apart, but what a request cost each
    server still can: one line naming them by Req/CPU-s (medians), for a sweep of one condition."""
    if frame["group"].nunique() > 1:
        return ""
    cost = frame.dropna(subset=["requests_per_cpu_s"]).groupby("server", sort=False)["requests_per_cpu_s"].median()
    if len(cost) < 2:
        return ""
    ranked = ", ".join(f"{server} {value:,.0f}" for server, value in cost.sort_values(ascending=False).items())
    return f"What a request cost each server still compares them (Req/CPU-s, higher is cheaper): {ranked}.\n"


def _summary(frame: pd.DataFrame, cells: pd.DataFrame | None, provenance: dict[str, Any]) -> str:
    tally = count_outcomes(frame["outcome"])
    count = f"{len(frame)} run{'s' if len(frame) != 1 else ''}"
    text = f"{count}: {', '.join(f'{n} {o}' for o, n in tally.items())}.\nMachine: {_provenance(provenance)}.\n"
    bound = sum("generator-bound" in split_flags(flags) for flags in frame["flags"])
    if bound:
        text += (
            f"\n**{bound} of {len(frame)} runs are generator-bound**: Locust, not the server, was the bottleneck, "
            "so their order ranks the load generator (see Flags).\n"
        )
        text += _cost_hint(frame) if bound == len(frame) else ""
    if cells is not None:
        sizes = frame.groupby("cell", sort=False).size()
        runs = f"{sizes.min()}" if sizes.min() == sizes.max() else f"{sizes.min()} to {sizes.max()}"
        text += (
            f"Repeats: {len(cells)} cells of {runs} runs (runs whose config differs only in `run.repeat`). "
            "Tables 1 and 2 rank cells, Table 3 lists every run.\n"
        )
    same = same_for_every_run(frame)
    if same:
        text += f"\nSame for every run: {', '.join(describe(c, v) for c, v in same.items())}.\n"
    return text


def _notes(frame: pd.DataFrame, reasons: dict[str, str]) -> str:
    notes = [
        f"- **{o}** ({', '.join(sorted(set(frame.loc[frame['outcome'] == o, 'server'])))}): "
        f"{_MEANING.get(o, 'an outcome this report does not know.')}{_reasons(frame, o, reasons)}"
        for o in count_outcomes(frame["outcome"])
        if o != "ok"
    ]
    if frame["partial"].any():
        notes.append(
            "- **(partial)**: numbers from a run that did not end cleanly cover only part of it; "
            "they are shown but not ranked."
        )
    return "## Notes\n\n" + "\n".join(notes) + "\n" if notes else ""


def _reasons(frame: pd.DataFrame, outcome: str, reasons: dict[str, str]) -> str:
    """Each run's own reason, for an outcome whose run may have left no log to look in (a program that
    does not exist writes no server.log): the report is the one place a reader is sure to look."""
    if outcome not in _REASONS or not reasons:
        return ""
    runs = frame.loc[frame["outcome"] == outcome, "run"]
    return "".join(f"\n  - `{run}`: {reasons[run]}" for run in runs if run in reasons)


def _why(frame: pd.DataFrame, why: dict[str, list[tuple[str, str]]]) -> str:
    """Each run's diagnoses (runner/run/diagnosis.py) in words, under its server and directory, in the frame's
    order: what the tables' Why column names."""
    told = [
        f"- **{row['server']}** (`{row['run']}`):\n" + "\n".join(f"  - **{k}**: {says}" for k, says in why[row["run"]])
        for row in frame.to_dict("records")
        if why.get(row["run"])
    ]
    if not told:
        return ""
    return (
        "## Why\n\nWhat each run showed about its server, from the kernel's TCP counters, the load generator's "
        "connections and the server's own end (each run's `result.json` keeps the numbers, under `diagnoses`):\n\n"
        + "\n".join(told)
        + "\n"
    )


def _objectives(frame: pd.DataFrame) -> str:
    """The runs that broke an objective (run.slo), with what was measured; "" when none did."""
    rows = [r for r in frame.to_dict("records") if r["objectives"] and r["objectives"] != "met"]
    if not rows:
        return ""
    told = "\n".join(f"- **{r['server']}** (`{r['run']}`): {r['objectives']}" for r in rows)
    return (
        "## Objectives\n\nRuns that broke an objective of `run.slo` (the command exits 5): the objective, what "
        "was measured, and its bound; in brackets, a flag that says the number may not be the server's own.\n\n"
        f"{told}\n"
    )


def _column_legend(shown: set[str], repeated: bool, thresholds: dict[str, Any], grouped: bool = False) -> str:
    """A line per shown column (runner/report/columns.py's legends), after the Rank's; a cell's intervals and
    outcome explained when the tables rank cells."""
    rank = _RANK[repeated].format(**thresholds)
    if grouped:
        rank += (
            " Each sub-table is ranked on its own: its rows ran under the conditions its sub-heading names, and only "
            "the server differs."
        )
    lines = [(["Rank"], rank)]
    for columns, text in legend_lines(shown):
        if repeated and columns[0].name == "outcome":
            text += " For a cell, how many of its runs ended which way."
        lines.append(([c.header for c in columns], text))
        if repeated and columns[0].name == INTERVALS[0]:  # the cells' intervals, after the first one's line
            lines.append(([BY_NAME[name].header + CI for name in INTERVALS], _CI_LEGEND))
    lines.append((["—"], "unknown. A missing number is never shown as 0."))
    return "## Columns\n\n" + "\n".join(f"- {', '.join(f'**{h}**' for h in hs)}: {text}" for hs, text in lines) + "\n"


def _who(rows: Iterable[dict]) -> str:
    """Runs named by server and directory, one group per cell: "select (0, 3), thread (1)"."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for row in rows:
        groups.setdefault(row["cell"], (row["server"], []))[1].append(row["run"])
    return ", ".join(f"{server} ({', '.join(runs)})" for server, runs in groups.values())


def _flags_legend(frame: pd.DataFrame, cells: pd.DataFrame, thresholds: dict[str, Any]) -> str:
    """Each flag that occurs: what it means, with these thresholds, and which runs (or cells) have it."""
    runs = frame.to_dict("records")
    seen = {f for r in runs for f in split_flags(r["flags"])}
    having = {flag: [r for r in runs if flag in split_flags(r["flags"])] for flag in seen}
    unstable = set(cells.loc[cells["flags"].map(lambda flags: "unstable" in split_flags(flags)), "cell"])
    if unstable:  # a cell's flag: name the runs whose spread it measured
        having["unstable"] = [r for r in runs if r["cell"] in unstable and is_complete(r)]
    lines = []
    for flag in ordered_flags(having):
        text = _flag_text(flag, thresholds) or "a flag this report does not know."
        lines.append(f"- **{flag}**: {text} Seen in: {_who(having[flag])}.")
    return "## Flags\n\n" + "\n".join(lines) + "\n" if lines else ""


def _window(frame: pd.DataFrame) -> str:
    """What the numbers cover: the steady window, unless a run fell back to the whole run."""
    kinds: dict[str | None, list[dict]] = {}
    for row in frame.to_dict("records"):
        if not is_missing(row["rps"]):
            window = None if is_missing(row["window"]) or row["window"] not in _WINDOWS else row["window"]
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
        pins = tuple(None if is_missing(row[c]) else row[c] for c in ("server_cpus", "locust_cpus"))
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
    width = max((len(r["rerun"]) for r in rows if not is_missing(r["rerun"]) and r["rerun"]), default=0)
    lines = [
        f"{r['rerun']:<{width}}  # {r['run']}"
        if not is_missing(r["rerun"]) and r["rerun"]
        else f"# {r['run']}: no command recorded"
        for r in rows
    ]
    cells = (
        f" `{CELLS_FILE}` has one row per cell: `n`, the medians of its complete runs under the names `{CSV_FILE}` "
        "uses, the 95% intervals (`rps_low`, `rps_high`, `avg_ms_low`, `avg_ms_high`) and `rps_spread`."
        if repeated
        else ""
    )
    # the lines name their repetition: with run.repeats=N added, one would run once (so that is refused)
    one_repeat = (
        "Each line reruns one repetition (`run.repeat=N`); for N of them, replace it with `run.repeats=N`.\n\n"
        if repeated
        else ""
    )
    return (
        "## Reproduce\n\nOne command per run, from the repository root (the comment is the run's directory):\n\n"
        "```sh\n"
        + "\n".join(lines)
        + "\n```\n\n"
        + one_repeat
        + f"Raw data: `{CSV_FILE}` beside this report has one row per run, unrounded, with more columns than the "
        "tables: `max_ms`; `total_requests` and `served`, Locust's and the server's own count over the whole run, "
        "ramp-up included; `window`, `repeat`, `cell` (runs of one cell differ only in `run.repeat`) and `rerun`."
        f"{cells} Each run's directory holds its `result.json`, Locust's CSV files and `locust.html`, `server.log` "
        "and `locust.log`.\n"
    )


def _provenance(provenance: dict[str, Any]) -> str:
    if not provenance:
        return "not recorded"
    keys = [k for k in _PROVENANCE_LABELS if k in provenance] + sorted(set(provenance) - set(_PROVENANCE_LABELS))
    return "; ".join(f"{_PROVENANCE_LABELS.get(k, k)}: {cell_text(provenance[k], '{}')}" for k in keys)


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
        "see runner/report/compare.py)",
    )  # fmt: skip
    parser.add_argument(
        "--fail-on-regression", action="store_true",
        help=f"with --baseline: exit {exits.EXIT_REGRESSION} when a row's RPS (or capacity) is significantly lower "
        "than the baseline's, and by at least --min-change",
    )  # fmt: skip
    parser.add_argument("--min-change", type=float, default=compare.MIN_CHANGE,
                        help="the least drop a regression is (default %(default)g: 20%%)")  # fmt: skip
    args = parser.parse_args(argv)
    for directory in (args.directory, args.baseline):
        if directory is not None and not directory.is_dir():
            parser.error(f"{directory}: no such directory")  # exits 2
    if args.fail_on_regression and args.baseline is None:
        parser.error("--fail-on-regression compares with a baseline: give --baseline OLD")
    runs = load_runs(args.directory)
    if not runs:
        print(f"{args.directory}: no run found (a run's directory holds a result.json or .hydra/config.yaml)")
        return exits.EXIT_RUNS_NOT_OK
    print(write_report(args.directory, runs))
    if args.baseline is None:
        return 0
    path, text = compare.write_comparison(args.directory, args.baseline, args.noise_ratio)
    print(f"{path}\n\n{text}", end="")
    slower = compare.regressions(load_runs(args.baseline), runs, args.noise_ratio, args.min_change)
    if args.fail_on_regression and slower:
        print(f"regression against {args.baseline}: {'; '.join(slower)}: exit status {exits.EXIT_REGRESSION}")
        return exits.EXIT_REGRESSION
    return 0
