"""Which cores the server runs on, which Locust runs on, and how many Locust processes: run.server_cores and
load.processes=auto.

Strategy: the cores this runner may use (its affinity) are split once per run. The server takes
`run.server_cores` of them -- a count (the first N), a list of core ids, or `all` -- and Locust the rest,
one Locust process per core it was given (load.processes=auto), so a server on several cores meets a
generator on several cores. A model whose size follows its cores takes it from its affinity (prefork's
workers). When the server takes every core, Locust shares them with it: allowed and recorded
(`shared`), one Locust process, and judged by how much of the server's cores Locust used
(runner/run/validity.py). `run.pin=false`, or a machine of one core, pins nothing. A value the machine
cannot give is refused before anything starts, naming the cores there are.

On 16 cores, the default: server on core 0, Locust on 1-15 as 15 processes; run.server_cores=4: server on
0-3, Locust on 4-15 as 12 processes; run.server_cores=all: server on 0-15, one Locust process sharing them
(tests/runner/run/test_cores.py checks it with the core count faked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Split:
    server: frozenset[int] | None  # None: not pinned (may run anywhere)
    locust: frozenset[int] | None
    shared: bool = False  # Locust runs on the server's cores (the server took every one)


def available() -> list[int]:
    """The cores this runner may use."""
    return sorted(os.sched_getaffinity(0))


def check(value: Any, cores: list[int]) -> list[str]:
    """What is wrong with run.server_cores on a machine whose usable cores are `cores`."""
    there = f"this machine gives {len(cores)} core{'s' if len(cores) != 1 else ''} ({_span(cores)})"
    if value == "all":
        return []
    if isinstance(value, (bool, str)) or not isinstance(value, int) and not hasattr(value, "__iter__"):
        return [f"run.server_cores: a count, a list of core ids or all, got {value!r}"]
    if isinstance(value, int):
        if not 1 <= value <= len(cores):
            return [f"run.server_cores: {value} cores asked for, {there}"]
        return []
    ids = list(value)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return [f"run.server_cores: a list of core ids must hold whole numbers, got {ids!r}"]
    missing = sorted(set(ids) - set(cores))
    if missing:
        return [f"run.server_cores: core{'s' if len(missing) > 1 else ''} {_span(missing)} not available; {there}"]
    if len(set(ids)) != len(ids):
        return [f"run.server_cores: a core named twice in {ids}"]
    return []


def split(pin: bool, server_cores: Any, cores: list[int]) -> Split:
    """The server's and Locust's cores (run.pin, run.server_cores checked by `check`)."""
    if not pin or len(cores) < 2:
        return Split(None, None)
    if server_cores == "all":
        server = list(cores)
    elif isinstance(server_cores, int):
        server = cores[:server_cores]
    else:
        server = sorted(int(i) for i in server_cores)
    locust = [c for c in cores if c not in server]
    if not locust:
        return Split(frozenset(server), frozenset(cores), shared=True)
    return Split(frozenset(server), frozenset(locust))


def locust_processes(processes: Any, cores: Split, searching: bool = False) -> int:
    """Locust's process count: load.processes, or for `auto` one per core Locust was given -- one when it shares
    the server's cores, is not pinned, or runs a capacity search by users (its live step decision reads one
    process's numbers; a search by rate runs its steps on every process)."""
    if processes != "auto":
        return int(processes)
    if searching or cores.locust is None or cores.shared:
        return 1
    return len(cores.locust)


def _span(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
