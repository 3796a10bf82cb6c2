"""gunicorn's request corpus (tests/data/http-corpus) through every server, over real sockets.

test_http.py holds the parser to the corpus; this holds every concurrency model to the parser, on
the wire, however the bytes are cut: whole, line by line, byte by byte and in seeded random chunks.
Each file goes on a fresh connection; once it has sent everything the client half-closes (it has
nothing more to say) and reads until the server closes, so a file whose request never completes
ends at once instead of at the header deadline; a server that ignored the EOF would still have to
close by that deadline (2 s here). Then a plain request on another connection checks that the
server still serves. The servers come from server_pool (one per model and set of limit flags,
shared by the module); cases that need gunicorn's lowered or raised limits get them as flags.
"""

from __future__ import annotations

import random
import re
import socket
import time
from dataclasses import fields
from typing import TYPE_CHECKING, NamedTuple

import pytest
from support import corpus

# The documented policy exceptions, one table for both suites (test_http.py explains each).
from support.corpus import GUNICORN_ONLY, INVALID_LIMITS, VALID_LIMITS, VALID_REFUSED, VALID_TRUNCATED
from support.rawhttp import Reader, Response, connect, exchange, is_closed, parse_all

from servers.http import HTTPError, Limits, RequestParser

if TYPE_CHECKING:
    from conftest import Server, ServerPool

HEADER_TIMEOUT = 2.0
BYTEWISE_MAX = 2048  # larger files go in 64-byte pieces: a byte per send() would take seconds
LARGE_PIECE = 64
VALID_MANIFEST = corpus.manifest("valid")


def by_line(data: bytes, name: str) -> list[bytes]:
    return [piece for piece in re.split(rb"(?<=\n)", data) if piece]


def by_byte(data: bytes, name: str) -> list[bytes]:
    size = 1 if len(data) < BYTEWISE_MAX else LARGE_PIECE
    return [data[i : i + size] for i in range(0, len(data), size)]


def random_chunks(data: bytes, name: str) -> list[bytes]:
    rng, pieces, i = random.Random(f"corpus/{name}"), [], 0  # a str seed is stable across runs
    while i < len(data):
        n = rng.randint(1, 23)
        pieces.append(data[i : i + n])
        i += n
    return pieces


FEEDINGS = {"whole": lambda data, name: [data], "lines": by_line, "bytes": by_byte, "random": random_chunks}


class Answer(NamedTuple):
    responses: list[Response]
    closed: bool  # the server closed (FIN or RST) rather than leaving the connection open
    seconds: float


def send_file(server: Server, pieces: list[bytes]) -> Answer:
    """Send `pieces` one send() each, half-close, and collect everything until the server closes."""
    started = time.monotonic()
    deadline = started + HEADER_TIMEOUT + 2.0
    received = bytearray()
    closed = False
    with connect(server.host, server.port) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN
            pass  # the server answered early and closed; what it sent is still ours to read
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                received += data
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
    return Answer(parse_all(bytes(received)), closed, time.monotonic() - started)


def limit_flags(limits: Limits | None) -> tuple[str, ...]:
    """The command-line flags that give a server `limits` (only those not at their default)."""
    if limits is None:
        return ()
    default = Limits()
    return tuple(
        item
        for f in fields(Limits)
        if getattr(limits, f.name) != getattr(default, f.name)
        for item in (f"--{f.name.replace('_', '-')}", str(getattr(limits, f.name)))
    )


def pool_server(pool: ServerPool, limits: Limits | None) -> Server:
    return pool("--header-timeout", str(HEADER_TIMEOUT), *limit_flags(limits))


def assert_still_serves(server: Server) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")  # a 9-byte field: a server here may allow 10-byte lines
        assert Reader(sock).read().status == 200, f"{server.model} no longer serves after that file"


