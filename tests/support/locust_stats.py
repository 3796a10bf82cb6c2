"""Locust's own statistics objects, made in a Python of their own: a test of the capacity search or the
record reads what a real StatsEntry serializes to, never a hand-written imitation of it."""

from __future__ import annotations

import functools
import json
import subprocess
import sys


def in_locust(script: str):
    """Run `script` in a Python of its own and return what it prints as JSON. Importing locust
    monkey-patches the whole process with gevent, so never in pytest's own (a later test's
    subprocess and pty reads hung in a patched process)."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def stats_entry(times_ms: tuple[float, ...], failures: int = 0) -> dict:
    """A serialized StatsEntry as the locustfile logs it: a failed request is logged, then its error."""
    return json.loads(_serialized(times_ms, failures))  # a fresh copy for each caller


@functools.cache
def _serialized(times_ms: tuple[float, ...], failures: int) -> str:
    return json.dumps(
        in_locust(f"""
import json
from locust.stats import RequestStats, StatsEntry
entry = StatsEntry(RequestStats(), "step", "ALL")
for i, t in enumerate({list(times_ms)!r}):
    entry.log(t, 100)
    if i < {failures}:
        entry.log_error(RuntimeError("boom"))
print(json.dumps(entry.serialize(), default=list))
""")
    )
