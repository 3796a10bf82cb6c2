"""The sweep report: a directory of runs -> `report.md` (rankings, legends, how to reproduce),
`results.csv` (one raw row per run) and, when runs were repeated, `cells.csv` (one row per cell).

Strategy:
- A job directory is any directory holding `result.json` or `.hydra/config.yaml`; the sweep root
  (`multirun.yaml`, no `.hydra/`) is not one. Finding them by walking means the same code reports a
  sweep, a single run, or the whole of `outputs/`.
- Each job becomes one `Run`, and loading never raises: no result.json -> `incomplete` (killed before
  it finished), an unreadable one -> `corrupt`. Names come from the result, then from its resolved
  config, then from `.hydra/config.yaml`, else "?". A number is never invented: unknown is None,
  shown as "—", written to the CSV as an empty cell. Fields a result predates are unknown too.
- A cell is every run with the same config but for `run.repeat`; its id is a hash of that config
  (or, with no config known, of the identity columns). Config keys that differ between runs but
  have no column of their own go to a Settings column, so two rows never look alike by accident.
- Rows are ranked only against rows run under the same conditions: a group is every run whose config
  (or, with none, identity columns) matches but for `server.name`, `run.repeat` and the other
  `server.*` keys, which belong to the server (single's keep-alive default) unless some run's command
  sets them. With several groups, each ranking table has one sub-table per group, in order of first
  appearance, under a `###` sub-heading naming the conditions that differ between groups.
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
import hashlib
import json
import math
import os
import re
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from runner import stats
from runner.config import ValidityConfig
from runner.result import OUTCOMES, RESULT_FILE, Metrics, RunResult, read_result, write_atomic
from runner.validity import LEGEND as FLAG_LEGEND
from runner.workers_report import section as workers_section

MISSING = "—"
REPORT_FILE, CSV_FILE, CELLS_FILE = "report.md", "results.csv", "cells.csv"
# Identity keys, spelled the same in RunResult's sections and in the Hydra config. The _SHOWN ones have
# columns of their own; any other config key that differs between runs goes to the Settings column.
_SHOWN = ("server.name", "server.keepalive", "load.users", "load.spawn_rate", "workload.name", "run.repeat")
_KEYS = (*_SHOWN, "server.served")
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


@dataclass
class Run:
    """One job directory as the report sees it. Fields up to `rerun` are the frame's columns, in order."""

    server: str = "?"
    workload: str = "?"
    keepalive: bool | None = None
    users: int | None = None
    spawn_rate: float | None = None
    settings: str = ""  # config keys that differ between runs and have no column: set by to_frame
    repeat: int | None = None  # config run.repeat
    requests: int | None = None
    failures: int | None = None
    fail_pct: float | None = None
    rps: float | None = None
    goodput: float | None = None
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    total_requests: int | None = None  # Locust's count over the whole run, ramp-up included
    served: int | None = None  # the server's own count (its SERVED line)
    server_cpu_pct: float | None = None
    locust_cpu_pct: float | None = None
    peak_memory_mb: float | None = None  # the server's
    requests_per_cpu_s: float | None = None  # the server's
    outcome: str = "incomplete"  # one of OUTCOMES, or "incomplete" / "corrupt"
    partial: bool = False
    flags: tuple[str, ...] = ()
    window: str | None = None  # "steady" | "whole-run"
    server_cpus: str | None = None  # "0", "1-3"; "any": not pinned; None: not recorded
    locust_cpus: str | None = None
    cell: str = ""  # hash of the config but for run.repeat: set by to_frame
    group: str = ""  # the conditions the run is ranked under, in words ("" with one group): set by to_frame
    run: str = "."  # job directory, relative to the report directory
    rerun: str = ""  # the command that repeats the run
    detail: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, as recorded


