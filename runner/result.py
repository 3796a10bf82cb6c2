"""RunResult: the one record of a run, written last and atomically as `result.json`.

A reader (the reporter, a person, a later version of this tool) can rely on:
- `schema_version` says which fields exist and what they mean; bump it when a field changes meaning.
  `read_result` reads versions 1 to SCHEMA_VERSION and refuses any other (UnknownSchema) rather than
  misread it; an older version is converted to the current shape as it is read (`upgrade`, the one place
  that knows the old shapes), so every other reader sees one shape.
  Version 2: a capacity search (load=capacity) no longer rewrites `metrics` and `load.users` with its best
  step's; they are what was measured over the run, like any run's, and the search's own numbers are only in
  `capacity` (in version 1, `metrics.window` "capacity-step" marked the best step's numbers, at `load.users`).
  Version 3: each fact is stored once. What was asked for (the resolved config: server.name, load.users,
  workload.*, run.*) is only in `config`; `server` and `load` hold only what the run decided or measured on
  each side, under names no config key has, and the `workload` section (a copy of config.workload) is gone.
  Versions 1 and 2 copied the config's `server`, `load` and `workload` into those sections too, and the
  resolved server command and port overwrote the config's `command` and `port` there. Read, an old file's
  facts stay in their section (`command` -> `command_line`, `port` -> `listen_port`), and every other key of
  its sections goes back into `config`, over the recorded config (the sections said what the run used).
- `server` (SERVER_FACTS): command_line (what was run; "" for a remote target), listen_port, cpus (core ids;
  None: not pinned), cores, shared_cores (Locust on the server's cores), exit_code, served (the server's own
  count; None when unknown), killed_at_stop; an external server's escaped and strangers; a remote target's
  remote and started_by_runner. `load` (LOAD_FACTS): command (Locust's), exit_code, spare, cpus, cores,
  processes_run, run_time_s (the run time the runner gave Locust, s).
- `outcome` is one of OUTCOMES; `ok` means the run finished and no request failed.
- `metrics` holds Locust's aggregated numbers; a field is None when it is unknown (never 0 as a
  stand-in), and `partial` is true when the numbers come from an interrupted or truncated run.
- the file is written to a temporary name and renamed (os.replace), so it is either whole or absent,
  and with the mode any other file gets (0644 under the usual umask): colleagues can read it.

Example (abridged):
    {"schema_version": 3, "outcome": "ok", "detail": "",
     "server": {"command_line": "python -m servers.select ...", "listen_port": 40123, "served": 123456,
                "exit_code": 0, "cpus": [0], "cores": 1, "shared_cores": false, ...},
     "load": {"command": "locust ...", "exit_code": 0, "run_time_s": 10.0, "processes_run": 1, ...},
     "metrics": {"requests": 123456, "failures": 0, "failure_ratio": 0.0, "rps": 12345.6,
                 "avg_ms": 7.9, "median_ms": 7.0, "p95_ms": 13.0, "p99_ms": 19.0, "max_ms": 45.1,
                 "partial": false},
     "config": {"server": {"name": "select", "keepalive": true, ...}, "load": {"users": 100, ...},
                "workload": {"name": "hello", ...}, "run": {...}},
     "provenance": {"python": "3.11.7", "locust": "2.47.0", ..., "git_commit": "abc123"},
     "started_at": "2026-11-26T12:00:00+00:00", "duration_s": 13.2}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from runner import latency

SCHEMA_VERSION = 3
# what result.server and result.load hold (version 3): the run's facts on each side; see the module docstring
SERVER_FACTS = ("command_line", "listen_port", "cpus", "cores", "shared_cores", "exit_code", "served",
                "killed_at_stop", "escaped", "strangers", "remote", "started_by_runner")  # fmt: skip
LOAD_FACTS = ("command", "exit_code", "spare", "cpus", "cores", "processes_run", "run_time_s")
# versions 1 and 2: a fact's old name in its section, where it differs
_RENAMED = {"server": {"command": "command_line", "port": "listen_port"}, "load": {}}
RESULT_FILE = "result.json"
OUTCOMES = (
    "ok",
    "completed_with_errors",
    "server_failed_to_start",
    "server_crashed",
    "loadgen_failed",
    "timeout",
    "interrupted",
)


@dataclass
class Metrics:
    """Headline numbers cover `window`: "steady" (after every user started and load.warmup_s
    passed, until the run time ended) or, when that is unavailable, "whole-run"."""

    requests: int | None = None
    failures: int | None = None
    failure_ratio: float | None = None
    rps: float | None = None  # requests/s, failed ones included (Locust's "RPS")
    goodput: float | None = None  # successful requests/s
    failures_per_s: float | None = None
    avg_ms: float | None = None
    min_ms: float | None = None
    median_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    window: str | None = None  # "steady" | "whole-run" (schema 1 also "capacity-step": see the module docstring)
    window_s: float | None = None  # length of the window the rates are over
    total_requests: int | None = None  # whole run, ramp-up and wind-down included: compare with SERVED
    total_failures: int | None = None
    window_bounds: list[float] | None = None  # [start, end], wall clock (epoch s)
    reconnects: int | None = None  # whole run, `loop` users: connections opened after each user's first
    # whole run, `loop` users: requests sent again, once, after their kept-alive connection closed before any byte
    # of an answer (the server closed it as idle as the request went out; runner/locust/engine.py's _stale)
    retries: int | None = None
    # whole run, `loop` users: what the connections showed (runner/locust/engine.py's Evidence, summed over the
    # Locust processes): slow_starts, slowest_start_ms, split_waits {ms: count}, closes {what announced it: count},
    # timeouts, timeouts_reused; the evidence of runner/run/diagnosis.py
    connections: dict[str, Any] | None = None
    # whole run: each kind of failure (Locust's error text, as locust_failures.csv has it) and how often
    failure_kinds: dict[str, int] | None = None
    users_reached: int | None = None  # users running when the run time ended (all Locust processes)
    # users' time in their request loop over the window / its length: the users Little's law sees
    # (runner/locust/locustfile.py); None when unknown (no phase files, or a user logged no cycle in it)
    loop_users: float | None = None
    # an open model (load.arrival_rate; None in a closed loop): avg_ms and the percentiles above are corrected (from
    # each request's intended send time); these are over the same window (runner/locust/arrivals.py says what
    # each means)
    intended_rps: float | None = None  # requests whose intended send time came, per second: the rate asked for
    sent_rps: float | None = None  # requests sent per second: the rate achieved
    late: int | None = None  # sent more than arrivals.LATE_S after their intended time
    queued: int | None = None  # sent after waiting for a free connection
    generator_late: int | None = None  # late although a connection was free: the generator fell behind
    dropped: int | None = None  # never sent: queued longer than load.request_timeout_s
    uncorrected_median_ms: float | None = None  # from the actual send, as a closed loop would time them
    uncorrected_p99_ms: float | None = None
    partial: bool = False  # numbers from a run that did not end cleanly


@dataclass
class RunResult:
    outcome: str
    detail: str = ""  # one human sentence: why this outcome (stderr tail, exit status, ...)
    server: dict[str, Any] = field(default_factory=dict)  # the server side's facts: SERVER_FACTS
    load: dict[str, Any] = field(default_factory=dict)  # Locust's facts: LOAD_FACTS
    metrics: Metrics = field(default_factory=Metrics)
    resources: dict[str, Any] = field(default_factory=dict)  # "server", "locust": runner/run/resources.py
    flags: list[str] = field(default_factory=list)  # runner/run/validity.py
    # why the run looks as it does (runner/run/diagnosis.py): [{"kind", "says", "evidence"}]
    diagnoses: list[dict[str, Any]] = field(default_factory=list)
    # run.slo's objectives, checked (runner/run/objectives.py): [{"objective", "bound", "measured", "held", "caveat"}]
    objectives: list[dict[str, Any]] = field(default_factory=list)
    # load=capacity only (else None): {"steps": [{"users", "start", "end", "requests", "rps", "goodput",
    # "failure_ratio", "p50_ms", "p95_ms", "p99_ms", "locust_cpu_pct", "locust_wait_pct", "server_cpu_pct",
    # "verdict"}],
    # "max_rps", "users_at_max", "stop_reason", "stop_detail"}; runner/capacity.py says what each means
    capacity: dict[str, Any] | None = None
    # distributed Locust (runner/run/distributed.py): expected, joined, lost, and per worker its
    # host, pid, state, requests and share; empty for a local run
    workers: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config: what was asked for
    provenance: dict[str, Any] = field(default_factory=dict)
    rerun: str = ""  # the command that repeats this run
    started_at: str = ""
    duration_s: float | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        data = dict(data)
        data["metrics"] = Metrics(**data.get("metrics") or {})
        return cls(**data)


# --- Locust's numbers -> Metrics -------------------------------------------------------------


def percentile(histogram: dict[float, int], count: int, fraction: float) -> float:
    """Locust's own percentile (stats.calculate_response_time_percentile) over its histogram of
    response times rounded to about two significant digits: the same number its report shows."""
    wanted = int(count * fraction)
    seen = 0
    for value in sorted(histogram, reverse=True):
        seen += histogram[value]
        if count - seen <= wanted:
            return value
    return 0.0


def aggregate(entries: list[dict], elapsed: float | None, hdr: list[str] | None = None) -> Metrics:
    """Sum locust-serialized StatsEntry dicts (locust.json's or our phase files'): exact counts
    and sums, merged histograms; `elapsed` is the window the rates are over. `hdr`: the same
    requests' encoded HDR histograms (runner/latency.py), whose percentiles then replace Locust's."""
    requests = sum(int(e["num_requests"]) for e in entries)
    failures = sum(int(e["num_failures"]) for e in entries)
    histogram: dict[float, int] = {}
    for entry in entries:
        for value, n in entry["response_times"].items():
            histogram[float(value)] = histogram.get(float(value), 0) + int(n)
    timed = [e for e in entries if e["num_requests"]]
    answered = requests > 0 and bool(histogram)
    rate = (lambda n: n / elapsed) if elapsed else (lambda n: None)
    fine = latency.merged(hdr) if hdr and answered else None
    if fine is not None and fine.get_total_count() != sum(histogram.values()):
        fine = None  # not the same requests: Locust's own, as for a run without HDR files (locust.json)

    def quantile(fraction: float) -> float:
        if fine is not None:
            return latency.percentile_ms(fine, fraction)
        return percentile(histogram, sum(histogram.values()), fraction)

    return Metrics(
        requests=requests,
        failures=failures,
        failure_ratio=failures / requests if requests else None,
        rps=rate(requests),
        goodput=rate(requests - failures),
        failures_per_s=rate(failures),
        avg_ms=sum(float(e["total_response_time"]) for e in timed) / sum(histogram.values()) if answered else None,
        min_ms=min(float(e["min_response_time"]) for e in timed if e["min_response_time"] is not None)
        if answered
        else None,
        median_ms=quantile(0.50) if answered else None,
        p95_ms=quantile(0.95) if answered else None,
        p99_ms=quantile(0.99) if answered else None,
        max_ms=max(float(e["max_response_time"]) for e in timed) if answered else None,
        total_requests=requests,
        total_failures=failures,
        window_s=elapsed,
    )


def write_atomic(target: Path, write: Callable[[IO[str]], object], *, sync: bool = True) -> Path:
    """Write `target` through `write(file)` into a temporary file, then os.replace: the file is
    either whole or as it was, never half-written. Used for every file a run or a report leaves.
    `sync=False` skips the fsync, for files another process reads at once and that need not outlive
    a crash of the machine (Locust's files: an fsync would stall its event loop mid-run)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600: private, unlike every other file of a run
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it: racy with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): set and restore at once
    os.umask(mask)
    return mask


