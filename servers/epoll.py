"""epoll: one thread, one event loop, every socket non-blocking, no descriptor ceiling.

The select model's design without select()'s two limits: the kernel keeps the interest set, so a
pass costs O(ready sockets) rather than O(open sockets), and any descriptor number can be watched
(select() stops at 1024). This is the loop nginx, Node and uvloop are built on; here it is driven
through `select.epoll` directly rather than `selectors`, whose per-event key objects and mapping
are a layer this loop does not need (each connection's state is found by its fd in one dict).

A socket is registered for reading while it has nothing to send, for writing only while a response
is partly unsent (back-pressure: a client that pipelines without reading cannot grow our buffers),
and for nothing while its reply waits on a timer. Level-triggered, so one recv() per readiness is
enough and nothing is lost if a pass stops early.

The hot path, one small request alone in a recv() on an idle connection, takes the parser's fast
path (RequestParser.feed_whole: the request parsed straight from the received bytes, see
servers/http.py) and App.respond's cached response, then one send(); so a request costs about one
recv(), one parse, one send() and a share of one epoll_wait(). `--parse-memo` lets feed_whole
replay the parse of byte-identical requests (off by default; servers/http.py says why). Anything
else (a request split over reads, pipelined requests, a body, an error) goes through next_request()
as in every other model; the responses to pipelined requests leave in one send(). A reply counts
in SERVED once send() has taken all of it (until then it is `owed`), and a closed connection's
parser lets go of its buffers at once (base.shut), not when the loop's locals move on.

The io workload's wait is a timer on a heap (epoll_wait's timeout is cut to the earliest one): the
connection handles nothing more until it fires, so pipelined responses stay in order. Deadlines
(header, keep-alive idle, a reader that stopped reading) are checked every half second. Out of
descriptors (EMFILE), the listener leaves the interest set for base.ACCEPT_BACKOFF_S instead of
waking the loop on every pass. Past limits.max_connections: 503 and close.

`serve_loop` is also the worker loop of the prefork model: `gate` then admits connections against
a cap shared by every worker, `tick` reports the running count, and `exclusive` wakes one worker
per incoming connection instead of all of them (EPOLLEXCLUSIVE) on a shared listening socket.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import select
import socket
import time
from collections.abc import Callable
from typing import Protocol

from servers import base
from servers.http import HTTPError, RequestParser, error_response

SWEEP_INTERVAL_S = 0.5
ACCEPTS_PER_PASS = 64  # a connection flood cannot starve the connections already open
RECV_BYTES = 65536
READ = select.EPOLLIN
WRITE = select.EPOLLOUT


class Gate(Protocol):
    """Admission of connections when the cap is not this loop's alone (prefork)."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class Conn:
    __slots__ = ("sock", "parser", "out", "owed", "deadline", "closing", "waiting", "events")

    def __init__(self, sock: socket.socket, parser: RequestParser, deadline: float) -> None:
        self.sock = sock
        self.parser = parser
        self.out = b""  # what send() has not taken yet; the socket is registered for WRITE meanwhile
        self.owed = 0  # replies in `out`: counted in SERVED once send() has taken all of it
        self.deadline = deadline
        self.closing = False  # close once `out` drains
        self.waiting = False  # a delayed reply is on the timer heap
        self.events = READ  # what the socket is registered for


def options(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--parse-memo",
        action="store_true",
        help="replay the parse of a whole request seen before (byte-identical) instead of parsing it again",
    )


def serve(sock: socket.socket, app: base.App) -> None:
    serve_loop(sock, app)


