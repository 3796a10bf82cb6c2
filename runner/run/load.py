"""Run Locust headless as a subprocess and read back what it measured (Locust: the Generator of
runner/run/experiment.py for one Locust process, or several with load.processes).

Locust is a separate process (its own gevent world, its own core when pinned) that writes its
statistics to files in the run directory: `locust.json` (raw per-endpoint counts and response-time
histograms, written at exit: our numbers come from it), `locust_stats.csv` and friends,
`locust.html`, and its console output in `locust.log`. Exit code 1 means "some requests failed":
that is data, not a crash (docs/design.md). The CSV is rewritten every second and finalised on a clean
shutdown (Locust handles SIGTERM), so stats from a run we had to stop are kept but marked partial.
Measured here: after a 2 s run the CSV still held the numbers of its first second (3430 requests
where locust.json and the server both counted 4982), which is why the CSV is only a fallback, and
a SIGKILLed Locust leaves no locust.json at all, only that CSV (possibly cut mid-row) or nothing.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner import capacity, latency
from runner.config import Config
from runner.locust import CRASHED, LOCUSTFILE, PROGRESS_PLUGIN, options
from runner.result import Metrics, RunResult, aggregate
from runner.run import cores, procs, progress, spare

PROGRESS_FILE = "locust_progress.jsonl"
LOCUST_LOG = "locust.log"
CSV_PREFIX = "locust"
PHASES_PREFIX = "locust_phases"


def told(cfg: Config, job_dir: Path, rate_shares: int) -> options.Told:
    """What a run's Locust processes are told (runner/locust/options.py), `rate_shares` of them sharing an open
    model's rate; made once per run (load.Locust), everything after reads its numbers."""
    prefix, steps = str(job_dir / PHASES_PREFIX), str(job_dir / capacity.STEPS_FILE)
    return options.told(cfg.load, cfg.workload, rate_shares, prefix, steps)


def locust_argv(
    told: options.Told, host: str, port: int, job_dir: Path, files: str = f"{LOCUSTFILE},{PROGRESS_PLUGIN}",
    role: Sequence[str] = (), processes: int = 1,
) -> list[str]:  # fmt: skip
    """Locust's command line: `files` its locustfiles, `role` the options of a distributed master
    (runner/run/distributed.py), `processes` how many Locust processes (runner/run/cores.py); the user class
    comes last."""
    url_host = f"[{host}]" if ":" in host else host
    return [
        sys.executable, "-m", "locust",
        "-f", files,
        "--progress-file", str(job_dir / PROGRESS_FILE),
        "--headless", "--only-summary",
        "--host", f"http://{url_host}:{port}",
        *options.locust_args(told),
        "--csv", str(job_dir / CSV_PREFIX),
        "--html", str(job_dir / "locust.html"),
        "--json-file", str(job_dir / "locust"),
        "--exit-code-on-error", "1",
        *options.locustfile_args(told),
        *(_processes_args(processes) if processes != 1 and not role else []),
        *options.capacity_args(told),
        *role,
        told.user_class,
    ]  # fmt: skip


def _processes_args(processes: int) -> list[str]:
    """--processes forks a local master and workers that talk over ZeroMQ; by default the master
    binds tcp://*:5557 -- every interface, and the same port for every run, so two runs collide
    ("Address already in use"). Bind it to loopback on a port of its own."""
    port = str(procs.free_port("127.0.0.1"))
    return [
        "--processes", str(processes),
        "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
        "--master-host", "127.0.0.1", "--master-port", port,
    ]  # fmt: skip


def deadline_s(cfg: Config, told: options.Told) -> float:
    """How long Locust may take before we stop it: run time, ramp-up, stop timeout, slack."""
    load = cfg.load
    wait = load.expect_workers_timeout_s if load.mode == "distributed" else 0.0  # for the workers to join
    return told.run_time_s + told.ramp_s() + told.warmup_s + told.stop_timeout_s + cfg.run.deadline_slack_s + wait


def _phase_files(job_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(job_dir.glob(f"{PHASES_PREFIX}_*.json"))]


def _users_reached(job_dir: Path) -> int | None:
    """Users running when the run time ended, summed over the processes' phase files (locustfile.py)."""
    try:
        users = [data["users"] for data in _phase_files(job_dir)]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return sum(users) if users and all(isinstance(u, int) for u in users) else None


