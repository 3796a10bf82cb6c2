"""What every server shares except its concurrency model: the command line, the listening socket,
the READY/SERVED contract (what a request is answered with is the App's, servers/app.py), and the blocking side of a
connection that the single, thread, threadpool and process models all run: one accept loop
(serve_blocking) that differs between them only in how an admitted connection is handed off (a
Handoff, as CPython's socketserver variants differ only in process_request), and serve_connection,
how a blocking worker blocks (what the connection does is servers/connection.py's, as in every
model). A forked worker (process, prefork) lives its whole life in child_life.

The contract with the runner (see docs/design.md):
    python -m servers.<name> --host 127.0.0.1 --port 0 [--workload hello] [--no-keepalive] ...
plus the options a model declares for itself (run(..., options=...); the runner passes a config's
`server.options` as such flags), which the model reads from `app.options`.
binds (port 0: the kernel picks), prints exactly `READY <host> <port>` and flushes; serves; on
SIGTERM stops accepting, closes what it holds within --grace seconds, leaves no child, prints
`SERVED <n>` (requests answered: replies handed to the socket, however the model writes) and exits 0.
Nothing is printed per request.

SIGTERM raises `Shutdown` in the main thread, wherever it is blocked (accept, recv, select), so a
model needs no polling to notice it; `Shutdown` derives from BaseException so that no
`except Exception` in a request path can swallow it. The blocking models' accept() waits on the
listening socket together with a self-pipe that every signal writes to (see `accept`), so a SIGTERM
cannot slip in just before the wait and leave it blocked.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from typing import NoReturn

from servers.app import GRACE_S, App
from servers.connection import Connection
from servers.http import HTTPError, Limits, error_response
from servers.workload import WORKLOADS, make

# accept() failures that say "out of a resource": back off instead of spinning (EMFILE busy-loop).
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF_S = 0.1
BACKLOG = 1024  # the listen backlog; 5 (the original) turns bursts into 1 s SYN retries


class Shutdown(BaseException):
    """Raised by the SIGTERM handler: stop accepting and wind down."""


# The signals that raise Shutdown; a model holds them back around a step that must not be cut in two.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
# Blocked around fork() and the parent's record of the child (process, prefork): SIGCHLD so a child cannot
# be reaped before its pid is recorded; SIGTERM and SIGINT so Shutdown cannot land between fork() and the
# record (an orphan nobody stops), nor in the new child before child_life takes over (it would run the
# parent's wind-down).
FORK_BLOCKED = frozenset({signal.SIGCHLD}) | STOP_SIGNALS


class held_back:
    """`with held_back(signals):` around a step that must not be cut in two. The signals are blocked
    for its length, and one that comes meanwhile is delivered as it ends, so its handler (Shutdown)
    runs after the step, never inside it; the mask from before is restored, so these nest.

    Python's own building blocks are not safe against an exception from a signal handler: threading's
    Condition (under Thread.start() and queue.Queue) can be cut between waking a thread and striking it
    off its waiters, and a later notify() then wakes nobody (a lost wakeup: the threadpool's stop once
    waited out its whole grace period for a worker that never saw its stop sign).
    A Shutdown already on its way as the step begins is raised before it, and then leaves the signals
    blocked: harmless, as the wind-down needs none of them (process reaps by polling)."""

    __slots__ = ("signals", "mask")

    def __init__(self, signals: frozenset[signal.Signals] = STOP_SIGNALS) -> None:
        self.signals = signals

    def __enter__(self) -> None:
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)


# Read end of the self-pipe that CPython's C-level signal handler writes a byte to (set up by run()).
_signalled = -1


Options = Callable[[argparse.ArgumentParser], None]  # a model adds its own arguments to the parser


def parse_args(model: str, argv: list[str] | None = None, options: Options | None = None) -> argparse.Namespace:
    return make_parser(model, options).parse_args(argv)


def make_parser(model: str, options: Options | None = None) -> argparse.ArgumentParser:
    """A model's command line; the runner parses a config's server.options with it before anything starts."""
    parser = argparse.ArgumentParser(prog=f"python -m servers.{model}", description=f"{model} HTTP/1.1 server")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 lets the kernel pick")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="hello")
    parser.add_argument(
        "--workload-param", action="append", default=[], metavar="KEY=VALUE", help="e.g. io_ms=10, cpu_us=100"
    )
    parser.add_argument("--no-keepalive", dest="keepalive", action="store_false", help="close after every response")
    parser.add_argument("--backlog", type=int, default=BACKLOG, help="listen backlog (5 causes 1 s SYN retries)")
    parser.add_argument("--grace", type=float, default=GRACE_S, help="seconds to wind down after SIGTERM")
    for f in fields(Limits):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    if options is not None:
        options(parser.add_argument_group(f"{model} options"))
    return parser


def positive_int(text: str) -> int:
    """An argparse type for a model's counts (--threads, --queue, --workers): an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def make_app(args: argparse.Namespace) -> App:
    limits = Limits(**{f.name: getattr(args, f.name) for f in fields(Limits)})
    params = dict(p.split("=", 1) for p in args.workload_param)
    return App(make(args.workload, params), limits, keepalive=args.keepalive, grace=args.grace, options=args)


