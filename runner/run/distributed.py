"""Distributed Locust (`load.mode=distributed`): one master and N workers instead of one process.

One Locust process saturates one core at a few thousand requests/s (README), well below what a
fast server answers. Locust's own master/worker mode spreads the users over processes, on this
machine or others: the master only coordinates (and aggregates what the workers report), the
workers make the requests.

What the runner does (DistributedLocust, the Generator of runner/run/experiment.py):
- starts the master and `load.workers` local workers, each in its own process group and on the load
  cores; the master is bound to `load.master_bind_host:port` (loopback and a free port by default), which
  waits for `load.expect_workers` (local + remote) for at most `load.expect_workers_timeout_s`
  (Locust's --expect-workers-max-wait: it gives up and exits; we record "2 of 3 workers joined");
- prints the exact command to start each remote worker;
- watches the local workers itself while the run lasts: a worker killed mid-run is noticed at once
  (procs.Exits), the master is stopped (so it writes its statistics) and the run is recorded
  `loadgen_failed` with partial numbers. Locust alone would carry on with fewer workers: its
  master marks a silent worker "missing" after 3 missed 1 s heartbeats and lets the run finish
  with the others, which is not the load that was asked for. A remote worker that goes missing is
  found the same way afterwards, in the master's ledger (runner/locust/workers.py);
- records in result.json (`workers`) how many joined and each one's requests and share.

Safety: the master's port takes unauthenticated ZeroMQ connections. Anyone who reaches it can join
as a worker (and report made-up numbers into the result) or fetch the locustfile. So it listens on
loopback unless `load.allow_remote_workers=true`: bind it to a private interface you trust, never
a public one.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.config import Config, is_loopback
from runner.locust import LOCUSTFILE, PROGRESS_PLUGIN, WORKERS_PLUGIN, options
from runner.result import RunResult
from runner.run import cores, load, procs, spare
from runner.run.resources import Series

LEDGER = "locust_workers.json"
MASTER_LOG = load.LOCUST_LOG  # the master's log is the run's locust.log, as in local mode
WORKER_LOG = "locust_worker_{}.log"
MODES = ("local", "distributed")
DEFAULT_MASTER_PORT = 5557  # Locust's
GAVE_UP = "Gave up waiting for workers"  # the master's log line when --expect-workers-max-wait ran out


def check(cfg: Config) -> list[str]:
    """The distributed keys' own checks (config.check calls this)."""
    load_cfg, errors = cfg.load, []
    if load_cfg.mode not in MODES:
        return [f"load.mode: {load_cfg.mode!r} is not one of {', '.join(MODES)}"]
    if load_cfg.mode != "distributed":
        return []
    if load_cfg.processes not in ("auto", 1):
        errors.append("load.processes: auto or 1 in distributed mode (load.workers says how many processes)")
    if load_cfg.workers < 0:
        errors.append(f"load.workers: must be >= 0, got {load_cfg.workers}")
    expected = expect(cfg)
    if expected < max(1, load_cfg.workers):
        errors.append(f"load.expect_workers: must be >= load.workers and >= 1, got {expected}")
    if load_cfg.expect_workers_timeout_s <= 0:
        errors.append(f"load.expect_workers_timeout_s: must be > 0, got {load_cfg.expect_workers_timeout_s}")
    if not 0 <= load_cfg.master_bind_port <= 65535:
        errors.append(f"load.master_bind_port: must be 0 (a free port) to 65535, got {load_cfg.master_bind_port}")
    if not is_loopback(load_cfg.master_bind_host) and not load_cfg.allow_remote_workers:
        errors.append(
            f"load.master_bind_host: {load_cfg.master_bind_host!r} is not loopback; the master's port takes "
            "unauthenticated connections, so it listens beyond this machine only with load.allow_remote_workers=true"
        )
    return errors


def expect(cfg: Config) -> int:
    return cfg.load.expect_workers if cfg.load.expect_workers is not None else cfg.load.workers


def _files() -> str:
    """A worker's locustfiles: the users and the workers plugin."""
    return f"{LOCUSTFILE},{WORKERS_PLUGIN}"


def master_argv(cfg: Config, told: options.Told, host: str, port: int, job_dir: Path, bind_port: int) -> list[str]:
    master = [
        "--master", "--master-bind-host", cfg.load.master_bind_host, "--master-bind-port", str(bind_port),
        "--expect-workers", str(expect(cfg)),
        "--expect-workers-max-wait", f"{cfg.load.expect_workers_timeout_s:g}",
        "--workers-ledger", str(job_dir / LEDGER),
    ]  # fmt: skip
    # live numbers: the master's only. Its options reach every worker with its share of the users (Locust's
    # spawn message carries them), an open model's rate with them, and each worker keeps its share of the rate
    # (told.rate_shares: the workers expected) on its own schedule
    return load.locust_argv(told, host, port, job_dir, files=f"{_files()},{PROGRESS_PLUGIN}", role=master)


