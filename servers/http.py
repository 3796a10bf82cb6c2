"""HTTP/1.1 for every server in this package: bytes in, requests or an error out. No sockets.

Strategy: every concurrency model feeds whatever bytes it received into a RequestParser and asks
it for complete requests; it never looks at the bytes itself. So every model accepts and rejects
exactly the same input, and a difference in a benchmark table comes from concurrency, not from
parsing. The parser is strict (RFC 9110/9112) and bounded (Limits): a malformed or oversized
request raises HTTPError carrying the status to answer with, after which the connection must be
closed, since framing can no longer be trusted.

Policies a reader would otherwise have to guess:
- Line endings are CRLF. A bare LF or bare CR anywhere in the head is a 400 (RFC 9112 section 2.2
  allows a recipient to accept bare LF; we refuse it because it is a request-smuggling vector).
- Obsolete line folding is refused with 400 (RFC 9112 section 5.2 lets a server do so).
- Transfer codings: `chunked`, optionally preceded by `identity`, is supported; any other coding
  is a 501 (section 6.1 "SHOULD respond with 501"); chunked not last, or twice, is a 400.
- Content-Length is digits only (no sign, no underscore, no list), at most 18 digits; two
  Content-Length fields, or Content-Length with Transfer-Encoding, are a 400.
- Host, Content-Length and Content-Type may appear once.
- The request line is ASCII. A method is a token without lower-case letters (gunicorn's default:
  every registered method is upper-case, and `get` is a typo or a probe); a request-target is
  visible ASCII only, as RFC 3986 has no raw non-ASCII byte.
- Limits count bytes on the wire, CRLF included (nginx's convention, and gunicorn's for header
  lines; gunicorn's limit_request_line leaves the CRLF out).
- Up to 4 empty lines before a request line are ignored (section 2.2 robustness).

Fast path: the parser is a pure function of (limits, bytes) from a fresh state, and most
connections send the same few requests again and again (a load generator, a health check, a
browser's repeat visits). So RequestParser.feed_whole() remembers, per Limits, what the full parser
made of a whole small request that arrived alone on an idle connection, and replays it when the same
bytes come again: the memo holds only results the full parser produced, so the two paths accept and
reject exactly the same bytes (tests/servers/test_http.py checks that on the corpus, whole and
split). Errors are never memoized (the slow path raises them). The memo is bounded (MEMO_ENTRIES of
at most MEMO_KEY_BYTES each) and starts over when full. Requests that come from it are shared
between connections: handlers treat a Request as read-only. Note for benchmarks: a generator that
repeats one request (wrk) hits the memo every time; varied traffic pays the full parse.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate

__all__ = ["HTTPError", "Limits", "Request", "RequestParser", "build_response", "error_response"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may cost a server; one object, shared by every model."""

    max_request_line: int = 8190  # bytes incl. CRLF; longer -> 414
    max_header_line: int = 8190  # bytes incl. CRLF; longer -> 431
    max_header_count: int = 100  # fields; more -> 431
    max_header_bytes: int = 32 * 1024  # whole head; more -> 431
    max_body: int = 1024 * 1024  # bytes after decoding; more -> 413
    header_timeout: float = 10.0  # s from the first byte of a request to its last; then 408
    keepalive_timeout: float = 5.0  # s a kept-alive connection may stay idle
    max_connections: int = 1000  # open connections per server; more -> 503 and close


