"""A thread per connection: the accept loop hands each connection to a new thread.

Blocking I/O reads naturally and a slow client holds only its own thread, but the GIL lets one
thread run Python at a time, so CPU-bound work does not scale past one core (run.server_cores=2
measured less than one core's throughput: the threads fight over the GIL across cores), and every
connection costs a thread (stack, scheduler entry). Threads are capped at limits.max_connections:
past the cap a connection gets 503 and is closed, so a flood cannot exhaust memory; so does one that
arrives when no thread can be started (the process or user limit, or memory, ran out) -- the server
goes on.

On SIGTERM: stop accepting, shut down the read side of every open connection (a blocked recv()
returns EOF, a response being written still completes), and wait up to the grace period.
"""

from __future__ import annotations

import socket
import threading
import time

from servers import base


class PerThread(base.Handoff):
    """A new thread for each connection, up to limits.max_connections alive."""

    def __init__(self, app: base.App) -> None:
        super().__init__(app)
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def held(self) -> int:
        return len(self.open)

    def hand(self, conn: socket.socket) -> str | None:
        # Shutdown must not land between registering the connection and starting its worker:
        # nothing would serve or close it, and the wind-down would wait out the grace period.
        # (Workers inherit the mask, so SIGTERM always reaches the main thread.)
        with base.held_back():
            with self.lock:
                self.open.add(conn)
            try:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to be had (RLIMIT_NPROC, memory): refuse this one
                with self.lock:
                    self.open.discard(conn)
                return "cannot start a worker"
        return None

    def _serve(self, conn: socket.socket) -> None:
        try:
            base.serve_connection(conn, self.app)
        finally:
            with self.lock:
                self.open.discard(conn)

    def wind_down(self) -> None:
        with self.lock:
            base.stop_reading(self.open)
        deadline = time.monotonic() + self.app.grace
        while self.open and time.monotonic() < deadline:
            time.sleep(0.01)


def serve(sock: socket.socket, app: base.App) -> None:
    base.serve_blocking(sock, app, PerThread(app))


if __name__ == "__main__":
    base.run("thread", serve)