def serve_loop(
    sock: socket.socket,
    app: base.App,
    *,
    gate: Gate | None = None,
    tick: Callable[[int], None] | None = None,
    exclusive: bool = False,
) -> None:
    sock.setblocking(False)
    listen_fd = sock.fileno()
    listen_events = READ | (select.EPOLLEXCLUSIVE if exclusive else 0)
    limits = app.limits
    header_timeout, keepalive_timeout = limits.header_timeout, limits.keepalive_timeout
    max_connections = limits.max_connections
    respond = app.respond
    memo = bool(getattr(app.options, "parse_memo", False))
    ep = select.epoll()
    ep.register(listen_fd, listen_events)
    conns: dict[int, Conn] = {}
    timers: list[tuple[float, int, int, Conn, bytes, bool]] = []  # (due, seq, fd, conn, response, keep)
    sequence = itertools.count()
    accept_paused_until = 0.0
    served = app.served
    now = time.monotonic()
    next_sweep = now + SWEEP_INTERVAL_S

    def close(fd: int, refusal: bytes = b"") -> None:
        conn = conns.pop(fd)
        base.shut(conn.sock, conn.parser, refusal)
        conn.out = b""
        if gate is not None:
            gate.release()

    def update(fd: int, conn: Conn) -> None:
        """Register for what the connection waits on now: output to drain, a timer, or requests."""
        events = WRITE if conn.out else 0 if conn.waiting else READ
        if events != conn.events:
            ep.modify(fd, events)
            conn.events = events

    def push(fd: int, conn: Conn) -> bool:
        """Send what the socket takes of `out`; True once all of it is gone. Its replies are counted
        before the send() that may finish them, as base.serve_connection does (a SIGTERM landing
        after it must not lose them), and taken back if it did not."""
        nonlocal served
        owed = conn.owed
        served += owed
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError:  # the peer went away: nothing more to answer
            served -= owed
            close(fd)
            return False
        if sent < len(conn.out):
            served -= owed
            conn.out = conn.out[sent:]
            return False
        conn.out = b""
        conn.owed = 0
        return True

    def send(fd: int, conn: Conn, data: bytes, replies: int) -> None:
        """Send what the socket takes now; keep the rest and wait until it can take more."""
        if conn.out:
            conn.out += data
            conn.owed += replies
            return
        conn.out, conn.owed = data, replies
        if push(fd, conn):
            if conn.closing:
                close(fd)
            elif conn.parser.idle:
                conn.deadline = now + keepalive_timeout
        elif conns.get(fd) is conn:  # partly sent
            conn.deadline = now + header_timeout  # the client must read it in time
            update(fd, conn)

    def flush(fd: int, conn: Conn) -> None:
        """The socket can take more of `out`."""
        if not push(fd, conn):
            return  # more to send, or closed
        if conn.closing:
            close(fd)
        elif conn.waiting:
            update(fd, conn)
        else:
            handle(fd, conn)  # requests that arrived while the output was blocked

    def handle(fd: int, conn: Conn) -> None:
        """Answer every complete request buffered on this connection, in one send()."""
        parser = conn.parser
        answers = []
        replies = 0
        while not conn.closing:
            try:
                request = parser.next_request()
            except HTTPError as exc:
                answers.append(error_response(exc))
                conn.closing = True
                break
            if request is None:
                interim = parser.interim()  # 100 Continue, if the request being read asked for it
                if interim:
                    answers.append(interim)
                break
            data, keep, delay = respond(request)
            if delay:
                conn.waiting = True
                heapq.heappush(timers, (now + delay, next(sequence), fd, conn, data, keep))
                break
            answers.append(data)
            replies += 1
            conn.closing = not keep
        if answers:
            send(fd, conn, b"".join(answers), replies)
        elif not conn.waiting and parser.idle:
            conn.deadline = now + keepalive_timeout
        if conns.get(fd) is conn:
            update(fd, conn)

    def accept() -> float:
        """Take what the backlog holds (a bounded number); returns when accepting may resume."""
        for _ in range(ACCEPTS_PER_PASS):
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in base.RESOURCE_ERRNOS:  # out of fds: pause, don't spin
                    ep.unregister(listen_fd)
                    return now + base.ACCEPT_BACKOFF_S
                break
            admitted = gate.acquire() if gate is not None else len(conns) < max_connections
            if not admitted:
                base.refuse(client, 503, "too many connections")
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = client.fileno()
            conns[fd] = Conn(client, RequestParser(limits, memo=memo), now + header_timeout)
            ep.register(fd, READ)
        return 0.0

    def sweep() -> None:
        for fd, conn in list(conns.items()):
            if now >= conn.deadline and not conn.waiting:
                close(fd, base.expiry(conn.parser, bool(conn.out)))

    try:
        while True:
            timeout = SWEEP_INTERVAL_S
            if timers:
                timeout = min(timeout, max(0.0, timers[0][0] - now))
            if accept_paused_until:
                timeout = min(timeout, max(0.0, accept_paused_until - now))
            events = ep.poll(timeout)
            now = time.monotonic()
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is None:
                    if fd == listen_fd:
                        accept_paused_until = accept()
                    continue
                if conn.out:
                    flush(fd, conn)
                    continue
                if conn.waiting:  # registered for nothing: only an error or a hang-up wakes it
                    close(fd)
                    continue
                try:
                    data = conn.sock.recv(RECV_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    close(fd)  # EOF; an incomplete request is dropped, never handled
                    continue
                parser = conn.parser
                request = parser.feed_whole(data)
                if request is None:
                    if parser.began:
                        conn.deadline = now + header_timeout
                    handle(fd, conn)
                    continue
                # the fast path: one whole request, alone (so nothing else is buffered)
                out, keep, delay = respond(request)
                if delay:
                    conn.waiting = True
                    heapq.heappush(timers, (now + delay, next(sequence), fd, conn, out, keep))
                    update(fd, conn)
                    continue
                served += 1  # before the send(), as push() does
                try:
                    sent = conn.sock.send(out)
                except BlockingIOError:
                    sent = 0
                except OSError:  # the peer went away
                    served -= 1
                    close(fd)
                    continue
                if sent < len(out):
                    served -= 1
                    conn.closing = not keep
                    conn.out = out[sent:]
                    conn.owed = 1
                    conn.deadline = now + header_timeout  # the client must read it in time
                    update(fd, conn)
                elif keep:
                    conn.deadline = now + keepalive_timeout
                else:
                    close(fd)
            while timers and timers[0][0] <= now:
                _, _, fd, conn, out, keep = heapq.heappop(timers)
                if conns.get(fd) is not conn:
                    continue  # closed meanwhile; the fd may belong to another connection now
                conn.waiting = False
                conn.closing = not keep
                send(fd, conn, out, 1)
                if conns.get(fd) is conn:
                    if conn.out or conn.closing:
                        update(fd, conn)
                    else:
                        handle(fd, conn)  # requests pipelined behind the one that waited
            app.served = served
            if tick is not None:
                tick(served)
            if accept_paused_until and now >= accept_paused_until:
                accept_paused_until = 0.0
                ep.register(listen_fd, listen_events)
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL_S
                sweep()
    except base.Shutdown:
        app.served = served
        for fd in list(conns):
            close(fd)
        ep.close()


if __name__ == "__main__":
    base.run("epoll", serve, options=options)
