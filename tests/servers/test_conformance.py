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

import corpus
import pytest
from rawhttp import Reader, Response, connect, parse_all

# The documented policy exceptions, one table for both suites (test_http.py explains each).
from test_http import GUNICORN_ONLY, INVALID_LIMITS, VALID_LIMITS, VALID_REFUSED, VALID_TRUNCATED

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
        sock.sendall(b"GET /next HTTP/1.1\r\n\r\n")  # no field: a server here may allow 10-byte lines
        assert Reader(sock).read().status == 200, f"{server.model} no longer serves after that file"


def parser_status(data: bytes, limits: Limits | None) -> int | None:
    """The status the shared parser refuses `data` with, or None if it refuses nothing."""
    parser = RequestParser(limits)
    parser.feed(data)
    try:
        while parser.next_request() is not None:
            pass
    except HTTPError as error:
        return error.status
    return None


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize("name", corpus.names("valid"))
def test_corpus_valid(server_pool: ServerPool, record, name: str, feeding: str) -> None:
    limits = VALID_LIMITS.get(name)
    server = pool_server(server_pool, limits)
    answer = send_file(server, FEEDINGS[feeding](corpus.load("valid", name), name))
    statuses = [r.status for r in answer.responses]
    if name in VALID_REFUSED:
        expected, observed = [VALID_REFUSED[name][0]], f"documented {VALID_REFUSED[name][0]}"
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
    if name in GUNICORN_ONLY:
        assert statuses in ([], [200])
    else:
        assert 200 not in statuses
        # the same answer as the parser's (test_http.py ties that to gunicorn's), however it was fed
        status = parser_status(data, limits)
        assert statuses == ([] if status is None else [status])
        assert all(r.headers["connection"] == "close" for r in answer.responses)
    assert_still_serves(server)
