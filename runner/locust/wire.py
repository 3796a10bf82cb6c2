"""The client's side of HTTP/1.1 on the wire, without the wire: request bytes in, response framing
out. No sockets and no locust here, so pytest checks the framing byte by byte (tests/runner/locust/test_wire.py)
and the load engine (runner/locust/engine.py) only moves bytes.

Strategy: a client sends one request on a connection and waits for its whole response (no
pipelining), so a reader frames exactly one response at a time. `Reader.feed(data)` returns the
finished Response or None for "need more"; `Reader.eof()` says what the peer's close means: the end
of a body delimited by the close, or a response cut short. The common case -- a whole small response
in one read, framed by Content-Length -- costs one `find` for the head's end, a dict lookup of the
head (a server sends the same head bytes again and again: each is parsed once) and one comparison
of lengths; anything else (a head or body across reads, chunked encoding)
takes the slower general path with a buffer.

Framing, as RFC 9112 section 6.3 orders it: 1xx (skipped: the final response follows), 204 and 304
have no body; then `Transfer-Encoding: chunked`; then `Content-Length`; else the body runs until the
server closes. The connection stays open after a response only if it is HTTP/1.1 without
`Connection: close`, or HTTP/1.0 with `Connection: keep-alive` -- and its body was not close-delimited.

Failures are exceptions whose repr is what Locust's failure table shows, so each kind stays one row:
the message never carries a count of bytes or a time that would make every failure a row of its own. A
malformed response quotes the line that broke it (its first 60 bytes): a server repeats its mistake, so
that is still one row, and the row shows the reader what the server sent.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_HEAD = 64 * 1024  # a longer head is not a response we understand
CR = b"\r"
_CLOSE, _CHUNKED = -1, -2  # Reader._left when the body's end is the close or the last chunk


class MalformedResponse(Exception):
    """The bytes are not an HTTP/1.x response we can frame."""


class BadStatus(Exception):
    """A whole response whose status is not 2xx."""


class ConnectionClosed(Exception):
    """The server closed the connection before the response was complete."""


class RequestTimeout(Exception):
    """No whole response within the request's deadline (load.request_timeout_s)."""


class Stopped(Exception):
    """The run stopped (Locust's stop_timeout ran out) with the request still in flight."""


class Response(NamedTuple):
    status: int
    keep_alive: bool  # the connection may carry the next request
    length: int  # bytes of the whole response, head included
    closing: str = ""  # when not kept alive, what said so: HTTP/1.0, `Connection: close`, a close-delimited body