COLUMNS = tuple(f.name for f in fields(Run) if f.name not in ("detail", "provenance", "config"))
_IDENTITY = COLUMNS[: COLUMNS.index("settings") + 1]
_NUMBERS = COLUMNS[COLUMNS.index("requests") : COLUMNS.index("requests_per_cpu_s") + 1]
_INTERVALS = ("rps_low", "rps_high", "rps_spread", "avg_ms_low", "avg_ms_high")
CELL_COLUMNS = ("cell", "group", *_IDENTITY, "runs", "n", *_INTERVALS, *_NUMBERS, "outcome", "flags")
_KINDS = {"int | None": "Int64", "float | None": "Float64", "bool | None": "boolean", "bool": "bool"}
_DTYPES = {f.name: _KINDS[f.type] for f in fields(Run) if f.type in _KINDS}
# a cell's numbers are medians: 37 and 38 failures make 37.5
_CELL_DTYPES = {name: _DTYPES[name] for name in _IDENTITY if name in _DTYPES} | {"n": "Int64"}
_CELL_DTYPES |= {name: "Float64" for name in (*_INTERVALS, *_NUMBERS)}

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
# Condition keys said in words in a group's sub-heading (in this order), by the column that shows them
_WORDS = {
    "workload.name": "workload",
    "server.keepalive": "keepalive",
    "load.users": "users",
    "load.spawn_rate": "spawn_rate",
}
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


def load_runs(directory: Path | str) -> list[Run]:
    """Every job directory under `directory` as a Run, in natural order of their paths; never raises."""
    root = Path(directory)
    return sorted((_load_run(job, root) for job in _job_dirs(root)), key=lambda run: _natural(run.run))