def _loop_users(files: list[dict], window_s: float) -> float | None:
    """The users' time in their request loop over the steady window / its length; None unless every
    user running logged a cycle in it (a user stuck in one request all along logged none)."""
    loopers = sum(int(data.get("loopers", {}).get("steady", 0)) for data in files)
    users = [data.get("users") for data in files]
    if not window_s or not all(isinstance(u, int) for u in users) or loopers < sum(users):
        return None
    return sum(float(data["loop_s"]["steady"]) for data in files) / window_s


def _from_phases(job_dir: Path) -> Metrics | None:
    """The steady window from our per-process phase files (see locustfile.py), with whole-run
    totals beside it; None if there are none or no steady window began (the ramp-up outlasted the run).
    A window in which no request completed has no rates (None, not 0 over a shorter span: a rate is
    always over the window measured)."""
    try:
        files = _phase_files(job_dir)
        bounds = []
        for data in files:
            start = data["started"]["steady"]
            end = data["started"]["stopping"] or data["ended"]
            if start is not None and end > start:
                bounds.append((start, end))
        if not files or not bounds:
            return None
        hdr = [f["hdr"]["steady"] for f in files] if all("hdr" in f for f in files) else None
        metrics = aggregate([f["phases"]["steady"] for f in files], sum(e - s for s, e in bounds) / len(bounds), hdr)
        metrics.window_bounds = [min(s for s, _ in bounds), max(e for _, e in bounds)]
        metrics.loop_users = _loop_users(files, metrics.window_s or 0.0)
        whole = [entry for f in files for entry in f["phases"].values()]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not metrics.requests:
        metrics.rps = metrics.goodput = metrics.failures_per_s = None
    metrics.total_requests = sum(int(e["num_requests"]) for e in whole)
    metrics.total_failures = sum(int(e["num_failures"]) for e in whole)
    reconnects = [f["reconnects"] for f in files if f.get("reconnects") is not None]
    metrics.reconnects = sum(reconnects) if reconnects else None
    retries = [f["retries"] for f in files if f.get("retries") is not None]
    metrics.retries = sum(retries) if retries else None
    metrics.connections = _evidence([f["evidence"] for f in files if f.get("evidence") is not None])
    if files and all("arrivals" in f for f in files):
        _open_model(metrics, files)
    metrics.window = "steady"
    return metrics


def _evidence(parts: list[dict]) -> dict | None:
    """The Locust processes' connection evidence (runner/locust/engine.py's Evidence), summed: counts add up,
    the slowest start is the slowest of all, the maps of waits and closes merge."""
    if not parts:
        return None
    total: dict[str, Any] = {"slow_starts": 0, "slowest_start_ms": 0.0, "split_waits": {}, "closes": {}, "timeouts": 0,
                             "timeouts_reused": 0}  # fmt: skip
    for part in parts:
        for key, value in part.items():
            if key == "slowest_start_ms":
                total[key] = max(total[key], float(value))
            elif isinstance(value, dict):
                for name, count in value.items():
                    total[key][str(name)] = total[key].get(str(name), 0) + int(count)
            else:
                total[key] = total.get(key, 0) + int(value)
    return total


def _open_model(metrics: Metrics, files: list[dict]) -> None:
    """The steady window's schedule (runner/locust/arrivals.py), summed over the processes, and its uncorrected
    latencies beside the corrected ones the metrics already hold."""
    counts = {key: sum(int(f["arrivals"]["steady"][key]) for f in files) for key in files[0]["arrivals"]["steady"]}
    metrics.late, metrics.queued, metrics.dropped = counts["late"], counts["queued"], counts["dropped"]
    metrics.generator_late = counts["generator_late"]
    if metrics.window_s:
        metrics.intended_rps, metrics.sent_rps = (
            counts["intended"] / metrics.window_s,
            counts["sent"] / metrics.window_s,
        )
    raw = latency.merged([f["hdr_uncorrected"]["steady"] for f in files])
    if raw is not None and raw.get_total_count():
        metrics.uncorrected_median_ms = latency.percentile_ms(raw, 0.5)
        metrics.uncorrected_p99_ms = latency.percentile_ms(raw, 0.99)