def write_result(result: RunResult, directory: Path) -> Path:
    """Write result.json atomically (see write_atomic)."""

    def dump(f: IO[str]) -> None:
        json.dump(result.to_dict(), f, indent=2, sort_keys=True, default=str)
        f.write("\n")

    return write_atomic(Path(directory) / RESULT_FILE, dump)


class UnknownSchema(ValueError):
    """A result.json whose schema_version this code does not know (a newer runner's, or none)."""


def read_result(path: Path) -> RunResult:
    """Load a result.json; raises UnknownSchema for a schema_version other than 1 to SCHEMA_VERSION,
    ValueError (or OSError) when it is corrupt or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
        version = data.get("schema_version") if isinstance(data, dict) else None
        if not (isinstance(version, int) and 1 <= version <= SCHEMA_VERSION):
            raise UnknownSchema(
                f"{path}: schema_version {version!r}, and this runner reads 1 to {SCHEMA_VERSION}: "
                "written by a newer runner (or not by this tool), so its numbers are not read"
            )
        return RunResult.from_dict(upgrade(data))
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: not a valid result ({exc})") from exc


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A result.json's dict of any version read (1 to SCHEMA_VERSION) in the current version's shape: each
    section keeps its facts (under their current names) and gives every other key back to `config`, over the
    recorded config; the `workload` section becomes config.workload the same way."""
    if data.get("schema_version") == SCHEMA_VERSION:
        return data
    data = dict(data)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    asked: dict[str, Any] = {}
    for name, facts in (("server", SERVER_FACTS), ("load", LOAD_FACTS)):
        section = data.get(name) if isinstance(data.get(name), dict) else {}
        renamed = {_RENAMED[name].get(key, key): value for key, value in section.items()}
        data[name] = {key: value for key, value in renamed.items() if key in facts}
        asked[name] = {key: value for key, value in section.items() if _RENAMED[name].get(key, key) not in facts}
    workload = data.pop("workload", None)
    asked["workload"] = workload if isinstance(workload, dict) else {}
    data["config"] = merged(config, {name: values for name, values in asked.items() if values})
    data["schema_version"] = SCHEMA_VERSION
    return data


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s keys on top, mapping into mapping."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out
