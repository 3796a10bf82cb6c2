"""Locust processes started before their job: each imports while no run is measured, then becomes a
job's Locust (runner/locust/spare.py is the other half).

Why: a Locust process imports for about 0.4 s before its run clock starts. Started cold once the
server is ready, that was half of what a job cost beyond its run time, in every job of a sweep. The
jobs of a sweep run one after another in this process, so the imports can happen in time no run
measures: while the sweep is planned, and while a job winds down and the next server starts.

How, in a sweep's life:
- before planning, one spare starts (`prepare(1)`, from the sweeper); once the sweep's size is known,
  another, for at most DEPTH jobs ahead (`prepare(jobs)`, sweep.begin);
- a job's Locust is the oldest spare (`take`): pinned to Locust's cores, resumed, handed its command
  line. Every other spare is paused (SIGSTOP, `pause`): none may import on a core while a run is
  measured. A job with no spare (a spare that died, a distributed master) starts Locust cold;
- once a job's Locust writes its stopping line (its measured window is over: load.Locust.tick) the
  paused spares resume and new ones start, again up to DEPTH for the jobs left.
Why DEPTH 2: the time between two runs (Locust stopping, the server stopping, the record, Hydra, the
next server starting) is about 0.2 s here, shorter than an import, so a spare imports over two such
gaps, paused between them. Spares run unpinned: between runs the server's core is idle.

Either way the same command line runs, in a process that has done nothing but import; result.json's
`load.spare` says which it was. At the end (`discard`: on_multirun_end, atexit) the spares are
killed; if this process dies, the kernel kills them (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from runner.run import procs

DEPTH = 2  # spares at most: one for each of the next DEPTH jobs (see the module docstring)
_spares: deque[subprocess.Popen] = deque()  # the next job's first


def prepare(jobs_ahead: int) -> None:
    """This job's Locust has left its measured window: the spares go on importing, and new ones start
    until there is one for each of the next min(DEPTH, jobs_ahead) jobs."""
    _drop_dead()
    for spare in _spares:
        _signal(spare, signal.SIGCONT)
    # from the main thread (jobs run in it): PR_SET_PDEATHSIG fires when the thread that started a spare ends
    while len(_spares) < min(DEPTH, jobs_ahead):
        with procs.interrupts_held():  # held until the spare is in `_spares`, so that discard() finds it
            _spares.append(
                subprocess.Popen(
                    [sys.executable, "-m", "runner.locust.spare", str(os.getpid())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,  # until it is given its log
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )


def pause() -> None:
    """A job's load is about to start: every spare stops (SIGSTOP) until that job's Locust is stopping, so
    that none imports while a run is measured."""
    for spare in _spares:
        _signal(spare, signal.SIGSTOP)


def take(argv: list[str], log_path: Path, cpus: set[int] | None) -> subprocess.Popen | None:
    """The oldest live spare, now running `argv` (`python -m locust ...`) with its output to `log_path`,
    on `cpus`, and the others paused; None when there is no spare to take (a cold start)."""
    _drop_dead()
    spare = _spares.popleft() if _spares else None
    pause()
    if spare is None:
        return None
    assert argv[1:3] == ["-m", "locust"], argv
    try:
        os.sched_setaffinity(spare.pid, cpus or os.sched_getaffinity(0))  # its threads and forks inherit it
        os.killpg(spare.pid, signal.SIGCONT)  # paused still if the job before never reached its stopping line
        spare.stdin.write(json.dumps({"argv": argv[3:], "log": str(log_path)}).encode() + b"\n")
        spare.stdin.close()  # one line, once
    except OSError:  # it died meanwhile (ProcessLookupError, BrokenPipeError): a cold start
        _end(spare)
        return None
    return spare


def discard() -> None:
    """End every spare at once (SIGKILL): one holds nothing but its imports, and one still importing would
    keep a refused sweep waiting."""
    while _spares:
        _end(_spares.popleft())


def _end(spare: subprocess.Popen) -> None:
    procs.kill_group(spare)
    spare.wait()
    try:
        spare.stdin.close()
    except OSError:  # what take() wrote could not be flushed: it is gone with the spare
        pass


def _drop_dead() -> None:
    for spare in [s for s in _spares if s.poll() is not None]:
        _spares.remove(spare)
        _end(spare)


def _signal(spare: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(spare.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


atexit.register(discard)