def _from_json(path: Path, span_s: float | None) -> Metrics | None:
    """Whole-run numbers from locust.json (ramp-up included), over the run: from Locust's start to its last
    request or, if sooner, `span_s` later (the run time it was given), never the shorter span between the
    first and the last request (100 timeouts at the stop, 1.8 ms apart, once made 56,269 req/s)."""
    try:
        entries = json.loads(path.read_text())
        started = min((e["start_time"] for e in entries if e.get("start_time")), default=None)
        last = max((e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")), default=None)
        span = max(last - started, span_s or 0.0) if started and last else None
        metrics = aggregate(entries, span if span else None)
        metrics.window_bounds = [started, last] if metrics.window_s else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    metrics.window = "whole-run"
    return metrics


def _number(row: dict[str, str], key: str) -> float | None:
    value = (row.get(key) or "").strip()
    try:
        return float(value)
    except ValueError:
        return None


def _from_csv(path: Path) -> Metrics | None:
    """The 'Aggregated' row of locust_stats.csv. Locust rewrites this file only every few seconds
    and not always at exit, so its numbers can lag the run: callers mark them partial. A file cut
    mid-write (Locust killed) ends inside a row whose last number may be cut short ("15" -> "1"),
    so only newline-terminated rows with as many fields as the header count."""
    try:
        with open(path, newline="") as f:
            text = f.read()
        whole = csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1]))
        rows = [r for r in whole if r.get("Name") == "Aggregated" and None not in r and None not in r.values()]
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not rows:
        return None
    row = rows[-1]
    requests, failures = _number(row, "Request Count"), _number(row, "Failure Count")
    if requests is None or failures is None:
        return None
    answered = requests > 0
    return Metrics(
        requests=int(requests),
        failures=int(failures),
        failure_ratio=failures / requests if answered else None,
        rps=_number(row, "Requests/s"),
        failures_per_s=_number(row, "Failures/s"),
        avg_ms=_number(row, "Average Response Time") if answered else None,
        min_ms=_number(row, "Min Response Time") if answered else None,
        median_ms=_number(row, "50%") if answered else None,
        p95_ms=_number(row, "95%") if answered else None,
        p99_ms=_number(row, "99%") if answered else None,
        max_ms=_number(row, "Max Response Time") if answered else None,
        total_requests=int(requests),
        total_failures=int(failures),
        window="whole-run",
        partial=True,
    )


def read_stats(job_dir: Path, span_s: float | None = None, *, phases: bool = True) -> Metrics | None:
    """What Locust measured: the steady window from our phase files; else the whole run from
    locust.json (exact, ramp-up included; `span_s`: the run time Locust was given); else the CSV
    (marked partial); else None -- never a made-up number. phases=False: not from phase files (a
    distributed run whose remote workers left theirs on their own machines)."""
    metrics = (
        (_from_phases(job_dir) if phases else None)
        or _from_json(job_dir / f"{CSV_PREFIX}.json", span_s)
        or _from_csv(job_dir / f"{CSV_PREFIX}_stats.csv")
    )
    if metrics is not None and phases:
        metrics.users_reached = _users_reached(job_dir)
    return metrics


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def failure_kinds(job_dir: Path) -> dict[str, int] | None:
    """Each kind of failure of the whole run and how often, most frequent first, from locust_failures.csv
    (Locust writes it whole at exit); None when there is no such file."""
    if not (job_dir / f"{CSV_PREFIX}_failures.csv").is_file():
        return None
    kinds: dict[str, int] = {}
    for row in _csv_rows(job_dir / f"{CSV_PREFIX}_failures.csv"):
        if (row.get("Occurrences") or "").isdigit():
            error = (row.get("Error") or "?")[:300]
            kinds[error] = kinds.get(error, 0) + int(row["Occurrences"])
    return dict(sorted(kinds.items(), key=lambda kind: -kind[1]))


def failures_sentence(metrics: Metrics) -> str:
    """Where a run's failures fell -- in the measured window, or outside it (the ramp-up, the warm-up, or in
    flight when the run stopped: the window's numbers do not count those) -- and the most common kind."""
    window, total = metrics.failures or 0, max(metrics.total_failures or 0, metrics.failures or 0)
    said = f"{window:,} of {metrics.requests or 0:,} requests in the measured window failed"
    if not metrics.requests:
        said = f"no request completed in the measured window ({metrics.window_s or 0:.1f} s)"
    elif not window:
        said = f"none of the {metrics.requests:,} requests in the measured window failed"
    if total > window:
        said += f"; {total - window:,} failed outside it (the ramp-up, or in flight at the stop)"
    kinds = metrics.failure_kinds or {}
    if kinds:
        error, count = next(iter(kinds.items()))
        said += f"; most common ({count:,}x): {error}"
    return said


def locust_error(job_dir: Path) -> str:
    """What made Locust exit 1 with no failed request: an exception in its own code (locust_exceptions.csv)."""
    rows = [r for r in _csv_rows(job_dir / f"{CSV_PREFIX}_exceptions.csv") if (r.get("Count") or "").isdigit()]
    if not rows:
        return f"locust exited with status 1 but counted no failed request and wrote no exception; see {LOCUST_LOG}"
    worst = max(rows, key=lambda r: int(r["Count"]))
    return f"an exception in Locust ({worst['Count']}x): {(worst.get('Message') or '?')[:300]}"


