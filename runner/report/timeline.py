"""A run's numbers second by second, for the over-time figure: from our own progress file, else Locust's
`_stats_history.csv`; each second's p50 and p99 from the HDR histograms of the phase files when they have
them (runner/locust/locustfile.py: `seconds`, one histogram per second per Locust process, merged here by
the wall-clock second they end in), at the tables' resolution -- Locust's percentiles are whole
milliseconds, and a fast server's p99 stepped 1, 4, 5, 7 ms.

The sources differ in what "p99" means, and the figure says which it shows:
- the phase files' `seconds` ("hdr"): each second's, to 3 significant digits, over every process;
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

from runner import latency
from runner.run.load import CSV_PREFIX, PHASES_PREFIX, PROGRESS_FILE


@dataclass
class Timeline:
    source: str  # "interval" (our progress file) | "cumulative" (Locust's history: p99 since the start) | "hdr"
    seconds: list[float] = field(default_factory=list)  # since the first sample
    rps: list[float | None] = field(default_factory=list)
    p99_ms: list[float | None] = field(default_factory=list)
    p99_at: list[float] | None = None  # when p99 has times of its own ("hdr"): seconds since the run started
    p50_ms: list[float | None] = field(default_factory=list)  # "hdr" only


def read_timeline(job_dir: Path) -> Timeline | None:
    """The run's series, or None when neither file has a usable sample; its p99 from the HDR seconds if any."""
    timeline = _from_progress(job_dir / PROGRESS_FILE) or _from_history(job_dir / f"{CSV_PREFIX}_stats_history.csv")
    if timeline is not None and (seconds := _hdr_seconds(job_dir)) is not None:
        timeline.source, timeline.p99_at, timeline.p50_ms, timeline.p99_ms = "hdr", *seconds
    return timeline


def _hdr_seconds(job_dir: Path) -> tuple[list[float], list[float | None], list[float | None]] | None:
    """(seconds since the run started, p50, p99) of each wall-clock second, merged over the Locust processes'
    phase files; None when they have no `seconds` (an older runner)."""
    by_second: dict[int, list[str]] = {}
    start = None
    for path in sorted(job_dir.glob(f"{PHASES_PREFIX}_*.json")):
        try:
            data = json.loads(path.read_text())
            seconds, started = data["seconds"], float(data["started"]["ramp"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        start = started if start is None else min(start, started)
        for end, encoded in seconds.items():
            by_second.setdefault(int(float(end)), []).append(encoded)
    if start is None or not by_second:
        return None
    at, p50, p99 = [], [], []
    for second in sorted(by_second):
        merged = latency.merged(by_second[second])
        if merged is None or not merged.get_total_count():
            continue
        at.append(second + 1 - start)
        p50.append(latency.percentile_ms(merged, 0.5))
        p99.append(latency.percentile_ms(merged, 0.99))
    return (at, p50, p99) if at else None


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
