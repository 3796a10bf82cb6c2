"""What a request costs the parser grows with its bytes, never faster: no regex in servers/http.py may
be quadratic (or worse) in a run of characters an attacker chooses.

Strategy: costs are compared as ratios measured in one run, never against a clock, so a noisy shared
machine cannot fail them. The yardstick is a benign request of the same size (long field values)
through the general code; every hostile request below -- a long run of one filler in each place a
regex reads, near that place's limit -- must cost at most COST_MULTIPLE of it on every path (the fast
path fed, feed_whole(), the general code) with its headers split, as a handler asks for them. A
linear parse costs at most about 12 times the yardstick here (8000 commas make a list of 8000
items); the quadratic fast path of issue #25 cost about a thousand times at 8 KB. Each cost is the
best of a few tries, interleaved with the yardstick's, so a pause of the machine inflates neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from servers.http import HTTPError, RequestParser

COST_MULTIPLE = 30  # linear: at most about 12 here (8000 commas in a list); the quadratic class: ~1000
TRIES = 5
LINE = 8000  # a run that keeps a request line or a field line within its 8190-byte limit
CHUNK_LINE = 1000  # a run that keeps a chunk-size line within its 1 KiB


def _parse_fast(data: bytes) -> None:
    _drain(RequestParser(), data, whole=False)


def _parse_whole(data: bytes) -> None:
    _drain(RequestParser(), data, whole=True)


def _parse_general(data: bytes) -> None:
    _drain(RequestParser(fast=False), data, whole=False)


def _drain(parser: RequestParser, data: bytes, *, whole: bool) -> None:
    """Every request in `data` with its headers split (the fast path splits them when asked), until
    the bytes run out or the parser refuses them."""
    try:
        request = parser.feed_whole(data) if whole else parser.feed(data)
        if request is not None:
            request.headers  # noqa: B018 -- the split is part of the cost
        while (request := parser.next_request()) is not None:
            request.headers  # noqa: B018
    except HTTPError:
        pass


PATHS: dict[str, Callable[[bytes], None]] = {"fast": _parse_fast, "feed_whole": _parse_whole, "general": _parse_general}


def _seconds(parse: Callable[[bytes], None], data: bytes) -> float:
    start = time.perf_counter()
    parse(data)
    return time.perf_counter() - start


def cost_ratio(data: bytes, parse: Callable[[bytes], None]) -> float:
    """Cost of `data` through `parse` / cost of a benign request as long through the general code."""
    benign = _benign(len(data))
    costs, yardstick = [], []
    for _ in range(TRIES):
        costs.append(_seconds(parse, data))
        yardstick.append(_seconds(_parse_general, benign))
    return min(costs) / min(yardstick)


def _benign(size: int) -> bytes:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n"
    fields, rest = [], max(size - len(head), 0)
    while rest > 0:  # field lines of at most LINE bytes, so the yardstick is within every limit too
        take = min(rest, LINE)
        fields.append(b"X: " + b"v" * take + b"\r\n")
        rest -= take + 5
    return head[:-2] + b"".join(fields) + b"\r\n"


QUADRATIC = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nX: a" + b" " * 8000 + b"b\r\nY: c \r\n\r\n"


def test_inner_whitespace_in_a_value_costs_what_the_general_code_costs() -> None:
    """Issue #25, item 1: a value with a long run of inner whitespace, in a head that names a framing
    field and has a value ending in whitespace, split by the fast path (0.5/2/8/32 ms for 1k/2k/4k/8k
    spaces; the general code: about 0.08 ms). Same bytes, fast path against general code."""
    fast = min(_seconds(_parse_fast, QUADRATIC) for _ in range(TRIES))
    general = min(_seconds(_parse_general, QUADRATIC) for _ in range(TRIES))
    assert fast / general < 10, f"fast path {fast * 1e3:.2f} ms, general code {general * 1e3:.2f} ms"


# Places a regex of servers/http.py reads, each a request with `{}` where a run of filler goes.
GET = "GET / HTTP/1.1\r\nHost: a\r\n"
FRAMED = GET + "Content-Length: 0\r\nY: c \r\n"  # framing field and a value ending in whitespace: the split
CHUNKED = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
PLACES: dict[str, tuple[str, int]] = {
    "method": ("G{} / HTTP/1.1\r\nHost: a\r\n\r\n", LINE),
    "origin-form": ("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", LINE),
    "absolute-form": ("GET http://{} HTTP/1.1\r\nHost: a\r\n\r\n", LINE),
    "authority-form": ("CONNECT a{}:1 HTTP/1.1\r\nHost: a\r\n\r\n", LINE),
    "version": ("GET / HTTP/1.1{}\r\nHost: a\r\n\r\n", LINE),
    "value-inner": (GET + "X: a{}b\r\n\r\n", LINE),
    "value-inner-framed": (FRAMED + "X: a{}b\r\n\r\n", LINE),
    "value-end-framed": (FRAMED + "X: a{}\r\n\r\n", LINE),
    "name": (GET + "X{}: v\r\n\r\n", LINE),
    "host-first": ("GET / HTTP/1.1\r\nHost: a{}\r\n\r\n", LINE),
    "host-later": ("GET / HTTP/1.1\r\nX: v\r\nHost: a{}\r\n\r\n", LINE),
    "content-length": (GET + "Content-Length: 1{}\r\n\r\n", LINE),
    "connection": (GET + "Connection: a{}\r\n\r\n", LINE),
    "transfer-encoding": ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: a{}, chunked\r\n\r\n0\r\n\r\n", LINE),
    "expect": ("POST / HTTP/1.1\r\nHost: a\r\nExpect: a{}\r\nContent-Length: 1\r\n\r\nx", LINE),
    "trailer": (CHUNKED + "0\r\nX: a{}b\r\n\r\n", LINE),
    "many-fields": (FRAMED + "X: a{}b \r\n" * 60 + "\r\n", 500),  # the general code's 32 KiB head
}
# Chunk-size lines, each a run within its 1 KiB: 30 of them in one body (within the framing limit).
CHUNK_LINES: dict[str, str] = {
    "chunk-size": "1{}\r\nx\r\n",
    "chunk-ext": "1;a{}\r\nx\r\n",
    "chunk-ext-value": "1;a=b{}\r\nx\r\n",
    "chunk-ext-quoted": '1;a="{}"\r\nx\r\n',
}
PLACES.update({name: (CHUNKED + line * 30 + "0\r\n\r\n", CHUNK_LINE) for name, line in CHUNK_LINES.items()})
FILLERS = [" ", "\t", " \t", "a", "a ", " a", "0", ":", ";", ",", "=", '"', "\\", '\\"', "[", "@", "/", "%", ";a="]
FILLERS.append("\x01")  # a control character: refused, but only once read


def hostile(template: str, run: int, filler: str) -> bytes:
    """`template` with every `{}` a run of `filler` about `run` characters long."""
    return template.replace("{}", filler * (run // len(filler))).encode("latin-1")


@pytest.mark.parametrize("place", PLACES)
def test_no_request_costs_more_than_a_multiple_of_its_bytes(place: str) -> None:
    """Item 3: each filler in each place, near that place's limit, on every path."""
    template, run = PLACES[place]
    worst = []
    for filler in FILLERS:
        data = hostile(template, run, filler)
        for name, parse in PATHS.items():
            ratio = cost_ratio(data, parse)
            worst.append((ratio, filler, name))
    ratio, filler, name = max(worst)
    assert ratio < COST_MULTIPLE, f"{place}: a run of {filler!r} costs {ratio:.0f} x the yardstick ({name} path)"