# --- the generator of a local run ----------------------------------------------------------------


class Locust:
    """One Locust process (with load.processes > 1 it forks its own workers, all in its process group):
    the Generator of runner/run/experiment.py -- start, exited, lost, stop, collect."""

    def __init__(self, cfg: Config, job_dir: Path, split: cores.Split) -> None:
        self.cfg, self.job_dir, self.cpus = cfg, Path(job_dir), split.locust
        searching = cfg.load.capacity.enabled and cfg.load.capacity.by == "users"  # one process decides each step
        self._processes = cores.locust_processes(cfg.load.processes, split, searching)
        self.told = told(cfg, self.job_dir, self._rate_shares())  # what every Locust process of the run is told
        self.proc: subprocess.Popen | None = None  # the process the run waits for (a master's, distributed)
        self.argv: list[str] = []
        self.exit_code: int | None = None
        self.spare = False  # the process was a spare, started before this job (runner/run/spare.py)
        job, jobs = progress.job_number(), progress.jobs_in_sweep()
        self.ahead = jobs - job if job is not None and jobs is not None else 0  # jobs of the sweep after this one

    @property
    def processes(self) -> int:
        """How many Locust processes make the requests (runner/run/cores.py), for its share of the cores."""
        return self._processes

    def _rate_shares(self) -> int:
        """How many Locust processes share an open model's rate: each process of a local run."""
        return self._processes

    def start(self, host: str, port: int) -> None:
        self.argv = locust_argv(self.told, host, port, self.job_dir, processes=self.processes)
        with procs.interrupts_held():  # held until `proc` is set, so that stop() finds it
            self.proc = spare.take(self.argv, self.job_dir / LOCUST_LOG, self.cpus)
            self.spare = self.proc is not None
            if self.proc is None:
                self.proc = procs.spawn(self.argv, self.job_dir / LOCUST_LOG, cpus=self.cpus)

    def pids(self) -> dict[str, int]:
        """The process trees to sample and watch, by name."""
        return {"locust": self.proc.pid} if self.proc else {}

    def exited(self) -> int | None:
        """Locust's exit code once it has finished, else None."""
        return self.proc.poll() if self.proc else None

    def lost(self) -> str | None:
        """Why the generator is no longer what was asked for while it runs; one process cannot be half lost."""
        return None

    def tick(self) -> None:
        """While it runs: once its measured window is over (its stopping line), the spares for the jobs
        after this one import (runner/run/spare.py)."""
        if self.ahead and (progress.read_last(self.job_dir / PROGRESS_FILE) or {}).get("stopping"):
            spare.prepare(self.ahead)
            self.ahead = 0

    def stop(self, grace: float) -> None:
        """SIGTERM (Locust then writes its final numbers), the grace, SIGKILL to the group."""
        if self.proc is not None:
            self.exit_code = procs.terminate(self.proc, grace, signal.SIGTERM)

    def collect(self, result: RunResult, partial: bool, sampler: Any) -> None:
        """result.load's exit code and result.metrics: what Locust measured, and the outcome it implies."""
        if self.proc is None:
            return
        result.load["command"], result.load["exit_code"] = shlex.join(self.argv), self.exit_code
        result.load["spare"] = self.spare
        metrics = read_stats(self.job_dir, self.told.run_time_s)
        if metrics is None:
            result.metrics.partial = True
            if result.outcome in ("ok", "completed_with_errors"):
                result.outcome = "loadgen_failed"
                result.detail = f"locust wrote no statistics; log tail: {procs.tail(self.job_dir / LOCUST_LOG, 600)}"
            return
        metrics.partial = metrics.partial or partial
        metrics.failure_kinds = failure_kinds(self.job_dir)
        result.metrics = metrics
        if result.outcome != "ok":
            return
        if self.exit_code == CRASHED:
            result.outcome = "loadgen_failed"
            result.detail = f"a greenlet of Locust's process died (exit code {CRASHED}); see {LOCUST_LOG}"
        elif metrics.failures or metrics.total_failures:  # the server's (or the connection's), whenever they fell
            result.outcome, result.detail = "completed_with_errors", failures_sentence(metrics)
        elif self.exit_code == 1:  # Locust's exit 1 with no failed request: an error in its own code
            result.outcome, result.detail = "loadgen_failed", locust_error(self.job_dir)
