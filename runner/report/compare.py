"""Compare a sweep with a baseline: `python -m runner.report NEW --baseline OLD`.

Strategy:
- Rows are matched by the conditions a run was measured under: its resolved config's `server.*`,
  `load.*`, `workload.*` and `run.*` keys, but for `run.repeat` (repeats are the samples of a row) and
  the keys that do not change the measurement (`run.validity.*` thresholds, `run.deadline_slack_s`),
  and by the cores the server actually had (the Cores column: `run.server_cores=all` is 2 cores on one
  machine and 16 on another). A row in one sweep only is listed as added or removed, never compared
  with something else.
- Per row: the change in median RPS, median p99 and, when a capacity search ran, median maximum
  sustainable RPS, each marked significant or not:
  - with two or more complete runs on both sides, Welch's t-test at 95% (unequal variances; Student t
    quantiles from runner/report/stats.py), on the runs' values;
  - otherwise there is no interval ("no interval: single runs"), and a change counts only when the
    larger value is more than NOISE_RATIO times the smaller (`--noise-ratio`). Measured here (2 cores
    shared with four other jobs, load=smoke, the four servers, 2 runs each in three sweeps): the two
    identical runs of one sweep differed by up to 2.7x in RPS (single: 275 vs 734 req/s), and the same
    server's runs across sweeps minutes apart by up to 7.9x; p99 moved by 2x and in steps of Locust's
    2-significant-digit histogram. So the default is 3x: above what a pair of identical runs showed
    within a sweep. It is a floor under which nothing can be concluded from single runs, not a promise
    that larger changes are real (between sweeps this machine varied more). On a quiet, pinned machine
    pass a smaller one (e.g. --noise-ratio 1.2), measured the same way. Measured again with the
    machine otherwise idle (server=process,select, no keep-alive, echo, 5 s runs, 3 repeats, two
    sweeps): six identical runs of select spread 1.6x (1,385-2,225 req/s, Locust-bound), of process
    1.3x (237-306). So even on a quiet day a single pair can differ by 1.6x; 3x stays the default.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from runner.record import Run, load_runs
from runner.report import stats
from runner.report.runs import to_frame
from runner.result import write_atomic

COMPARISON_FILE = "comparison.md"
NOISE_RATIO = 3.0  # larger / smaller; see the module docstring for the measurement behind it
_IGNORED = ("run.repeat", "run.validity.", "run.deadline_slack_s")
_METRICS = (("RPS", "rps", True), ("p99 ms", "p99_ms", False), ("Capacity RPS", "capacity", True))


@dataclass
class Side:
    values: dict[str, list[float]]  # metric -> the complete runs' values
    n: int


def conditions(run: Run, row: dict[str, Any]) -> str:
    """The row a run belongs to, as canonical JSON of its config without repeat or thresholds, and its cores (`row`,
    its frame row)."""
    flat = _flatten(run.config)
    kept = {k: v for k, v in flat.items() if not any(k == i or (i.endswith(".") and k.startswith(i)) for i in _IGNORED)}
    if row.get("cores") is not None:
        kept["cores"] = row["cores"]
    return json.dumps(kept, sort_keys=True, default=str)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def _sides(runs: list[Run]) -> tuple[dict[str, Side], dict[str, str]]:
    """Row key -> its complete runs' values; row key -> its label (server, and conditions in words)."""
    rows = to_frame(runs).astype(object).to_dict("records")
    sides: dict[str, Side] = {}
    labels: dict[str, str] = {}
    for run, row in zip(runs, rows, strict=True):
        key = conditions(run, row)
        group = "" if pd.isna(row["group"]) else row["group"]
        labels.setdefault(key, f"{row['server']}" + (f" ({group})" if group else ""))
        side = sides.setdefault(key, Side({m: [] for _, m, _ in _METRICS}, 0))
        if row["partial"] or pd.isna(row["rps"]) or run.outcome not in ("ok", "completed_with_errors"):
            continue
        side.n += 1
        for _, metric, _ in _METRICS:
            value = _capacity(run) if metric == "capacity" else row[metric]
            if not pd.isna(value) and math.isfinite(value):
                side.values[metric].append(float(value))
    return sides, labels


