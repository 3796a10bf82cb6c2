"""Time a thread spent runnable but waiting for a CPU, from the kernel's schedstat.

A process starved by its neighbours does less work without being busy, so CPU time alone cannot
tell "Locust was the limit" from "Locust waited for its core". Read by the orchestrator's sampler
(runner/run/resources.py) for every process tree and by Locust's capacity shape for its own thread.
"""

from __future__ import annotations


def wait_s(path: str) -> float | None:
    """Seconds a thread has waited for a CPU, from a schedstat file (/proc/<pid>/task/<tid>/schedstat,
    /proc/thread-self/schedstat); None where the kernel has none."""
    try:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None