def build_request(method: str, path: str, host: str, body: bytes = b"", keep_alive: bool = True) -> bytes:
    """One request's bytes; the engine sends the same bytes on every request of a run."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: stressbench-loop", "Accept: */*"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_HEADS: dict[bytes, tuple[int, str, int]] = {}  # a server repeats its head byte for byte: parse each once
_HEADS_MAX = 256  # a head that changes every time (a Date per second) only refills it
HTTP10, CLOSE, UNTIL_CLOSE = "HTTP/1.0", "Connection: close", "a body that ends at the close"  # Response.closing


def _quote(line: bytes) -> str:
    return repr(line[:60]) + ("..." if len(line) > 60 else "")


def _head(head: bytes) -> tuple[int, str, int]:
    """(status, closing: "" to keep the connection alive, else what says it closes, body framing: a length,
    _CHUNKED or _CLOSE) of a response head without its blank line."""
    known = _HEADS.get(head)
    if known is None:
        known = _parse_head(head)
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[head] = known
    return known


def _parse_head(head: bytes) -> tuple[int, str, int]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise MalformedResponse(f"not an HTTP/1.x status line: {_quote(lines[0])}")
    status = int(parts[1])
    closing = "" if parts[0] == b"HTTP/1.1" else HTTP10
    length, chunked = None, False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t"):
            raise MalformedResponse(f"bad header line: {_quote(line)}")
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and int(value) != length):
                raise MalformedResponse("bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            codings = [c.strip() for c in value.lower().split(b",")]
            if codings[-1] != b"chunked":
                raise MalformedResponse("a transfer coding other than chunked")
            chunked = True
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                closing = CLOSE
            elif b"keep-alive" in tokens:
                closing = ""
    if 100 <= status < 200 or status in (204, 304):
        return status, closing, 0
    if chunked:
        return status, closing, _CHUNKED
    if length is not None:
        return status, closing, length
    return status, closing or UNTIL_CLOSE, _CLOSE


class Reader:
    """Frames one response at a time; `expect_body=False` for a HEAD request's response."""

    __slots__ = ("_buf", "_status", "_closing", "_left", "_length", "_chunk_state", "expect_body")

    def __init__(self, expect_body: bool = True) -> None:
        self.expect_body = expect_body
        self.reset()

    def reset(self) -> None:
        """Forget any partial response (a new connection, or a new request on this one)."""
        self._buf = b""
        self._status = 0  # 0: the head is not complete yet
        self._closing = ""
        self._left = 0  # body bytes still due (or _CLOSE / _CHUNKED)
        self._length = 0  # bytes of the response so far
        self._chunk_state = 0  # chunked: 0 size line next, n > 0: n data bytes, -1 CRLF after data, -2 trailers

    @property
    def started(self) -> bool:
        """Some bytes of a response arrived."""
        return bool(self._buf) or self._status != 0 or self._length != 0

    def feed(self, data: bytes) -> Response | None:
        """Take bytes read from the connection: the finished response, or None while it is incomplete."""
        if self._status == 0:
            data = self._buf + data if self._buf else data
            while True:  # loops only past 1xx interim responses
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    if len(data) > MAX_HEAD:
                        raise MalformedResponse("no end of head")
                    if not b"HTTP/".startswith(data[:5]):  # garbage: say so now, not after 64 KiB
                        raise MalformedResponse(f"not an HTTP/1.x status line: {_quote(data.partition(CR)[0])}")
                    self._buf = data
                    return None
                status, closing, left = _head(data[:end])
                self._length += end + 4
                data = data[end + 4 :]
                if 100 <= status < 200:
                    continue
                break
            if not self.expect_body:
                left = 0
            if left >= 0 and len(data) == left:  # the common case: the whole body is here
                self._length += left
                return self._finish(status, closing)
            self._status, self._closing, self._left, self._buf = status, closing, left, b""
        elif self._buf:
            data, self._buf = self._buf + data, b""
        return self._body(data)

    def _body(self, data: bytes) -> Response | None:
        if self._left == _CLOSE:
            self._length += len(data)
            return None
        if self._left == _CHUNKED:
            return self._chunks(data)
        if len(data) > self._left:
            raise MalformedResponse("more bytes than the response's Content-Length")
        self._left -= len(data)
        self._length += len(data)
        return self._finish(self._status, self._closing) if self._left == 0 else None

    def _chunks(self, data: bytes) -> Response | None:
        while data:
            state = self._chunk_state
            if state > 0:  # inside a chunk's data
                take = min(state, len(data))
                self._length += take
                self._chunk_state -= take
                if self._chunk_state == 0:
                    self._chunk_state = -1
                data = data[take:]
                continue
            end = data.find(b"\r\n")
            if end < 0:
                if len(data) > MAX_HEAD:
                    raise MalformedResponse("bad chunk")
                self._buf = data
                return None
            line, data = data[:end], data[end + 2 :]
            self._length += end + 2
            if state == -1:  # the CRLF that ends a chunk's data
                if line:
                    raise MalformedResponse("bad chunk")
                self._chunk_state = 0
            elif state == 0:  # a chunk-size line, maybe with extensions
                size = line.split(b";", 1)[0].strip()
                try:
                    n = int(size, 16)
                except ValueError:
                    raise MalformedResponse("bad chunk size") from None
                if n < 0 or size.startswith((b"-", b"+", b"0x", b"0X")):
                    raise MalformedResponse("bad chunk size")
                self._chunk_state = n if n else -2
            elif not line:  # state -2: trailers end at an empty line
                if data:
                    raise MalformedResponse("bytes after the last chunk")
                return self._finish(self._status, self._closing)
        return None

    def eof(self) -> Response | None:
        """The server closed: the response it completes, None if no byte of one had arrived (an idle
        keep-alive connection closed), or ConnectionClosed if it was cut short."""
        if self._status and self._left == _CLOSE:
            return self._finish(self._status, self._closing)
        if self.started:
            raise ConnectionClosed("closed in the middle of a response")
        return None

    def _finish(self, status: int, closing: str) -> Response:
        response = Response(status, not closing, self._length, closing)
        self.reset()
        return response
