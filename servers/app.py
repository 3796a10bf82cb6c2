"""The App: what a server is told to serve (workload, limits, keep-alive, grace) and the one piece of
state every model shares, the count of requests answered; `respond` turns a request into the
response bytes. Its own module so that the connection state machine (servers/connection.py) and the
models' common ground (servers/base.py) both use it without importing each other.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field

from servers.http import Limits, Request, build_response
from servers.workload import Reply, Workload

GRACE_S = 5.0  # after SIGTERM: stop accepting, finish what is in flight for at most this, then exit


@dataclass
class App:
    """Per-server settings plus the one piece of shared state: how many requests were answered."""

    workload: Workload
    limits: Limits
    keepalive: bool = True
    grace: float = GRACE_S
    options: argparse.Namespace = field(default_factory=argparse.Namespace)  # the whole command line
    served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # (reply, keep-alive, HEAD, second, bytes): the last response built, reused while the workload
    # returns the same Reply object within the same second (every workload but echo does)
    _last: tuple = field(default=(None, None, None, 0, b""), repr=False)

    def respond(self, request: Request) -> tuple[bytes, bool, float]:
        """Response bytes for one request, whether the connection stays open after it, and how
        long to wait before sending (the model decides how to wait)."""
        keep = self.keepalive and request.keep_alive
        try:
            reply = self.workload(request)
        except Exception:  # a handler bug costs that request a 500, not the server
            reply, keep = Reply(500, b"500 Internal Server Error\n"), False
        head_only = request.method == "HEAD"
        last = self._last
        second = int(time.time())
        if last[0] is reply and last[1] is keep and last[2] is head_only and last[3] == second:
            return last[4], keep, reply.delay_s
        data = build_response(
            reply.status, reply.body, content_type=reply.content_type, keep_alive=keep, head_only=head_only
        )
        self._last = (reply, keep, head_only, second, data)
        return data, keep, reply.delay_s

    def count(self, n: int = 1) -> None:
        with self._lock:
            self.served += n
