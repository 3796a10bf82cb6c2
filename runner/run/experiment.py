"""One run: start the server -> wait until ready -> run Locust -> collect -> stop -> result.json.

Whatever happens, a run ends with a result.json that says what happened (the outcome) and keeps
what was measured, and with nothing of it left running: Locust is stopped before the server (so
it writes its final stats while the server can still answer), and each is torn down with its
whole process group. A bad outcome is recorded, never raised, so a sweep always reaches its
report. Two exceptions:
- an output directory that cannot take a run (not a directory, not writable, under
  MIN_FREE_BYTES free, or already holding a run's files: RunDirTaken) is refused with
  OutputDirUnusable before anything starts, so no run ever leaves a half-written result, and no
  run reads a file it did not write (an earlier run's READY line, its Locust phase files);
- a result.json that cannot be written (disk full) raises exits.SweepStopped: the sweep stops;
- Ctrl-C (and SIGTERM, SIGHUP: runner/run/procs.py): the run is recorded `interrupted`, then the
  interrupt goes on up so that no further run starts. One during the teardown is held until the
  teardown is done and the result written (main thread only: Python delivers signals nowhere else).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import signal
import tempfile
import time
from pathlib import Path

from runner.config import Config, parse_duration, to_container
from runner.result import RESULT_FILE, RunResult, write_result
from runner.run import capacity, distributed, escapes, load, procs, progress, remote
from runner.run import server as server_mod
from runner.run.exits import EXIT_OUTPUT_LOST, SweepStopped
from runner.run.provenance import collect
from runner.run.resources import Sampler, Series, others_pct, summarize
from runner.run.validity import run_flags
from servers.base import raise_nofile_limit

log = logging.getLogger(__name__)
POLL_S = 0.1  # how quickly a crashed server or a finished Locust is noticed
LOCUST_STOP_GRACE_S = 10.0  # Locust writes its final CSV/HTML/JSON on SIGTERM; give it time
MIN_FREE_BYTES = 50 * 2**20  # a smoke run writes well under 1 MB, a long one a few MB of CSV/HTML/logs


class OutputDirUnusable(Exception):
    """The directory a run would write to cannot take it; nothing was started."""


def check_output_dir(path: Path) -> None:
    """Raise OutputDirUnusable unless `path` -- or, if it does not exist yet, the nearest ancestor
    it would be created in -- is a directory we can write a file in, with MIN_FREE_BYTES free.
    Writes a real temporary file: root ignores permission bits, a read-only mount does not."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise OutputDirUnusable(f"{existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputDirUnusable(f"cannot write in {existing}: {exc.strerror}") from exc
    vfs = os.statvfs(existing)
    free = vfs.f_bavail * vfs.f_frsize
    if free < MIN_FREE_BYTES:
        raise OutputDirUnusable(f"{existing}: {free / 2**20:.0f} MB free, a run needs {MIN_FREE_BYTES / 2**20:.0f} MB")


class RunDirTaken(OutputDirUnusable):
    """The directory already holds files of an earlier run (or sweep)."""


RUN_FILES = (RESULT_FILE, server_mod.SERVER_LOG, "locust*")  # what a run reads back: none may predate it


def check_fresh(path: Path, names: tuple[str, ...] = ("*",)) -> None:
    """Raise RunDirTaken when `path` holds a file matching one of `names` (anything, by default): a
    second run into one directory read the first one's server.log READY line (and loaded its port)
    and merged its Locust phase files; a sweep into an old sweep's directory reported its jobs too."""
    path = Path(path)
    found = sorted({p.name for pattern in names for p in path.glob(pattern)}) if path.is_dir() else []
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise RunDirTaken(
            f"{path} already holds {shown}: every run and sweep writes into a new directory of its own, "
            "so that it never reads or reports files it did not write; give another one"
        )


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """Server on the first core we may use, Locust on the rest; no pinning below two cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _supervise(locust, server, deadline: float, gen=None, tick=lambda: None) -> tuple[str, int | str | None]:
    """Wait for Locust to finish; returns ("locust_exited" | "server_crashed" | "timeout", code),
    or ("worker_lost", why) when a distributed run's local worker died. `tick` is called every poll
    (the live progress line)."""
    end = time.monotonic() + deadline
    while True:
        tick()
        code = locust.poll()
        if code is not None:
            return "locust_exited", code
        code = server.proc.poll()
        if code is not None:
            return "server_crashed", code
        if gen is not None and (why := gen.lost()):
            return "worker_lost", why
        if time.monotonic() > end:
            return "timeout", None
        time.sleep(POLL_S)


def run_experiment(cfg: Config, job_dir: Path, overrides: list[str] | None = None) -> RunResult:
    """One run into `job_dir`; `overrides` (Hydra's, for this job) make the rerun command."""
    job_dir = Path(job_dir)
    check_output_dir(job_dir)
    check_fresh(job_dir, RUN_FILES)  # Hydra wrote .hydra/ and its log here already
    started = time.monotonic()
    server_cpus, load_cpus = cpu_split(cfg.run.pin)
    config = to_container(cfg)
    result = RunResult(
        outcome="ok",
        config=config,
        rerun=shlex.join(["python", "-m", "runner", *(overrides or [])]),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        workload=dict(config["workload"]),
        server={**config["server"], "cpus": sorted(server_cpus) if server_cpus else None},
        load={
            **config["load"],
            "run_time_s": parse_duration(cfg.load.run_time),
            "cpus": sorted(load_cpus) if load_cpus else None,
        },
    )
    server = locust = sampler = None
    gen = distributed.Generator() if cfg.load.mode == "distributed" else None
    partial = False
    try:
        # raised here so that the server and Locust inherit it (the original run hit EMFILE)
        result.provenance = {**collect(), "nofile_limit_children": raise_nofile_limit()}
        try:
            if remote.is_remote(cfg):  # runner/run/remote.py: already running elsewhere, not ours to start or stop
                (extra, provenance), server = remote.record(cfg), remote.start(cfg, job_dir)
                result.server.update(extra)
                result.provenance.update(provenance)
            else:
                server = server_mod.start(cfg, job_dir, server_cpus)
        except server_mod.ServerFailedToStart as exc:
            result.outcome, result.detail = "server_failed_to_start", str(exc)
            return result
        result.server.update(command=shlex.join(server.argv), port=server.port)
        argv = load.locust_argv(cfg, server.host, server.port, job_dir)
        if gen is not None:  # a master and workers (runner/run/distributed.py)
            distributed.start(cfg, server.host, server.port, job_dir, load_cpus, gen)
            locust, argv = gen.master, gen.master.args
        result.load["command"] = shlex.join(argv)
        with procs.interrupts_held():  # held until `locust` is set, so the finally can stop it
            locust = locust or procs.spawn(argv, job_dir / load.LOCUST_LOG, cpus=load_cpus)
        ours = {"server": server.proc.pid} if server.proc.pid else {}
        line = progress.Line(cfg.server.name, load.run_time_s(cfg), job_dir / load.PROGRESS_FILE)
        with Sampler(**ours, locust=locust.pid, **(gen.pids() if gen else {})) as sampler, line:
            sampler.series.setdefault("server", Series())  # a remote target is not sampled
            event, code = _supervise(locust, server, load.deadline_s(cfg), gen, line.tick)
        if event == "worker_lost":
            result.outcome, partial, result.detail = "loadgen_failed", True, f"{code}; the run was stopped"
        elif event == "server_crashed":
            result.outcome, partial = "server_crashed", True
            result.detail = f"server exited with status {code} during the run; log tail: {procs.tail(server.log, 600)}"
        elif event == "timeout":
            result.outcome, partial = "timeout", True
            result.detail = f"locust did not finish within {load.deadline_s(cfg):g} s and was stopped"
        else:
            result.load["exit_code"] = code
            if server.proc.poll() is not None:
                result.outcome, partial = "server_crashed", True
                result.detail = f"server exited with status {server.proc.returncode} before locust finished"
            elif code not in (0, 1):
                result.outcome, partial = "loadgen_failed", True  # whatever it left was not finalised
                tail = procs.tail(job_dir / load.LOCUST_LOG, 600) or "(empty)"
                result.detail = f"locust exited with status {code}; log tail: {tail}"
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM/SIGHUP (procs.Stopped)
        result.outcome, partial = "interrupted", True
        result.detail = f"interrupted by {procs.stopped_by(interrupt)}"
        raise
    finally:
        with procs.interrupts_held():  # a (second) Ctrl-C now would leave processes and no result.json
            if gen is not None:
                result.load.setdefault("exit_code", gen.stop(LOCUST_STOP_GRACE_S))
            elif locust is not None:
                result.load.setdefault("exit_code", procs.terminate(locust, LOCUST_STOP_GRACE_S, signal.SIGTERM))
            if server is not None and not remote.is_remote(cfg):
                result.server["exit_code"], result.server["served"] = server_mod.stop(server, cfg.server.grace_s)
            if locust is not None:
                _collect_metrics(result, job_dir, partial)
            if gen is not None and locust is not None:
                _collect_workers(result, gen, job_dir, cfg, sampler)
            if locust is not None and cfg.load.capacity.enabled:
                capacity.collect(result, job_dir, cfg.load.capacity, sampler.series["server"] if sampler else None)
            if sampler is not None:
                processes = len(gen.workers) if gen else cfg.load.processes
                _collect_resources(result, sampler, server_cpus, load_cpus, processes)
            if server is not None and not remote.is_remote(cfg):  # after the outcome's own detail is set
                _note_stop(result, server, cfg.server.grace_s)
            result.flags = run_flags(result, cfg)
            result.duration_s = round(time.monotonic() - started, 3)
            try:
                write_result(result, job_dir)
            except OSError as exc:  # disk full, read-only: no later run could be recorded either
                raise SweepStopped(
                    f"{summary(result)}; but its result.json could not be written in {job_dir}: {exc.strerror}. "
                    "Stopped: no further run starts",
                    EXIT_OUTPUT_LOST,
                ) from exc
            log.info(summary(result))
    return result


def _note_stop(result: RunResult, server: server_mod.RunningServer, grace: float) -> None:
    """What stopping the server took, in the result and its detail (the run may still be ok): SIGKILL
    after the grace; processes that had left its group (runner/run/escapes.py); someone else on its port."""
    result.server["killed_at_stop"] = server.killed
    notes = []
    if server.killed:
        notes.append(f"the server ignored SIGTERM for server.grace_s={grace:g} s and was killed (SIGKILL)")
    if server.external:
        result.server["escaped"], result.server["strangers"] = server.escaped, server.strangers
        notes.append(escapes.sentence(server.escaped, server.port))
    for other in server.strangers:
        notes.append(
            f"pid {other['pid']} (`{other['command'][:80]}`) still listens on port {server.port}; it does not carry "
            "this run's mark (it cleared its environment, or is not ours): left alone"
        )
    result.detail = "; ".join(filter(None, [result.detail, *notes]))


def _collect_metrics(result: RunResult, job_dir: Path, partial: bool) -> None:
    metrics = load.read_stats(job_dir)
    if metrics is None:
        result.metrics.partial = True
        if result.outcome in ("ok", "completed_with_errors"):
            result.outcome = "loadgen_failed"
            result.detail = f"locust wrote no statistics; log tail: {procs.tail(job_dir / load.LOCUST_LOG, 600)}"
        return
    metrics.partial = metrics.partial or partial
    result.metrics = metrics
    if result.outcome == "ok" and metrics.failures:
        result.outcome = "completed_with_errors"
        result.detail = f"{metrics.failures} of {metrics.requests} requests failed; " + load.top_failure(job_dir)
    elif result.outcome == "ok" and result.load.get("exit_code") == 1:
        result.outcome = "loadgen_failed"
        result.detail = f"locust reported an error but no failed request; see {load.LOCUST_LOG}"


def _collect_workers(result: RunResult, gen: distributed.Generator, job_dir: Path, cfg: Config, sampler) -> None:
    """result.workers; the whole-run numbers when some worker left no phase file (a remote one);
    loadgen_failed when workers were missing or lost; the generator's CPU = master + workers."""
    result.workers = distributed.workers_record(gen, job_dir)
    if len(list(job_dir.glob(f"{load.PHASES_PREFIX}_*.json"))) < result.workers["joined"]:
        metrics = load.read_stats(job_dir, phases=False)
        if metrics is not None:
            metrics.partial = metrics.partial or result.metrics.partial
            result.metrics = metrics
    why = distributed.verdict(result.workers, cfg.load.expect_workers_timeout_s)
    short = distributed.GAVE_UP in procs.tail(job_dir / load.LOCUST_LOG, 4000)  # the cause of "wrote no statistics"
    if why and (result.outcome in ("ok", "completed_with_errors") or short and result.outcome == "loadgen_failed"):
        result.outcome, result.detail, result.metrics.partial = "loadgen_failed", why, True
    if sampler is not None and gen.workers:
        parts = [sampler.series["locust"], *(sampler.series[name] for name in gen.pids())]
        sampler.series["locust"] = distributed.merged_series(parts)


def _collect_resources(result: RunResult, sampler: Sampler, server_cpus, load_cpus, processes: int) -> None:
    cores = os.cpu_count() or 1
    start, end = result.metrics.window_bounds or (None, None)
    # Locust runs one process per core at most; unpinned, the server may use every core
    locust_cores = min(len(load_cpus) if load_cpus else cores, processes if processes > 0 else cores)
    server = summarize(sampler.series["server"], start, end, len(server_cpus) if server_cpus else cores)
    result.resources = {"server": server, "locust": summarize(sampler.series["locust"], start, end, locust_cores)}
    _collect_others(result, sampler, server_cpus, load_cpus, start, end)
    if server["cpu_s_window"] and result.metrics.requests:
        server["requests_per_cpu_s"] = result.metrics.requests / server["cpu_s_window"]
    locust = result.resources["locust"]
    if locust["cpu_s_window"] and result.metrics.requests:  # the generator's cost beside the server's
        locust["cpu_us_per_request"] = 1e6 * locust["cpu_s_window"] / result.metrics.requests


def _collect_others(result: RunResult, sampler: Sampler, server_cpus, load_cpus, start, end) -> None:
    """Each tree's `others_pct`: CPU other processes used on its cores over the window (the `contended` flag).
    Pinned, the server's core and Locust's are apart; unpinned, both trees share every core."""
    server, locust = result.resources["server"], result.resources["locust"]
    ours = server["cpu_s_window"]  # None: a remote target, not sampled (nor on our cores)
    if not (start and end and locust["cpu_s_window"] is not None):
        return
    if server_cpus and load_cpus:
        if ours is not None:
            server["others_pct"] = others_pct(sampler, server_cpus, ours, start, end)
        locust["others_pct"] = others_pct(sampler, load_cpus, locust["cpu_s_window"], start, end)
    else:
        shared = others_pct(sampler, None, (ours or 0.0) + locust["cpu_s_window"], start, end)
        locust["others_pct"] = shared
        if ours is not None:
            server["others_pct"] = shared


def summary(result: RunResult) -> str:
    m = result.metrics
    line = f"{result.server.get('name')}: {result.outcome}"
    if m.requests is not None:
        rps = f"{m.rps:.1f}" if m.rps is not None else "?"
        avg = f"{m.avg_ms:.1f}" if m.avg_ms is not None else "?"
        line += f", {m.requests} requests, {m.failures} failed, {rps} req/s, avg {avg} ms"
    if m.intended_rps is not None and m.sent_rps is not None:  # an open model: the rate kept or not, in words
        line += f" (corrected), sent {m.sent_rps:.1f}/s of {m.intended_rps:.1f}/s due"
        line += f", {m.late} late, {m.dropped} dropped"
    if result.server.get("served") is not None:
        line += f", server served {result.server['served']}"
    server = result.resources.get("server", {})
    if server.get("cpu_pct") is not None:
        line += f", server CPU {server['cpu_pct']:.0f}%, locust CPU {result.resources['locust']['cpu_pct']:.0f}%"
    if result.flags:
        line += f" [{', '.join(result.flags)}]"
    return line + (f" ({result.detail})" if result.detail else "")  # an ok run's: how its server stopped
