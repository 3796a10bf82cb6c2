"""What a server does for one request, independent of how it schedules requests.

A workload maps a parsed Request to a Reply. It owns no I/O policy: the concurrency models decide
how to wait, send and close. A Reply's `delay_s` is time the request must wait before its answer
(the `io` workload: a database or upstream call); each model waits in its own idiom -- a blocking
sleep in a thread or process, a timer in an event loop, never a sleep inside the loop.

- hello: a 14-byte fixed body, so the benchmark measures request handling, not work (default)
- echo: the request head and body back, as the original assignment's servers did
- cpu: `cpu_us` microseconds of pure-Python work (the GIL holds). The work is a fixed number of
  loop iterations: the runner calibrates it once per sweep (`resolve`) and passes `iterations`, so
  every server of a sweep does the same work; a server started alone calibrates itself. (Servers
  that calibrated themselves on a busy core did a third of the work: 3,400 req/s "at 500 us".)
- io: `io_ms` milliseconds of waiting, no CPU
- size: a body of `size_bytes` bytes
- fail: fault injection for the tests: a handler that raises on every request whose path contains
  `/fail` (each model must answer that one request 500 and go on), hello otherwise
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from servers.http import Request


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    delay_s: float = 0.0  # wait this long before sending (the io workload)


Workload = Callable[[Request], Reply]
HELLO = b"Hello, World!\n"


def hello() -> Workload:
    reply = Reply(200, HELLO)
    return lambda request: reply


def echo() -> Workload:
    return lambda request: Reply(200, request.head + request.body, "text/plain; charset=latin-1")


def _spin(iterations: int) -> int:
    x = 1
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def spin_iterations(cpu_us: float) -> int:
    """Iterations of the spin loop that take about `cpu_us` here: the best of 20 timings (the
    least disturbed one), so a busy moment makes the work larger, never smaller."""
    n, best = 20_000, float("inf")
    for _ in range(20):
        start = time.perf_counter()
        _spin(n)
        best = min(best, time.perf_counter() - start)
    return max(1, round(float(cpu_us) * n / (best * 1e6)))


def cpu(cpu_us: float = 500, iterations: int | None = None) -> Workload:
    """A fixed amount of work, not a fixed time: preemption must not make it look cheaper."""
    count = int(iterations) if iterations else spin_iterations(float(cpu_us))
    reply = Reply(200, HELLO)

    def handle(request: Request) -> Reply:
        _spin(count)
        return reply

    return handle


def io(io_ms: float = 10) -> Workload:
    reply = Reply(200, HELLO, delay_s=float(io_ms) / 1000)
    return lambda request: reply


def size(size_bytes: int = 10240) -> Workload:
    reply = Reply(200, b"x" * int(size_bytes), "application/octet-stream")
    return lambda request: reply


class InjectedFault(Exception):
    """What the fail workload raises: a stand-in for a bug in a request handler."""


def fail() -> Workload:
    reply = Reply(200, HELLO)

    def handle(request: Request) -> Reply:
        if "/fail" in request.target:
            raise InjectedFault(request.target)
        return reply

    return handle


WORKLOADS: dict[str, Callable[..., Workload]] = {
    "hello": hello,
    "echo": echo,
    "cpu": cpu,
    "io": io,
    "size": size,
    "fail": fail,
}


def resolve(name: str, params: dict) -> dict:
    """Parameters made exact before servers start, so that every server of a sweep gets the same."""
    if name == "cpu" and "iterations" not in params:
        return {**params, "iterations": spin_iterations(float(params.get("cpu_us", 500)))}
    return dict(params)


def make(name: str, params: dict[str, str] | None = None) -> Workload:
    """The named workload with its parameters (strings from the command line)."""
    try:
        return WORKLOADS[name](**(params or {}))
    except TypeError as exc:
        raise ValueError(f"workload {name!r}: bad parameters {params}: {exc}") from None
