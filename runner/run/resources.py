"""What a process tree costs while it runs: CPU, memory, threads, descriptors, children.

A background thread samples the server's and Locust's process trees every half second with psutil
and keeps a time series of cumulative CPU seconds, so CPU use can be read for any window after the
fact -- in particular the steady window, whose wall-clock bounds Locust reports only at the end.
CPU seconds of children that already exited (a fork-per-connection server's) are included: the
kernel adds them to the parent's children_user/children_system when they are reaped.

Memory is PSS (proportional set size) summed over the tree: a page shared by N processes counts
1/N in each, so 100 forked children do not count their common pages 100 times (summed RSS said
1.4 GB for a process-per-connection server whose PSS is a fraction of that). PSS costs ~0.3 ms
per process to read, so it is sampled every PSS_EVERY-th pass; RSS where PSS is unavailable.

Run-queue wait: the time the tree's threads were runnable but waited for a CPU (the second field
of /proc/<pid>/task/<tid>/schedstat, in ns), sampled with the CPU. Summed as deltas per thread, so a
thread or a child that exits keeps what it waited.

Contention (the `contended` flag, runner/run/validity.py) is read two ways. Others' CPU: the CPU time
*others* used on the cores a tree ran on -- each core's busy time (/proc/stat: all but idle and
iowait; hypervisor steal, irq and softirq included), sampled with the trees, minus the trees' own
CPU, the runner's and the kernel's softirq threads' on those cores (ksoftirqd/N, which carry the
run's own loopback traffic when softirq work piles up). Both sides count the same things: with tick
accounting (CONFIG_IRQ_TIME_ACCOUNTING off, as here) a tick that lands in a softirq is charged to
the task it interrupted *and* to the core's softirq field, so a core's busy time without softirq,
minus trees that include theirs, under-read a neighbour by the run's own softirq share (12-14% of
each core at 75k req/s: a neighbour that halved select read 9-14%). And the run-queue wait: the time
the tree's threads were runnable but waited for a CPU. For a tree with one runnable thread per core
(select, epoll, asyncio, single, Locust's process) only someone else can make it wait; for thread,
process and threadpool, whose own threads and children queue for their core (quiet machine: the
process server's 20 children waited 213% of the window), it says nothing about neighbours and only
others' CPU counts. docs/design.md has the measurements behind both thresholds.

Why not Locust's own CPU warning: it is checked every 10 s and its first reading is 0, so a 20 s
run at 100% CPU was never flagged on this machine (docs/design.md).
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
import time
from dataclasses import dataclass, field

import psutil

from runner import schedstat

INTERVAL_S = 0.5
PSS_EVERY = 4  # passes: PSS every 2 s


@dataclass
class Series:
    times: list[float] = field(default_factory=list)  # wall clock (time.time()), to align with Locust's
    cpu_s: list[float] = field(default_factory=list)  # cumulative CPU seconds of the whole tree
    peak_memory: int = 0  # bytes, PSS (or RSS) of the whole tree
    peak_threads: int = 0
    peak_fds: int = 0
    peak_children: int = 0
    wait_s: list[float] = field(default_factory=list)  # cumulative run-queue wait of the tree's threads
    _waited: dict[int, float] = field(default_factory=dict, repr=False)  # tid -> its wait at the last sample

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used in [start, end], linearly interpolated between samples."""
        return self._between(self.cpu_s, start, end)

    def wait_between(self, start: float, end: float) -> float | None:
        """Seconds the tree's threads waited for a CPU in [start, end] (summed over threads)."""
        return self._between(self.wait_s, start, end) if len(self.wait_s) == len(self.times) else None

    def _between(self, values: list[float], start: float, end: float) -> float | None:
        if len(self.times) < 2 or end <= start or start < self.times[0] or end > self.times[-1] + INTERVAL_S:
            return None
        return self._at(min(end, self.times[-1]), values) - self._at(start, values)

    def _at(self, t: float, values: list[float] | None = None) -> float:
        """The cumulative `values` (CPU seconds by default) at time t, interpolated."""
        values = self.cpu_s if values is None else values
        i = bisect.bisect_left(self.times, t)
        if i == 0:
            return values[0]
        if i >= len(self.times):
            return values[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        c0, c1 = values[i - 1], values[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0)

    def add_wait(self, waited: dict[int, float]) -> None:
        """Thread id -> its cumulative wait now: the tree's total grows by each thread's increase."""
        grown = sum(max(0.0, w - self._waited.get(tid, 0.0)) for tid, w in waited.items())
        self._waited.update(waited)
        self.wait_s.append((self.wait_s[-1] if self.wait_s else 0.0) + grown)


def _waits(pids: list[int]) -> dict[int, float]:
    waited = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if (wait := schedstat.wait_s(f"/proc/{pid}/task/{tid}/schedstat")) is not None:
                waited[int(tid)] = wait
    return waited


def _memory(proc: psutil.Process) -> int:
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return proc.memory_info().rss


def largest_rss(pid: int) -> int:
    """The resident memory of the largest process in `pid`'s tree (a pool has several); 0 once it is gone.
    For a server's memory under attack (benchmarks/http_edges.py, tests/servers/test_reliability.py)."""
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    sizes = [0]
    for proc in procs:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return max(sizes)


def _sample_tree(root: psutil.Process, series: Series, with_memory: bool) -> None:
    try:
        with root.oneshot():
            times = root.cpu_times()
            cpu = times.user + times.system + times.children_user + times.children_system
            memory = _memory(root) if with_memory else 0
            threads, fds = root.num_threads(), root.num_fds()
        children = root.children(recursive=True)
    except psutil.Error:
        return  # the tree is gone; the last sample stands
    for child in children:
        try:
            with child.oneshot():
                t = child.cpu_times()
                cpu += t.user + t.system
                memory += _memory(child) if with_memory else 0
                threads += child.num_threads()
                fds += child.num_fds()
        except psutil.Error:
            continue  # exited between listing and reading: its CPU is now in the parent's children_*
    series.add_wait(_waits([root.pid, *(c.pid for c in children)]))
    series.times.append(time.time())
    series.cpu_s.append(cpu)
    series.peak_memory = max(series.peak_memory, memory)
    series.peak_threads = max(series.peak_threads, threads)
    series.peak_fds = max(series.peak_fds, fds)
    series.peak_children = max(series.peak_children, len(children))


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _cores_busy() -> dict[int, float]:
    """Seconds each core has not been idle since boot (/proc/stat): running processes (user, nice,
    system), in interrupts (irq, softirq: the trees' CPU includes the ticks charged to them there, see
    the module docstring), or lost to the hypervisor (steal)."""
    busy = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *ticks = line.split()
                    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in ticks[:8])
                    busy[int(name[3:])] = (user + nice + system + irq + softirq + steal) * _TICK_S
    except (OSError, ValueError, IndexError):
        pass
    return busy


