"""A run's numbers second by second, for the over-time figure: from our own progress file, else Locust's
`_stats_history.csv`.

The two differ in what "p99" means, and the figure says which it shows:
- `locust_progress.jsonl` (runner/locust/progress.py): each line covers the last second only, so its
  RPS and p99 are that second's ("interval").
- `locust_stats_history.csv` (Locust 2.47, without `--csv-full-history`): a row per second whose
  percentiles are cumulative since the start of the run, and whose "Requests/s" is an average over a
  window ending 2 s before the last request (0 in a run's first seconds). So RPS is taken here from the
  difference of "Total Request Count" between rows instead, and p99 is marked "cumulative".
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from runner.run.load import CSV_PREFIX, PROGRESS_FILE


@dataclass
class Timeline:
    source: str  # "interval" (our progress file) | "cumulative" (Locust's history: p99 since the start)
    seconds: list[float] = field(default_factory=list)  # since the first sample
    rps: list[float | None] = field(default_factory=list)
    p99_ms: list[float | None] = field(default_factory=list)


def read_timeline(job_dir: Path) -> Timeline | None:
    """The run's series, or None when neither file has a usable sample."""
    return _from_progress(job_dir / PROGRESS_FILE) or _from_history(job_dir / f"{CSV_PREFIX}_stats_history.csv")


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # "N/A" before the first request, a cut line
        return None
    return number if number == number else None  # NaN


def _from_progress(path: Path) -> Timeline | None:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    points = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and _number(data.get("elapsed_s")) is not None:
            points.append(data)
    if not points:
        return None
    # the line Locust writes as it quits covers a fraction of a second with the users stopping: not load
    previous = [0.0] + [float(p["elapsed_s"]) for p in points[:-1]]
    points = [p for p, t in zip(points, previous, strict=True) if p.get("users") != 0 and p["elapsed_s"] - t >= 0.5]
    if not points:
        return None
    timeline = Timeline("interval")
    for data in points:
        timeline.seconds.append(float(data["elapsed_s"]))
        timeline.rps.append(_number(data.get("rps")))
        timeline.p99_ms.append(_number(data.get("p99_ms")))
    return timeline


def _from_history(path: Path) -> Timeline | None:
    try:
        with open(path, newline="") as f:
            text = f.read()
        rows = [r for r in csv.DictReader(text[: text.rfind("\n") + 1].splitlines()) if r.get("Name") == "Aggregated"]
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    samples = [(_number(r.get("Timestamp")), _number(r.get("Total Request Count")), _number(r.get("99%")))
               for r in rows]  # fmt: skip
    samples = [s for s in samples if s[0] is not None and s[1] is not None]
    if len(samples) < 2:
        return None
    timeline = Timeline("cumulative")
    start = samples[0][0]
    for (t0, n0, _), (t1, n1, p99) in zip(samples, samples[1:], strict=False):
        if t1 > t0:  # type: ignore[operator]
            timeline.seconds.append(t1 - start)  # type: ignore[operator]
            timeline.rps.append((n1 - n0) / (t1 - t0))  # type: ignore[operator]
            timeline.p99_ms.append(p99)
    return timeline if timeline.seconds else None
