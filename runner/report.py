"""The sweep report: a directory of runs -> `report.md` (two rankings) and `results.csv` (raw rows).

Strategy:
- A job directory is any directory holding `result.json` or `.hydra/config.yaml`; the sweep root
  (`multirun.yaml`, no `.hydra/`) is not one. Finding them by walking means the same code reports a
  sweep, a single run, or the whole of `outputs/`.
- Each job becomes one `Run`, and loading never raises: no result.json -> `incomplete` (killed before
  it finished), an unreadable one -> `corrupt`. Names come from the result, then from its resolved
  config, then from `.hydra/config.yaml`, else "?". A number is never invented: unknown is None,
  shown as "—", written to the CSV as an empty cell.
- `to_frame` is the one flat table; it is written as-is to `results.csv` and rendered as markdown.
- Ranking: only complete numbers are ranked. Rows without the metric, or with partial numbers (a run
  that did not end cleanly), come last, unranked but shown. Nothing is dropped.
- `render` is pure and deterministic (fixed formats and tie-breaks, no clock), so it is tested against
  an exact string, as pyperf tests its markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from runner.result import OUTCOMES, RESULT_FILE, Metrics, RunResult, read_result

MISSING = "—"
REPORT_FILE, CSV_FILE = "report.md", "results.csv"
# Identity keys, spelled the same in RunResult's sections and in the Hydra config.
_KEYS = ("server.name", "server.keepalive", "server.served", "load.users", "load.spawn_rate", "workload.name")
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
# Table columns: header, frame column, format. "{}" columns are text (left-aligned), the rest numbers.
_TABLE = (
    ("Server", "server", "{}"),
    ("Workload", "workload", "{}"),
    ("Keep-alive", "keepalive", "{}"),
    ("Users", "users", "{:.0f}"),
    ("Spawn rate", "spawn_rate", "{:g}"),
    ("Requests", "requests", "{:.0f}"),
    ("Failures", "failures", "{:.0f}"),
    ("Fail %", "fail_pct", "{:.2f}"),
    ("RPS", "rps", "{:.1f}"),
    ("Avg ms", "avg_ms", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("Outcome", "outcome", "{}"),
)
_LEGEND = """\
## Columns

- **Rank**: place by the table's metric. "—" means not ranked: the run has no number for it, or only partial \
numbers. Unranked rows come last.
- **Keep-alive**: whether the server kept connections open between requests.
- **Users**, **Spawn rate**: Locust's simulated users, and how many it started per second.
- **Requests**, **Failures**, **Fail %**: Locust's totals for the run; Fail % is failures per 100 requests.
- **RPS**: requests per second as Locust counts them, failed requests included, so fast failures inflate it.
- **Avg ms**: mean response time (exact).
- **p50 ms**, **p95 ms**, **p99 ms**: Locust's histogram percentiles, rounded to about 2 significant digits: \
do not rank on small differences.
- **Outcome**: how the run ended; "(partial)" marks numbers from a run that did not end cleanly.
- **—**: unknown. A missing number is never shown as 0.

`results.csv` beside this report holds the same rows unrounded, plus `max_ms`, `served` (SERVED: the server's own \
count of requests it answered, a cross-check on Requests) and `run` (the job directory).
"""


@dataclass
class Run:
    """One job directory as the report sees it. Fields up to `run` are the frame's columns, in order."""

    server: str = "?"
    workload: str = "?"
    keepalive: bool | None = None
    users: int | None = None
    spawn_rate: float | None = None
    requests: int | None = None
    failures: int | None = None
    fail_pct: float | None = None
    rps: float | None = None
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    served: int | None = None  # the server's own count (its SERVED line)
    outcome: str = "incomplete"  # one of OUTCOMES, or "incomplete" / "corrupt"
    partial: bool = False
    run: str = "."  # job directory, relative to the report directory
    detail: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)


COLUMNS = tuple(f.name for f in fields(Run) if f.name not in ("detail", "provenance"))
_DTYPES = {name: "Int64" for name in ("users", "requests", "failures", "served")}
_DTYPES |= {name: "Float64" for name in ("spawn_rate", "fail_pct", "rps", "avg_ms", "p50_ms", "p95_ms", "p99_ms")}
_DTYPES |= {"max_ms": "Float64", "keepalive": "boolean", "partial": "bool"}


def load_runs(directory: Path | str) -> list[Run]:
    """Every job directory under `directory` as a Run, in natural order of their paths; never raises."""
    root = Path(directory)
    return sorted((_load_run(job, root) for job in _job_dirs(root)), key=lambda run: _natural(run.run))