def _softirq_threads() -> dict[int, psutil.Process]:
    """Each core's ksoftirqd/N kernel thread: softirq work deferred there is the run's own loopback traffic."""
    found = {}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if name.startswith("ksoftirqd/") and name[10:].isdigit():
            found[int(name[10:])] = proc
    return found


def _cpu_s(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


class Sampler:
    """Samples named process trees until stopped: `with Sampler(server=pid, locust=pid) as s:`.
    Beside them, `cores` (each core's busy seconds), `softirq` (each core's ksoftirqd thread's CPU)
    and `runner` (this process's own CPU), for `others_pct`."""

    def __init__(self, **pids: int) -> None:
        self.series = {name: Series() for name in pids}
        self.cores: dict[int, Series] = {}
        self.softirq: dict[int, Series] = {}
        self._softirq_threads = _softirq_threads()
        self.runner = Series()
        self._roots = {}
        for name, pid in pids.items():
            try:
                self._roots[name] = psutil.Process(pid)
            except psutil.Error:
                pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def _run(self) -> None:
        for n in itertools.count():
            for name, root in self._roots.items():
                _sample_tree(root, self.series[name], with_memory=n % PSS_EVERY == 0)
            now, own = time.time(), os.times()
            for core, busy in _cores_busy().items():
                series = self.cores.setdefault(core, Series())
                series.times.append(now)
                series.cpu_s.append(busy)
            for core, thread in self._softirq_threads.items():
                if (used := _cpu_s(thread)) is not None:
                    series = self.softirq.setdefault(core, Series())
                    series.times.append(now)
                    series.cpu_s.append(used)
            self.runner.times.append(now)
            self.runner.cpu_s.append(own.user + own.system)
            if self._stop.wait(INTERVAL_S):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def summarize(series: Series, start: float | None, end: float | None, cores: int) -> dict:
    """One tree's costs for result.json; CPU % over [start, end] (100 = one core busy)."""
    cpu_s = series.cpu_between(start, end) if start and end else None
    cpu_pct = 100.0 * cpu_s / (end - start) if cpu_s is not None else None
    wait_s = series.wait_between(start, end) if start and end else None
    return {
        "wait_s_window": wait_s,  # run-queue wait of its threads, summed
        "wait_pct": 100.0 * wait_s / (end - start) if wait_s is not None else None,  # of the window's length
        "cpu_pct": cpu_pct,
        "cpu_util": cpu_pct / (100.0 * cores) if cpu_pct is not None and cores else None,  # of the cores it had
        "cpu_s_window": cpu_s,
        "cpu_s_total": series.cpu_s[-1] if series.cpu_s else None,
        "peak_memory_mb": series.peak_memory / 2**20 if series.peak_memory else None,  # PSS of the tree
        "peak_threads": series.peak_threads or None,
        "peak_fds": series.peak_fds or None,
        "peak_children": series.peak_children,
        "samples": len(series.times),
    }


def others_pct(sampler: Sampler, cores: set[int] | None, ours: float, start: float, end: float) -> float | None:
    """The share (%) of `cores` (None: every core) that other processes used over [start, end]: the
    cores' busy seconds minus `ours` (the trees that ran on them), the runner's own and the cores'
    ksoftirqd threads' (the run's own traffic; see the module docstring)."""
    picked = [c for c in sampler.cores if cores is None or c in cores]
    busy = [sampler.cores[c].cpu_between(start, end) for c in picked]
    runner = sampler.runner.cpu_between(start, end)
    if not busy or None in busy or runner is None or end <= start:
        return None
    softirq = sum(sampler.softirq[c].cpu_between(start, end) or 0.0 for c in picked if c in sampler.softirq)
    return max(0.0, 100.0 * (sum(busy) - ours - runner - softirq) / ((end - start) * len(busy)))  # type: ignore


# The kernel's own count of what happened to TCP connections (/proc/net/netstat's TcpExt line): the listen
# queue's overflows (a connection refused a place in a full accept queue: its SYN, or the handshake's last ACK,
# dropped, so the client tries again after 1 s, 3 s...) and the SYNs clients had to send again. They count the
# whole network namespace, so they are read over one run and paired with what that run's clients saw.
TCP_COUNTERS = {
    "ListenOverflows": "listen_overflows",
    "ListenDrops": "listen_drops",
    "TCPSynRetrans": "syn_retransmits",
}


def tcp_counters(path: str = "/proc/net/netstat") -> dict[str, int] | None:
    """TCP_COUNTERS as they stand now; None where the kernel does not say (not Linux, no /proc)."""
    try:
        lines = [line.split() for line in open(path).read().splitlines() if line.startswith("TcpExt:")]
        names, values = lines[0][1:], [int(v) for v in lines[1][1:]]
    except (OSError, IndexError, ValueError):
        return None
    found = dict(zip(names, values, strict=False))
    return {ours: found[name] for name, ours in TCP_COUNTERS.items() if name in found}


def tcp_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    return {key: after[key] - before[key] for key in before if key in after}
