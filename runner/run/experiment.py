"""One run, as its steps: resolve the target and the generator -> start the target and wait until it
is ready -> start the generator -> supervise -> stop the generator, then the target -> collect ->
write result.json.

The steps never ask what kind of target or generator they hold: a Target (ours or an external
command: server.LocalTarget; one already running elsewhere: remote.RemoteTarget) and a Generator
(one Locust process or several: load.Locust; a master and workers: distributed.DistributedLocust)
each start, say whether they are still there, stop, and put what they know into the result.

Whatever happens, a run ends with a result.json that says what happened (the outcome) and keeps
what was measured, and with nothing of it left running: Locust is stopped before the server (so
it writes its final stats while the server can still answer), and each is torn down with its
whole process group. A bad outcome is recorded, never raised, so a sweep always reaches its
report. Three exceptions:
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
import tempfile
import time
from pathlib import Path
from subprocess import Popen
from typing import Protocol

from runner.capacity import LOWER_BOUND
from runner.config import Config, to_container
from runner.locust.options import Told
from runner.result import RESULT_FILE, RunResult, write_result
from runner.run import capacity, cores, distributed, load, objectives, procs, progress, remote, resources
from runner.run import server as server_mod
from runner.run.diagnosis import diagnose
from runner.run.exits import EXIT_OUTPUT_LOST, SweepStopped
from runner.run.provenance import collect
from runner.run.resources import Sampler, Series, others_pct, summarize
from runner.run.validity import run_flags
from servers.base import raise_nofile_limit

log = logging.getLogger(__name__)
POLL_S = 0.1  # how often the live line and the deadline are looked at; an exit wakes the run at once (procs.Exits)
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


class Target(Protocol):
    """What a run loads: ours or an external command (server.LocalTarget), or a remote one (remote.RemoteTarget)."""

    host: str
    port: int | None
    log: Path

    def start(self) -> None: ...  # started (or found) and ready, else server.ServerFailedToStart
    def pids(self) -> dict[str, int]: ...  # process trees to sample and watch, by name
    def exited(self) -> int | None: ...  # its exit code once it is gone (a crash), else None
    def stop(self) -> None: ...
    def collect(self, result: RunResult) -> None: ...  # into result.server, after the outcome is known


class Generator(Protocol):
    """What makes the load: one Locust process or several (load.Locust), or a master and workers
    (distributed.DistributedLocust)."""

    proc: Popen | None  # what the run waits for; None until started
    processes: int
    told: Told  # what its Locust processes are told: the run time they got, the ramp-up (runner/locust/options.py)

    def start(self, host: str, port: int) -> None: ...
    def pids(self) -> dict[str, int]: ...
    def exited(self) -> int | None: ...  # its exit code once it has finished, else None
    def lost(self) -> str | None: ...  # why part of it is gone while it runs, else None
    def tick(self) -> None: ...  # while it runs, every POLL_S at least (load.Locust: the next job's spare)
    def stop(self, grace: float) -> None: ...
    def collect(self, result: RunResult, partial: bool, sampler: Sampler | None) -> None: ...


def resolve(cfg: Config, job_dir: Path, split: cores.Split) -> tuple[Target, Generator]:
    """The target and the generator this config asks for (`split`: the server's and Locust's cores)."""
    target = (
        remote.RemoteTarget(cfg, job_dir)
        if remote.is_remote(cfg)
        else server_mod.LocalTarget(cfg, job_dir, set(split.server) if split.server else None)
    )
    kind = distributed.DistributedLocust if cfg.load.mode == "distributed" else load.Locust
    return target, kind(cfg, job_dir, split)


def run_experiment(cfg: Config, job_dir: Path, overrides: list[str] | None = None) -> RunResult:
    """One run into `job_dir`; `overrides` (Hydra's, for this job) make the rerun command."""
    job_dir = Path(job_dir)
    check_output_dir(job_dir)
    check_fresh(job_dir, RUN_FILES)  # Hydra wrote .hydra/ and its log here already
    started = time.monotonic()
    split = cores.split(cfg.run.pin, cfg.run.server_cores, cores.available())
    target, generator = resolve(cfg, job_dir, split)
    result = _new_result(cfg, overrides, split, generator.told)
    sampler, partial, tcp = None, False, None
    try:
        # raised here so that the server and Locust inherit it (the original run hit EMFILE)
        result.provenance = {**collect(), "nofile_limit_children": raise_nofile_limit()}
        try:
            target.start()
        except server_mod.ServerFailedToStart as exc:
            result.outcome, result.detail = "server_failed_to_start", str(exc)
            return result
        tcp = resources.tcp_counters() if not remote.is_remote(cfg) else None  # the kernel's, over the load
        generator.start(target.host, target.port)
        line = progress.Line(cfg.server.name, generator.told.run_time_s, job_dir / load.PROGRESS_FILE)
        with Sampler(**target.pids(), **generator.pids()) as sampler, line:
            sampler.series.setdefault("server", Series())  # a remote target is not sampled
            deadline = load.deadline_s(cfg, generator.told)
            event, code = supervise(target, generator, deadline, line.tick)
        partial = _judge(result, (event, code), target, deadline, job_dir)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM/SIGHUP (procs.Stopped)
        result.outcome, partial = "interrupted", True
        result.detail = f"interrupted by {procs.stopped_by(interrupt)}"
        raise
    finally:
        with procs.interrupts_held():  # a (second) Ctrl-C now would leave processes and no result.json
            generator.stop(LOCUST_STOP_GRACE_S)  # first: it writes its final numbers while the server still answers
            tcp = resources.tcp_delta(tcp, resources.tcp_counters())
            target.stop()
            _collect(result, cfg, job_dir, (target, generator), sampler, partial, split)
            if tcp is not None:
                result.resources["tcp"] = tcp
            _write(result, job_dir, cfg, started)
    return result


def _new_result(cfg: Config, overrides: list[str] | None, split: cores.Split, told: Told) -> RunResult:
    """The record as it stands before anything starts: what was asked for (the config, its only place), and what
    was decided on each side: its cores (ids and count; `shared`: Locust on the server's cores), the run time
    Locust is given (a capacity search's: its schedule)."""
    return RunResult(
        outcome="ok",
        config=to_container(cfg),
        rerun=shlex.join(["python", "-m", "runner", *(overrides or [])]),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        server={"cpus": sorted(split.server) if split.server else None,
                "cores": len(split.server) if split.server else None, "shared_cores": split.shared},  # fmt: skip
        load={
            "run_time_s": told.run_time_s,
            "cpus": sorted(split.locust) if split.locust else None,
            "cores": len(split.locust) if split.locust else None,
        },
    )


def supervise(target: Target, generator: Generator, deadline: float, tick=lambda: None) -> tuple[str, int | str | None]:
    """Wait for the generator to finish; returns ("locust_exited" | "server_crashed" | "timeout", code),
    or ("worker_lost", why) when part of the generator died. Wakes the moment a watched process exits
    (procs.Exits), and at least every POLL_S to call `tick` (the live progress line) and the generator's, and
    look at the clock."""
    end = time.monotonic() + deadline
    with procs.Exits([*target.pids().values(), *generator.pids().values()]) as exits:
        while True:
            tick()
            generator.tick()
            if (code := generator.exited()) is not None:
                return "locust_exited", code
            if (code := target.exited()) is not None:
                return "server_crashed", code
            if why := generator.lost():
                return "worker_lost", why
            if time.monotonic() > end:
                return "timeout", None
            exits.wait(POLL_S)


def _judge(
    result: RunResult, ended: tuple[str, int | str | None], target: Target, deadline: float, job_dir: Path
) -> bool:
    """The outcome of how the run ended (supervise's), `deadline` what it was given; True when its numbers are
    partial (the run was cut short)."""
    event, code = ended
    if event == "worker_lost":
        result.outcome, result.detail = "loadgen_failed", f"{code}; the run was stopped"
    elif event == "server_crashed":
        result.outcome = "server_crashed"
        result.detail = f"server exited with status {code} during the run; log tail: {procs.tail(target.log, 600)}"
    elif event == "timeout":
        result.outcome = "timeout"
        result.detail = f"locust did not finish within {deadline:g} s and was stopped"
    elif (crashed := target.exited()) is not None:
        result.outcome = "server_crashed"
        result.detail = f"server exited with status {crashed} before locust finished"
    elif code not in (0, 1):
        result.outcome = "loadgen_failed"  # whatever it left was not finalised
        tail = procs.tail(job_dir / load.LOCUST_LOG, 600) or "(empty)"
        result.detail = f"locust exited with status {code}; log tail: {tail}"
    else:
        return False
    return True


def _collect(
    result: RunResult, cfg: Config, job_dir: Path, parts: tuple[Target, Generator], sampler: Sampler | None,
    partial: bool, split: cores.Split,
) -> None:  # fmt: skip
    """Everything measured into `result`, in order: Locust's numbers (and a capacity search's block
    beside them), both trees' costs, then the target's own account."""
    target, generator = parts
    if generator.proc is not None:
        result.load["processes_run"] = generator.processes  # Locust's processes (distributed: the local workers)
        generator.collect(result, partial, sampler)
        if cfg.load.capacity.enabled:
            capacity.collect(result, job_dir, cfg.load.capacity, sampler.series["server"] if sampler else None)
    if sampler is not None:
        _collect_resources(result, sampler, split, generator.processes)
    target.collect(result)


def _write(result: RunResult, job_dir: Path, cfg: Config, started: float) -> None:
    """Flags, duration and result.json; SweepStopped if it cannot be written."""
    result.flags = run_flags(result, cfg)
    result.diagnoses = diagnose(result, cfg)
    result.objectives = objectives.check(result, cfg)
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


def _collect_resources(result: RunResult, sampler: Sampler, split: cores.Split, processes: int) -> None:
    machine = os.cpu_count() or 1
    start, end = result.metrics.window_bounds or (None, None)
    # Locust runs one process per core at most; unpinned, the server may use every core
    locust_cores = min(len(split.locust) if split.locust else machine, processes)
    server = summarize(sampler.series["server"], start, end, len(split.server) if split.server else machine)
    result.resources = {"server": server, "locust": summarize(sampler.series["locust"], start, end, locust_cores)}
    _collect_others(result, sampler, split, start, end)
    if server["cpu_s_window"] and result.metrics.requests:
        server["requests_per_cpu_s"] = result.metrics.requests / server["cpu_s_window"]
    locust = result.resources["locust"]
    if locust["cpu_s_window"] and result.metrics.requests:  # the generator's cost beside the server's
        locust["cpu_us_per_request"] = 1e6 * locust["cpu_s_window"] / result.metrics.requests


def _collect_others(result: RunResult, sampler: Sampler, split: cores.Split, start, end) -> None:
    """Each tree's `others_pct`: CPU other processes used on its cores over the window (the `contended` flag).
    Pinned, the server's cores and Locust's are apart; when Locust shares the server's cores (the server took
    them all), Locust's own share of them is `shared_pct` (the `shared-cores` flag); unpinned, both trees share
    every core."""
    server, locust = result.resources["server"], result.resources["locust"]
    ours = server["cpu_s_window"]  # None: a remote target, not sampled (nor on our cores)
    if not (start and end and locust["cpu_s_window"] is not None):
        return
    if split.server and split.locust and not split.shared:
        if ours is not None:
            server["others_pct"] = others_pct(sampler, split.server, ours, start, end)
        locust["others_pct"] = others_pct(sampler, split.locust, locust["cpu_s_window"], start, end)
    else:
        if split.shared:
            locust["shared_pct"] = 100.0 * locust["cpu_s_window"] / ((end - start) * len(split.server))
        where = split.server if split.shared else None  # unpinned: every core
        shared = others_pct(sampler, where, (ours or 0.0) + locust["cpu_s_window"], start, end)
        locust["others_pct"] = shared
        if ours is not None:
            server["others_pct"] = shared


def summary(result: RunResult) -> str:
    m = result.metrics
    line = f"{result.config.get('server', {}).get('name')}: {result.outcome}"
    if result.capacity:  # a search: its own answer, not the whole search's averages
        block, bound = result.capacity, "≥ " if result.capacity.get("stop_reason") in LOWER_BOUND else ""
        if block.get("by") == "rate" and block.get("max_rate") is not None:
            line += f", sustains {bound}{block['max_rate']:g} requests/s"
        elif block.get("max_rps") is not None:
            line += f", sustains {bound}{block['max_rps']:,.1f} req/s at {block.get('users_at_max')} users"
        line += f" (stopped: {block.get('stop_reason')}), {len(block.get('steps') or [])} steps"
    elif m.requests is not None:
        rps = f"{m.rps:.1f}" if m.rps is not None else "?"
        avg = f"{m.avg_ms:.1f}" if m.avg_ms is not None else "?"
        line += f", {m.requests} requests, {m.failures} failed, {rps} req/s, avg {avg} ms"
    if m.intended_rps is not None and m.sent_rps is not None:  # an open model: the rate kept or not, in words
        line += f" (corrected), sent {m.sent_rps:.1f}/s of {m.intended_rps:.1f}/s due"
        line += f", {m.late} late, {m.dropped} dropped"
    if result.server.get("served") is not None:
        line += f", server served {result.server['served']}"
    for tree in ("server", "locust"):  # either may be unknown (no samples over the window)
        if (pct := result.resources.get(tree, {}).get("cpu_pct")) is not None:
            line += f", {tree} CPU {pct:.0f}%"
    if result.flags:
        line += f" [{', '.join(result.flags)}]"
    if result.diagnoses:
        line += f" (why: {', '.join(d['kind'] for d in result.diagnoses)})"
    if missed := objectives.broken(result.objectives):
        line += f" (objectives broken: {'; '.join(missed)})"
    return line + (f" ({result.detail})" if result.detail else "")  # an ok run's: how its server stopped