def listen(host: str, port: int, backlog: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket; `reuse_port` lets more sockets bind the same port (SO_REUSEPORT: the
    kernel spreads connections over them), which every one of them must set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def raise_nofile_limit() -> int:
    """Soft open-files limit up to the hard one (the original run died of EMFILE); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def signal_child(pid: int, sig: int) -> None:
    """Send `sig` to a child of ours that may already have exited (process, prefork)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_reading(conns) -> None:
    """Shut the read side of connections that blocking workers are serving: a worker waiting in
    recv() gets EOF and winds down, while a response it is sending still goes out (thread, threadpool)."""
    for conn in conns:
        try:
            conn.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def _on_sigterm(signum: int, frame: object) -> None:
    # one-shot: a second signal must not interrupt the wind-down the first one started
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Shutdown


def run(
    model: str,
    serve: Callable[[socket.socket, App], None],
    argv: list[str] | None = None,
    options: Options | None = None,
) -> None:
    """Entry point of every model: bind, announce, serve until SIGTERM, report, exit 0.

    `options(parser)` declares the model's own arguments; a `--reuse-port` among them, when given,
    sets SO_REUSEPORT on the listening socket."""
    args = parse_args(model, argv, options)
    try:
        app = make_app(args)
    except ValueError as exc:
        sys.exit(f"{model}: {exc}")
    raise_nofile_limit()
    try:
        sock = listen(args.host, args.port, args.backlog, reuse_port=getattr(args, "reuse_port", False))
    except OSError as exc:
        sys.exit(f"{model}: cannot listen on {args.host}:{args.port}: {exc.strerror}")
    _watch_signals()  # before the handlers: from their first signal on, accept() wakes up
    try:
        # inside the try: a SIGTERM sent as soon as READY is read lands before serve() starts
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, _on_sigterm)
        # a signal mask survives fork and exec: started from a thread that blocks SIGTERM, a
        # server would never see one, so unblock them whatever the parent left
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        host, port = sock.getsockname()[:2]
        print(f"READY {host} {port}", flush=True)
        serve(sock, app)
    except Shutdown:
        pass
    finally:
        sock.close()
    print(f"SERVED {app.served}", flush=True)


def _watch_signals() -> None:
    """Have every signal leave a byte in a pipe (signal.set_wakeup_fd) that accept() waits on.

    Why a blocking accept() alone can miss SIGTERM: CPython's C handler only sets a flag, and the
    Python handler runs when the main thread next looks at it -- at a bytecode boundary that checks,
    or when a blocking call fails with EINTR. A signal that lands after the last look but before
    accept() has blocked interrupts nothing, and accept() blocks for good with the handler never run
    (what a hung threadpool server showed: SIGTERM taken, not pending, not yet ignored). That stretch
    is a few instructions, but it lasts as long as the main thread is off the CPU inside it: waiting
    for the GIL -- the eval loop looks at signals before it hands the GIL to a worker that asked for
    it, and not again after taking it back -- or descheduled on a busy machine. With 128 workers
    finishing a response as the client sends SIGTERM, 1 stop in 4 or 5 hung. The C handler writes
    the pipe itself, so a wait that includes it sees every signal, whenever it landed.
    """
    global _signalled
    if _signalled < 0:
        _signalled, wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # No warning when the pipe is full: a byte is then already waiting, which is all accept() needs
        # (the models that never read it -- the event loops -- could fill it in a long run of signals).
        # An event loop that wants the signals (asyncio) takes the wakeup fd over.
        signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)


def accept(sock: socket.socket) -> socket.socket | None:
    """accept() for the blocking models: None on a transient failure, after a back-off if the
    process is out of descriptors (so a full fd table pauses accepting instead of spinning), and
    None when a signal came (the caller loops, and its handler runs on the way: Shutdown).

    Waits for the listening socket and the signal pipe together (see _watch_signals); both are among
    the first descriptors the process opens, far below select()'s 1024."""
    try:
        if _signalled in select.select([sock, _signalled], [], [])[0]:
            # Its handler runs as select() returns, or at the caller's next bytecode: the C handler
            # sets its flag before writing the byte, and the main thread rechecks the flag when it
            # takes the GIL back from select().
            os.read(_signalled, 512)
            return None
        conn, _ = sock.accept()
    except OSError as exc:
        if exc.errno in RESOURCE_ERRNOS:
            time.sleep(ACCEPT_BACKOFF_S)
        return None
    return conn


