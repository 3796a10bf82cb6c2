"""Pre-fork: N worker processes, forked once at start, serve one listening socket; the parent
supervises them and starts a new one when one dies.

The design of nginx, gunicorn and Apache's prefork MPM: processes sidestep the GIL, so CPU-bound
work spreads over N cores, and a crash costs one worker, not the server; unlike the process model,
nothing is forked per connection. N is `--workers`, by default the number of CPUs this process may
run on (os.sched_getaffinity: under `taskset -c 0` that is 1), so it follows the cores the runner
gives it (run.server_cores).

Each worker runs the epoll model's event loop (servers/epoll.py serve_loop), not the blocking
serve_connection: a blocking worker holds one connection at a time, so N workers would serve only
N keep-alive clients and starve the rest, while an event loop per worker serves thousands, and a
worker then costs the same per request as `epoll`. How connections reach the workers:
- shared (default): every worker waits on the one socket the parent bound; EPOLLEXCLUSIVE wakes
  one waiting worker per connection instead of all of them (the thundering herd).
- `--reuse-port`: each worker accepts on a socket of its own, all bound to the same port with
  SO_REUSEPORT, and the kernel spreads connections over them by a hash of the addresses. The parent
  creates and keeps those sockets, so a respawned worker takes over its predecessor's socket with
  the connections already waiting in its backlog (a worker that closed its own would reset them).

What the workers share, in one anonymous shared memory map (each slot has a single writer):
- each worker's running count of answered requests, updated on every pass of its loop; when a
  worker dies the parent adds its last count to the total, so SERVED includes the requests of
  workers that died or were killed (up to their last pass) and of the ones that replaced them.
- each worker's open connections, for limits.max_connections across all of them: a worker checks
  the total and takes a place under a POSIX record lock (fcntl.lockf) -- one per accept, never per
  request. The kernel drops a dead process's record lock, so a worker killed while holding it
  cannot wedge the others (a multiprocessing lock would: see servers/process.py).

The parent blocks in waitpid(); a worker that exits is reaped, reported on stderr and replaced
(after a pause if it died within a second of starting, so a worker that cannot start does not
become a fork loop). On SIGTERM the parent closes its sockets, SIGTERMs the workers (each closes
its connections and writes its final count), waits up to the grace period, SIGKILLs what is left,
reaps every one and prints the total.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import mmap
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import NoReturn

from servers import base, epoll

# One runnable thread per core it may use (a worker per core, unless --workers says more): whatever makes one
# wait for a CPU is someone else (the runner's `contended` flag reads its run-queue wait: runner/run/validity.py)
ONE_RUNNABLE = True

RESPAWN_PAUSE_S = 1.0  # before replacing a worker that died within this long of starting


def options(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--workers",
        type=base.positive_int,
        default=None,
        help="worker processes (default: the CPUs this process may use)",
    )
    parser.add_argument(
        "--reuse-port", action="store_true", help="a listening socket per worker (SO_REUSEPORT) instead of one shared"
    )


class Shared:
    """Per-worker slots in shared memory: [served, open connections] each, plus the lock file."""

    def __init__(self, workers: int) -> None:
        self._map = mmap.mmap(-1, 16 * workers)  # anonymous and MAP_SHARED: the children see our writes
        self.slots = memoryview(self._map).cast("q")
        self._lock = tempfile.TemporaryFile()  # a POSIX record lock needs a file; never written

    def served(self, worker: int) -> int:
        return self.slots[2 * worker]

    def set_served(self, worker: int, n: int) -> None:
        self.slots[2 * worker] = n

    def clear(self, worker: int) -> None:
        with self.locked():
            self.slots[2 * worker] = self.slots[2 * worker + 1] = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.lockf(self._lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._lock.fileno(), fcntl.LOCK_UN)


class SharedGate:
    """epoll.Gate for worker `index`: a place among limits.max_connections shared by all workers."""

    def __init__(self, shared: Shared, index: int, cap: int) -> None:
        self.shared = shared
        self.slot = 2 * index + 1
        self.cap = cap

    def acquire(self) -> bool:
        slots = self.shared.slots
        with self.shared.locked():
            if sum(slots[1::2]) >= self.cap:
                return False
            slots[self.slot] += 1
            return True

    def release(self) -> None:
        slots = self.shared.slots
        with self.shared.locked():
            slots[self.slot] -= 1


def _worker(
    index: int, listener: socket.socket, others: list[socket.socket], app: base.App, shared: Shared, exclusive: bool
) -> NoReturn:
    """The forked child: serve until SIGTERM, leave the final count in its slot, never return."""
    app.served = 0  # the fork copied the parent's
    slots, slot = shared.slots, 2 * index

    def body() -> None:
        for sock in others:
            sock.close()  # a worker polls only its own listener

        def tick(served: int) -> None:
            slots[slot] = served

        epoll.serve_loop(
            listener,
            app,
            gate=SharedGate(shared, index, app.limits.max_connections),
            tick=tick,
            exclusive=exclusive,
        )

    base.child_life(body, lambda: shared.set_served(index, app.served))


def serve(sock: socket.socket, app: base.App) -> None:
    count = getattr(app.options, "workers", None) or len(os.sched_getaffinity(0))
    reuse_port = getattr(app.options, "reuse_port", False)
    if reuse_port:  # the socket run() bound is worker 0's; the others bind the same port
        host, port = sock.getsockname()[:2]
        backlog = getattr(app.options, "backlog", base.BACKLOG)
        listeners = [sock] + [base.listen(host, port, backlog, reuse_port=True) for _ in range(count - 1)]
    else:
        listeners = [sock] * count
    shared = Shared(count)
    pids: dict[int, int] = {}  # pid -> worker index
    started: dict[int, float] = {}  # worker index -> when
    retired = 0  # requests answered by workers that have exited

    def spawn(index: int) -> bool:
        with base.held_back(base.FORK_BLOCKED):
            try:
                pid = os.fork()
            except OSError as exc:  # EAGAIN (process limit) or ENOMEM: try again later
                print(f"prefork: cannot start worker {index}: {exc.strerror}", file=sys.stderr, flush=True)
                return False
            if pid == 0:
                others = [s for s in set(listeners) if s is not listeners[index]]
                _worker(index, listeners[index], others, app, shared, exclusive=not reuse_port)
            pids[pid] = index
            started[index] = time.monotonic()
            return True

    def reaped(pid: int) -> int:
        """Book a worker that exited; returns its index."""
        nonlocal retired
        index = pids.pop(pid)
        retired += shared.served(index)
        shared.clear(index)  # its connections died with it
        return index

    missing = set(range(count))
    try:
        while True:
            missing = {index for index in missing if not spawn(index)}
            if missing:  # some could not start: look again in a while
                time.sleep(RESPAWN_PAUSE_S)
                pid, status = os.waitpid(-1, os.WNOHANG) if pids else (0, 0)
                if pid == 0:
                    continue
            else:
                pid, status = os.waitpid(-1, 0)  # SIGTERM raises Shutdown out of it
            with base.held_back(base.FORK_BLOCKED):
                index = reaped(pid)
                missing.add(index)
            print(f"prefork: worker {pid} died ({_how(status)}); starting another", file=sys.stderr, flush=True)
            if time.monotonic() - started[index] < RESPAWN_PAUSE_S:
                time.sleep(RESPAWN_PAUSE_S)
    except base.Shutdown:
        for listener in set(listeners):
            listener.close()
        _stop(pids, app.grace, reaped)
        app.served = retired


def _stop(pids: dict[int, int], grace: float, reaped) -> None:
    """SIGTERM every worker, SIGKILL those left after `grace`; each is reaped and booked."""
    for pid in list(pids):
        base.signal_child(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            time.sleep(0.01)
        else:
            reaped(pid)
    for pid in list(pids):
        base.signal_child(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reaped(pid)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


if __name__ == "__main__":
    base.run("prefork", serve, options=options)
