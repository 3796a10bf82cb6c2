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

import signal
import socket
import threading
import time

from servers import base


def serve(sock: socket.socket, app: base.App) -> None:
    open_conns: set[socket.socket] = set()
    lock = threading.Lock()

    def worker(conn: socket.socket) -> None:
        try:
            base.serve_connection(conn, app)
        finally:
            with lock:
                open_conns.discard(conn)

    try:
        while True:
            conn = base.accept(sock)
            if conn is None:
                continue
            # Shutdown must not land between registering the connection and starting its worker:
            # nothing would serve or close it, and the wind-down would wait out the grace period.
            # (Workers inherit the mask, so SIGTERM always reaches the main thread.)
            signal.pthread_sigmask(signal.SIG_BLOCK, base.STOP_SIGNALS)
            try:
                with lock:
                    refusal = "too many connections" if len(open_conns) >= app.limits.max_connections else None
                    if refusal is None:
                        open_conns.add(conn)
                if refusal is None:
                    try:
                        threading.Thread(target=worker, args=(conn,), daemon=True).start()
                    except RuntimeError:  # no thread to be had (RLIMIT_NPROC, memory): refuse this one
                        with lock:
                            open_conns.discard(conn)
                        refusal = "cannot start a worker"
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, base.STOP_SIGNALS)
            if refusal is not None:
                base.refuse(conn, 503, refusal)
    except base.Shutdown:
        sock.close()
        with lock:
            base.stop_reading(open_conns)
        deadline = time.monotonic() + app.grace
        while open_conns and time.monotonic() < deadline:
            time.sleep(0.01)


if __name__ == "__main__":
    base.run("thread", serve)
