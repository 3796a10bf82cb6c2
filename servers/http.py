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
- Transfer codings: `chunked` alone is supported; any other coding before it is a 501 (section 6.1
  "SHOULD respond with 501"), `identity` included: it is no longer a registered coding (RFC 7230
  appendix A.2 removed it), and a front end that reads such a body another way would disagree with
  us about where the request ends. chunked not last, or twice, is a 400 (section 6.3).
- Content-Length is digits only (no sign, no underscore, no list), at most 18 digits; two
  Content-Length fields, or Content-Length with Transfer-Encoding, are a 400.
- Host, Content-Length and Content-Type may appear once. An HTTP/1.1 request must have a Host, and
  any Host value must be `uri-host [":" port]` (or empty), else 400 (RFC 9112 section 3.2).
- Request-target forms (section 3.2): origin-form and absolute-form for any method, authority-form
  for CONNECT only, asterisk-form for OPTIONS only. CONNECT is a 501 once its target is valid: these
  servers tunnel nothing, and a 2xx would tell the client a tunnel is open (RFC 9110 section 9.3.6).
- `Expect: 100-continue` on an HTTP/1.1 request with a body: once its head is parsed and while its
  body is incomplete, interim() gives `100 Continue` once, for the model to send; a body over the
  limit is refused (413) from the head alone, without reading it (RFC 9110 section 10.1.1).
- A chunked body is decoded as it arrives and its bytes dropped from the buffer once decoded, so a
  parser holds at most the body so far (<= max_body) and one partial chunk line. A chunk-size is
  bounded by its value, not its digits (section 7.1: 1*HEXDIG, so leading zeros are allowed): a
  chunk that would take the body over max_body is a 413. Framing is bounded too: a chunk-size line,
  extensions included, is at most 1 KiB (400), and the framing of one body (chunk lines and CRLFs)
  at most FRAMING_PER_BODY_BYTE x max_body, at least 64 KiB (413): a body of max_body bytes in
  one-byte chunks fits, a stream of chunk extensions carrying nothing does not.
- The request line is ASCII. A method is a token without lower-case letters (gunicorn's default:
  every registered method is upper-case, and `get` is a typo or a probe); a request-target is
  visible ASCII only, as RFC 3986 has no raw non-ASCII byte.
- Limits count bytes on the wire, CRLF included (nginx's convention, and gunicorn's for header
  lines; gunicorn's limit_request_line leaves the CRLF out).
- Up to 4 empty lines before a request line are ignored (section 2.2 robustness).

Fast path: most heads are simple (an origin-form target, HTTP/1.x, a few well-formed field lines),
and for those one compiled regex over the whole head does what the general code does line by line
(_SIMPLE_HEAD: the request-line and field grammar below, nothing else); anything it does not match,
or a head near a limit, goes through the general code, which decides on every error. So the fast
path only ever accepts what the general path accepts, with the same result (tests/servers/
test_fastpath.py checks that on the corpus, on edge and mutated heads and on random streams); every
request is parsed, and its field lines are split into `headers` when a handler first asks for them
(the framing fields are looked for in the lower-cased field block; a valid Host as the first field is
matched by the regex itself, and any other Host goes to the general code). RequestParser.feed_whole() adds
the common case of a server's read: one whole request without a body, alone in a recv() on an idle
connection, parsed from the received bytes without buffering.

Parse memo (opt-in: RequestParser(memo=True), `epoll --parse-memo`): feed_whole() can also
remember, per Limits, what the parser made of such a whole request and replay it when the same
bytes come again, skipping the parse. It holds only results the parser produced (never errors),
so both accept and reject the same bytes; it is bounded (MEMO_ENTRIES of at most MEMO_KEY_BYTES
each, starting over when full), and its requests are shared between connections (handlers treat a
Request as read-only). Off by default: a load generator that repeats one request (wrk) hits it every
time, which measures a cache rather than a parser; benchmarks/raw_speed.py shows epoll both ways
(the parse is about 2 us of the 12-13 us of CPU an epoll request costs on the 2-core test machine).
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


class Request:
    """One request. `headers`: (lower-case name, value) pairs, in order, latin-1; a head the fast path
    validated keeps its field lines as one string and splits them on first use of `headers`."""

    __slots__ = ("method", "target", "version", "_headers", "_fields", "body", "keep_alive", "head")

    def __init__(
        self,
        method: str,
        target: str,
        version: str,  # "HTTP/1.1" or "HTTP/1.0"
        headers: list[tuple[str, str]] | None,  # None: split `fields` on first use
        body: bytes,
        keep_alive: bool,  # what the client asked for; the server may still close
        head: bytes,  # the raw head, request line to the blank line, for the echo workload
        fields: str = "",  # the field lines of a validated head, each with its CRLF (latin-1)
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self._headers = headers
        self._fields = fields
        self.body = body
        self.keep_alive = keep_alive
        self.head = head

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = _split_fields(self._fields)
        return self._headers

    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None:
        self._headers = value

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {self.version!r}, keep_alive={self.keep_alive})"


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
# RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [= value] );
# chunk-size = 1*HEXDIG, any number of digits (the line's 1 KiB bounds them; max_body bounds the value)
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]++)(?:[ \t]*;[ \t]*[%s]++(?:[ \t]*=[ \t]*(?:[%s]++|%s))?)*+\r\n" % (_TCHAR, _TCHAR, _QUOTED_STRING)
)
# RFC 9110 section 7.2: Host = uri-host [ ":" port ], possibly empty; checked on the decoded value
_S_HOST_VALUE = rf"(?:{_HOST.decode('ascii')})?+(?::[0-9]*+)?+"  # possessive: what fails, fails fast
_HOST_VALUE = re.compile(rf"[ \t]*+{_S_HOST_VALUE}[ \t]*")
_SINGLETONS = frozenset({"host", "content-length", "content-type"})
_FORBIDDEN_TRAILERS = frozenset({"host", "content-length", "transfer-encoding"})
_MAX_LEADING_CRLF = 4
_MAX_CHUNK_LINE = 1024  # bytes incl. CRLF; what a chunk-size line may spend on extensions
FRAMING_PER_BODY_BYTE = 8  # chunk framing allowed per byte of max_body (a one-byte chunk needs 5)
_MIN_FRAMING = 64 * 1024
_ONE_BYTE_CHUNKS = re.compile(rb"(?:1\r\n[\x00-\xff]\r\n)++")
_NO_BODY = bytearray()  # never grown: a chunked body gets a bytearray of its own
_IN_TRAILERS = -2  # RequestParser._chunk_left once the last chunk is read
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Fields whose presence changes framing or must be checked for duplicates (see _framing).
_FRAMING_FIELDS = _SINGLETONS | {"connection", "transfer-encoding"}

