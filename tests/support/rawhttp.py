"""Just enough HTTP/1.1 client over a raw socket to see what a server really sends and when it
closes: http.client hides both (it reconnects silently and accepts a missing Content-Length).

Every read has a deadline, so a server that never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import re
import select
import socket
import time
from typing import NamedTuple, Protocol

TIMEOUT = 3.0  # seconds any single read or connect may take

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3}) ([^\r\n]*)")


class Response(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # lower-case name -> value; the servers never repeat a field
    body: bytes

    def without_date(self) -> Response:
        """The same response minus its Date field, to compare two answers sent seconds apart."""
        return self._replace(headers={k: v for k, v in self.headers.items() if k != "date"})


def connect(host: str, port: int, *, timeout: float = TIMEOUT, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if rcvbuf is not None:  # before connect(), so the advertised window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(method: str, target: str = "/", *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    """Wire bytes of one request; a Host field is added, Content-Length when there is a body."""
    lines = [f"{method} {target} HTTP/{version}", "Host: test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send_bytewise(sock: socket.socket, data: bytes) -> None:
    """One byte per send(); with TCP_NODELAY each one leaves as its own segment."""
    for i in range(len(data)):
        sock.sendall(data[i : i + 1])


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Reader:
    """Reads consecutive responses from one socket, keeping bytes that belong to the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, what: str) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed while reading {what}; got {bytes(self.buf[:200])!r}")
        self.buf += data

    def read_head(self) -> bytes:
        """The next response head as sent, blank line included: all there is of an interim (1xx) one."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill("a response head")
        head = bytes(self.buf[: end + 4])
        del self.buf[: end + 4]
        return head

    def read(self, *, head_only: bool = False) -> Response:
        """The next response; `head_only` for the answer to HEAD (Content-Length but no body)."""
        head = self.read_head()[:-4]
        status_line, *field_lines = head.split(b"\r\n")
        match = _STATUS_LINE.fullmatch(status_line)
        assert match, f"bad status line {status_line!r}"
        headers = {}
        for line in field_lines:
            name, colon, value = line.decode("latin-1").partition(":")
            assert colon and name == name.strip(), f"bad header line {line!r}"
            assert name.lower() not in headers, f"repeated header {name!r}"
            headers[name.lower()] = value.strip()
        assert headers.get("content-length", "").isdigit(), f"no usable Content-Length in {head!r}"
        length = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < length:
            self._fill("a response body")
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return Response(int(match[1]), match[2].decode("latin-1"), headers, body)


class _Drained:
    """A socket with nothing more to read: what Reader sees once everything sent is in hand."""

    def recv(self, size: int) -> bytes:
        return b""


def parse_all(data: bytes) -> list[Response]:
    """Every response in `data`, all a server sent before it closed; a partial one fails."""
    reader = Reader(_Drained())  # type: ignore[arg-type]
    reader.buf += data
    responses = []
    while reader.buf:
        responses.append(reader.read())
    return responses


def exchange(host: str, port: int, data: bytes, *, bytewise: bool = False) -> tuple[Response, bool]:
    """Send `data` on a fresh connection; the first response and whether the server then closed."""
    with connect(host, port) as sock:
        if bytewise:
            send_bytewise(sock, data)
        else:
            sock.sendall(data)
        response = Reader(sock).read(head_only=data.startswith(b"HEAD "))
        return response, is_closed(sock)


def is_closed(sock: socket.socket, wait: float = 0.3) -> bool:
    """True if the server closed (EOF) within `wait` seconds, False if the socket stayed quiet.

    Bytes arriving instead are a protocol error (a body longer than its Content-Length, an extra
    response), so they fail the test rather than count as either answer.
    """
    sock.settimeout(wait)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return False
    finally:
        sock.settimeout(TIMEOUT)
    assert not data, f"unexpected bytes after the response: {data[:200]!r}"
    return True


def wait_closed(sock: socket.socket, within: float) -> tuple[float, bytes]:
    """Seconds until the server closed the socket, and what it sent first (e.g. a 408)."""
    start = time.monotonic()
    sock.settimeout(within)
    received = bytearray()
    while data := sock.recv(65536):  # TimeoutError if it stays open too long
        received += data
    return time.monotonic() - start, bytes(received)


def read_to_close(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    sock.settimeout(timeout)
    received = bytearray()
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass
    return bytes(received)


# -- many connections at once: what a server holds, what it turns away ------------------------------


LONG_DEADLINE = ("--header-timeout", "60")  # a server's option: idle connections stay open for the whole test


class Address(Protocol):
    host: str
    port: int


def get_ok(server: Address, path: str = "/next") -> bool:
    """A request on a fresh connection, answered 200?"""
    try:
        with connect(server.host, server.port) as sock:
            sock.sendall(request("GET", path))
            return Reader(sock).read().status == 200
    except (OSError, AssertionError):
        return False


def open_connections(server: Address, n: int) -> list[socket.socket]:
    # the kernel completes the handshake whether or not the server accepts: connect never waits
    return [connect(server.host, server.port) for _ in range(n)]


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def readable(socks: list[socket.socket], wait: float) -> list[socket.socket]:
    """The sockets with something to read (data or EOF), collected until none has turned readable
    for `wait` s; poll(), as the test's own fds can pass select()'s 1024."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    ready = []
    while events := poller.poll(wait * 1000):
        for fd, _ in events:
            poller.unregister(fd)
            ready.append(by_fd[fd])
    return ready


def sort_out(socks: list[socket.socket], wait: float = 0.5) -> tuple[list[socket.socket], list[int | None]]:
    """Split connections into those the server holds open and those it turned away.

    A turned-away connection was answered (its status) or closed without a word (None)."""
    turned_away = readable(socks, wait)
    held = [s for s in socks if s not in turned_away]
    answers = []
    for sock in turned_away:
        responses = parse_all(read_to_close(sock, 2.0))
        answers.append(responses[0].status if responses else None)
    return held, answers
