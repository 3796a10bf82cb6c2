"""asyncio: an event loop with callbacks, the way asyncio's own servers (and uvicorn) do it.

One thread, one loop (one core, however many it is given); each connection is an asyncio.Protocol
whose data_received() feeds its Connection (servers/connection.py, which holds every connection
rule, as in every model) and writes the answers to every complete request in one transport.write().
Protocols, not streams: a stream reader/writer pair costs a task and several awaits per request, a
Protocol one callback. `--loop uvloop` swaps in uvloop's libuv loop (where installed: `pip install
uvloop`); the default is the standard library's, so the model runs anywhere Python does.

The io workload's wait is loop.call_later(): the connection stops reading (pause_reading) until its
reply is sent, so pipelined responses stay in order and a client cannot pile up requests meanwhile.
Flow control: when the transport's write buffer passes its high-water mark, asyncio calls
pause_writing() and we stop reading until resume_writing(), so a client that pipelines without
reading cannot grow our buffers.

A reply counts in SERVED once transport.write() took it without the transport closing (a peer that
reset the connection fails the first send()); what a connection buffers goes at connection_lost().

Deadlines (the Connection's: header, keep-alive idle, a reader that stopped reading, where output
still in the transport's buffer counts as unsent) are checked by one sweep every half second
rather than a timer per request, which would cost a heap push and a cancel for every
request. Past limits.max_connections: 503 and close. Out of descriptors, asyncio's accept loop
itself stops accepting for a second (uvloop: libuv's spare-fd trick); the error is reported as one
line on stderr. SIGTERM goes through loop.add_signal_handler (an exception raised inside a loop
callback would be caught and logged by asyncio, not end the loop): stop accepting, close every
connection, stop the loop. The stop signals stay blocked from before the loop first runs until its
handlers are in place inside the running loop, so one sent meanwhile waits for them: base's handler
would raise its Shutdown inside a loop callback, where it is logged and lost, and uvloop only
listens for a signal while it runs (one that lands between a run_until_complete() and the next
run is kept in a set that nothing reads), so either way the server would run on after SIGTERM.

This module is `servers.asyncio`; `import asyncio` in it is absolute and finds the standard
library, as long as it is run as `python -m servers.asyncio` (never as a script path, like select).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time

from servers import base
from servers.connection import Connection
from servers.http import HTTPError, error_response
from servers.loop import SWEEP_INTERVAL_S

# One runnable thread per core it may use: whatever makes it wait for a CPU is someone else (the runner's
# `contended` flag reads its run-queue wait: runner/run/validity.py)
ONE_RUNNABLE = True


def _loop_choice(name: str) -> str:
    if name == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise argparse.ArgumentTypeError("uvloop is not installed (pip install uvloop)") from None
    elif name != "asyncio":
        raise argparse.ArgumentTypeError(f"unknown loop {name!r}: choose asyncio or uvloop")
    return name


def options(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--loop", type=_loop_choice, default="asyncio", help="event loop: asyncio (stdlib, default) or uvloop"
    )


class HTTPProtocol(asyncio.Protocol):
    """An asyncio transport driving a Connection: what it received in, what it answers written."""

    __slots__ = ("server", "app", "transport", "conn", "paused", "reading", "timed")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.conn = Connection(self.app, time.monotonic())
        self.paused = False  # the transport's write buffer is above its high-water mark
        self.reading = True
        self.timed = False  # the waiting reply's timer is set

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.conns) >= self.app.limits.max_connections:
            self.conn.close()
            transport.write(error_response(HTTPError(503, "too many connections")))  # type: ignore[attr-defined]
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        self.conn.close()  # a pending timer may hold this protocol a while longer

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        now = time.monotonic()
        reply = conn.receive(data, now)
        if not reply:
            self.flush()
            return
        transport = self.transport  # the hot path: one reply, written at once
        transport.write(reply)
        if transport.is_closing():  # the peer reset the connection: not delivered
            conn.close()
        elif conn.closing:
            self.app.served += 1
            transport.close()
        else:
            self.app.served += 1
            if transport.get_write_buffer_size():
                conn.unsent(b"", now)

    def eof_received(self) -> bool:
        return False  # the client is done sending: close (an incomplete request is dropped, never handled)

    def pause_writing(self) -> None:
        self.paused = True
        self.update_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self.update_reading()

    # -- ours ---------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand the connection's output to the transport; its replies count unless that failed at
        once (the peer reset the connection: the transport is closing after its first send())."""
        conn, transport = self.conn, self.transport
        while conn.out:
            out = conn.out
            transport.write(out)
            if transport.is_closing():
                conn.close()
                return
            self.app.served += conn.owed
            conn.sent(len(out), time.monotonic(), unsent=transport.get_write_buffer_size())
        if conn.closing:
            transport.close()
        elif conn.waiting and not self.timed:
            self.timed = True
            self.update_reading()
            self.server.loop.call_later(conn.delay, self.fire)

    def fire(self) -> None:
        self.timed = False
        if self.transport.is_closing():
            return  # the client left, or the deadline sweep closed it
        self.conn.fire(time.monotonic())
        self.flush()
        self.update_reading()

    def update_reading(self) -> None:
        reading = not self.conn.waiting and not self.paused
        if reading != self.reading and not self.transport.is_closing():
            self.reading = reading
            if reading:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def expire(self, now: float) -> None:
        refusal = self.conn.expire(now, unsent=bool(self.transport.get_write_buffer_size()))
        if refusal is None:
            return
        self.conn.close()
        if refusal:
            self.transport.write(refusal)
            self.transport.close()
        else:
            self.transport.abort()  # idle, or a reader that stopped reading: drop what is unsent


class Server:
    """What the protocols share: the app, the loop, the open connections."""

    def __init__(self, app: base.App, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.conns: set[HTTPProtocol] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.conns):
            conn.expire(now)
        self.loop.call_later(SWEEP_INTERVAL_S, self.sweep)


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """One line, no traceback: e.g. accept() out of descriptors, which asyncio retries in a second."""
    exc = context.get("exception")
    print(f"asyncio: {context.get('message')}{f': {exc}' if exc else ''}", file=sys.stderr)


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve(sock: socket.socket, app: base.App) -> None:
    loop = new_loop(getattr(app.options, "loop", "asyncio"))
    loop.set_exception_handler(_exception_handler)
    signal.pthread_sigmask(signal.SIG_BLOCK, base.STOP_SIGNALS)  # until the loop's handlers take them
    try:
        loop.run_until_complete(_serve(Server(app, loop), sock, getattr(app.options, "backlog", 1024)))
    finally:
        for sig in base.STOP_SIGNALS:  # a signal from here on is ignored (a blocked one is dropped)
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        loop.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, base.STOP_SIGNALS)


async def _serve(state: Server, sock: socket.socket, backlog: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and close what we hold."""
    loop = state.loop
    stopped = loop.create_future()
    for sig in base.STOP_SIGNALS:
        loop.add_signal_handler(sig, lambda: stopped.done() or stopped.set_result(None))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, base.STOP_SIGNALS)  # one sent before now is handled now
    server = await loop.create_server(lambda: HTTPProtocol(state), sock=sock, backlog=backlog)
    loop.call_later(SWEEP_INTERVAL_S, state.sweep)
    await stopped
    signal.pthread_sigmask(signal.SIG_BLOCK, base.STOP_SIGNALS)  # a second signal must not cut the wind-down
    server.close()
    for conn in list(state.conns):
        conn.conn.close()
        conn.transport.abort()
    await asyncio.sleep(0)  # let the transports finish closing


if __name__ == "__main__":
    base.run("asyncio", serve, options=options)