def to_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, columns COLUMNS; missing numbers are <NA>. This is results.csv."""
    configs = [_flatten(run.config) for run in runs]
    differ = sorted(_differing(configs) - set(_SHOWN))
    labels = _group_labels(runs, configs)
    rows = []
    for run, config, label in zip(runs, configs, labels, strict=True):
        row = {name: getattr(run, name) for name in COLUMNS}
        row["flags"] = ",".join(run.flags)
        row["settings"] = ", ".join(f"{key}={_setting(config[key])}" for key in differ if key in config)
        identity = {key: row[key] for key in _IDENTITY if key != "settings"}
        canonical = json.dumps(config or identity, sort_keys=True, default=str)
        row["cell"] = hashlib.sha1(canonical.encode()).hexdigest()[:8]
        row["group"] = label
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(_DTYPES)


def to_cells(frame: pd.DataFrame, unstable_spread: float) -> pd.DataFrame:
    """One row per cell (in order of first appearance): medians over its complete runs, n, the 95%
    intervals of mean RPS and mean response time, and flags (its runs', plus `unstable`). cells.csv."""
    rows = []
    for cell, group in frame.groupby("cell", sort=False):
        runs = group.to_dict("records")
        complete = [r for r in runs if _complete(r)]
        row = {key: runs[0][key] for key in ("group", *_IDENTITY)} | {"cell": cell, "n": len(complete)}
        row["runs"] = " ".join(r["run"] for r in runs)
        for name in _NUMBERS:
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
    frame: pd.DataFrame, title: str, provenance: dict[str, Any] | None, validity: dict[str, Any] | None = None
) -> str:
    """The report as markdown: summary, rankings, legends, notes on every non-ok outcome, how to reproduce.
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
    validity = next((v for run in runs if isinstance(v := _get(run.config, "run.validity"), dict)), None)
    write_atomic(root / CSV_FILE, lambda f: f.write(frame.to_csv(index=False)))
    cells = to_cells(frame, _thresholds(validity)["unstable_spread"])
    if (cells["n"] > 1).any():
        write_atomic(root / CELLS_FILE, lambda f: f.write(cells.to_csv(index=False)))
    title = f"Stress test report: {root.resolve().name}"
    report = render(frame, title, provenance, validity)
    report += f"\n{extra}" if (extra := workers_section(root)) else ""  # runner/workers_report.py
    return write_atomic(root / REPORT_FILE, lambda f: f.write(report))


# --- loading ------------------------------------------------------------------------------------


def _job_dirs(root: Path) -> Iterator[Path]:
    for here, dirs, files in os.walk(root):  # unreadable subdirectories are skipped, not raised
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .hydra/, .git/: never job dirs
        path = Path(here)
        has_hydra = (path / ".hydra" / "config.yaml").is_file()
        sweep_root = "multirun.yaml" in files and not (path / ".hydra").is_dir()
        if (RESULT_FILE in files or has_hydra) and not sweep_root:
            yield path


def _load_run(job: Path, root: Path) -> Run:
    where = job.relative_to(root).as_posix()
    hydra = _yaml(job / ".hydra" / "config.yaml")
    overrides = _yaml(job / ".hydra" / "overrides.yaml")
    rerun = ""
    if isinstance(overrides, list) and all(isinstance(o, str) for o in overrides):
        rerun = shlex.join(["python", "-m", "runner", *overrides])  # as runner.experiment writes it
    hydra = hydra if isinstance(hydra, dict) else {}
    if not (job / RESULT_FILE).exists():
        return _make_run(where, "incomplete", [hydra], config=hydra, rerun=rerun)
    try:
        result = read_result(job / RESULT_FILE)
        sections = {"server": result.server, "load": result.load, "workload": result.workload}
        config = result.config if isinstance(result.config, dict) and result.config else hydra
        rerun = result.rerun if isinstance(result.rerun, str) and result.rerun else rerun
        return _make_run(where, result.outcome, [sections, result.config, hydra], result, config=config, rerun=rerun)
    except Exception as exc:  # any bad file must cost one row, never the sweep its report
        return _make_run(where, "corrupt", [hydra], detail=str(exc), config=hydra, rerun=rerun)


def _make_run(
    where: str,
    outcome: str,
    sources: list[Any],
    result: RunResult | None = None,
    detail: str = "",
    config: dict | None = None,
    rerun: str = "",
) -> Run:
    known = {key: next((v for s in sources if (v := _get(s, key)) is not None), None) for key in _KEYS}
    m = result.metrics if result is not None and isinstance(result.metrics, Metrics) else Metrics()
    requests, failures, ratio = _int(m.requests), _int(m.failures), _float(m.failure_ratio)
    if ratio is None and requests and failures is not None:
        ratio = failures / requests
    used = result.resources if result is not None else None
    flags = result.flags if result is not None and isinstance(result.flags, list) else []
    return Run(
        server=_text(known["server.name"]),
        workload=_text(known["workload.name"]),
        keepalive=known["server.keepalive"] if isinstance(known["server.keepalive"], bool) else None,
        users=_int(known["load.users"]),
        spawn_rate=_float(known["load.spawn_rate"]),
        repeat=_int(known["run.repeat"]),
        requests=requests,
        failures=failures,
        fail_pct=None if ratio is None else ratio * 100,
        rps=_float(m.rps),
        goodput=_float(m.goodput),
        avg_ms=_float(m.avg_ms),
        p50_ms=_float(m.median_ms),
        p95_ms=_float(m.p95_ms),
        p99_ms=_float(m.p99_ms),
        max_ms=_float(m.max_ms),
        total_requests=_int(m.total_requests),
        served=_int(known["server.served"]),
        server_cpu_pct=_float(_get(used, "server.cpu_pct")),
        locust_cpu_pct=_float(_get(used, "locust.cpu_pct")),
        peak_memory_mb=_float(_get(used, "server.peak_memory_mb")),
        requests_per_cpu_s=_float(_get(used, "server.requests_per_cpu_s")),
        outcome=outcome,
        partial=m.partial is True,
        flags=tuple(flag for flag in flags if isinstance(flag, str)),
        window=m.window if isinstance(m.window, str) else None,
        server_cpus=_cpus(result.server) if result is not None else None,
        locust_cpus=_cpus(result.load) if result is not None else None,
        run=where,
        rerun=rerun,
        detail=result.detail if result is not None else detail,
        provenance=result.provenance if result is not None and isinstance(result.provenance, dict) else {},
        config=config or {},
    )


def _yaml(path: Path) -> Any:
    try:
        cfg = OmegaConf.load(path)
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # an interpolation that only resolves inside Hydra: keep it as written
            return OmegaConf.to_container(cfg, resolve=False)
    except Exception:  # missing, not YAML: the row falls back to "?"
        return None


def _get(data: Any, key: str) -> Any:
    """data["a"]["b"] for key "a.b"; None wherever a level is missing or not a mapping."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, without `run.repeat`: what makes runs one cell."""
    if not isinstance(data, dict):
        return {}
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flatten(value, f"{name}.")
        elif name != "run.repeat":
            out[name] = value
    return out


