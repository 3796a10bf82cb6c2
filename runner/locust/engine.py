"""One event loop per Locust process that performs every `loop` user's HTTP requests.

Why: a user with its own client (FastHttpUser) costs the generator a greenlet switch per socket per
request plus the client's own machinery -- 3-4k requests/s on a core here, less than most servers
make. This engine holds every user's connection as a non-blocking socket in one epoll set and
moves their bytes in a plain loop: connect, send the request, read and frame the response
(runner/locust/wire.py), log it, send the next -- no greenlet switch per request. Each Locust user stands
for one connection in a closed loop, so users, spawn rate, shapes and distributed workers keep
their meaning (runner/locust/locustfile.py's `loop` user registers and unregisters its connection).

Cooperation with gevent: Locust monkey-patches `socket` and removes `select.epoll`, so the engine
takes the originals (gevent.monkey.get_original). It runs as one greenlet that handles at most
BATCH ready connections, then gives the gevent hub one turn by waiting on the epoll descriptor
through a gevent io watcher: the hub runs its due timers and other greenlets (Locust's stats,
shape ticks, runner messages, the phase timers), sees the descriptor ready and switches back. A
loop that yielded with gevent.sleep(0) instead starved gevent's timers (a 10 ms timer fired 84 of
600 times); tests/runner/locust/test_loop_user.py measures a 10 ms timer beside a saturated engine.

Scheduling: every send goes through `_schedule`. Closed loop (the default): a connection sends its
next request at once, or after think time on the engine's timer heap. Open model (load.arrival_rate,
runner/locust/arrivals.py): requests arrive on their own clock, and `_schedule` only returns the connection
to a pool of free ones (at most one per user: load.users connections, each opened on its first send);
every turn of the loop hands the requests due by now to free connections, and those that found none
wait in the schedule's queue. A request's latency then runs from its intended send time (corrected
for coordinated omission); the uncorrected one, from its actual send, goes beside it. Deadlines are
checked by a sweep every SWEEP_S over the requests in flight (from their actual send), not by a
timer per request.

Accounting: every request the engine starts ends as exactly one success or one failure. Failures are
logged one by one (`log`); successes are collected over a batch of ready connections and logged
together (`log_many`): Locust's request event costs about 5 us a request, a third of the engine's
whole budget at 50k/s, and the batch's successes all end within the same millisecond anyway. A
connection asked to stop (Locust's graceful stop) sends nothing new and lets its request in flight
finish; one closed with a request still in flight (stop_timeout ran out) logs it as a failure
(wire.Stopped). A request that meets the close of an idle kept-alive connection is sent once more, on
a new one, when that is safe (`_stale`): still one request. Latency runs from the moment a request is
due to its response's last byte: a connection opened for it (the first, or after the server closed)
is part of it, as in Locust's own clients.

Evidence: beside each request's success or failure the engine keeps what its connections showed, for
the run's diagnoses (runner/run/diagnosis.py): new connections that waited a second or more for their
first answer (the kernel retransmits a dropped SYN after 1 s: a full listen queue), responses whose
bytes came in parts with a wait between them (a head and a body sent apart, held by Nagle's algorithm
until the client's delayed ACK), the server's closes after a response and what announced each, and
timeouts on connections that had answered before. Each is counted off the hot path: on a connection's
first response, on a response that did not come whole in one read, on a close, on a failure.
"""

from __future__ import annotations

import errno
import heapq
import os
import random
import socket as _socket_module
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import gevent
from gevent.event import Event
from gevent.monkey import get_original

from runner.locust import wire
from runner.locust.arrivals import OpenLoop

