"""select() multiplexing: one thread, one loop, every socket non-blocking.

Each pass asks select() which sockets can be read or written, then reads what arrived, parses
every complete request in it, queues the responses and sends as much as the socket takes. State
lives per connection (parser, output buffer, deadline), so partial reads, partial writes and
pipelined requests all fall out of the same loop. No thread or process switch per request: this
is why the original assignment found it fastest. Its limits are its own: one core, and a handler
that blocks stalls every client.

select() itself has two: it rescans every descriptor on each call (O(connections) per pass), and
it cannot watch a descriptor >= FD_SETSIZE (1024) -- Python raises ValueError. A connection whose
descriptor is past that ceiling is answered 503 and closed at accept, so the server keeps serving
the connections it can watch. The `epoll` model has neither limit.

A connection with output pending is not read from until the output drains (back-pressure: a
client that pipelines without reading cannot grow our buffers). A reply counts in SERVED once
send() has taken all of it, and a closed connection's parser lets go of its buffers at once
(base.shut). Deadlines (header, keep-alive idle, a stalled reader) are checked every half second.
Out of descriptors (EMFILE), the listener leaves the select() set for base.ACCEPT_BACKOFF_S instead
of being retried on every pass.

A reply that must wait (the io workload) becomes a timer on a heap, and select()'s timeout is cut
to the earliest one; the loop never sleeps. The connection handles nothing more until its timer
fires, so pipelined responses stay in order.
"""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import time

from servers import base
from servers.http import HTTPError, RequestParser, error_response

FD_SETSIZE = 1024
SWEEP_INTERVAL_S = 0.5
ACCEPTS_PER_PASS = 64  # a connection flood cannot starve the connections already open


class Conn:
    __slots__ = ("sock", "parser", "out", "owed", "deadline", "closing", "waiting")

    def __init__(self, sock: socket.socket, parser: RequestParser, deadline: float) -> None:
        self.sock = sock
        self.parser = parser
        self.out = bytearray()
        self.owed = 0  # replies in `out`: counted in SERVED once send() has taken all of it
        self.deadline = deadline
        self.closing = False
        self.waiting = False  # a delayed reply is on the timer heap


def serve(sock: socket.socket, app: base.App) -> None:
    sock.setblocking(False)
    listen_fd = sock.fileno()
    limits = app.limits
    conns: dict[int, Conn] = {}
    accept_paused_until = 0.0
    timers: list[tuple[float, int, int, Conn, bytes, bool]] = []  # (due, seq, fd, conn, response, keep)
    sequence = itertools.count()
    next_sweep = time.monotonic() + SWEEP_INTERVAL_S

    def close(fd: int, refusal: bytes = b"") -> None:
        conn = conns.pop(fd)
        base.shut(conn.sock, conn.parser, refusal)
        conn.out = bytearray()

    def flush(fd: int, conn: Conn, now: float) -> None:
        # The replies in `out` are counted before the send() that may finish them, as
        # base.serve_connection does (a SIGTERM landing after it must not lose them), and taken back
        # if it did not. One thread: no lock needed.
        owed = conn.owed
        app.served += owed
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            app.served -= owed
            return
        except OSError:
            app.served -= owed
            close(fd)
            return
        del conn.out[:sent]
        if conn.out:
            app.served -= owed
            return
        conn.owed = 0
        if conn.closing:
            close(fd)
        elif conn.parser.idle:  # all answered and read: from now on it is an idle keep-alive
            conn.deadline = now + limits.keepalive_timeout

    def queue(conn: Conn, data: bytes, keep: bool) -> None:
        """A response is ready: buffer it, and close after it unless kept alive."""
        conn.out += data
        conn.owed += 1
        conn.closing = not keep

    def handle(conn: Conn, now: float) -> None:
        """Answer every complete request buffered on this connection."""
        parser = conn.parser
        while not conn.closing and not conn.waiting:
            try:
                request = parser.next_request()
            except HTTPError as exc:
                conn.out += error_response(exc)
                conn.closing = True
                break
            if request is None:
                conn.out += parser.interim()  # 100 Continue, if the request being read asked for it
                break
            data, keep, delay = app.respond(request)
            if delay:
                conn.waiting = True
                heapq.heappush(timers, (now + delay, next(sequence), conn.sock.fileno(), conn, data, keep))
                break
            queue(conn, data, keep)
        if conn.out:
            conn.deadline = now + limits.header_timeout  # the client must read it in time
        elif parser.idle:
            conn.deadline = now + limits.keepalive_timeout

    def accept(now: float) -> float:
        for _ in range(ACCEPTS_PER_PASS):
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in base.RESOURCE_ERRNOS:  # out of fds: pause, don't spin
                    return now + base.ACCEPT_BACKOFF_S
                break
            if client.fileno() >= FD_SETSIZE or len(conns) >= limits.max_connections:
                base.refuse(client, 503, "too many connections")
                continue
            client.setblocking(False)
            conns[client.fileno()] = Conn(client, RequestParser(limits), now + limits.header_timeout)
        return 0.0

    try:
        while True:
            now = time.monotonic()
            readers = [listen_fd] if now >= accept_paused_until else []
            writers = []
            for fd, conn in conns.items():
                if conn.out:
                    writers.append(fd)
                elif not conn.waiting:
                    readers.append(fd)
            timeout = min(SWEEP_INTERVAL_S, max(0.0, timers[0][0] - now)) if timers else SWEEP_INTERVAL_S
            if accept_paused_until > now:  # wake when the pause ends, not at the next sweep
                timeout = min(timeout, accept_paused_until - now)
            readable, writable, _ = select.select(readers, writers, [], timeout)
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, fd, conn, data, keep = heapq.heappop(timers)
                if conns.get(fd) is not conn:
                    continue  # closed meanwhile (deadline, error); the fd may belong to another now
                conn.waiting = False
                queue(conn, data, keep)
                handle(conn, now)
                flush(fd, conn, now)
            for fd in readable:
                if fd == listen_fd:
                    accept_paused_until = accept(now)
                    continue
                conn = conns[fd]
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(fd)  # EOF; an incomplete request is dropped, never handled
                    continue
                if conn.parser.idle:
                    conn.deadline = now + limits.header_timeout
                conn.parser.feed(data)
                handle(conn, now)
                if conn.out:
                    flush(fd, conn, now)  # optimistic: usually the whole response fits right away
            for fd in writable:
                conn = conns.get(fd)
                if conn is not None:
                    flush(fd, conn, now)
                    if fd in conns and not conn.out:
                        handle(conn, now)  # requests that arrived while we were blocked on output
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL_S
                for fd, conn in list(conns.items()):
                    if now >= conn.deadline and not conn.waiting:
                        close(fd, base.expiry(conn.parser, bool(conn.out)))
    except base.Shutdown:
        sock.close()
        for fd in list(conns):
            close(fd)


if __name__ == "__main__":
    base.run("select", serve)
