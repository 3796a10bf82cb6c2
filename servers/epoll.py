"""epoll: one thread, one event loop, every socket non-blocking, no descriptor ceiling. One core, however
many it is given (prefork runs this loop once per core).

Strategy: the select model's design without select()'s two limits: the kernel keeps the interest
set, so a pass costs O(ready sockets) rather than O(open sockets), and any descriptor number can be
watched (select() stops at 1024). This is the loop nginx, Node and uvloop are built on; here it is
driven through `select.epoll` directly rather than `selectors`, whose per-event key objects and
mapping are a layer this loop does not need (each connection is found by its fd in one dict).

All this module holds is how it waits: one epoll_wait() per pass, its timeout cut to the next
timer or sweep (servers/loop.py), and an epoll_ctl() when a connection's events change -- READ
while it has nothing to send, WRITE only while output is pending (back-pressure), nothing while its
reply waits on a timer. Level-triggered, so one recv() per readiness is enough and nothing is lost
if a pass stops early. What a connection does with its bytes is servers/connection.py's; accepting,
sending, timers and deadlines are servers/loop.py's.

The hot path, one small request alone in a recv() on an idle connection, takes the parser's fast
path and App.respond's cached response (Connection.receive), then one send(); so a request costs
about one recv(), one parse, one send() and a share of one epoll_wait(). `--parse-memo` lets the
parser replay the parse of byte-identical requests (off by default; servers/http.py says why).

`serve_loop` is also the worker loop of the prefork model: `gate` then admits connections against
a cap shared by every worker, `tick` reports the running count, and `exclusive` wakes one worker
per incoming connection instead of all of them (EPOLLEXCLUSIVE) on a shared listening socket.
"""

from __future__ import annotations

import argparse
import select
import socket
import time
from collections.abc import Callable
from typing import Protocol

from servers import base
from servers.loop import READ, Client, Loop

# One runnable thread per core it may use: whatever makes it wait for a CPU is someone else (the runner's
# `contended` flag reads its run-queue wait: runner/run/validity.py)
ONE_RUNNABLE = True


class Gate(Protocol):
    """Admission of connections when the cap is not this loop's alone (prefork)."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


def options(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--parse-memo",
        action="store_true",
        help="replay the parse of a whole request seen before (byte-identical) instead of parsing it again",
    )


class EpollLoop(Loop):
    def __init__(
        self,
        sock: socket.socket,
        app: base.App,
        gate: Gate | None,
        tick: Callable[[int], None] | None,
        exclusive: bool,
    ) -> None:
        super().__init__(sock, app, tick=tick)
        self.gate = gate
        self.listen_events = READ | (select.EPOLLEXCLUSIVE if exclusive else 0)
        self.ep = select.epoll()
        self.ep.register(self.listen_fd, self.listen_events)

    def opened(self, client: Client) -> None:
        self.ep.register(client.fd, client.events)

    def watch(self, client: Client) -> None:
        self.ep.modify(client.fd, client.events)

    def listening(self, on: bool) -> None:
        if on:
            self.ep.register(self.listen_fd, self.listen_events)
        else:
            self.ep.unregister(self.listen_fd)

    def admit(self, sock: socket.socket) -> bool:
        return self.gate.acquire() if self.gate is not None else super().admit(sock)

    def release(self) -> None:
        if self.gate is not None:
            self.gate.release()

    def run(self) -> None:
        poll, clients, listen_fd = self.ep.poll, self.clients, self.listen_fd
        now = time.monotonic()
        try:
            while True:
                events = poll(self.timeout(now))
                now = time.monotonic()
                for fd, _ in events:
                    client = clients.get(fd)
                    if client is None:
                        if fd == listen_fd:
                            self.accept(now)
                    elif client.events == READ:
                        self.receive(client, now)
                    elif client.out:
                        self.flush(client, now)
                    else:  # registered for nothing (a reply on its timer): only an error or a hang-up wakes it
                        self.close(client)
                self.due(now)
        except base.Shutdown:
            self.shutdown()
            self.ep.close()


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
    EpollLoop(sock, app, gate, tick, exclusive).run()


if __name__ == "__main__":
    base.run("epoll", serve, options=options)