def worker_argv(master_host: str, bind_port: int, told: options.Told | None) -> list[str]:
    """A local worker's command, told what its run's Locust processes are; `told` None: a remote one, which takes
    the locustfile's options from the master (runner/locust/workers.py) and so serves any sweep point; its
    statistics reach us through the master."""
    return [
        sys.executable if told else "python", "-m", "locust", "-f", _files() if told else _relative_files(),
        "--worker", "--master-host", master_host, "--master-port", str(bind_port),
        "--exit-code-on-error", "0",  # failed requests are counted by the master; non-zero = the worker broke
        *(options.locustfile_args(told) if told else []),
    ]  # fmt: skip


def _relative_files() -> str:
    root = LOCUSTFILE.parents[2]  # the checkout: the command runs from a checkout of the same commit
    return ",".join(str(Path(f).relative_to(root)) for f in _files().split(","))


def advertised_host(bind_host: str) -> str:
    """The address to give remote workers: the bind address, or this host's name for a wildcard."""
    return socket.getfqdn() if bind_host in ("0.0.0.0", "*", "::", "") else bind_host


def remote_command(cfg: Config, bind_port: int) -> str:
    """What to run on another machine, from a checkout of the same commit, to join this run."""
    return shlex.join(worker_argv(advertised_host(cfg.load.master_bind_host), bind_port, None))


def _free_port(host: str) -> int:
    """A port free on `host`; Locust's default if `host` is not this machine's (the master then
    fails to bind and says so in its log, which becomes the run's outcome)."""
    try:
        return procs.free_port(host if host not in ("*", "") else "0.0.0.0")
    except OSError:
        return DEFAULT_MASTER_PORT


class DistributedLocust(load.Locust):
    """A master and `load.workers` local workers (the Generator of runner/run/experiment.py): `proc`
    is the master, which the run waits for as it waits for a local Locust; a local worker that dies
    while it runs is `lost()`."""

    def __init__(self, cfg: Config, job_dir: Path, split: cores.Split) -> None:
        super().__init__(cfg, job_dir, split)
        self.workers: list[subprocess.Popen] = []
        self.bind_port = 0
        self.expected = expect(cfg)
        self.worker_codes: dict[int, int | None] = {}  # pid -> exit code, after stop()
        self.died: dict[int, int] = {}  # pid -> exit code of a worker that died before stop()

    @property
    def processes(self) -> int:
        return len(self.workers)

    def _rate_shares(self) -> int:
        """Every worker expected, local and remote, keeps its share of an open model's rate."""
        return expect(self.cfg)

    def start(self, host: str, port: int) -> None:
        """The master, then the local workers (they retry until it listens); the command for remote ones."""
        cfg, job_dir = self.cfg, self.job_dir
        self.bind_port = cfg.load.master_bind_port or _free_port(cfg.load.master_bind_host)
        connect = "127.0.0.1" if cfg.load.master_bind_host in ("0.0.0.0", "*") else cfg.load.master_bind_host
        connect = "::1" if connect == "::" else connect
        self.argv = master_argv(cfg, self.told, host, port, job_dir, self.bind_port)
        spare.pause()  # spare Locust processes (runner/run/spare.py) never import through a run
        with procs.interrupts_held():  # each handle is kept before an interrupt goes up to stop() it
            self.proc = procs.spawn(self.argv, job_dir / MASTER_LOG, cpus=self.cpus)
        for i in range(cfg.load.workers):
            with procs.interrupts_held():
                argv = worker_argv(connect, self.bind_port, self.told)
                self.workers.append(procs.spawn(argv, job_dir / WORKER_LOG.format(i), cpus=self.cpus))
        if self.expected > cfg.load.workers:
            _print_remote_command(cfg, host, self.bind_port, self.expected - cfg.load.workers)

    def pids(self) -> dict[str, int]:
        return {**super().pids(), **{f"worker_{i}": w.pid for i, w in enumerate(self.workers)}}

    def lost(self) -> str | None:
        """A sentence if a local worker exited on its own while the master still runs, else None.
        A worker that quits after the master told it to exits 0 (--exit-code-on-error 0)."""
        for i, worker in enumerate(self.workers):
            code = worker.poll()
            if code not in (None, 0):
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                return f"local worker {i} (pid {worker.pid}) {how} during the run"
        return None

    def stop(self, grace: float) -> None:
        """The master first (it tells the workers to quit and writes the statistics), then whatever
        worker is left."""
        for worker in self.workers:
            if worker.poll() not in (None, 0):
                self.died[worker.pid] = worker.returncode
        super().stop(grace)
        for worker in self.workers:
            self.worker_codes[worker.pid] = procs.terminate(worker, grace)

    def collect(self, result: RunResult, partial: bool, sampler: Any) -> None:
        """The master's numbers, then result.workers; the whole-run numbers when some worker left no
        phase file (a remote one); loadgen_failed when workers were missing or lost; the generator's
        CPU = master + workers."""
        super().collect(result, partial, sampler)
        if self.proc is None:
            return
        job_dir = self.job_dir
        result.workers = workers_record(self, job_dir)
        if len(list(job_dir.glob(f"{load.PHASES_PREFIX}_*.json"))) < result.workers["joined"]:
            metrics = load.read_stats(job_dir, self.told.run_time_s, phases=False)
            if metrics is not None:
                metrics.partial = metrics.partial or result.metrics.partial
                result.metrics = metrics
        why = verdict(result.workers, self.cfg.load.expect_workers_timeout_s)
        short = GAVE_UP in procs.tail(job_dir / MASTER_LOG, 4000)  # the cause of "wrote no statistics"
        if why and (result.outcome in ("ok", "completed_with_errors") or short and result.outcome == "loadgen_failed"):
            result.outcome, result.detail, result.metrics.partial = "loadgen_failed", why, True
        if sampler is not None and self.workers:
            sampler.series["locust"] = merged_series([sampler.series[name] for name in self.pids()])


