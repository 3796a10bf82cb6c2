"""What the select and epoll models share: non-blocking sockets driven by servers/connection.py.

Strategy: socketserver's, for event loops. `Loop` does everything a readiness-driven loop does with
a socket once it is ready -- accept a bounded batch, recv() into the connection, send() what the
socket takes, fire timers, expire deadlines, close -- and a model subclasses it with only what makes
it that model: how it waits for readiness (`run`), and how it tells the kernel what a socket now
waits for (`watch`, `listening`). The connection semantics are all in servers/connection.py.

What each connection waits for is its `events`: WRITE while output is pending (back-pressure: a
client that pipelines without reading cannot grow our buffers, since it is not read meanwhile), 0
while its reply waits on a timer (so pipelined requests stay in order), READ otherwise. A reply
counts in SERVED once send() has taken all of it: its count goes up before the send() that may
finish it, as base.serve_connection does (a SIGTERM landing just after must not lose it), and down
if the send() did not. The hot path (Connection.receive's lone reply) is sent at once, and when the
socket takes all of it nothing more is done. A closed connection lets go of its buffers at once (Connection.close).

Timers are a heap, swept deadlines every SWEEP_INTERVAL_S; `timeout()` is how long the model may
block. Out of descriptors (EMFILE), the listener is out of the wait set for base.ACCEPT_BACKOFF_S
instead of waking the loop on every pass. Past limits.max_connections: 503 and close (`admit`).
"""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import time
from collections.abc import Callable

from servers import base
from servers.connection import Connection

SWEEP_INTERVAL_S = 0.5
ACCEPTS_PER_PASS = 64  # a connection flood cannot starve the connections already open
RECV_BYTES = 65536
READ = select.POLLIN  # the same bits as EPOLLIN and EPOLLOUT
WRITE = select.POLLOUT


class Client(Connection):
    """A connection with its socket, and what the loop watches it for."""

    __slots__ = ("sock", "fd", "events")

    def __init__(self, sock: socket.socket, app: base.App, now: float, memo: bool) -> None:
        super().__init__(app, now, memo=memo)
        self.sock = sock
        self.fd = sock.fileno()
        self.events = READ


