"""A process per connection: fork() after accept; the child serves that connection and exits.

Each connection gets its own interpreter, so CPU-bound work spreads over every core it is given
(run.server_cores: children inherit the parent's affinity) and a crash stays in one child, at the
price of a fork per connection (about a millisecond here) and a process per open connection. With
keep-alive a child lives as long as its client keeps the connection.

Children are always reaped: a SIGCHLD handler collects them as they exit (SIGCHLD is blocked
around fork so a child cannot be reaped before the parent records its pid), and at most
limits.max_connections live at once (past that: 503 and close). Each child reports the requests
it answered as one 8-byte write to a pipe when it exits (atomic: under PIPE_BUF), which the parent
drains whenever it reaps. No lock is shared with the children: a process-shared lock held by a
child that gets killed would deadlock the parent (it did, with multiprocessing.Value, at SIGTERM).
On SIGTERM the parent stops accepting, passes SIGTERM to its children, waits up to the grace
period, then SIGKILLs what is left.

Faults: a child that dies abnormally (killed, crashed) is reaped like the rest and counted; one
line on stderr at exit reports them, since a killed child never writes its count and what it had
answered is missing from SERVED. A fork() that fails (process limit, memory) costs that connection
a 503, not the server.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import time

from servers import base

COUNT = struct.Struct("Q")
# Blocked around fork(): SIGCHLD so a child cannot be reaped before its pid is recorded; SIGTERM and
# SIGINT so Shutdown cannot land between fork() and children.add() (an orphan nobody stops), nor in
# the new child before _child() takes over (it would run the parent's wind-down).
FORK_BLOCKED = frozenset({signal.SIGCHLD}) | base.STOP_SIGNALS


def _child(listener: socket.socket, conn: socket.socket, app: base.App, counts: int) -> None:
    status = 0
    app.served = 0  # the fork copied the parent's running total; report only this connection's
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)  # a SIGTERM held back lands here
        base.serve_connection(conn, app)
    except base.Shutdown:
        pass
    except BaseException:
        status = 1
    finally:
        try:
            os.write(counts, COUNT.pack(app.served))
        finally:
            os._exit(status)  # never return into the parent's accept loop


def serve(sock: socket.socket, app: base.App) -> None:
    counts_r, counts_w = os.pipe()
    os.set_blocking(counts_r, False)
    children: set[int] = set()
    died = 0  # children that exited abnormally (killed, crashed); reported at exit

    def drain() -> None:
        while True:
            try:
                data = os.read(counts_r, 65536)  # a multiple of 8: every write is 8 bytes, atomic
            except BlockingIOError:
                return
            answered = sum(n for (n,) in COUNT.iter_unpack(data))
            # No call between reading and writing app.served: a SIGCHLD that runs a nested drain()
            # inside the sum() above would otherwise have its addition overwritten.
            app.served += answered

    def reap(signum: int = 0, frame: object = None) -> None:
        nonlocal died
        # A Shutdown between waitpid() and discard() would leave a dead pid in `children`: the
        # wind-down would wait the whole grace period for it, then SIGKILL whoever has that pid now.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, base.STOP_SIGNALS)
        try:
            drain()
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                children.discard(pid)
                died += status != 0
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    signal.signal(signal.SIGCHLD, reap)
    try:
        while True:
            conn = base.accept(sock)
            if conn is None:
                continue
            if len(children) >= app.limits.max_connections:
                base.refuse(conn, 503, "too many connections")
                continue
            signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
            try:
                pid = os.fork()
            except OSError:  # EAGAIN (process limit) or ENOMEM: no worker for this connection
                pid = -1
            else:
                if pid == 0:
                    os.close(counts_r)
                    _child(sock, conn, app, counts_w)
                children.add(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)
            if pid < 0:
                base.refuse(conn, 503, "cannot start a worker")
                continue
            conn.close()
    except base.Shutdown:
        sock.close()
        _stop_children(children, app.grace, reap)
    finally:
        drain()
        os.close(counts_r)
        os.close(counts_w)
        if died:
            print(
                f"process: {died} worker(s) died abnormally; a killed one's requests are not in SERVED", file=sys.stderr
            )


def _stop_children(children: set[int], grace: float, reap) -> None:
    for pid in list(children):
        base.signal_child(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        time.sleep(0.01)
        reap()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # reaped below: not counted as having died
    for pid in list(children):
        base.signal_child(pid, signal.SIGKILL)
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":
    base.run("process", serve)
