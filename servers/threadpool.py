"""A bounded pool of worker threads fed by the accept loop through a bounded queue.

The thread model without its two costs: threads are started once, not per connection, and their
number is fixed (`--threads`), so a flood cannot make the process start thousands. The pool does not
follow the cores it is given (run.server_cores): the GIL runs one of its threads at a time, so more
cores add no Python throughput; `--threads` bounds the clients served at once, not the CPU used. The
accept loop puts each connection on a queue of `--queue` places; a free worker takes it and serves
it with the same blocking loop as the thread model (base.serve_connection). When every worker is
busy and the queue is full -- or the server already holds limits.max_connections -- the new
connection gets 503 and is closed at once (base.refuse), instead of the queue growing without bound.

What the model costs: a worker is held by its connection for the connection's whole life,
keep-alive idle time included (up to limits.keepalive_timeout after each response), so at most
`--threads` clients are served at once and a queued one waits for a worker to come free. The
default of 128 threads covers the runner's default load (100 keep-alive users) with room to spare;
Tomcat and Jetty default to 200, which is the same order. Fewer threads than users would starve
the queued users for as long as the served ones keep their connections busy; for the same reason
as many slowloris connections as there are threads starve everyone else until their header
deadline (Apache's prefork and worker MPMs share the weakness; an event loop does not). The GIL
lets one thread run Python at a time, as in the thread model.

Threads are started as serving begins (as many as the process may start: RLIMIT_NPROC or memory can
refuse some, then the pool is smaller and says so on stderr; with none, every connection gets 503).
On SIGTERM: stop accepting, answer 503 to nothing more, shut down the read side of every connection
a worker holds (a blocked recv() returns EOF, a response being written completes), close the queued
ones, and wait up to the grace period for the workers.
"""

from __future__ import annotations

import argparse
import queue
import socket
import sys
import threading
import time

from servers import base

DEFAULT_THREADS = 128
DEFAULT_QUEUE = 128


def options(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument("--threads", type=base.positive_int, default=DEFAULT_THREADS, help="worker threads in the pool")
    parser.add_argument(
        "--queue",
        type=base.positive_int,
        default=DEFAULT_QUEUE,
        help="connections that may wait for a worker; past it: 503",
    )


class Pool(base.Handoff):
    """A queue of `--queue` places in front of `--threads` workers started once."""

    def __init__(self, app: base.App) -> None:
        super().__init__(app)
        size = getattr(app.options, "threads", DEFAULT_THREADS)
        # The accept loop runs where Shutdown lands, so nothing it does may be cut in two: it takes no
        # lock, and hands over through a SimpleQueue, whose put() is one C call. (queue.Queue's Condition
        # is Python: a Shutdown inside put() could wake a worker without striking it off the waiters,
        # and a stop sign of the wind-down then woke nobody, so the stop waited out its grace period.)
        # Its bound is ours, from counts that only ever grow, each written by one side.
        self.waiting: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self.places = getattr(app.options, "queue", DEFAULT_QUEUE)
        self.handed = 0  # connections put on the queue (the accept loop's count)
        self.taken = 0  # of them, taken by a worker (the workers', under the lock)
        self.closed = 0  # of them, served to their end
        self.serving: set[socket.socket] = set()  # connections a worker holds
        self.stopping = False  # the wind-down has begun: a connection a worker takes now is stopped at once
        self.lock = threading.Lock()  # the workers' (and the wind-down's, once Shutdown has come)
        # Workers inherit the signal mask: started with SIGTERM blocked, so it always reaches the main
        # thread, whose handler raises Shutdown out of accept().
        self.workers: list[threading.Thread] = []
        with base.held_back():
            for _ in range(size):
                thread = threading.Thread(target=self._work, daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # RLIMIT_NPROC, memory: serve with what could start
                    break
                self.workers.append(thread)
        if len(self.workers) < size:
            print(f"threadpool: started {len(self.workers)} of {size} worker threads", file=sys.stderr)

    def _work(self) -> None:
        while True:
            conn = self.waiting.get()
            if conn is None:
                return
            with self.lock:
                self.taken += 1
                self.serving.add(conn)
                if self.stopping:  # taken as the wind-down stopped reading the others
                    base.stop_reading([conn])
            try:
                base.serve_connection(conn, self.app)
            finally:
                with self.lock:
                    self.serving.discard(conn)
                    self.closed += 1

    def held(self) -> int:
        return self.handed - self.closed  # queued or served, from admission to close (for max_connections)

    def hand(self, conn: socket.socket) -> str | None:
        if not self.workers:
            return "no worker threads"
        if self.handed - self.taken >= self.places:
            return "all workers busy and the queue is full"
        self.handed += 1
        self.waiting.put(conn)
        return None

    def wind_down(self) -> None:
        while True:  # never served: just close
            try:
                conn = self.waiting.get_nowait()
            except queue.Empty:
                break
            if conn is not None:
                conn.close()
        with self.lock:
            self.stopping = True
            base.stop_reading(self.serving)
        for _ in self.workers:  # one stop sign each
            self.waiting.put(None)
        deadline = time.monotonic() + self.app.grace
        for thread in self.workers:  # past the grace period they are daemons, and end with the process
            thread.join(max(0.0, deadline - time.monotonic()))


def serve(sock: socket.socket, app: base.App) -> None:
    base.serve_blocking(sock, app, Pool(app))


if __name__ == "__main__":
    base.run("threadpool", serve, options=options)
