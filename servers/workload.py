"""What a server does for one request, independent of how it schedules requests.

A workload maps a parsed Request to a Reply. It owns no I/O policy: the concurrency models decide
how to wait, send and close. `hello` is the default: a small fixed body, so the benchmark measures
the server's request handling, not its work. `echo` returns the request head, as the original
assignment's servers did (they sent the received bytes back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from servers.http import Request


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


HELLO = b"Hello, World!\n"


def hello(request: Request) -> Reply:
    return Reply(200, HELLO)


def echo(request: Request) -> Reply:
    return Reply(200, request.head + request.body, "text/plain; charset=latin-1")


Workload = Callable[[Request], Reply]

WORKLOADS: dict[str, Workload] = {"hello": hello, "echo": echo}
