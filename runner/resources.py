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

Why not Locust's own CPU warning: it is checked every 10 s and its first reading is 0, so a 20 s
run at 100% CPU was never flagged on this machine (docs/design.md).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from dataclasses import dataclass, field

import psutil

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

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used in [start, end], linearly interpolated between samples."""
        if len(self.times) < 2 or end <= start or start < self.times[0] or end > self.times[-1] + INTERVAL_S:
            return None
        return self._at(min(end, self.times[-1])) - self._at(start)

    def _at(self, t: float) -> float:
        i = bisect.bisect_left(self.times, t)
        if i == 0:
            return self.cpu_s[0]
        if i >= len(self.times):
            return self.cpu_s[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        c0, c1 = self.cpu_s[i - 1], self.cpu_s[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0)


def _memory(proc: psutil.Process) -> int:
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return proc.memory_info().rss


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
    series.times.append(time.time())
    series.cpu_s.append(cpu)
    series.peak_memory = max(series.peak_memory, memory)
    series.peak_threads = max(series.peak_threads, threads)
    series.peak_fds = max(series.peak_fds, fds)
    series.peak_children = max(series.peak_children, len(children))


class Sampler:
    """Samples named process trees until stopped: `with Sampler(server=pid, locust=pid) as s:`."""

    def __init__(self, **pids: int) -> None:
        self.series = {name: Series() for name in pids}
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
    return {
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
