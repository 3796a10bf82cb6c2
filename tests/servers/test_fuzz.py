"""Differential fuzzing of the shared parser (servers/http.py) against h11 in the server role.

Strategy: hypothesis builds pipelined streams of one to three requests from a grammar (methods,
each request-target form, versions, Host, other fields, Connection, Expect, Upgrade, Content-Length
and chunked bodies with extensions, leading zeros and trailers, in any field order) and mutates some
of them a byte or a slice at a time; a fifth are read within tight Limits. Each stream is read by
our parser whole, split at the sampled points, through feed_whole() as the event-loop servers read,
a byte at a time, and through servers/connection.py's Connection; all of those must agree with each
other on every request (method, target, version, headers, body, keep-alive) and on how the stream
ends (refused, incomplete, idle, or closed after a request that does not keep the connection alive).
The status of a refusal is not compared: a request that breaks two rules may be refused for either,
depending on where it was cut.

Then our parser is compared with h11 (0.16: older versions read a chunk's data without its CRLF
check) on the same: the requests, in order, and how the stream ends. Where they disagree, the first
request they disagree on must be explained by one of the differences of policy listed once in
ALLOWANCES, each with its reason (servers/http.py's module docstring has ours), and checked as
narrowly as the bytes allow (a limit, 413, 414 or 431, only if with every limit raised the parsers
agree). Anything else fails, and hypothesis prints the smallest stream it found that still does.

The normal run tries NORMAL_EXAMPLES streams (seconds), derandomized, so it is the same run every
time. A long run explores at random:

    STRESSBENCH_FUZZ_EXAMPLES=500000 nice -n 19 python -m pytest tests/servers/test_fuzz.py -q \
        --hypothesis-show-statistics

(in batches of BATCH; the statistics count the streams each tried). No hypothesis database is kept,
and hypothesis's own files go to the temporary directory, not into the checkout.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h11
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from support.feeding import run

from servers import base
from servers.connection import Connection
from servers.http import HTTPError, Limits, Request, RequestParser
from servers.workload import Reply

# hypothesis writes under its home directory (.hypothesis/ in the current directory: caches, a failing
# example's patch) even without a database; in the checkout, the suite would refuse the run
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "stressbench-hypothesis")
NORMAL_EXAMPLES = 2000
EXAMPLES = int(os.environ.get("STRESSBENCH_FUZZ_EXAMPLES", NORMAL_EXAMPLES))
# A long run is cut into batches, each a hypothesis run of its own: its memory of what it tried stays
# bounded, and pytest shows progress.
BATCH = 25_000
BATCHES = -(-EXAMPLES // BATCH)
LIMITS = Limits()
# a fifth of the streams are read within limits many of them exceed (h11 has none: the "limits" allowance)
TIGHT = Limits(max_request_line=48, max_header_line=40, max_header_count=4, max_header_bytes=160, max_body=12)
RAISED = Limits(max_request_line=1 << 30, max_header_line=1 << 30, max_header_count=1 << 30,
                max_header_bytes=1 << 30, max_body=1 << 30)  # fmt: skip

# -- the grammar ---------------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VCHAR = "".join(map(chr, range(0x21, 0x7F)))
# Every strategy is built once, here, and each draws as much as it can in one choice: hypothesis
# spends more per draw (and far more per strategy built) than the parsers spend per stream.
often = st.sampled_from  # a list that repeats its common items weighs them


def text(alphabet: str, min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    """Strings over `alphabet`, drawn as bytes in one go (a draw per character is several times slower)."""
    n = len(alphabet)
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: "".join(alphabet[i % n] for i in b))


def either(common: list[str], alphabet: str, *, prefix: str = "", max_size: int = 8) -> st.SearchStrategy[str]:
    """One of `common` a third of the time, else `prefix` and up to `max_size` characters of `alphabet`;
    one draw either way (it shrinks to `prefix` and the first character of `alphabet`)."""
    n, k = len(alphabet), len(common)

    def pick(b: bytes) -> str:
        return common[b[0] % k] if b[0] >= 171 else prefix + "".join(alphabet[i % n] for i in b[1:] or b"\0")

    return st.binary(min_size=1, max_size=max_size + 1).map(pick)


methods = often(["GET"] * 4 + ["POST"] * 4 + ["HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "M-SEARCH", "get"])
targets = either(
    ["*", "http://a.example/x?y", "HTTPS://a:8/", "http://u@[::1]:80", "a.example:443", "[::1]:9"],
    "abcXYZ019-._~%!$&'()*+,;=:@/?",
    prefix="/",
    max_size=10,
)
versions = often(["1.1"] * 6 + ["1.0"] * 3 + ["1.2", "2.0", "0.9"])
ows = often(["", "", " ", "\t", " \t "])
values = text(VCHAR + "\x80\xe9\xff" + "   \t", max_size=12)  # whitespace before, inside and after
names = either(["Accept", "User-Agent", "X-Forwarded-For", "Content-Type", "Expect"], "X" + TCHAR)
hosts = often(["a.example"] * 6 + [" a.example:8080", "\t[::1]:80 ", "", "127.0.0.1 \t", "a b", "a/b", "a@b"])
host_counts = often([1] * 8 + [0, 2])
connections = often(
    [None] * 6 + ["Connection: close", "connection:keep-alive", "Connection: \tKeep-Alive", "Connection: upgrade"]
    + ["Connection:close, keep-alive", "Connection: foo, CLOSE "] + ["Expect: 100-continue", "Upgrade: websocket"]
)  # fmt: skip
rarely = often([False] * 9 + [True])
codings = often(["chunked"] * 8 + ["Chunked", " chunked ", "identity, chunked", "gzip, chunked", "chunked, chunked"])
chunk_data = st.lists(st.binary(min_size=1, max_size=12), max_size=3)
# a chunk-size line: leading zeros, hex case, extension
chunk_forms = often(
    [(zeros, form, ext)
     for zeros in [0] * 12 + [1, 3, 19, 24]
     for form in ["%x", "%X", "%x"]
     for ext in [""] * 6 + [";a", ";a=b", ' ; a = "q\\"x"', ";a=b;c", ";", "; a=", ";a=b c"]]
)  # fmt: skip
trailer_counts = often([0] * 4 + [1, 2])
framing_names = often(["Content-Length", "Host", "Transfer-Encoding"])
# a Content-Length: off by how much, written how
length_forms = often([(0, " %d")] * 8 + [(-1, " %d"), (1, "%d"), (0, "\t0%d"), (0, " %d, %d"), (0, "+%d"), (0, "%d ")])
both_names = often(["Content-Length", "Transfer-Encoding"])
empty_lines = often([b""] * 6 + [b"\r\n", b"\r\n" * 5])
mutation_counts = often([0] * 5 + [1, 1, 2, 3])
orders = st.binary(min_size=8, max_size=8)  # sort keys: all zero (the shrunk case) keeps the order written


def line(name: str, value: str) -> bytes:
    return f"{name}:{value}".encode("latin-1")


@st.composite
def fields(draw: st.DrawFn) -> list[bytes]:
    """Host (none, one, sometimes two), other fields, Connection, Expect or Upgrade, not yet in order."""
    out = [line("Host", draw(hosts)) for _ in range(draw(host_counts))]
    out += [line(draw(names), draw(values)) for _ in range(draw(up_to_3))]
    if (other := draw(connections)) is not None:
        out.append(other.encode("latin-1"))
    return out


@st.composite
def chunked(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    framing = [line("Transfer-Encoding", " " + draw(codings))]
    if draw(rarely):
        framing.append(line("Transfer-Encoding", " chunked"))
    body = b""
    for data in [*draw(chunk_data), b""]:
        zeros, form, ext = draw(chunk_forms)
        body += f"{'0' * zeros}{form % len(data)}{ext}\r\n".encode() + data + (b"\r\n" if data else b"")
    trailers = [line(draw(names), draw(values)) for _ in range(draw(trailer_counts))]
    if draw(rarely):
        trailers.append(line(draw(framing_names), " 1"))
    return framing, body + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


@st.composite
def sized(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    body = draw(st.binary(max_size=16))
    off, form = draw(length_forms)
    framing = [line("Content-Length", form.replace("%d", str(max(len(body) + off, 0))))]
    if draw(rarely):
        framing.append(line("Content-Length", " " + str(len(body))))
    return framing, body


no_body = st.just(([], b""))
bodies = st.one_of(no_body, no_body, sized(), chunked())
field_lines = fields()


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    framing, body = draw(bodies)
    if framing and draw(rarely):  # Content-Length and Transfer-Encoding together
        framing = [*framing, line(draw(both_names), " 0")]
    head = draw(field_lines) + framing
    keys = draw(orders)
    head = [head[i] for i in sorted(range(len(head)), key=lambda i: keys[i % len(keys)])]
    start = f"{draw(methods)} {draw(targets)} HTTP/{draw(versions)}".encode("latin-1")
    return b"\r\n".join([start, *head]) + b"\r\n\r\n" + body


INTERESTING = b'\r\n \t:;,="\\0aAZ/\x00\x01\x7f\x80\xff-_.%[]@?#'
PIECES = [b"\r\n", b"\r\n\r\n", b"0\r\n\r\n", b"\r\nTransfer-Encoding: chunked", b"\r\nContent-Length: 1", b"\n"]
interesting = st.sampled_from(INTERESTING)
pieces = st.sampled_from(PIECES)
request = requests()
up_to_3 = st.integers(0, 3)
position = st.integers(0, 1 << 16)  # taken modulo the stream's length + 1
kinds = st.integers(0, 4)
short = st.integers(1, 3)
span = st.integers(1, 40)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """One to three requests, sometimes with empty lines before one, then a few mutations."""
    parts = [draw(empty_lines) + draw(request) for _ in range(draw(short))]
    data = bytearray(b"".join(parts))
    for _ in range(draw(mutation_counts)):
        at, kind = draw(position) % (len(data) + 1), draw(kinds)
        if kind == 0 and at < len(data):
            data[at] = draw(interesting)
        elif kind == 1:
            data[at:at] = bytes([draw(interesting)])
        elif kind == 2:
            del data[at : at + draw(short)]
        elif kind == 3:
            data[at:at] = draw(pieces)
        else:  # a slice of the stream again (a field, a chunk, a request)
            start = draw(position) % (len(data) + 1)
            data[at:at] = data[start : start + draw(span)]
    return bytes(data)


# -- what each parser made of a stream -----------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]  # transfer-encoding values lower-cased (h11 does)
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class Result:
    requests: tuple[Parsed, ...]
    end: str  # "refused", "incomplete", "idle" (nothing buffered), "closed" (a request did not keep alive)
    starts: tuple[int, ...] = ()  # ours, fed whole: where each request begins in the stream
    error: HTTPError | None = None

    def same(self, other: Result) -> bool:
        return self.requests == other.requests and self.end == other.end


def parsed(request: Request) -> Parsed:
    headers = tuple((n, v.lower() if n == "transfer-encoding" else v) for n, v in request.headers)
    return Parsed(request.method, request.target, request.version, headers, request.body, request.keep_alive)


def ending(
    requests: list[Parsed], *, refused: bool, idle: bool, starts: Sequence[int] = (), error: HTTPError | None = None
) -> Result:
    """How a stream read by our parser ended: refused, closed after a request that does not keep the
    connection alive (a server reads no further), or idle / incomplete."""
    end = "refused" if refused else "closed" if requests and not requests[-1].keep_alive else None
    return Result(tuple(requests), end or ("idle" if idle else "incomplete"), tuple(starts), error)


def ours(pieces: list[bytes], limits: Limits = LIMITS, *, whole: bool = False) -> Result:
    """Our parser as test_http.run() drives it (stopping after a request that closes)."""
    outcome = run(RequestParser(limits), pieces, whole=whole, stop_at_close=True)
    requests = [parsed(r) for r in outcome.requests]
    return ending(requests, refused=outcome.error is not None, idle=outcome.parser.idle, error=outcome.error)


def ours_whole(data: bytes, limits: Limits = LIMITS) -> Result:
    """ours([data]), noting where each request begins (the bytes the parser had consumed before it)."""
    parser, requests, starts = RequestParser(limits), [], [0]
    parser.feed(data)
    try:
        while (request := parser.next_request()) is not None:
            requests.append(parsed(request))
            starts.append(len(data) - len(parser._buf))
            if not request.keep_alive:
                break
    except HTTPError as error:
        return ending(requests, refused=True, idle=False, starts=starts, error=error)
    return ending(requests, refused=False, idle=parser.idle, starts=starts)


def through_connection(pieces: list[bytes], limits: Limits = LIMITS) -> Result:
    """The stream through servers/connection.py, as a model feeds it; its app records each request."""
    seen: list[Parsed] = []

    def record(request: Request) -> Reply:
        seen.append(parsed(request))
        return Reply(200, b"ok\n")

    conn, out = Connection(base.App(record, limits), 0.0), b""
    for piece in pieces:
        if conn.closing:
            break
        out += conn.receive(piece, 0.0) + conn.out
        conn.sent(len(conn.out), 0.0)
    # every reply the app makes is a 200: a 4xx or 5xx is a refusal
    return ending(seen, refused=re.search(rb"HTTP/1\.1 [45]\d\d ", out) is not None, idle=conn.parser.idle)


def theirs(data: bytes) -> Result:
    """h11 as a server: every request answered (404, so a CONNECT or Upgrade switches nothing)."""
    conn, requests = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 30), []
    conn.receive_data(data)
    head, body = None, b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return Result(tuple(requests), "refused")
        if event is h11.NEED_DATA:
            idle = conn.their_state is h11.IDLE and not conn.trailing_data[0]
            return Result(tuple(requests), "idle" if idle else "incomplete")
        assert event is not h11.PAUSED, "h11 paused: answered requests should never leave it waiting"
        if isinstance(event, h11.Request):
            head, body = event, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            conn.send(h11.Response(status_code=404, headers=[(b"Content-Length", b"0")]))
            conn.send(h11.EndOfMessage())
            keep = conn.our_state is not h11.MUST_CLOSE  # decided once both sides are done
            requests.append(h11_parsed(head, body, keep))
            if not keep:
                return Result(tuple(requests), "closed")
            conn.start_next_cycle()


def h11_parsed(head: h11.Request, body: bytes, keep: bool) -> Parsed:
    version = {b"1.0": "HTTP/1.0", b"1.1": "HTTP/1.1"}.get(head.http_version, "HTTP/" + head.http_version.decode())
    headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers)
    return Parsed(head.method.decode("latin-1"), head.target.decode("latin-1"), version, headers, body, keep)


# -- where we differ from h11 on purpose -----------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    data: bytes
    at: int  # the index of the first request they disagree on
    rest: bytes  # the stream from that request on, as our parser saw it
    ours: Result
    theirs: Result

    @property
    def mine(self) -> Parsed | None:
        return self.ours.requests[self.at] if self.at < len(self.ours.requests) else None

    @property
    def h11(self) -> Parsed | None:
        return self.theirs.requests[self.at] if self.at < len(self.theirs.requests) else None

    @property
    def reason(self) -> str:
        """Why our parser refused, when it refused this very request."""
        error = self.ours.error
        return error.reason if error is not None and self.mine is None else ""


@dataclass(frozen=True)
class Allowance:
    name: str
    why: str
    applies: Callable[[Disagreement], bool]


def _we_refuse(*reasons: str, where: Callable[[Disagreement], bool] = lambda d: True) -> Callable:
    """We refused this request for one of `reasons` (a prefix of HTTPError.reason) and `where` holds."""
    return lambda d: d.reason.startswith(reasons) and where(d)


_CTL_IN_VALUE = re.compile(rb"\n[^:\r\n]*:[^\r\n]*[\x01-\x08\x0e-\x1f\x7f]")
_H11_CHUNK_LINE = re.compile(rb"(?:^|\n)[0-9A-Fa-f]{1,20}(?:;[^\n]*)?[ \t]*\r\n")  # h11's ";.*": a bare CR too
_REQUEST_LINE = re.compile(rb"(?:\r?\n)*([^ \r\n]*) ([^ \r\n]*) HTTP/([0-9])\.([0-9])\r?\n")


def _version(d: Disagreement) -> tuple[bytes, bytes] | None:
    match = _REQUEST_LINE.match(d.rest)
    return (match[3], match[4]) if match else None


ALLOWANCES = [
    Allowance(
        "bare LF/CR",
        "RFC 9112 section 2.2 lets a recipient accept a bare LF as a line end (h11 does); "
        "we refuse it, a smuggling vector",
        _we_refuse("bare"),
    ),
    Allowance(
        "obs-fold",
        "RFC 9112 section 5.2: a server may refuse obsolete line folding (we do, in a head or a trailer; h11 unfolds)",
        _we_refuse("malformed header field", where=lambda d: re.search(rb"\n[ \t]", d.rest) is not None),  # or trailer
    ),
    Allowance(
        "lower-case method",
        "a method is case-sensitive; we refuse lower case (gunicorn's default), h11 takes any token",
        _we_refuse("malformed request line", where=lambda d: re.match(rb"[\r\n]*[^ ]*[a-z]", d.rest) is not None),
    ),
    Allowance(
        "request-target form",
        "RFC 9112 section 3.2: each form only where it applies; h11 checks the characters only",
        _we_refuse("invalid request target"),
    ),
    Allowance(
        "CONNECT", "RFC 9110 section 9.3.6: nothing here tunnels, so a valid CONNECT is a 501", _we_refuse("CONNECT")
    ),
    Allowance(
        "Host value",
        "RFC 9112 section 3.2: an invalid Host is a 400; h11 does not look at its value",
        _we_refuse("invalid Host"),
    ),
    Allowance(
        "Content-Length with Transfer-Encoding",
        "RFC 9112 section 6.3 lets a server refuse it (we do, 400); h11 lets Transfer-Encoding win",
        _we_refuse("both Content-Length and Transfer-Encoding"),
    ),
    Allowance(
        "Content-Length form",
        "one Content-Length of at most 18 digits (more is past any max_body); h11 "
        "takes a list or repeats of one value and 20 digits",
        _we_refuse("invalid Content-Length", "duplicate content-length"),
    ),
    Allowance(
        "Content-Type twice",
        "RFC 9110 section 5.3: it is no list, so two are an error (400); h11 takes both",
        _we_refuse("duplicate content-type"),
    ),
    Allowance(
        "Transfer-Encoding on HTTP/1.0",
        "RFC 9112 section 6.1: the framing of such a message is faulty; we refuse it, h11 reads it chunked",
        _we_refuse("Transfer-Encoding in an HTTP/1.0"),
    ),
    Allowance(
        "HTTP version",
        "HTTP/1.x only (505 for others), 1.2 read as 1.1 (Host required); h11 takes any d.d",
        lambda d: _version(d) not in (None, (b"1", b"0"), (b"1", b"1")),
    ),
    Allowance(
        "control character in a value",
        "RFC 9110 section 5.5: a field value (header or trailer) is VCHAR, obs-text, SP and HTAB; h11 also takes "
        "other controls but NUL",
        _we_refuse("control character", where=lambda d: _CTL_IN_VALUE.search(d.rest) is not None),  # or trailer
    ),
    Allowance(
        "chunk line",
        "RFC 9112 section 7.1's chunk-ext grammar, no whitespace after the size, 1 KiB per "
        "line; h11 skips extensions unread (a bare CR in one included) and allows whitespace",
        _we_refuse(
            "invalid chunk size line",
            "chunk size line too long",
            where=lambda d: _H11_CHUNK_LINE.search(d.rest) is not None,
        ),
    ),
    Allowance(
        "trailer fields",
        "RFC 9110 section 6.5.1: no framing or Host field in a trailer; h11 takes any",
        _we_refuse("host is not", "content-length is not", "transfer-encoding is not"),
    ),
    Allowance(
        "empty lines before a request",
        "RFC 9112 section 2.2: a server SHOULD ignore at least one (we ignore up to 4); h11 refuses one",
        lambda d: d.theirs.end == "refused" and d.h11 is None and d.rest.startswith((b"\r\n", b"\n")),
    ),
    Allowance(
        "chunk-size digits",
        "RFC 9112 section 7.1: 1*HEXDIG, so we take any number of leading zeros; h11 at most 20 digits",
        lambda d: (
            d.theirs.end == "refused" and d.h11 is None and re.search(rb"(?:^|\n)[0-9A-Fa-f]{21}", d.rest) is not None
        ),
    ),
    Allowance(
        "whitespace before a chunk extension",
        'RFC 9112 section 7.1.1: chunk-ext = *( BWS ";" BWS ...); h11 allows none before the ";"',
        lambda d: (
            d.theirs.end == "refused"
            and d.h11 is None
            and re.search(rb"(?:^|\n)[0-9A-Fa-f]+[ \t]+;", d.rest) is not None
        ),
    ),
    Allowance(
        "HTTP/1.0 keep-alive",
        "RFC 9112 section 9.3: a 1.0 request with Connection: keep-alive stays open "
        "here; h11 closes every 1.0 connection",
        lambda d: (
            d.mine is not None
            and d.h11 is not None
            and d.mine.version == "HTTP/1.0"
            and d.mine.keep_alive
            and replace(d.h11, keep_alive=True) == d.mine
        ),
    ),
    Allowance(
        "limits",
        "Limits (413, 414, 431: request and field lines, field count, head, body) are ours; h11 "
        "has none here. With every limit raised we must agree",
        lambda d: _within_raised_limits(d),
    ),
    Allowance(
        "refused early",
        "we refuse as early as the bytes allow (servers/http.py); h11 once the head is complete",
        lambda d: (
            d.reason != ""
            and d.theirs.end == "incomplete"
            and d.h11 is None
            and theirs(d.data + b"\r\n\r\n").end == "refused"
        ),
    ),
    Allowance(
        "refused once complete",
        "h11 refuses a request line starting with a control or a space at its first "
        "byte; we once the head is complete (issue #25 found it fine)",
        lambda d: (
            d.ours.end == "incomplete"
            and d.mine is None
            and d.theirs.end == "refused"
            and d.h11 is None
            and ours_whole(d.data + b"\r\n\r\n").end == "refused"
        ),
    ),
]


def _within_raised_limits(d: Disagreement) -> bool:
    """We refused this request for a limit; with every limit raised, the parsers agree (or differ only
    as allowed: explain() fails otherwise)."""
    if not d.reason or d.ours.error is None or d.ours.error.status not in (413, 414, 431):
        return False
    explain(d.data, ours_whole(d.data, RAISED), d.theirs)
    return True


def explain(data: bytes, mine: Result, their: Result) -> str | None:
    """None if the parsers agree; else the allowance that explains the first request they disagree
    on. Fails if none does, printing the stream and what each parser made of it."""
    if mine.same(their):
        return None
    at = next((i for i, (a, b) in enumerate(zip(mine.requests, their.requests, strict=False)) if a != b), None)
    if at is None:
        at = min(len(mine.requests), len(their.requests))
    start = mine.starts[at] if at < len(mine.starts) else len(data)
    d = Disagreement(data, at, data[start:], mine, their)
    for allowance in ALLOWANCES:
        if allowance.applies(d):
            return allowance.name
    raise AssertionError(f"servers/http.py and h11 disagree at request {at}:\n"
                         f"  stream: {data!r}\n  ours:   {mine}\n  h11:    {their}")  # fmt: skip


CHUNKED_GET = b"GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a] or [b""]


@pytest.mark.parametrize("batch", range(BATCHES))
@settings(
    max_examples=-(-EXAMPLES // BATCHES),
    deadline=None,
    database=None,
    derandomize=EXAMPLES == NORMAL_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# what the long runs found, kept: a bare CR passed over by the split path (fixed in servers/http.py),
# then allowances that were too narrow: a control character in a trailer, not a head; a bare CR in a
# chunk extension, which h11 reads as part of it
@example(data=b"OPTIONS / HTTP/1.1\r\r\r\n", points=[], limits=LIMITS)
@example(data=CHUNKED_GET + b"0\r\nX:\x01!\r\n\r\n", points=[], limits=LIMITS)
@example(data=CHUNKED_GET + b"0;\r\r\n\r\n", points=[], limits=LIMITS)
@example(data=CHUNKED_GET + b"0;a=b\r\r\n", points=[], limits=LIMITS)
@example(data=CHUNKED_GET + b"0\r\nX: a\r\n b\r\n\r\n", points=[], limits=LIMITS)  # the same, seen before it was found
@given(data=streams(), points=st.lists(st.integers(0, 1 << 16), max_size=6), limits=often([LIMITS] * 4 + [TIGHT]))
def test_our_parser_agrees_with_itself_and_with_h11(batch: int, data: bytes, points: list[int], limits: Limits) -> None:
    note(f"stream: {data!r}")
    pieces = cut(data, [p % (len(data) + 1) for p in points])
    whole = ours_whole(data, limits)
    for way, result in [
        ("split", ours(pieces, limits)),
        ("feed_whole", ours(pieces, limits, whole=True)),
        ("bytewise", ours([data[i : i + 1] for i in range(len(data))], limits)),
        ("connection", through_connection(pieces, limits)),
    ]:
        assert result.same(whole), f"{way} {pieces!r}:\n  {result}\n  whole: {whole}"
    explain(data, whole, theirs(data))