# The fast path, on the head decoded as latin-1 (one byte, one character): a request-line with an
# origin-form target (CONNECT needs authority-form: general path), then field lines, each a token,
# a colon and a field-value (VCHAR, obs-text, SP, HTAB), then the blank line; a first field that is
# a valid Host has its value captured (the Host check then costs nothing more for clients that send
# it first, as curl, wrk, http.client and browsers do; otherwise the general code checks it). No CR
# or LF can occur outside a CRLF, and a field line cannot begin with SP/HTAB (obs-fold), so whatever
# matches is also accepted by the general code, which would split it into the same pieces.
_S_TCHAR = _TCHAR.decode("ascii")
_S_METHOD = _METHOD.decode("ascii")
MEMO_ENTRIES = 512
MEMO_KEY_BYTES = 4096
_MEMOS: dict[Limits, dict[bytes, Request]] = {}
_SIMPLE_HEAD = re.compile(
    rf"(?!CONNECT )([{_S_METHOD}]++) (/[\x21-\x7e]*+) HTTP/1\.([0-9])\r\n"
    rf"((?:[Hh][Oo][Ss][Tt]:[ \t]*+({_S_HOST_VALUE})[ \t]*+\r\n)?+"  # a valid Host first: its value
    rf"(?:[{_S_TCHAR}]++:[\x21-\x7e\x80-\xff \t]*+\r\n)*+)\r\n"
)
# a field line of such a head: name, value without the whitespace before it; and without the
# whitespace after it too (a slower match, used only when some value ends in whitespace). The value
# is taken greedily and given back only over its trailing whitespace, so the match is linear; a lazy
# `([^\r]*?)[ \t]*\r\n` tried the whitespace run after every character of the value, quadratic in a
# run of inner whitespace (8 KB of it cost 400 times the general code's parse; test_parse_cost.py).
_FIELD_LINE = re.compile(r"([^:]+):[ \t]*+([^\r]*)\r\n")
_FIELD_LINE_TRIM = re.compile(r"([^:]+):[ \t]*+((?:[^\r]*[^ \t\r])?)[ \t]*\r\n")