def _print_remote_command(cfg: Config, host: str, bind_port: int, remote: int) -> None:
    note = (
        f"\n  note: the target is {host}, a loopback address: a worker on another machine would load its own"
        if is_loopback(host)
        else ""
    )
    print(
        f"waiting up to {cfg.load.expect_workers_timeout_s:g} s for {remote} remote worker(s); on each machine, "
        f"from a checkout of the same commit, run:\n  {remote_command(cfg, bind_port)}{note}",
        file=sys.stderr,
        flush=True,
    )


def merged_series(series: list[Series]) -> Series:
    """One Series for several process trees (master + workers): CPU seconds summed at the times
    of the first one, so runner/resources.summarize reads the generator's CPU as one number."""
    base = series[0]
    merged = Series(times=list(base.times))
    merged.cpu_s = [sum(s._at(t) if s.times else 0.0 for s in series) for t in base.times]
    if all(len(s.wait_s) == len(s.times) for s in series):
        merged.wait_s = [sum(s._at(t, s.wait_s) if s.times else 0.0 for s in series) for t in base.times]
    merged.peak_memory = sum(s.peak_memory for s in series)
    merged.peak_threads = sum(s.peak_threads for s in series)
    merged.peak_fds = sum(s.peak_fds for s in series)
    merged.peak_children = sum(s.peak_children for s in series)
    return merged


def read_ledger(job_dir: Path) -> dict:
    try:
        return json.loads((job_dir / LEDGER).read_text()).get("workers", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _phase_totals(job_dir: Path) -> dict[int, tuple[int, int]]:
    """pid -> (requests, failures) over every phase, from the local workers' phase files."""
    totals = {}
    for path in job_dir.glob(f"{load.PHASES_PREFIX}_*.json"):
        try:
            data = json.loads(path.read_text())
            phases = data["phases"].values()
            totals[int(data["pid"])] = (sum(int(e["num_requests"]) for e in phases),
                                        sum(int(e["num_failures"]) for e in phases))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return totals


def workers_record(gen: DistributedLocust, job_dir: Path) -> dict:
    """result.json's `workers`: who joined, each one's requests and share of the total. A local
    worker's count comes from its own phase file when it left one (exact), else from the master's
    ledger (the sum of its reports: exact after a clean quit, up to its last report if it died)."""
    ledger, phases = read_ledger(job_dir), _phase_totals(job_dir)
    local_pids = {w.pid: i for i, w in enumerate(gen.workers)}
    each = []
    for worker_id, entry in sorted(ledger.items(), key=lambda kv: kv[1].get("joined") or 0):
        pid = entry.get("pid")
        local = pid in local_pids and entry.get("host") == socket.gethostname()
        requests, failures = entry.get("requests", 0), entry.get("failures", 0)
        source = "master"
        if local and pid in phases:
            (requests, failures), source = phases[pid], "phase-file"
        code = gen.worker_codes.get(pid) if local else None
        state = "died" if local and pid in gen.died else entry.get("state", "joined")
        each.append({
            "id": worker_id, "host": entry.get("host"), "pid": pid, "local": local, "state": state,
            "requests": requests, "failures": failures, "counted_by": source, "exit_code": code,
        })  # fmt: skip
    total = sum(w["requests"] for w in each)
    for w in each:
        w["share"] = round(w["requests"] / total, 4) if total else None
    return {
        "expected": gen.expected,
        "local": len(gen.workers),
        "joined": len(ledger),
        "lost": len({w["pid"] for w in each if w["state"] in ("missing", "died")} | set(gen.died)),
        "master_port": gen.bind_port,
        "each": each,
    }


def verdict(record: dict, timeout_s: float) -> str | None:
    """Why the generator was not what was asked for, in one sentence; None if it was."""
    if record["joined"] < record["expected"]:
        return f"{record['joined']} of {record['expected']} workers joined in {timeout_s:g} s"
    lost = [w for w in record["each"] if w["state"] in ("missing", "died")]
    if lost:
        who = ", ".join(f"{w['host']} pid {w['pid']} ({w['state']})" for w in lost)
        return f"{len(lost)} of {record['joined']} workers lost during the run: {who}; numbers are partial"
    return None