def to_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, columns COLUMNS; missing numbers are <NA>. This is results.csv."""
    rows = [{name: getattr(run, name) for name in COLUMNS} for run in runs]
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(_DTYPES)


def render(frame: pd.DataFrame, title: str, provenance: dict[str, Any] | None) -> str:
    """The report as markdown: summary, two rankings, legend, notes on every non-ok outcome."""
    if frame.empty:
        return f"# {title}\n\nNo runs were found.\n"
    tally = Counter(frame["outcome"])
    outcomes = [o for o in _OUTCOME_ORDER if o in tally] + sorted(set(tally) - set(_OUTCOME_ORDER))
    count = f"{len(frame)} run{'s' if len(frame) != 1 else ''}"
    parts = [
        f"# {title}\n",
        f"{count}: {', '.join(f'{tally[o]} {o}' for o in outcomes)}.\nMachine: {_provenance(provenance or {})}.\n",
        f"## Table 1. Ranked by requests per second\n\n{_table(frame, 'rps', descending=True)}\n",
        f"## Table 2. Ranked by average response time\n\n{_table(frame, 'avg_ms', descending=False)}\n",
        _LEGEND,
    ]
    notes = [
        f"- **{o}** ({', '.join(sorted(set(frame.loc[frame['outcome'] == o, 'server'])))}): "
        f"{_MEANING.get(o, 'an outcome this report does not know.')}"
        for o in outcomes
        if o != "ok"
    ]
    if frame["partial"].any():
        notes.append(
            "- **(partial)**: numbers from a run that did not end cleanly cover only part of it; "
            "they are shown but not ranked."
        )
    if notes:
        parts.append("## Notes\n\n" + "\n".join(notes) + "\n")
    return "\n".join(parts)


def write_report(directory: Path | str) -> Path:
    """Write report.md and results.csv into `directory` (each atomically); return the report's path."""
    root = Path(directory)
    runs = load_runs(root)
    frame = to_frame(runs)
    provenance = next((run.provenance for run in runs if run.provenance), {})
    _write_atomic(root / CSV_FILE, frame.to_csv(index=False))
    return _write_atomic(root / REPORT_FILE, render(frame, f"Stress test report: {root.resolve().name}", provenance))


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
    hydra = _hydra_values(job / ".hydra" / "config.yaml")
    if not (job / RESULT_FILE).exists():
        return _make_run(where, "incomplete", [hydra])
    try:
        result = read_result(job / RESULT_FILE)
        sections = {"server": result.server, "load": result.load, "workload": result.workload}
        return _make_run(where, result.outcome, [_values(sections), _values(result.config), hydra], result)
    except Exception as exc:  # any bad file must cost one row, never the sweep its report
        return _make_run(where, "corrupt", [hydra], detail=str(exc))


def _make_run(where: str, outcome: str, sources: list[dict], result: RunResult | None = None, detail: str = "") -> Run:
    known = {key: next((s[key] for s in sources if s.get(key) is not None), None) for key in _KEYS}
    m = result.metrics if result is not None else Metrics()
    requests, failures, ratio = _int(m.requests), _int(m.failures), _float(m.failure_ratio)
    if ratio is None and requests and failures is not None:
        ratio = failures / requests
    return Run(
        server=_text(known["server.name"]),
        workload=_text(known["workload.name"]),
        keepalive=known["server.keepalive"] if isinstance(known["server.keepalive"], bool) else None,
        users=_int(known["load.users"]),
        spawn_rate=_float(known["load.spawn_rate"]),
        requests=requests,
        failures=failures,
        fail_pct=None if ratio is None else ratio * 100,
        rps=_float(m.rps),
        avg_ms=_float(m.avg_ms),
        p50_ms=_float(m.median_ms),
        p95_ms=_float(m.p95_ms),
        p99_ms=_float(m.p99_ms),
        max_ms=_float(m.max_ms),
        served=_int(known["server.served"]),
        outcome=outcome,
        partial=m.partial is True,
        run=where,
        detail=result.detail if result is not None else detail,
        provenance=result.provenance if result is not None and isinstance(result.provenance, dict) else {},
    )


def _hydra_values(path: Path) -> dict[str, Any]:
    try:
        cfg = OmegaConf.load(path)
        return {key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False) for key in _KEYS}
    except Exception:  # missing, not YAML, not a mapping: the row falls back to "?"
        return {}


def _values(data: Any) -> dict[str, Any]:
    out = {}
    for key in _KEYS:
        value = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


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


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _table(frame: pd.DataFrame, metric: str, descending: bool) -> str:
    def group(row: dict) -> int:  # 0 ranked, 1 partial numbers, 2 no number
        return 2 if _missing(row[metric]) else int(bool(row["partial"]))

    def order(row: dict) -> tuple:
        value = 0.0 if group(row) == 2 else float(row[metric])
        return group(row), -value if descending else value, str(row["server"]), _natural(str(row["run"]))

    body, rank = [], 0
    for row in sorted(frame.to_dict("records"), key=order):
        rank += group(row) == 0
        row["outcome"] = f"{row['outcome']} (partial)" if row["partial"] else row["outcome"]
        body.append([str(rank) if group(row) == 0 else MISSING] + [_cell(row[c], fmt) for _, c, fmt in _TABLE])
    table = pd.DataFrame(body, columns=["Rank"] + [header for header, _, _ in _TABLE])
    align = ["right"] + ["left" if fmt == "{}" else "right" for _, _, fmt in _TABLE]
    return table.to_markdown(index=False, tablefmt="github", disable_numparse=True, colalign=align)


def _cell(value: Any, fmt: str) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value).replace("|", "\\|")  # a "|" in a name would split the cell


def _provenance(provenance: dict[str, Any]) -> str:
    if not provenance:
        return "not recorded"
    keys = [k for k in _PROVENANCE_LABELS if k in provenance] + sorted(set(provenance) - set(_PROVENANCE_LABELS))
    return "; ".join(f"{_PROVENANCE_LABELS.get(k, k)}: {_cell(provenance[k], '{}')}" for k in keys)


def _write_atomic(target: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