def _differing(configs: list[dict[str, Any]]) -> set[str]:
    """Keys with more than one value among the configs that have them."""
    values: dict[str, set[str]] = {}
    for config in configs:
        for key, value in config.items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
    return {key for key, seen in values.items() if len(seen) > 1}


def _group_labels(runs: list[Run], configs: list[dict[str, Any]]) -> list[str]:
    """Each run's group (see the module docstring) in words, e.g. "workload cpu, 200 users": only the keys
    that differ between groups, leaving out any other key the worded ones already determine (a workload's
    params). All "" when there is one group."""
    explicit = {key for run in runs for key in _overridden(run.rerun)}
    conditions = [
        {k: _canonical(v) for k, v in (config or _identity_config(run)).items() if k != "server.name"}
        for run, config in zip(runs, configs, strict=True)
    ]
    conditions = [{k: v for k, v in c.items() if not k.startswith("server.") or k in explicit} for c in conditions]
    groups = list({_canonical(c): c for c in conditions}.values())
    if len(groups) < 2:
        return [""] * len(runs)
    keys = {key for group in groups for key in group}
    varying = {key for key in keys if len({g.get(key) for g in groups}) > 1}
    worded = [key for key in _WORDS if key in varying]

    def determined(key: str) -> bool:  # one value per combination of the worded keys
        seen: dict[tuple, Any] = {}
        return all(seen.setdefault(tuple(g.get(w) for w in worded), g.get(key)) == g.get(key) for g in groups)

    said = worded + sorted(key for key in varying - set(worded) if not determined(key))
    return [", ".join(_condition(key, c.get(key)) for key in said) for c in conditions]


def _identity_config(run: Run) -> dict[str, Any]:
    """What a run without a config is known by, under its config key names."""
    return {"server.name": run.server, "server.keepalive": run.keepalive, "workload.name": run.workload,
            "load.users": run.users, "load.spawn_rate": run.spawn_rate}  # fmt: skip


def _overridden(rerun: str) -> set[str]:
    """The config keys a run's command sets: "python -m runner server.keepalive=false" -> {"server.keepalive"}."""
    try:
        words = shlex.split(rerun or "")
    except ValueError:
        return set()
    return {word.split("=", 1)[0].lstrip("+~") for word in words if "=" in word and not word.startswith("-")}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _condition(key: str, canonical: str | None) -> str:
    value = None if canonical is None else json.loads(canonical)
    if key in _WORDS and value is not None and value != "?":
        return _describe(_WORDS[key], value)
    return f"{key}={_setting(value)}"


def _setting(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _cpus(section: Any) -> str | None:
    """A section's `cpus` as "0" or "1-3"; "any" when it was not pinned (None); None when not recorded."""
    if not isinstance(section, dict) or "cpus" not in section:
        return None
    cpus = section["cpus"]
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


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _text(value: Any) -> str:
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value)
    return str(value) if ok else "?"


def _natural(text: str) -> list[int | str]:
    """'2' before '10': Hydra numbers its multirun job directories 0, 1, ... 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# --- rendering ----------------------------------------------------------------------------------


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
    given = {k: v for k, v in (validity or {}).items() if k in defaults and _float(v) is not None}
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


def _describe(column: str, value: Any) -> str:
    if column == "workload":
        return f"workload {value}"
    if column == "keepalive":
        return f"keep-alive {'yes' if value else 'no'}"
    if column == "users":
        return f"{value} user{'s' if value != 1 else ''}"
    return f"spawn rate {value:g}/s"


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
        return _group(row, metric), -value if descending else value, str(row["server"]), _natural(first_run)

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
        text += f"\nSame for every run: {', '.join(_describe(c, v) for c, v in same.items())}.\n"
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
    runs = sorted(frame.to_dict("records"), key=lambda r: (place[r["cell"]], _repeat(r), _natural(r["run"])))
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
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory}: no such directory")  # exits 2
    print(write_report(args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