class Loop:
    """The shared part of an event loop; subclasses define run(), and watch()/listening() if the
    kernel keeps their interest set. `tick(served)` is called after every pass (prefork)."""

    def __init__(self, sock: socket.socket, app: base.App, *, tick: Callable[[int], None] | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.listen_fd = sock.fileno()
        self.app = app
        self.tick = tick
        self.memo = bool(getattr(app.options, "parse_memo", False))
        self.clients: dict[int, Client] = {}
        self.timers: list[tuple[float, int, Client]] = []  # (due, sequence, client)
        self.sequence = itertools.count()
        self.accept_paused_until = 0.0
        self.served = app.served
        self.next_sweep = time.monotonic() + SWEEP_INTERVAL_S

    # -- what a model may define ---------------------------------------------------------------------

    def watch(self, client: Client) -> None:
        """`client.events` changed (a model whose kernel keeps the interest set tells it here)."""

    def opened(self, client: Client) -> None:
        """A new connection, waiting for READ."""

    def listening(self, on: bool) -> None:
        """Accepting pauses (out of descriptors) or resumes."""

    def admit(self, sock: socket.socket) -> bool:
        """Whether a new connection may be served (else 503 and close)."""
        return len(self.clients) < self.app.limits.max_connections

    def release(self) -> None:
        """A connection admitted by admit() is closed."""

    # -- what happens on readiness -------------------------------------------------------------------

    def receive(self, client: Client, now: float) -> None:
        """The socket is readable: what arrived goes to the connection, its answers out."""
        try:
            data = client.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close(client)  # EOF; an incomplete request is dropped, never handled
            return
        reply = client.receive(data, now)
        if reply:  # the hot path: one reply, and usually the socket takes all of it
            self.served += 1  # counted before the send(), as in send()
            try:
                sent = client.sock.send(reply)
            except OSError:  # it would block, or the peer went away: flush() finds out which
                sent = 0
            if sent == len(reply):
                if client.closing:
                    self.close(client)
                return
            self.served -= 1
            client.unsent(reply[sent:], now)
        self.flush(client, now)

    def send(self, client: Client, data: bytes, replies: int) -> int:
        """send() what the socket takes of `data`, counting its `replies` if it takes all; -1 if the
        peer went away (then closed)."""
        self.served += replies  # before the send(), so a SIGTERM landing right after cannot lose them
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:  # the peer went away: nothing more to answer
            self.served -= replies
            self.close(client)
            return -1
        if sent < len(data):
            self.served -= replies
        return sent

    def flush(self, client: Client, now: float) -> None:
        """Send what the socket takes of the connection's output; then close it, or watch it for what
        it waits on now."""
        while client.out:
            sent = self.send(client, client.out, client.owed)
            if sent < 0:
                return
            if not client.sent(sent, now):
                break
        if client.closing and not client.out:
            self.close(client)
            return
        events = WRITE if client.out else 0 if client.waiting else READ
        if events != client.events:
            if not events:  # its reply waits: on the heap, at the time the connection set
                heapq.heappush(self.timers, (client.due, next(self.sequence), client))
            client.events = events
            self.watch(client)

    def accept(self, now: float) -> None:
        """Take what the backlog holds, a bounded number at a time."""
        for _ in range(ACCEPTS_PER_PASS):
            try:
                sock, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in base.RESOURCE_ERRNOS:  # out of fds: pause, don't spin
                    self.accept_paused_until = now + base.ACCEPT_BACKOFF_S
                    self.listening(False)
                return
            if not self.admit(sock):
                base.refuse(sock, 503, "too many connections")
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = Client(sock, self.app, now, self.memo)
            self.clients[client.fd] = client
            self.opened(client)

    def close(self, client: Client, refusal: bytes = b"") -> None:
        del self.clients[client.fd]
        if refusal:
            base.send_and_close(client.sock, refusal)
        else:
            client.sock.close()  # closing the fd also takes it out of an epoll interest set
        client.close()
        self.release()

    # -- the clock -----------------------------------------------------------------------------------

    def timeout(self, now: float) -> float:
        """How long the model may wait for readiness: until the next timer or the end of a pause, and at
        most a sweep interval (a sweep is due at most that late)."""
        timers, paused_until = self.timers, self.accept_paused_until
        if not timers and not paused_until:  # every pass under load: keep it cheap
            return SWEEP_INTERVAL_S
        timeout = SWEEP_INTERVAL_S
        if timers:
            timeout = min(timeout, max(0.0, timers[0][0] - now))
        if paused_until:
            timeout = min(timeout, max(0.0, paused_until - now))
        return timeout

    def due(self, now: float) -> None:
        """After each pass: fire the timers that are due, resume accepting, expire deadlines."""
        timers, clients = self.timers, self.clients
        while timers and timers[0][0] <= now:
            client = heapq.heappop(timers)[2]
            if clients.get(client.fd) is client:  # else closed meanwhile; the fd may be another's now
                client.fire(now)
                self.flush(client, now)
        if self.accept_paused_until and now >= self.accept_paused_until:
            self.accept_paused_until = 0.0
            self.listening(True)
        if now >= self.next_sweep:
            self.next_sweep = now + SWEEP_INTERVAL_S
            for client in list(clients.values()):
                refusal = client.expire(now)
                if refusal is not None:
                    self.close(client, refusal)
        self.app.served = self.served
        if self.tick is not None:
            self.tick(self.served)

    def shutdown(self) -> None:
        """SIGTERM: close every connection; the count stands as it is."""
        self.app.served = self.served
        for client in list(self.clients.values()):
            self.close(client)
