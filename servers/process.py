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
from typing import NoReturn

from servers import base

COUNT = struct.Struct("Q")


class PerProcess(base.Handoff):
    """A forked child for each connection, up to limits.max_connections alive; reaped on SIGCHLD."""

    def __init__(self, listener: socket.socket, app: base.App) -> None:
        super().__init__(app)
        self.listener = listener
        self.counts_r, self.counts_w = os.pipe()
        os.set_blocking(self.counts_r, False)
        self.children: set[int] = set()
        self.died = 0  # children that exited abnormally (killed, crashed); reported at exit
        signal.signal(signal.SIGCHLD, self.reap)

    def held(self) -> int:
        return len(self.children)

    def hand(self, conn: socket.socket) -> str | None:
        with base.held_back(base.FORK_BLOCKED):
            try:
                pid = os.fork()
            except OSError:  # EAGAIN (process limit) or ENOMEM: no worker for this connection
                return "cannot start a worker"
            if pid == 0:
                self._child(conn)
            self.children.add(pid)
        conn.close()
        return None

    def _child(self, conn: socket.socket) -> NoReturn:
        os.close(self.counts_r)
        self.app.served = 0  # the fork copied the parent's running total; report only this connection's

        def body() -> None:
            self.listener.close()
            base.serve_connection(conn, self.app)

        base.child_life(body, lambda: os.write(self.counts_w, COUNT.pack(self.app.served)))

    def drain(self) -> None:
        while True:
            try:
                data = os.read(self.counts_r, 65536)  # a multiple of 8: every write is 8 bytes, atomic
            except BlockingIOError:
                return
            answered = sum(n for (n,) in COUNT.iter_unpack(data))
            # No call between reading and writing app.served: a SIGCHLD that runs a nested drain()
            # inside the sum() above would otherwise have its addition overwritten.
            self.app.served += answered

    def reap(self, signum: int = 0, frame: object = None) -> None:
        # A Shutdown between waitpid() and discard() would leave a dead pid in `children`: the
        # wind-down would wait the whole grace period for it, then SIGKILL whoever has that pid now.
        with base.held_back():
            self.drain()
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                self.children.discard(pid)
                self.died += status != 0

    def wind_down(self) -> None:
        """SIGTERM the children, SIGKILL those left after the grace period, then the last counts."""
        for pid in list(self.children):
            base.signal_child(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.app.grace
        while self.children and time.monotonic() < deadline:
            time.sleep(0.01)
            self.reap()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # reaped below: not counted as having died
        for pid in list(self.children):
            base.signal_child(pid, signal.SIGKILL)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def close(self) -> None:
        self.drain()
        os.close(self.counts_r)
        os.close(self.counts_w)
        if self.died:
            print(
                f"process: {self.died} worker(s) died abnormally; a killed one's requests are not in SERVED",
                file=sys.stderr,
            )


def serve(sock: socket.socket, app: base.App) -> None:
    children = PerProcess(sock, app)
    try:
        base.serve_blocking(sock, app, children)
    finally:
        children.close()


if __name__ == "__main__":
    base.run("process", serve)
