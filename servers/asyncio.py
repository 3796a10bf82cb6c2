"""asyncio: an event loop with callbacks, the way asyncio's own servers (and uvicorn) do it.

One thread, one loop; each connection is an asyncio.Protocol whose data_received() feeds the shared
parser and writes the answers to every complete request in one transport.write(). Protocols, not
streams: a stream reader/writer pair costs a task and several awaits per request, a Protocol one
callback. `--loop uvloop` swaps in uvloop's libuv loop (where installed: `pip install uvloop`);
the default is the standard library's, so the model runs anywhere Python does.

The io workload's wait is loop.call_later(): the connection stops reading (pause_reading) until its
reply is sent, so pipelined responses stay in order and a client cannot pile up requests meanwhile.
Flow control: when the transport's write buffer passes its high-water mark, asyncio calls
pause_writing() and we stop reading until resume_writing(), so a client that pipelines without
reading cannot grow our buffers.

A reply counts in SERVED once transport.write() took it without the transport closing (a peer that
reset the connection fails the first send()); what a parser buffers goes at connection_lost().

Deadlines (header, keep-alive idle, a reader that stopped reading) are checked by one sweep every
half second rather than a timer per request, which would cost a heap push and a cancel for every
request. Past limits.max_connections: 503 and close. Out of descriptors, asyncio's accept loop
itself stops accepting for a second (uvloop: libuv's spare-fd trick); the error is reported as one
line on stderr. SIGTERM goes through loop.add_signal_handler (an exception raised inside a loop
callback would be caught and logged by asyncio, not end the loop): stop accepting, close every
connection, stop the loop.

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
from servers.http import HTTPError, RequestParser, error_response

SWEEP_INTERVAL_S = 0.5


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
    __slots__ = ("server", "app", "transport", "parser", "deadline", "closing", "waiting", "paused", "reading")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(self.app.limits)
        self.deadline = 0.0
        self.closing = False  # close once the answers written so far are sent
        self.waiting = False  # a delayed reply is pending on a call_later timer
        self.paused = False  # the transport's write buffer is above its high-water mark
        self.reading = True

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.conns) >= self.app.limits.max_connections:
            transport.write(error_response(HTTPError(503, "too many connections")))  # type: ignore[attr-defined]
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.deadline = time.monotonic() + self.app.limits.header_timeout
        server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        self.closing = True
        self.parser.close()  # a pending timer may hold this protocol a while longer

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        parser = self.parser
        request = parser.feed_whole(data)
        if request is None:
            if parser.began:
                self.deadline = time.monotonic() + self.app.limits.header_timeout
            self.handle()
            return
        # the fast path: one whole request, alone (see servers/epoll.py)
        out, keep, delay = self.app.respond(request)
        if delay:
            self.wait(delay, out, keep)
            return
        self.write(out, 1)
        if keep:
            self.touch()
        else:
            self.closing = True
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done sending: close (an incomplete request is dropped, never handled)

    def pause_writing(self) -> None:
        self.paused = True
        self.update_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self.update_reading()
        if not self.waiting and not self.closing:
            self.handle()  # requests that were buffered while the client was not reading

    # -- ours ---------------------------------------------------------------------------------------

    def handle(self) -> None:
        """Answer every complete request buffered, in one write()."""
        parser, app = self.parser, self.app
        answers = []
        replies = 0
        while not self.closing and not self.paused:
            try:
                request = parser.next_request()
            except HTTPError as exc:
                answers.append(error_response(exc))
                self.closing = True
                break
            if request is None:
                interim = parser.interim()  # 100 Continue, if the request being read asked for it
                if interim:
                    answers.append(interim)
                break
            data, keep, delay = app.respond(request)
            if delay:
                if answers:
                    self.write(b"".join(answers), replies)
                self.wait(delay, data, keep)
                return
            answers.append(data)
            replies += 1
            self.closing = not keep
        if answers:
            self.write(b"".join(answers), replies)
        if self.closing:
            self.transport.close()
        elif answers:
            self.touch()  # a partial request keeps the deadline its first byte set (slowloris)

    def write(self, data: bytes, replies: int) -> None:
        """Hand `data` to the transport; its `replies` count unless that failed at once (the peer
        reset the connection: the transport is closing after its first send())."""
        transport = self.transport
        transport.write(data)
        if not transport.is_closing():
            self.app.served += replies

    def wait(self, delay: float, data: bytes, keep: bool) -> None:
        self.waiting = True
        self.update_reading()
        self.server.loop.call_later(delay, self.delayed, data, keep)

    def delayed(self, data: bytes, keep: bool) -> None:
        self.waiting = False
        if self.transport.is_closing():
            return  # the client left, or the deadline sweep closed it
        self.write(data, 1)
        if not keep:
            self.closing = True
            self.transport.close()
            return
        self.update_reading()
        self.handle()  # requests pipelined behind the one that waited

    def update_reading(self) -> None:
        reading = not self.waiting and not self.paused
        if reading != self.reading and not self.transport.is_closing():
            self.reading = reading
            if reading:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def touch(self) -> None:
        """Set the deadline for what the connection waits on now."""
        limits = self.app.limits
        if self.transport.get_write_buffer_size() or not self.parser.idle:
            self.deadline = time.monotonic() + limits.header_timeout  # the client must read / finish
        else:
            self.deadline = time.monotonic() + limits.keepalive_timeout

    def expire(self) -> None:
        refusal = base.expiry(self.parser, bool(self.transport.get_write_buffer_size()))
        if refusal:
            self.transport.write(refusal)
            self.closing = True
            self.transport.close()
        else:
            self.closing = True
            self.transport.abort()  # idle, or a reader that stopped reading: drop what is unsent


class Server:
    """What the protocols share: the app, the loop, the open connections."""

    def __init__(self, app: base.App, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.conns: set[HTTPProtocol] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.conns if now >= c.deadline and not c.waiting]:
            conn.expire()
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
    state = Server(app, loop)
    try:
        server = loop.run_until_complete(
            loop.create_server(lambda: HTTPProtocol(state), sock=sock, backlog=getattr(app.options, "backlog", 1024))
        )
        stop = loop.stop
        for sig in base.STOP_SIGNALS:
            loop.add_signal_handler(sig, stop)
        loop.call_later(SWEEP_INTERVAL_S, state.sweep)
        loop.run_forever()
        # stopped by SIGTERM: stop accepting, close what we hold
        server.close()
        for conn in list(state.conns):
            conn.closing = True
            conn.transport.abort()
        loop.run_until_complete(asyncio.sleep(0))  # let the transports finish closing
        for sig in base.STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
    finally:
        loop.close()


if __name__ == "__main__":
    base.run("asyncio", serve, options=options)