_socket = get_original("socket", "socket")
_epoll = get_original("select", "epoll")
_EPOLLIN, _EPOLLOUT = 0x001, 0x004
BATCH = 64  # ready connections handled between two hub turns: ~1 ms of work here
SWEEP_S = 0.05  # how often deadlines are checked: a timeout is late by at most this
READ_SIZE = 65536
IDEMPOTENT = (b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE")  # RFC 9110 9.2.2: safe to send twice
SLOW_START_S = 1.0  # Linux retransmits a SYN the listen queue dropped after 1 s (RFC 6298's initial RTO), then 3 s...
SPLIT_S = 0.02  # a response whose last byte came this long after its first: the server waited between its parts
# idle, sending (a partial send, or one on a connection not yet made, waits for EPOLLOUT), waiting for
# the response, closed
IDLE, SENDING, WAITING, CLOSED = range(4)

# a failure: (its connection, ms, uncorrected ms, response bytes, exception)
Log = Callable[["Conn", float, float, int, Exception], None]
# successes: (connections, their ms, their uncorrected ms -- None in a closed loop, where they are the same --, their
# bytes in all)
LogMany = Callable[[list["Conn"], list[float], "list[float] | None", int], None]


@dataclass
class Evidence:
    """What the connections showed besides each request's outcome (see the module docstring), summed over a
    Locust process's whole run; the phase file carries it (runner/locust/locustfile.py)."""

    slow_starts: int = 0  # new connections whose first answer came >= SLOW_START_S after the connect, or never
    slowest_start_ms: float = 0.0  # the longest of those (a connection that never answered: until it failed)
    split_waits: dict[int, int] = field(default_factory=dict)  # responses in parts >= SPLIT_S apart: ms -> count
    closes: dict[str, int] = field(default_factory=dict)  # closes after a whole response, by what announced them
    timeouts: int = 0  # requests with no whole response within the request timeout
    timeouts_reused: int = 0  # of them, on a connection that had carried a response before

    def start(self, waited_s: float) -> None:
        if waited_s >= SLOW_START_S:
            self.slow_starts += 1
            self.slowest_start_ms = max(self.slowest_start_ms, waited_s * 1000.0)

    def split(self, waited_s: float) -> None:
        if waited_s >= SPLIT_S:
            ms = round(waited_s * 1000.0)
            self.split_waits[ms] = self.split_waits.get(ms, 0) + 1

    def close(self, why: str) -> None:
        self.closes[why] = self.closes.get(why, 0) + 1

    def as_dict(self) -> dict:
        return asdict(self)


class Conn:
    """One user's connection: its socket (or None between connections) and its request in flight."""

    __slots__ = (
        "sock",
        "fd",
        "state",
        "reader",
        "started",
        "intended",
        "out",
        "draining",
        "idle",
        "connections",
        "reused",
        "retried",
        "seq",
        "opened",
        "partial",
    )

    def __init__(self, expect_body: bool = True) -> None:
        self.sock = None
        self.fd = -1
        self.state = IDLE
        self.reader = wire.Reader(expect_body)
        self.started = 0.0  # perf_counter when the request in flight was sent; 0.0: none in flight
        self.intended = 0.0  # when it was due: `started` in a closed loop, its intended send time in an open model
        self.out = b""  # request bytes not sent yet
        self.draining = False  # Locust asked the user to stop: send nothing new
        self.idle = Event()  # set once a draining connection has nothing in flight
        self.connections = 0  # sockets opened so far
        self.reused = False  # the socket has carried a response: the server may close it as idle at any moment
        self.retried = False  # the request in flight was sent again (once) after such a close
        self.seq = 0  # bumps whenever a scheduled send must be forgotten
        self.opened = 0.0  # perf_counter when the socket was opened
        self.partial = 0.0  # perf_counter when the first bytes of a response that did not come whole arrived


class Engine:
    """Drives every registered Conn; `open()` on a user's start, `drain()`/`close()` on its stop."""

    def __init__(
        self,
        address: tuple,
        family: int,
        request: bytes,
        log: Log,
        log_many: LogMany,
        timeout_s: float,
        wait: tuple[float, float],
        arrivals: OpenLoop | None = None,
    ) -> None:
        self.address, self.family, self.request, self.log, self.log_many = address, family, request, log, log_many
        self.arrivals = arrivals  # None: a closed loop
        self.free: list[Conn] = []  # open model: connections with nothing in flight, the last freed on top
        self._ok: list[float] = []  # this batch's successes: response times (ms)
        self._ok_raw: list[float] | None = [] if arrivals is not None else None  # and from the actual send
        self._ok_conns: list[Conn] = []  # and whose they were
        self._ok_bytes = 0
        self.timeout_s = timeout_s
        self.wait_min, self.wait_max = wait
        self.ep = _epoll()
        self.by_fd: dict[int, Conn] = {}
        self.conns: set[Conn] = set()
        self.timers: list[tuple[float, int, int, Conn]] = []  # (due perf_counter, tiebreak, conn.seq, conn)
        self._tiebreak = 0
        self.reconnects = 0  # connections opened after a connection's first (the server closed, a failure)
        self.retries = 0  # requests sent again after their kept-alive connection closed before any byte of an answer
        self.evidence = Evidence()
        self.ran = 0.0  # perf_counter at the engine's last turn: Locust's stop holds the hub from its start on
        self.retry_safe = request.split(b" ", 1)[0] in IDEMPOTENT
        self._wake = Event()
        self._hub = gevent.get_hub()
        self._watcher = self._hub.loop.io(self.ep.fileno(), 1)
        self.greenlet = gevent.spawn(self._run)  # the loop: its crash must end the run (runner/locust/locustfile.py)

    # -- what the users call -------------------------------------------------------------------

    def open(self) -> Conn:
        conn = Conn(expect_body=not self.request.startswith(b"HEAD "))
        self.conns.add(conn)
        now = time.perf_counter()
        if self.arrivals is None:
            self._send(conn, now)  # spawn_rate = connections opened per second
        else:
            self.free.insert(0, conn)  # under the ones already connected: a new socket only when they are busy
            if self.arrivals.next_at == float("inf"):
                self.arrivals.start(now)
        self._wake.set()
        return conn

    def catch_up(self) -> None:
        """Open model: send what is due by now, from the caller's greenlet (the engine's waits in the hub, so
        nothing is half done). Locust's stop runs for ~60 ms before it tells the users to drain, without a turn
        for the engine; the requests due meanwhile would otherwise never be sent."""
        if self.arrivals is not None:
            self._dispatch(time.perf_counter())

    def retune(self, rate: float | None) -> None:
        """Open model: arrivals at `rate` requests/s from now on; None: none, and what is queued is dropped
        (counted) -- a rate search's step and its drain (runner/locust/locustfile.py)."""
        now = time.perf_counter()
        self.arrivals.arrive(now)  # what came due so far belongs to the rate before
        if rate is None:
            self.arrivals.stop()
        else:
            self.arrivals.start(now, rate)

    def in_flight(self) -> int:
        """Requests sent and not yet answered, failed or timed out."""
        return sum(1 for conn in self.conns if conn.started)

    def drain(self, conn: Conn) -> None:
        """Send nothing new on conn; its `idle` event is set once no request is in flight."""
        conn.draining = True
        if not conn.started:
            conn.seq += 1  # forget a send waiting for its think time
            self._unfree(conn)
            conn.idle.set()

    def close(self, conn: Conn) -> None:
        """The user is gone: a request still in flight counts as failed (it was neither answered nor lost)."""
        conn.draining = True
        conn.seq += 1
        if conn.started:
            self._fail(conn, wire.Stopped("the run stopped with the request in flight"), time.perf_counter())
        self._disconnect(conn)
        conn.state = CLOSED
        conn.idle.set()
        self._unfree(conn)
        self.conns.discard(conn)
        if not self.conns and self.arrivals is not None:
            self.arrivals.stop()  # nobody to send: the queue would only be dropped request by request

    def _unfree(self, conn: Conn) -> None:
        if conn in self.free:  # open model only; a list of at most load.users
            self.free.remove(conn)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        next_sweep = time.perf_counter() + SWEEP_S
        poll, by_fd, timers = self.ep.poll, self.by_fd, self.timers
        while True:
            if not self.conns:
                self._wake.clear()
                self._wake.wait()
                continue
            now = self.ran = time.perf_counter()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + SWEEP_S
            due = []  # taken first: a send that fails at once schedules its retry for the next turn, not this loop
            while timers and timers[0][0] <= now:
                due.append(heapq.heappop(timers))
            for _, _, seq, conn in due:
                if seq == conn.seq and conn.state != CLOSED:
                    self._send(conn, now)
            wake = min(next_sweep, timers[0][0]) if timers else next_sweep
            if self.arrivals is not None:
                self._dispatch(now)
                if self.free:  # else the next arrival waits for a response anyway
                    wake = min(wake, self.arrivals.next_at)
            self._turn(wake - now)
            for fd, events in poll(0, BATCH):
                conn = by_fd.get(fd)
                if conn is not None:
                    self._ready(conn, events)
            if self._ok:
                ok, conns, raw, self._ok, self._ok_conns = self._ok, self._ok_conns, self._ok_raw, [], []
                if raw is not None:
                    self._ok_raw = []
                self.log_many(conns, ok, raw, self._ok_bytes)
                self._ok_bytes = 0

    def _dispatch(self, now: float) -> None:
        """Open model: the requests due by now, each on a free connection (taken first: one that fails at once
        goes back to the pool, not to another request of this turn)."""
        intended = self.arrivals.dispatch(now, len(self.free))
        conns = [self.free.pop() for _ in intended]
        for conn, due in zip(conns, intended, strict=True):
            self._send(conn, now, due)

    def _turn(self, timeout: float) -> None:
        """One turn of the gevent hub: back as soon as a socket is ready, or after `timeout` s."""
        with gevent.Timeout(max(timeout, 0.0), False):
            self._hub.wait(self._watcher)

    def _sweep(self, now: float) -> None:
        limit = now - self.timeout_s
        for conn in [c for c in self.conns if c.started and c.started < limit]:
            self.evidence.timeouts += 1
            self.evidence.timeouts_reused += conn.reused
            self._fail(conn, wire.RequestTimeout(f"no response in {self.timeout_s:g} s"), now)
            self._disconnect(conn)  # its late response must not answer the next request
            self._schedule(conn, now, later=True)

    # -- one connection ------------------------------------------------------------------------

    def _schedule(self, conn: Conn, now: float, later: bool = False) -> None:
        """When conn sends its next request: at once, or after think time. The one place sends are timed.
        later: not from this call even without think time -- after a failure, so that a server refusing
        at once does not recurse (connect, fail, connect...) and the hub gets a turn between failures."""
        if conn.draining:
            conn.idle.set()
            return
        if self.arrivals is not None:
            self.free.append(conn)  # the loop's next _dispatch gives it a request
            return
        delay = random.uniform(self.wait_min, self.wait_max) if self.wait_max > 0 else 0.0
        if delay <= 0 and not later:
            self._send(conn, now)
        else:
            self._tiebreak += 1
            heapq.heappush(self.timers, (now + delay, self._tiebreak, conn.seq, conn))

    def _send(self, conn: Conn, now: float, intended: float | None = None) -> None:
        conn.started, conn.retried = now, False
        conn.intended = now if intended is None else intended
        if conn.sock is None:
            self._connect(conn, now)
            return
        self._write(conn, self.request, now)

    def _connect(self, conn: Conn, now: float) -> None:
        sock = _socket(self.family, _socket_module.SOCK_STREAM | _socket_module.SOCK_NONBLOCK)
        sock.setsockopt(_socket_module.IPPROTO_TCP, _socket_module.TCP_NODELAY, 1)
        if conn.connections:
            self.reconnects += 1
        conn.connections += 1
        conn.sock, conn.fd, conn.reused, conn.opened = sock, sock.fileno(), False, now
        self.by_fd[conn.fd] = conn
        conn.reader.reset()
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._broken(conn, OSError(code, os.strerror(code)), now)  # ConnectionRefusedError, ...
            return
        # Send at once: on loopback the handshake is usually done by now. If not, send() says EAGAIN and
        # the request waits for EPOLLOUT like any partial send; a refused connect fails that send
        # (ConnectionRefusedError). No wait for EPOLLOUT and no SO_ERROR read per connection.
        self.ep.register(conn.fd, _EPOLLIN)
        self._write(conn, self.request, now)

    def _write(self, conn: Conn, data: bytes, now: float) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._broken(conn, exc, now)
            return
        if sent == len(data):
            if conn.state != WAITING:
                if conn.state == SENDING:
                    self.ep.modify(conn.fd, _EPOLLIN)
                conn.state = WAITING
            return
        conn.out = data[sent:]
        if conn.state != SENDING:
            self.ep.modify(conn.fd, _EPOLLIN | _EPOLLOUT)
            conn.state = SENDING

    def _ready(self, conn: Conn, events: int) -> None:
        now = time.perf_counter()
        state = conn.state
        if state == WAITING or (events & _EPOLLIN and state == SENDING):
            self._read(conn, now)
        elif state == SENDING:
            data, conn.out = conn.out, b""
            self._write(conn, data, now)
        elif state == IDLE and conn.sock is not None:
            self._read(conn, now)  # bytes or a close while no request is in flight

    def _read(self, conn: Conn, now: float) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._broken(conn, exc, now)
            return
        try:
            response = conn.reader.feed(data) if data else conn.reader.eof()
        except (wire.MalformedResponse, wire.ConnectionClosed) as exc:
            self._broken(conn, exc, now)
            return
        if response is None:
            if not data:  # closed between responses
                if conn.started:
                    self._broken(conn, wire.ConnectionClosed("closed before any byte of the response"), now)
                else:
                    self._disconnect(conn)
            elif not conn.partial:
                conn.partial = now  # a response in parts: how long until its last byte (Evidence.split)
            return
        if not conn.started:  # a response nobody asked for
            self._broken(conn, wire.MalformedResponse("a response to no request"), now)
            return
        elapsed, raw = (now - conn.intended) * 1000.0, (now - conn.started) * 1000.0
        conn.started = 0.0
        conn.state = IDLE
        if conn.partial:
            self.evidence.split(now - conn.partial)
            conn.partial = 0.0
        if not conn.reused:
            self.evidence.start(now - conn.opened)
            conn.reused = True
        if not response.keep_alive or not data:
            self.evidence.close(response.closing or "nothing (a close after a whole response)")
            self._disconnect(conn)
        if 200 <= response.status < 300:
            self._ok.append(elapsed)
            if self._ok_raw is not None:
                self._ok_raw.append(raw)
            self._ok_conns.append(conn)
            self._ok_bytes += response.length
        else:
            self.log(conn, elapsed, raw, response.length, wire.BadStatus(response.status))
        self._schedule(conn, now)

    def _broken(self, conn: Conn, exc: Exception, now: float) -> None:
        """The connection failed: its request (if any) is one failure, the next request reconnects -- unless
        the server closed a kept-alive connection as idle just as the request went out (see `_stale`): then
        the request is sent once more, on a new connection, as HTTP clients do (RFC 9112 9.3.1)."""
        stale = self._stale(conn, exc)
        self._disconnect(conn)
        if stale:
            self.retries += 1
            conn.retried = True
            self._connect(conn, now)  # the same request: its intended and actual send times stay
        elif conn.started:
            self._fail(conn, exc, now)
            self._schedule(conn, now, later=True)

    def _stale(self, conn: Conn, exc: Exception) -> bool:
        """Did the request in flight meet a close the server made before it saw the request? A server closes an
        idle kept-alive connection when it likes (ours after limits.keepalive_timeout, nginx's
        keepalive_timeout); a request already on its way then finds the connection gone: the close (or a
        reset, had the request arrived after it) comes before any byte of an answer. The client cannot tell
        this from a server that read the request and dropped it, so, like Go's net/http and urllib3, it
        sends again only what is safe to repeat (an idempotent method), only on a connection that has
        already carried a response, and only once; `retries` in result.json counts them."""
        return (
            conn.started > 0.0
            and conn.reused
            and not conn.retried
            and self.retry_safe
            and not conn.reader.started
            and isinstance(exc, (wire.ConnectionClosed, ConnectionResetError, BrokenPipeError))
        )

    def _fail(self, conn: Conn, exc: Exception, now: float) -> None:
        elapsed, raw = (now - conn.intended) * 1000.0, (now - conn.started) * 1000.0
        if not conn.reused and conn.opened:
            self.evidence.start(now - conn.opened)  # a new connection that never answered (timed out, reset...)
        conn.started, conn.partial = 0.0, 0.0
        self.log(conn, elapsed, raw, 0, exc)

    def _disconnect(self, conn: Conn) -> None:
        if conn.sock is None:
            return
        self.by_fd.pop(conn.fd, None)
        conn.sock.close()  # which takes it out of the epoll set (no other descriptor shares it): no unregister call
        conn.sock, conn.fd, conn.out, conn.partial = None, -1, b"", 0.0
        if conn.state != CLOSED:
            conn.state = IDLE
        conn.reader.reset()