def parser_statuses(data: bytes, limits: Limits | None) -> list[int]:
    """What a server answers `data` with, by the shared parser: 200 per request (the hello
    workload), then the status of the error that stops it, if one does."""
    parser, statuses = RequestParser(limits), []
    parser.feed(data)
    try:
        while parser.next_request() is not None:
            statuses.append(200)
    except HTTPError as error:
        statuses.append(error.status)
    return statuses


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize("name", corpus.names("valid"))
def test_corpus_valid(server_pool: ServerPool, record, name: str, feeding: str) -> None:
    limits = VALID_LIMITS.get(name)
    server = pool_server(server_pool, limits)
    data = corpus.load("valid", name)
    answer = send_file(server, FEEDINGS[feeding](data, name))
    statuses = [r.status for r in answer.responses]
    if name in VALID_REFUSED:  # 022: a request kept alive, then one without Host
        expected, observed = parser_statuses(data, limits), f"documented {VALID_REFUSED[name][0]}"
    elif name in VALID_TRUNCATED:
        expected, observed = [], "no answer (body cut short)"
    else:
        expected = [200] * int(VALID_MANIFEST[name]["expected_requests"])
        observed = "200 (raised limits)" if limits else "200"
    if statuses != expected or not answer.closed:
        observed = f"{statuses or 'no answer'}{'' if answer.closed else ', left open'}"
    record(f"corpus-valid-{feeding}", server.model, observed)
    assert statuses == expected
    assert answer.closed  # at the latest after the half-close
    assert answer.seconds < HEADER_TIMEOUT
    assert_still_serves(server)


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize("name", corpus.names("invalid"))
def test_corpus_invalid(server_pool: ServerPool, record, name: str, feeding: str) -> None:
    limits = INVALID_LIMITS.get(name)
    server = pool_server(server_pool, limits)
    data = corpus.load("invalid", name)
    answer = send_file(server, FEEDINGS[feeding](data, name))
    statuses = [r.status for r in answer.responses]
    hung = not answer.closed or answer.seconds > HEADER_TIMEOUT + 1.0  # +1: select sweeps twice a second
    observed = str(statuses[0]) if statuses else "closed at EOF (incomplete)"
    if statuses[:1] == [200] and name in GUNICORN_ONLY:
        observed = "200 (gunicorn-only)"
    if len(statuses) > 1 or hung:
        observed = f"{statuses}, {'left open' if not answer.closed else f'closed at {answer.seconds:.1f} s'}"
    record(f"corpus-invalid-{feeding}", server.model, observed)
    assert not hung, f"no close within {answer.seconds:.1f} s"
    if name in GUNICORN_ONLY:  # valid here, or (019, chunked_07: HTTP/1.1 without Host) a 400
        assert statuses in ([], [200]) or statuses == parser_statuses(data, limits) == [400]
    else:
        assert 200 not in statuses
        # the same answer as the parser's (test_http.py ties that to gunicorn's), however it was fed
        assert statuses == parser_statuses(data, limits)
        assert all(r.headers["connection"] == "close" for r in answer.responses)
    assert_still_serves(server)


# -- what the corpus does not cover: Expect, Host, CONNECT (RFC 9110, RFC 9112) --------------------

INTERIM_WAIT = 1.0  # a client waits about this long for 100 Continue before it sends the body anyway
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def expect(server: Server, framing: str, body: bytes) -> tuple[bytes, Response, bool]:
    """A request with `Expect: 100-continue` whose body is sent only after the interim response:
    (what came before the body was sent, the final response, whether the server then closed)."""
    with connect(server.host, server.port, timeout=INTERIM_WAIT) as sock:
        reader = Reader(sock)
        sock.sendall(f"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n{framing}\r\n\r\n".encode())
        try:
            interim = reader.read_head()
        except TimeoutError:
            interim = b""
        if interim == CONTINUE:
            sock.sendall(body)
            return interim, reader.read(), is_closed(sock)
        reader.buf[:0] = interim  # a final response instead: read it whole
        return b"", reader.read(), is_closed(sock)


def test_expect_100_continue(server_pool: ServerPool, record) -> None:
    server = pool_server(server_pool, None)
    sized = expect(server, "Content-Length: 5", b"hello")
    chunked = expect(server, "Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\n\r\n")
    too_large = expect(server, f"Content-Length: {Limits().max_body + 1}", b"")
    seen = [
        f"{'100, ' if interim else 'no 100, '}{response.status}{' + close' if closed else ''}"
        for interim, response, closed in (sized, chunked, too_large)
    ]
    record("expect-100", server.model, f"sized: {seen[0]}; chunked: {seen[1]}; over max_body: {seen[2]}")
    assert sized[0] == CONTINUE and sized[1].status == 200
    assert chunked[0] == CONTINUE and chunked[1].status == 200
    assert too_large[0] == b"" and too_large[1].status == 413 and too_large[2]  # the body never read


WIRE_CASES = {
    "host": {
        "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
        "invalid Host": (b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n", 400),
        "two Host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        "1.0 without Host": (b"GET / HTTP/1.0\r\n\r\n", 200),
        "IPv6 Host": (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200),
    },
    "connect": {
        "CONNECT": (b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n", 501),
        "CONNECT origin-form": (b"CONNECT / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "GET authority-form": (b"GET 127.0.0.1:9 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "GET *": (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        "OPTIONS *": (b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 200),
        "GET absolute-form": (b"GET http://t/x HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    },
}


@pytest.mark.parametrize("case", WIRE_CASES)
def test_host_and_request_target(server_pool: ServerPool, record, case: str) -> None:
    # RFC 9112 section 3.2: Host once and valid (for HTTP/1.1, present); each method's target forms;
    # RFC 9110 section 9.3.6: a 2xx to CONNECT says a tunnel is open, and these servers have none
    server = pool_server(server_pool, None)
    cases = WIRE_CASES[case]
    seen = {}
    for name, (data, _) in cases.items():
        response, closed = exchange(server.host, server.port, data)
        seen[name] = (response.status, closed or response.status == 200)
    record(case, server.model, "; ".join(f"{name} {status}" for name, (status, _) in seen.items()))
    assert seen == {name: (status, True) for name, (_, status) in cases.items()}  # a refusal closes