class HTTPError(Exception):
    """A request we will not serve; `status` is what to answer before closing."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]]  # (lower-case name, value), in order, latin-1
    body: bytes
    keep_alive: bool  # what the client asked for; the server may still close
    head: bytes  # the raw head, request line to the blank line, for the echo workload

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


# RFC 9110 section 5.6.2: token = 1*tchar
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[%s]+" % _TCHAR)
# RFC 9110 section 9.1: method = token, case-sensitive; we also refuse lower case (see above)
_METHOD = rb"!#$%&'*+\-.^_`|~0-9A-Z"
_METHOD_PREFIX = re.compile(rb"[%s]*" % _METHOD)
# RFC 9112 section 3: request-line = method SP request-target SP HTTP-version
_REQUEST_LINE = re.compile(rb"([%s]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])" % _METHOD)
# RFC 9112 section 3.2: origin-form, absolute-form (http/https), authority-form, asterisk-form
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*")
_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)"
_ABSOLUTE_FORM = re.compile(
    rb"[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9\-._~%%!$&'()*+,;=:]*@)?%s(?::[0-9]*)?"
    rb"(?:[/?][\x21-\x7e]*)?" % _HOST
)
_AUTHORITY_FORM = re.compile(rb"%s:[0-9]+" % _HOST)
# RFC 9110 section 5.5: field-value = *field-content; VCHAR, obs-text, SP, HTAB
_FIELD_VALUE = re.compile(rb"[\x21-\x7e\x80-\xff \t]*")
# RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [= value] )
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t]*[%s]+(?:[ \t]*=[ \t]*(?:[%s]+|%s))?)*)" % (_TCHAR, _TCHAR, _QUOTED_STRING)
)
_SINGLETONS = frozenset({"host", "content-length", "content-type"})
_FORBIDDEN_TRAILERS = frozenset({"host", "content-length", "transfer-encoding"})
_MAX_LEADING_CRLF = 4
_MAX_CHUNK_LINE = 1024  # bytes incl. CRLF; what a chunk-size line may spend on extensions
MEMO_ENTRIES = 512
MEMO_KEY_BYTES = 4096
_MEMOS: dict[Limits, dict[bytes, Request]] = {}


def _parse_fields(lines: list[bytes], limits: Limits) -> list[tuple[str, str]]:
    """Field lines (without CRLF) -> [(lower-case name, value)]; shared by headers and trailers."""
    if len(lines) > limits.max_header_count:
        raise HTTPError(431, "too many header fields")
    fields = []
    for line in lines:
        if len(line) + 2 > limits.max_header_line:
            raise HTTPError(431, "header line too long")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            # also catches "Name : value" (RFC 9112 section 5.1: no whitespace before the colon)
            # and obs-fold continuation lines, which start with SP or HTAB
            raise HTTPError(400, "malformed header field")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise HTTPError(400, "control character in header value")
        fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
    return fields


def _check_line_endings(data: bytes | bytearray) -> None:
    """Every CR and every LF in a head must belong to a CRLF pair."""
    pairs = data.count(b"\r\n")
    if data.count(b"\n") != pairs or data.count(b"\r") != pairs:
        raise HTTPError(400, "bare CR or LF")


def _content_length(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise HTTPError(400, "invalid Content-Length")
    return int(value)


def _chunked(te_values: list[str], version: str) -> None:
    """Validate Transfer-Encoding; return normally only for (identity,)* chunked."""
    if version == "HTTP/1.0":
        raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
    codings = [c.strip(" \t").lower() for v in te_values for c in v.split(",")]
    if codings.count("chunked") != 1 or codings[-1] != "chunked":
        raise HTTPError(400, "chunked must be the final transfer coding, once")
    for coding in codings[:-1]:
        if coding != "identity":
            if not _TOKEN.fullmatch(coding.encode("latin-1")):
                raise HTTPError(400, "malformed transfer coding")
            raise HTTPError(501, f"transfer coding {coding!r} not implemented")


class RequestParser:
    """Incremental parser for one connection: feed() bytes, then next_request() until None.

    Requests come out in order, so pipelining works; bytes after a request stay buffered for the
    next one. After an HTTPError the parser is unusable: answer the error and close.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._scan = 0  # bytes of the head (or trailers) checked so far; the search resumes there
        self._lines = 0  # CRLFs in those bytes of the head
        self._skipped = 0  # empty lines skipped before this request line
        self._head: tuple[Request, int] | None = None  # parsed head, bytes of body to read or -1
        self._chunks: list[bytes] = []  # chunked body decoded so far
        self._chunk_pos = 0  # offset in _buf of the next chunk-size line
        self._body_size = 0
        self._memo = _MEMOS.setdefault(self.limits, {})
        self._memo_key: bytes | None = None  # fed whole on a fresh parser: the memo key, if it parses alone
        self.began = False  # the last feed began a request (the parser was idle): its deadline starts

    @property
    def idle(self) -> bool:
        """True between requests: nothing of a next request has arrived yet."""
        return not self._buf and self._head is None

    def feed(self, data: bytes) -> None:
        self.began = not self._buf and self._head is None
        self._buf += data
        self._memo_key = None

    def feed_whole(self, data: bytes) -> Request | None:
        """The fast path: if this parser is fresh and the full parser already found `data` to be
        exactly one complete request, that request (shared: read-only), with nothing fed.
        Otherwise it feeds `data` and returns None: go on with next_request() as after feed()."""
        if self._buf or self._head is not None or self._skipped:  # not fresh: mid-request or after CRLFs
            self.feed(data)
            return None
        request = self._memo.get(data)
        if request is not None:
            return request
        self._buf += data
        self._memo_key = data if len(data) <= MEMO_KEY_BYTES else None
        self.began = True
        return None

    def next_request(self) -> Request | None:
        """The next complete request, or None if more bytes are needed; raises HTTPError."""
        if self._head is None:
            self._head = self._parse_head()
            if self._head is None:
                return None
        request, length = self._head
        if length >= 0:
            if len(self._buf) < length:
                return None
            request.body = bytes(self._buf[:length])
            del self._buf[:length]
        else:
            if not self._read_chunked():
                return None
            request.body = b"".join(self._chunks)
            self._chunks = []
            self._body_size = 0
        self._head = None
        if self._memo_key is not None:
            if not self._buf and not self._skipped:  # the key was this request, whole and alone
                if len(self._memo) >= MEMO_ENTRIES:
                    self._memo.clear()
                self._memo[self._memo_key] = request
            self._memo_key = None
        return request

    # -- head ---------------------------------------------------------------------------------

    def _parse_head(self) -> tuple[Request, int] | None:
        buf = self._buf
        while buf.startswith(b"\r\n") and self._skipped < _MAX_LEADING_CRLF:
            del buf[:2]
            self._skipped += 1  # counted per request, not per call: the same limit however fed
            self._scan = 0
        end = buf.find(b"\r\n\r\n", max(0, self._scan - 3))
        if end < 0:
            self._check_partial_head()
            self._scan = len(buf)
            return None
        self._scan = self._lines = self._skipped = 0
        head = bytes(buf[: end + 4])
        del buf[: end + 4]
        if len(head) > self.limits.max_header_bytes:
            raise HTTPError(431, "request head too large")
        _check_line_endings(head)
        lines = head[:-4].split(b"\r\n")
        request = self._parse_request_line(lines[0])
        request.head = head
        request.headers = _parse_fields(lines[1:], self.limits)
        return request, self._framing(request)

    def _check_partial_head(self) -> None:
        """Refuse as early as the bytes allow: garbage, overlong lines, bare LF.

        Only the bytes that arrived since the last call are scanned, so a head sent a byte at a
        time costs O(n), not O(n^2).
        """
        buf = self._buf
        new = self._unchecked(0)
        end = len(buf) - 1 if buf.endswith(b"\r") else len(buf)  # a final CR may yet meet its LF
        line_end = buf.find(b"\r\n")
        if self._lines == 0 and buf.find(b" ", 0, new) < 0:  # the method is still arriving
            stop = end if line_end < 0 else line_end
            method = _METHOD_PREFIX.match(buf, new, stop).end()
            if method < stop and buf[method] != 0x20:  # e.g. a TLS ClientHello: 0x16 0x03
                raise HTTPError(400, "malformed request line")
        if line_end < 0:
            if len(buf) + 1 > self.limits.max_request_line:
                raise HTTPError(414, "request line too long")
            if buf.find(b"\n", new) >= 0:
                raise HTTPError(400, "bare LF")
            return
        if line_end + 2 > self.limits.max_request_line:
            raise HTTPError(414, "request line too long")
        if len(buf) > self.limits.max_header_bytes:
            raise HTTPError(431, "request head too large")
        last_line = len(buf) - (buf.rfind(b"\n") + 1)  # a one-byte rfind is fast; bare LFs fail below
        if last_line + 1 > self.limits.max_header_line:
            raise HTTPError(431, "header line too long")
        self._lines += buf.count(b"\r\n", new)
        if self._lines > self.limits.max_header_count + 1:
            raise HTTPError(431, "too many header fields")
        _check_line_endings(buf[new:end])

    def _unchecked(self, start: int) -> int:
        """Where the bytes not yet checked begin: at self._scan, or at a CR just before it."""
        scan = self._scan
        if scan and self._buf[scan - 1] == 0x0D:
            scan -= 1
        return max(start, scan)

    def _parse_request_line(self, line: bytes) -> Request:
        if len(line) + 2 > self.limits.max_request_line:
            raise HTTPError(414, "request line too long")
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise HTTPError(400, "malformed request line")
        method, target, major, minor = match.groups()
        if major != b"1":
            raise HTTPError(505, "only HTTP/1.x is supported")
        if method == b"CONNECT":
            form_ok = _AUTHORITY_FORM.fullmatch(target)
        elif target == b"*":
            form_ok = method == b"OPTIONS"
        else:
            form_ok = _ORIGIN_FORM.fullmatch(target) or _ABSOLUTE_FORM.fullmatch(target)
        if not form_ok:
            raise HTTPError(400, "invalid request target")
        version = "HTTP/1.1" if minor != b"0" else "HTTP/1.0"
        return Request(method.decode(), target.decode(), version, [], b"", True, b"")

    def _framing(self, request: Request) -> int:
        """Decide keep-alive and body length (-1 = chunked) from the header fields."""
        seen: set[str] = set()
        connection: list[str] = []
        lengths: list[str] = []
        codings: list[str] = []
        for name, value in request.headers:
            if name in _SINGLETONS:
                if name in seen:
                    raise HTTPError(400, f"duplicate {name}")
                seen.add(name)
            if name == "connection":
                connection += [t.strip(" \t").lower() for t in value.split(",")]
            elif name == "content-length":
                lengths.append(value)
            elif name == "transfer-encoding":
                codings.append(value)
        if request.version == "HTTP/1.1":
            request.keep_alive = "close" not in connection
        else:
            request.keep_alive = "keep-alive" in connection and "close" not in connection
        if codings:
            if lengths:
                raise HTTPError(400, "both Content-Length and Transfer-Encoding")
            _chunked(codings, request.version)
            return -1
        if not lengths:
            return 0
        length = _content_length(lengths[0])
        if length > self.limits.max_body:
            raise HTTPError(413, "body too large")
        return length

    # -- chunked body (RFC 9112 section 7.1) ----------------------------------------------------

    def _read_chunked(self) -> bool:
        """Decode as many chunks as are buffered; True once the last chunk and trailers are in."""
        buf = self._buf
        while True:
            pos = self._chunk_pos
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if len(buf) - pos + 1 > _MAX_CHUNK_LINE or b"\n" in buf[pos:]:
                    raise HTTPError(400, "invalid chunk size line")
                return False
            match = _CHUNK_LINE.fullmatch(buf, pos, eol)
            if match is None or eol + 2 - pos > _MAX_CHUNK_LINE:
                raise HTTPError(400, "invalid chunk size line")
            size = int(match.group(1), 16)
            if size == 0:
                return self._read_trailers(eol + 2)
            end = eol + 2 + size
            if len(buf) < end + 2:
                if self._body_size + size > self.limits.max_body:
                    raise HTTPError(413, "body too large")
                return False
            if buf[end : end + 2] != b"\r\n":
                raise HTTPError(400, "chunk data not followed by CRLF")
            self._body_size += size
            if self._body_size > self.limits.max_body:
                raise HTTPError(413, "body too large")
            self._chunks.append(bytes(buf[eol + 2 : end]))
            self._chunk_pos = end + 2

    def _read_trailers(self, start: int) -> bool:
        buf = self._buf
        if buf.startswith(b"\r\n", start):
            end = start + 2
            trailers: list[bytes] = []
        else:
            stop = buf.find(b"\r\n\r\n", max(start, self._scan - 3))
            if stop < 0:
                if len(buf) - start > self.limits.max_header_bytes:
                    raise HTTPError(431, "trailers too large")
                new = self._unchecked(start)  # as in the head: only new bytes, so O(n) in all
                _check_line_endings(buf[new:-1] if buf.endswith(b"\r") else buf[new:])
                self._scan = len(buf)
                return False
            end = stop + 4
            section = bytes(buf[start:stop])
            _check_line_endings(section)
            trailers = section.split(b"\r\n")
        for name, _ in _parse_fields(trailers, self.limits):
            if name in _FORBIDDEN_TRAILERS:
                raise HTTPError(400, f"{name} is not allowed in a trailer")
        del buf[:end]
        self._chunk_pos = self._scan = 0
        return True


# -- responses ----------------------------------------------------------------------------------

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """RFC 9110 section 6.6.1: an origin server with a clock sends Date; formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def build_response(
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    keep_alive: bool = True,
    head_only: bool = False,
) -> bytes:
    """One complete HTTP/1.1 response; `head_only` for HEAD (same headers, no body)."""
    head = b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (
        status,
        REASONS.get(status, "Unknown").encode("ascii"),
        http_date(),
        content_type.encode("latin-1"),
        len(body),
        b"keep-alive" if keep_alive else b"close",
    )
    return head if head_only else head + body


def error_response(error: HTTPError) -> bytes:
    """The answer to a request we refuse; the connection closes after it."""
    return build_response(error.status, f"{error.status} {error.reason}\n".encode(), keep_alive=False)
