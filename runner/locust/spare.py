"""A Locust process started before its run is known: it imports Locust and what our locustfile
imports, then waits for its command line on stdin and becomes `python -m locust` with it.

Why: a Locust process spends about 0.4 s importing (Locust's own modules 0.36 s, ours the rest)
before its run clock starts, in every job of a sweep; a spare does it while no run is measured
(runner/run/spare.py says when).

What it is not: a process that runs two tests. It takes one command line, once, and from then on is
the Locust that line starts, in a fresh process that has done nothing but import; its locustfiles are
loaded by Locust, by path, as on a cold start. Nothing here is imported under their module names, so
no listener is registered twice.

The line: JSON {"argv": Locust's arguments, "log": the file its stdout and stderr go to}. An empty
stdin (the runner closed it) ends the spare without a word; the runner's death kills it (a spare may
be paused, and a paused process reads nothing). Its argument: the runner's pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with(parent: int) -> None:
    """SIGKILL when the runner dies, even while paused (SIGSTOP: a closed stdin would never be read)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above
        os._exit(0)


if __name__ == "__main__":  # before the imports below: the runner may die while they take their time
    _die_with(int(sys.argv[1]))

import gevent  # noqa: E402
import locust.main  # noqa: E402 -- Locust's imports and gevent's monkey patching: the cost a spare pays early

from runner import latency, schema  # noqa: E402, F401 -- what locustfile.py imports by name, cached
from runner.locust import arrivals, engine, wire  # noqa: E402, F401


def main() -> None:
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return
    _libc.prctl(_PR_SET_PDEATHSIG, 0, 0, 0, 0)  # from here on a Locust like any other
    order = json.loads(line)
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)  # as a cold start's stdin
    os.dup2(null, 0)
    os.close(null)
    sys.argv = [locust.main.__file__, *order["argv"]]
    gevent.get_hub().loop.update_now()  # the loop's clock stood still while the spare waited
    locust.main.main()


if __name__ == "__main__":
    main()
