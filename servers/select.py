"""select() multiplexing: one thread, one loop, every socket non-blocking.

Strategy: each pass asks select() which sockets can be read or written, then reads what arrived,
answers every complete request in it and sends as much as the socket takes. State lives per
connection (servers/connection.py: parser, output, deadline), so partial reads, partial writes and
pipelined requests all fall out of the same loop. No thread or process switch per request: this is
why the original assignment found it fastest. Its limits are its own: one core (however many it is
given), and a handler that blocks stalls every client.

All this module holds is how it waits: the lists select() is given, rebuilt every pass from what
each connection waits for (servers/loop.py: read, write while output is pending -- back-pressure --
or nothing while a reply waits on a timer), and select()'s own ceiling. select() rescans every
descriptor on each call (O(connections) per pass), and it cannot watch a descriptor >= FD_SETSIZE
(1024) -- Python raises ValueError. A connection whose descriptor is past that ceiling is answered
503 and closed at accept, so the server keeps serving the connections it can watch. The `epoll`
model has neither limit. Accepting, sending, timers (select()'s timeout is cut to the earliest: the
loop never sleeps), deadlines and the EMFILE pause are servers/loop.py's.
"""

from __future__ import annotations

import select
import socket
import time

from servers import base
from servers.loop import READ, WRITE, Loop

# One runnable thread per core it may use: whatever makes it wait for a CPU is someone else (the runner's
# `contended` flag reads its run-queue wait: runner/run/validity.py)
ONE_RUNNABLE = True

FD_SETSIZE = 1024


class SelectLoop(Loop):
    def admit(self, sock: socket.socket) -> bool:
        return sock.fileno() < FD_SETSIZE and super().admit(sock)

    def run(self) -> None:
        clients, listen_fd = self.clients, self.listen_fd
        try:
            while True:
                now = time.monotonic()
                readers = [] if self.accept_paused_until else [listen_fd]
                readers += [fd for fd, client in clients.items() if client.events == READ]
                writers = [fd for fd, client in clients.items() if client.events == WRITE]
                readable, writable, _ = select.select(readers, writers, [], self.timeout(now))
                now = time.monotonic()
                for fd in readable:
                    client = clients.get(fd)
                    if client is not None and client.events == READ:
                        self.receive(client, now)
                    elif fd == listen_fd:
                        self.accept(now)
                for fd in writable:
                    client = clients.get(fd)
                    if client is not None and client.out:
                        self.flush(client, now)
                self.due(now)
        except base.Shutdown:
            self.shutdown()


def serve(sock: socket.socket, app: base.App) -> None:
    SelectLoop(sock, app).run()


if __name__ == "__main__":
    base.run("select", serve)