def _capacity(run: Run) -> float | None:
    value = run.capacity.get("max_rps") if run.capacity else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def welch(a: list[float], b: list[float]) -> bool | None:
    """Whether the means differ at 95% (Welch's t-test); None below two values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(b) - statistics.fmean(a)
    if va + vb == 0:
        return diff != 0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return abs(diff) / math.sqrt(va + vb) > stats.t_975(max(1, math.floor(df)))


def _verdict(old: list[float], new: list[float], ratio: float) -> tuple[str, str]:
    """(change, significance) of one metric."""
    if not old or not new:
        return "—", "—"
    before, after = stats.median(old), stats.median(new)
    change = "—" if before == 0 else f"{(after - before) / before * 100:+.1f}%"
    tested = welch(old, new)
    if tested is not None:
        return change, "yes (Welch t)" if tested else "no (Welch t)"
    beyond = min(before, after) > 0 and max(before, after) / min(before, after) > ratio
    return change, f"no interval: single runs; {'beyond' if beyond else 'within'} {ratio:g}x"


def _number(values: list[float], fmt: str) -> str:
    return fmt.format(stats.median(values)) if values else "—"


def compare(baseline: list[Run], new: list[Run], ratio: float = NOISE_RATIO) -> str:
    """The comparison as markdown: one table row per row present in both, then the added and removed rows."""
    old_sides, old_labels = _sides(baseline)
    new_sides, new_labels = _sides(new)
    shared = [key for key in new_sides if key in old_sides]
    shown = [(h, m, fmt) for h, m, fmt in (("RPS", "rps", "{:.1f}"), ("p99 ms", "p99_ms", "{:g}"),
             ("Capacity RPS", "capacity", "{:.1f}")) if m != "capacity" or any(
             old_sides[k].values[m] or new_sides[k].values[m] for k in shared)]  # fmt: skip
    rows = []
    single = False
    for key in shared:
        old, now = old_sides[key], new_sides[key]
        row = {"Row": new_labels[key], "n": f"{old.n} → {now.n}"}
        single |= old.n < 2 or now.n < 2
        for header, metric, fmt in shown:
            change, significant = _verdict(old.values[metric], now.values[metric], ratio)
            values = (_number(old.values[metric], fmt), _number(now.values[metric], fmt))
            row[f"{header} (base → new)"] = "—" if values == ("—", "—") else " → ".join(values)
            row[f"{header} change"] = change
            row[f"{header} significant"] = significant
        rows.append(row)
    parts = []
    if rows:
        table = pd.DataFrame(rows)
        align = ["left", "right"] + ["right", "right", "left"] * len(shown)
        parts.append(table.to_markdown(index=False, tablefmt="github", disable_numparse=True, colalign=align))
    else:
        parts.append("No row was measured under the same conditions in both sweeps.")
    notes = [
        "Values are baseline → new, medians of each row's complete runs; n counts them. A row is a set of "
        "conditions (server, load, workload, run settings) present in both sweeps."
    ]
    notes.append(
        "Significant: with two or more runs on both sides, Welch's t-test on the runs' values at 95%."
        if not single
        else "Significant: with two or more runs on both sides, Welch's t-test on the runs' values at 95%; "
        f"otherwise there is no interval (single runs), and a change counts only beyond the noise floor: the "
        f"larger value over {ratio:g}x the smaller (identical runs on a shared machine have differed by 2.7x)."
    )
    added = [new_labels[k] for k in new_sides if k not in old_sides]
    removed = [old_labels[k] for k in old_sides if k not in new_sides]
    if added:
        notes.append(f"Added (only in the new sweep): {', '.join(added)}.")
    if removed:
        notes.append(f"Removed (only in the baseline): {', '.join(removed)}.")
    return "\n".join(parts) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


MIN_CHANGE = 0.2  # a regression is also at least this much slower: see `regressions`


def regressions(
    baseline: list[Run], new: list[Run], ratio: float = NOISE_RATIO, least: float = MIN_CHANGE
) -> list[str]:
    """The rows significantly slower than in the baseline, in words: RPS (or capacity) lower, significantly by
    `_verdict`'s test (Welch's with repeats on both sides, the noise floor without), and by at least `least`
    of the baseline's -- a shared machine moves a median by more than Welch's test assumes between sweeps, so
    significance alone would fail a sweep compared with an identical one. p99 is reported, not gated: a tail
    moves with the machine more than throughput does."""
    old_sides, _ = _sides(baseline)
    new_sides, labels = _sides(new)
    found = []
    for key, now in new_sides.items():
        old = old_sides.get(key)
        for header, metric, higher_better in _METRICS:
            if old is None or not higher_better or not old.values[metric] or not now.values[metric]:
                continue
            before, after = stats.median(old.values[metric]), stats.median(now.values[metric])
            change, significant = _verdict(old.values[metric], now.values[metric], ratio)
            if after < before * (1 - least) and significant.startswith(("yes", "no interval: single runs; beyond")):
                found.append(f"{labels[key]}: {header} {before:,.1f} → {after:,.1f} ({change})")
    return found


def write_comparison(new_dir: Path, baseline_dir: Path, ratio: float = NOISE_RATIO) -> tuple[Path, str]:
    """Write comparison.md into the new sweep's directory; (its path, its text)."""
    text = (
        f"# Comparison: {Path(new_dir).resolve().name} against baseline {Path(baseline_dir).resolve().name}\n\n"
        + compare(load_runs(baseline_dir), load_runs(new_dir), ratio)
    )
    return write_atomic(Path(new_dir) / COMPARISON_FILE, lambda f: f.write(text)), text
