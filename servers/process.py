"""A process per connection: fork() after accept; the child serves that connection and exits.

Each connection gets its own interpreter, so CPU-bound work spreads over every core and a crash
stays in one child, at the price of a fork per connection (about a millisecond here) and a process
per open connection. With keep-alive a child lives as long as its client keeps the connection.

Children are always reaped: a SIGCHLD handler collects them as they exit (SIGCHLD is blocked
around fork so a child cannot be reaped before the parent records its pid), and at most
limits.max_connections live at once (past that: 503 and close). Each child adds the requests it
answered to a counter in shared memory when it exits. On SIGTERM the parent stops accepting,
passes SIGTERM to its children, waits up to the grace period, then SIGKILLs what is left.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from multiprocessing import Value

from servers import base


def _child(listener: socket.socket, conn: socket.socket, app: base.App, total) -> None:
    status = 0
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        base.serve_connection(conn, app)
    except base.Shutdown:
        pass
    except BaseException:
        status = 1
    finally:
        with total.get_lock():
            total.value += app.served
        os._exit(status)  # never return into the parent's accept loop


def serve(sock: socket.socket, app: base.App) -> None:
    total = Value("Q", 0)
    children: set[int] = set()

    def reap(signum: int = 0, frame: object = None) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)

    signal.signal(signal.SIGCHLD, reap)
    try:
        while True:
            conn = base.accept(sock)
            if conn is None:
                continue
            if len(children) >= app.limits.max_connections:
                base.refuse(conn, 503, "too many connections")
                continue
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                pid = os.fork()
                if pid == 0:
                    _child(sock, conn, app, total)
                children.add(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            conn.close()
    except base.Shutdown:
        sock.close()
        _stop_children(children, app.grace, reap)
    finally:
        app.served = total.value


def _stop_children(children: set[int], grace: float, reap) -> None:
    for pid in list(children):
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        time.sleep(0.01)
        reap()
    for pid in list(children):
        _kill(pid, signal.SIGKILL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    base.run("process", serve)