class Handoff:
    """What a blocking model says to serve_blocking: how it hands over a connection it admitted, how many
    it holds (for limits.max_connections), and how it winds down. The defaults are `single`'s: it serves
    the connection itself, holds nothing once it has, and has nothing to wait for."""

    def __init__(self, app: App) -> None:
        self.app = app

    def held(self) -> int:
        """Connections admitted and not yet closed."""
        return 0

    def hand(self, conn: socket.socket) -> str | None:
        """Serve `conn` or have it served; the reason it cannot be (then serve_blocking answers 503)."""
        serve_connection(conn, self.app)
        return None

    def wind_down(self) -> None:
        """After Shutdown, the listening socket closed: end what is held within app.grace."""


def serve_blocking(sock: socket.socket, app: App, handoff: Handoff) -> None:
    """The blocking models' accept loop: accept (waking for signals, backing off when out of
    descriptors), admit up to limits.max_connections held at once (past it: 503 and close), hand the
    connection over, and on Shutdown stop accepting and let the model wind down."""
    try:
        while True:
            conn = accept(sock)
            if conn is None:
                continue
            if handoff.held() >= app.limits.max_connections:
                refuse(conn, 503, "too many connections")
                continue
            refusal = handoff.hand(conn)
            if refusal is not None:
                refuse(conn, 503, refusal)
    except Shutdown:
        sock.close()
        handoff.wind_down()


def child_life(body: Callable[[], None], last_words: Callable[[], None]) -> NoReturn:
    """The whole life of a forked worker (process, prefork), called in the child right after fork()
    with FORK_BLOCKED blocked: default SIGCHLD, the signals unblocked (a SIGTERM held back lands here
    as Shutdown), `body` until it returns or Shutdown, then `last_words` (its count, for the parent),
    and exit: never back into the parent's loop, status 1 if `body` raised anything but Shutdown.

    The last words are said with the stop signals blocked for good: a worker that ends on its own (its
    client left) can get the parent's SIGTERM as it speaks, and a Shutdown there lost its count from
    SERVED (the process model, 1 stop in ~50 of test_truncated_body_then_eof_is_not_handled)."""
    status = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)
        body()
    except Shutdown:
        pass
    except BaseException:
        status = 1
    finally:
        try:
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            except Shutdown:
                pass  # its handler ran as the block returned: the body is over either way
            last_words()
        finally:
            os._exit(status)


def send_and_close(conn: socket.socket, data: bytes) -> None:
    """Best-effort last words to a connection, without blocking, then close it."""
    try:
        conn.setblocking(False)
        conn.send(data)
    except OSError:
        pass
    conn.close()


def refuse(conn: socket.socket, status: int, reason: str) -> None:
    """Best-effort error answer to a connection we will not serve, then close it."""
    send_and_close(conn, error_response(HTTPError(status, reason)))


def serve_connection(sock: socket.socket, app: App) -> None:
    """Serve one connection to its end with blocking I/O, counting answers in `app`: the blocking
    side of servers/connection.py (its docstring has the deadlines), which decides everything else.
    A recv() blocks until the connection's deadline at most, a send until limits.header_timeout (a
    reader that stopped reading), and a reply that must wait sleeps this worker only."""
    conn = Connection(app, time.monotonic())
    header_timeout = app.limits.header_timeout
    try:
        while True:
            if conn.out:
                sock.settimeout(header_timeout)
                out, owed = conn.out, conn.owed
                # Counted before sending: sendall() runs signal handlers after its last send(), so a
                # SIGTERM can raise Shutdown out of it when the client already has the whole response.
                if owed:
                    app.count(owed)
                try:
                    sock.sendall(out)
                except OSError:
                    if owed:
                        app.count(-owed)  # not delivered: the peer left or stopped reading
                    raise
                conn.sent(len(out), time.monotonic())
            elif conn.closing:
                return
            elif conn.waiting:
                time.sleep(max(0.0, conn.due - time.monotonic()))
                conn.fire(time.monotonic())
            elif not _receive(sock, conn):
                return
    except OSError:  # the peer went away (reset, broken pipe, a reader that stopped): nothing to answer
        return
    finally:
        sock.close()
        conn.close()


def _receive(sock: socket.socket, conn: Connection) -> bool:
    """One blocking recv() into `conn`, bounded by its deadline; False: the connection is over (EOF,
    or the deadline passed and what it calls for was sent)."""
    remaining = conn.deadline - time.monotonic()
    if remaining > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            data = None  # the deadline passed
        if data is not None:
            if data:
                now = time.monotonic()
                reply = conn.receive(data, now)
                if reply:
                    conn.unsent(reply, now)  # sent by the caller, through `out` like any other answer
            return bool(data)  # EOF: an incomplete request is dropped, never handled
    refusal = conn.expire(max(time.monotonic(), conn.deadline))
    if refusal:
        sock.sendall(refusal)
    return False