def _split_fields(block: str) -> list[tuple[str, str]]:
    """The field lines of a head _SIMPLE_HEAD matched -> [(lower-case name, value)]."""
    pattern = _FIELD_LINE_TRIM if " \r" in block or "\t\r" in block else _FIELD_LINE
    return [(name.lower(), value) for name, value in pattern.findall(block)]


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
    """Validate Transfer-Encoding; return normally only for `chunked` alone."""
    if version == "HTTP/1.0":
        raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
    codings = [c.strip(" \t").lower() for v in te_values for c in v.split(",")]
    if codings.count("chunked") != 1 or codings[-1] != "chunked":
        raise HTTPError(400, "chunked must be the final transfer coding, once")
    for coding in codings[:-1]:  # `identity` too: see the module docstring
        if not _TOKEN.fullmatch(coding.encode("latin-1")):
            raise HTTPError(400, "malformed transfer coding")
        raise HTTPError(501, f"transfer coding {coding!r} not implemented")


class RequestParser:
    """Incremental parser for one connection: feed() bytes, then next_request() until None.

    Requests come out in order, so pipelining works; bytes after a request stay buffered for the
    next one. After an HTTPError the parser is unusable: answer the error and close.
    """

    # State of a request with a body, set once its head is parsed (class defaults: a parser made
    # per connection need not set them, and most requests have no body).
    _body = _NO_BODY  # chunked body decoded so far (its bytes are gone from _buf)
    _chunk_left = 0  # data bytes of the current chunk still to come; -1: its CRLF; or _IN_TRAILERS
    _framed = 0  # chunk framing bytes of this body so far
    _continue = False  # 100 Continue is due (interim())

    def __init__(self, limits: Limits | None = None, *, fast: bool = True, memo: bool = False) -> None:
        """`fast=False`: the general code only, no fast path (the tests compare the two);
        `memo=True`: feed_whole() replays whole requests seen before (see the module docstring)."""
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._scan = 0  # bytes of the head (or trailers) checked so far; the search resumes there
        self._lines = 0  # CRLFs in those bytes of the head
        self._skipped = 0  # empty lines skipped before this request line
        self._head: tuple[Request, int] | None = None  # parsed head, bytes of body to read or -1
        limits = self.limits
        # a head no longer than this is within every line and size limit (each line is shorter than the head)
        self._simple_max = min(limits.max_request_line, limits.max_header_line, limits.max_header_bytes) if fast else -1
        self._memo = _MEMOS.setdefault(self.limits, {}) if memo else None
        self._count_safe = 4 * limits.max_header_count  # a field line takes 4 bytes or more: no count needed
        self._empty_ok = limits.max_request_line > 0  # else even an empty buffer is a request line too long
        self.began = False  # the last feed began a request (the parser was idle): its deadline starts

    @property
    def idle(self) -> bool:
        """True between requests: nothing of a next request has arrived yet."""
        return not self._buf and self._head is None

    def interim(self) -> bytes:
        """`100 Continue`, once, when the request being read asked for it (Expect: 100-continue) and
        its body has not all arrived; b"" otherwise. A model sends it after next_request() gave None."""
        if self._continue:
            self._continue = False
            return CONTINUE
        return b""

    def close(self) -> None:
        """The connection is gone: drop what is buffered now, not when the parser is collected."""
        self._buf = bytearray()
        self._body = _NO_BODY
        self._head = None
        self._continue = False

    def feed(self, data: bytes) -> None:
        self.began = not self._buf and self._head is None
        self._buf += data

    def feed_whole(self, data: bytes) -> Request | None:
        """A server's common read: if this parser is fresh and `data` is exactly one complete request
        with no body, that request, parsed from `data` without buffering it (so nothing is fed).
        Otherwise it feeds `data` and returns None: go on with next_request() as after feed()."""
        if (
            self._buf
            or self._head is not None
            or self._skipped  # not fresh: mid-request or after empty lines
            or len(data) > self._simple_max
            or not data.endswith(b"\r\n\r\n")
        ):
            self.feed(data)
            return None
        memo = self._memo
        if memo is not None:
            request = memo.get(data)
            if request is not None:
                return request
        try:
            parsed = self._simple_head(data)
        except HTTPError:  # next_request() raises it again, from the same bytes
            parsed = None
        if parsed is not None and parsed[1] == 0:
            if memo is not None and len(data) <= MEMO_KEY_BYTES:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()
                memo[data] = parsed[0]
            return parsed[0]
        self.feed(data)
        return None

    def next_request(self) -> Request | None:
        """The next complete request, or None if more bytes are needed; raises HTTPError."""
        head = self._head
        if head is None:
            head = self._head = self._parse_head()
            if head is None:
                return None
            request, length = head
            if length == 0:  # most requests: nothing more to read
                self._head = None
                return request
            if length < 0:
                self._body = bytearray()
            # RFC 9110 section 10.1.1: an HTTP/1.0 client's expectation is ignored
            self._continue = request.version == "HTTP/1.1" and _expects_continue(request)
        request, length = head
        if length >= 0:
            if len(self._buf) < length:
                return None
            request.body = bytes(self._buf[:length])
            del self._buf[:length]
        else:
            if not self._read_chunked():
                return None
            request.body = bytes(self._body)
            self._body = _NO_BODY
            self._framed = self._chunk_left = 0
        self._head = None
        self._continue = False
        return request

    # -- head ---------------------------------------------------------------------------------

    def _parse_head(self) -> tuple[Request, int] | None:
        buf = self._buf
        if not buf and self._empty_ok:  # asked again after the last request: _check_partial_head has nothing to see
            self._scan = 0
            return None
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
        parsed = self._simple_head(head) if len(head) <= self._simple_max else None
        if parsed is not None:
            return parsed
        if len(head) > self.limits.max_header_bytes:
            raise HTTPError(431, "request head too large")
        _check_line_endings(head)
        lines = head[:-4].split(b"\r\n")
        request = self._parse_request_line(lines[0])
        request.head = head
        request.headers = _parse_fields(lines[1:], self.limits)
        return request, self._framing(request)

    def _simple_head(self, head: bytes) -> tuple[Request, int] | None:
        """The fast path for a complete head not longer than _simple_max: what the general code
        makes of it, if _SIMPLE_HEAD matches it; None for anything else (the general code decides).
        Raises the general code's framing errors (they come after everything _SIMPLE_HEAD checks)."""
        match = _SIMPLE_HEAD.fullmatch(head.decode("latin-1"))
        if match is None:
            return None
        method, target, minor, block, host = match.groups()
        version = "HTTP/1.0" if minor == "0" else "HTTP/1.1"
        if not block:
            if version == "HTTP/1.1":
                return None  # no Host: the general code answers 400
            return Request(method, target, version, [], b"", False, head), 0
        if len(block) > self._count_safe and block.count("\r\n") > self.limits.max_header_count:
            return None
        request = Request(method, target, version, None, b"", version == "HTTP/1.1", head, block)
        # Framing needs the fields only if one of _FRAMING_FIELDS may be there, or Host is not one valid
        # first field (as clients send it; `host` is its value, if valid): a name is in the lower-cased
        # block if present (a value may match too, which only costs time).
        low = block.lower()
        if (
            host is None
            or "content-" in low
            or "connection" in low
            or "transfer-encoding" in low
            or low.count("host:") > 1
        ):
            return request, self._framing(request, host_valid=host is not None)
        return request, 0

    def _check_partial_head(self) -> None:
        """Refuse as early as the bytes allow: garbage, overlong lines, bare CR or LF.

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
            # no CRLF yet: any LF is bare, and so is any CR but a final one (its LF may yet come); a CR
            # checked here is not looked at again, so a head fed in pieces is refused as one fed whole
            if buf.find(b"\n", new) >= 0 or buf.find(b"\r", new, end) >= 0:
                raise HTTPError(400, "bare CR or LF")
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
        if method == b"CONNECT":
            raise HTTPError(501, "CONNECT is not supported: no tunnel here")
        version = "HTTP/1.1" if minor != b"0" else "HTTP/1.0"
        return Request(method.decode(), target.decode(), version, [], b"", True, b"")

    def _framing(self, request: Request, *, host_valid: bool = False) -> int:
        """Decide keep-alive and body length (-1 = chunked) from the header fields, and check Host
        (`host_valid`: the fast path matched the first Host's value already)."""
        seen: set[str] = set()
        host = None
        connection: list[str] = []
        lengths: list[str] = []
        codings: list[str] = []
        for name, value in request.headers:
            if name not in _FRAMING_FIELDS:
                continue
            if name in _SINGLETONS:
                if name in seen:
                    raise HTTPError(400, f"duplicate {name}")
                seen.add(name)
            if name == "host":
                host = value
            elif name == "connection":
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
            length = -1
        elif lengths:
            length = _content_length(lengths[0])
            if length > self.limits.max_body:
                raise HTTPError(413, "body too large")
        else:
            length = 0
        if host is None:
            if request.version == "HTTP/1.1":
                raise HTTPError(400, "no Host in an HTTP/1.1 request")
        elif not host_valid and _HOST_VALUE.fullmatch(host) is None:
            raise HTTPError(400, "invalid Host")
        return length

    # -- chunked body (RFC 9112 section 7.1) ----------------------------------------------------

    def _read_chunked(self) -> bool:
        """Decode what is buffered and drop it from the buffer; True once the last chunk and the
        trailers are in. Each byte is looked at once, so the work per feed() is linear in what was
        fed; one regex match per chunk, and a run of one-byte chunks is taken in one slice."""
        if self._chunk_left == _IN_TRAILERS:
            return self._read_trailers()
        buf, body, left, pos = self._buf, self._body, self._chunk_left, 0
        max_body, match, framed = self.limits.max_body, _CHUNK_LINE.match, self._framed
        max_framing = max(FRAMING_PER_BODY_BYTE * max_body, _MIN_FRAMING)
        while True:
            if left > 0:  # inside a chunk's data, which came in pieces
                take = min(left, len(buf) - pos)
                body += buf[pos : pos + take]
                pos += take
                left -= take
                if left:
                    break
                left = -1
            if left < 0:  # the CRLF after a chunk's data
                if len(buf) - pos < 2:
                    break
                if not buf.startswith(b"\r\n", pos):
                    raise HTTPError(400, "chunk data not followed by CRLF")
                pos += 2
                left = 0
            line = match(buf, pos)
            if line is None:
                self._check_chunk_line(pos)
                break
            start = line.end()
            framed += start - pos + 2  # the line and the CRLF after the data
            if start - pos > _MAX_CHUNK_LINE:
                raise HTTPError(400, "chunk size line too long")
            if framed > max_framing:
                raise HTTPError(413, "too much chunk framing")
            size = int(line[1], 16)
            if size == 0:
                del buf[:start]
                self._chunk_left, self._framed = _IN_TRAILERS, framed
                return self._read_trailers()
            if len(body) + size > max_body:
                raise HTTPError(413, "body too large")
            stop = start + size
            if size == 1 and start - pos == 3:  # "1\r\n": take the run of one-byte chunks that starts here
                run = _ONE_BYTE_CHUNKS.match(buf, pos, pos + 6 * (max_body - len(body)))
                if run is not None and run.end() > pos + 6:
                    framed += 5 * ((run.end() - pos) // 6 - 1)
                    if framed > max_framing:
                        raise HTTPError(413, "too much chunk framing")
                    body += buf[pos + 3 : run.end() : 6]
                    pos = run.end()
                    continue
            if buf.startswith(b"\r\n", stop):  # the whole chunk is here
                body += buf[start:stop]
                pos = stop + 2
            else:
                left, pos = size, start
        self._chunk_left, self._framed = left, framed
        del buf[:pos]
        return False

    def _check_chunk_line(self, pos: int) -> None:
        """A chunk-size line that did not match at `pos`: refuse it if it is complete, too long or
        has a bare LF; otherwise the rest of it has yet to come."""
        buf = self._buf
        if buf.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE) >= 0 or len(buf) - pos + 1 > _MAX_CHUNK_LINE:
            raise HTTPError(400, "invalid chunk size line")
        if buf.find(b"\n", pos) >= 0:
            raise HTTPError(400, "bare LF in a chunk size line")

    def _read_trailers(self) -> bool:
        """The trailer section, from the start of the buffer (the chunks before it are gone)."""
        buf = self._buf
        if buf.startswith(b"\r\n"):
            end = 2
            trailers: list[bytes] = []
        else:
            stop = buf.find(b"\r\n\r\n", max(0, self._scan - 3))
            if stop < 0:
                if len(buf) > self.limits.max_header_bytes:
                    raise HTTPError(431, "trailers too large")
                new = self._unchecked(0)  # as in the head: only new bytes, so O(n) in all
                _check_line_endings(buf[new:-1] if buf.endswith(b"\r") else buf[new:])
                self._scan = len(buf)
                return False
            end = stop + 4
            section = bytes(buf[:stop])
            _check_line_endings(section)
            trailers = section.split(b"\r\n")
        for name, _ in _parse_fields(trailers, self.limits):
            if name in _FORBIDDEN_TRAILERS:
                raise HTTPError(400, f"{name} is not allowed in a trailer")
        del buf[:end]
        self._scan = 0
        return True


def _expects_continue(request: Request) -> bool:
    return any(
        name == "expect" and "100-continue" in (e.strip(" \t").lower() for e in value.split(","))
        for name, value in request.headers
    )


# -- responses ----------------------------------------------------------------------------------

REASONS = {
    100: "Continue",
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
