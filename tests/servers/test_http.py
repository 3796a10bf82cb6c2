"""The shared HTTP/1.1 parser (servers/http.py), tested the way h11 tests its readers.

Every input is fed whole, a byte at a time and in seeded random chunks, and must give the same
requests, or the same HTTPError status, every way. A valid input is also fed with a second request
after it, which must come out next, or stay buffered while it is incomplete. Errors the docstring
promises early (garbage, overlong lines, bare LF, a body over the limit) are fed without the bytes
that would complete the head, so only the early check can catch them.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

import pytest
from support import corpus
from support.corpus import GUNICORN_ONLY, INVALID_LIMITS, NO_HOST, VALID_LIMITS, VALID_REFUSED, VALID_TRUNCATED
from support.feeding import CORPUS_SPLITS, Outcome, bytewise, random_chunks, run, summary, whole

from servers import http
from servers.http import REASONS, HTTPError, Limits, RequestParser, build_response, error_response

# -- feeding ----------------------------------------------------------------------------------










SPLITS = {"whole": whole, "bytewise": bytewise, "random": random_chunks(2024)}
split_ids = pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())




def parse(pieces: list[bytes], limits: Limits | None = None, *, stop_at_close: bool = False) -> Outcome:
    """Feed `pieces` one at a time, collecting requests after each, until an HTTPError.

    `stop_at_close` stops after the first request that does not keep the connection alive, as a
    server would (gunicorn's corpus counts requests that way).
    """
    return run(RequestParser(limits), pieces, whole=False, stop_at_close=stop_at_close)






def get(target: str = "/", version: str = "1.1", keep_alive: bool = True, body: bytes = b"") -> tuple:
    return "GET", target, f"HTTP/{version}", keep_alive, body


def post(body: bytes, target: str = "/", keep_alive: bool = True) -> tuple:
    return "POST", target, "HTTP/1.1", keep_alive, body


# -- valid requests: whole, byte by byte, random chunks, and with trailing data ---------------

CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

VALID = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", [get()], id="simple-get"),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", [get(version="1.0", keep_alive=False)], id="no-fields-1.0"),
    pytest.param(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", [get()], id="host-empty"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: [::1]:8080 \r\n\r\n", [get()], id="host-ipv6-port"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a-b.example:\r\n\r\n", [get()], id="host-empty-port"),
    pytest.param(b"HEAD /x HTTP/1.1\r\n\r\n", [("HEAD", "/x", "HTTP/1.1", True, b"")], id="head"),
    # keep-alive: RFC 9112 section 9.3
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", [get(version="1.0", keep_alive=False)], id="1.0-default-close"),
    pytest.param(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", [get(version="1.0")], id="1.0-keep-alive"),
    pytest.param(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", [get(version="1.0")], id="1.0-keep-alive-case"),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
        [get(version="1.0", keep_alive=False)],
        id="1.0-keep-alive-and-close",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", [get(keep_alive=False)], id="1.1-close"),
    pytest.param(b"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n", [get(keep_alive=False)], id="1.1-close-case"),
    pytest.param(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", [get(keep_alive=False)], id="1.1-token-list"),
    pytest.param(b"GET / HTTP/1.1\r\nConnection: foo,close \r\n\r\n", [get(keep_alive=False)], id="1.1-list-no-ows"),
    pytest.param(
        b"GET / HTTP/1.1\r\nConnection: foo\r\nConnection: close\r\n\r\n", [get(keep_alive=False)], id="1.1-two-fields"
    ),
    pytest.param(b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", [get()], id="1.1-closed-is-not-close"),
    pytest.param(b"GET / HTTP/1.2\r\n\r\n", [get()], id="1.2-is-1.1"),
    # Content-Length bodies
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", [post(b"hello")], id="content-length"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", [post(b"")], id="content-length-0"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 005\r\n\r\nhello", [post(b"hello")], id="cl-leading-zeros"),
    pytest.param(b"POST / HTTP/1.1\r\ncontent-length: \t5 \r\n\r\nhello", [post(b"hello")], id="cl-ows"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n", [post(b"\r\n\r\n")], id="cl-body-of-crlfs"),
    pytest.param(
        b"GET / HTTP/1.1\r\nContent_Length: -1\r\nContent-Length: 3\r\n\r\nabc",
        [get(body=b"abc")],
        id="underscore-name-is-another-field",
    ),
    # chunked bodies: RFC 9112 section 7.1
    pytest.param(CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", [post(b"hello world")], id="chunked"),
    pytest.param(CHUNKED + b"0\r\n\r\n", [post(b"")], id="chunked-empty"),
    pytest.param(
        CHUNKED + b'5;name=value\r\nhello\r\n6 ; q = "a;\\"b"\t;x\r\n world\r\n0;last\r\n\r\n',
        [post(b"hello world")],
        id="chunked-extensions",
    ),
    pytest.param(
        CHUNKED + b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum: 5\r\n\r\n", [post(b"hello")], id="chunked-trailers"
    ),
    pytest.param(CHUNKED + b"A\r\n0123456789\r\n00\r\n\r\n", [post(b"0123456789")], id="chunked-upper-hex"),
    pytest.param(CHUNKED + b"a\r\n" + b"\r\n" * 6 + b"0\r\n\r\n", [post(b"\r\n" * 5)], id="chunked-data-crlfs"),
    pytest.param(CHUNKED.replace(b"chunked", b"Chunked") + b"0\r\n\r\n", [post(b"")], id="chunked-case"),
    # chunk-size = 1*HEXDIG: leading zeros are digits like any other; the value is what is bounded
    pytest.param(CHUNKED + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", [post(b"hello")], id="chunk-size-17-digits"),
    pytest.param(
        CHUNKED + b"0" * 1000 + b"5\r\nhello\r\n" + b"0" * 1020 + b"\r\n\r\n",
        [post(b"hello")],
        id="chunk-size-leading-zeros-to-the-line-limit",
    ),
    # pipelining, robustness, request-target forms
    pytest.param(
        b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET /3 HTTP/1.1\r\n\r\n",
        [get("/1"), post(b"x", "/2"), get("/3")],
        id="pipelined",
    ),
    pytest.param(b"\r\nGET / HTTP/1.1\r\n\r\n", [get()], id="leading-crlf"),
    pytest.param(b"\r\n" * 4 + b"GET / HTTP/1.1\r\n\r\n", [get()], id="four-leading-crlfs"),
    pytest.param(
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\nGET / HTTP/1.1\r\n\r\n",
        [post(b"x"), get()],
        id="crlf-after-body",
    ),
    pytest.param(b"OPTIONS * HTTP/1.1\r\n\r\n", [("OPTIONS", "*", "HTTP/1.1", True, b"")], id="asterisk-form"),
    pytest.param(b"GET http://a.example/x?y HTTP/1.1\r\n\r\n", [get("http://a.example/x?y")], id="absolute-form"),
    pytest.param(b"-BLARGH /foo HTTP/1.1\r\n\r\n", [("-BLARGH", "/foo", "HTTP/1.1", True, b"")], id="odd-method"),
]


def with_host(data: bytes) -> bytes:
    """`data` with a Host field after each HTTP/1.1 request line that has none (RFC 9112 section
    3.2 makes it a 400): the valid cases here are about something else."""
    return re.sub(rb"( HTTP/1\.[1-9]\r\n)(?!Host:)", rb"\1Host: h\r\n", data)


VALID = [pytest.param(with_host(p.values[0]), *p.values[1:], id=p.id) for p in VALID]
NEXT = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"


@split_ids
@pytest.mark.parametrize(("data", "expected"), VALID)
def test_valid(split, data, expected):
    outcome = parse(split(data))
    assert outcome.error is None
    assert [summary(r) for r in outcome.requests] == expected
    assert outcome.parser.idle


@split_ids
@pytest.mark.parametrize(("data", "expected"), VALID)
def test_valid_with_trailing_data(split, data, expected):
    # a second request in the same bytes comes out next ...
    outcome = parse(split(data + NEXT))
    assert outcome.error is None
    assert [summary(r) for r in outcome.requests] == [*expected, get("/next")]
    # ... and while incomplete it stays buffered, so the parser is not idle
    outcome = parse(split(data + NEXT[:-1]))
    assert outcome.error is None
    assert [summary(r) for r in outcome.requests] == expected
    assert not outcome.parser.idle
    outcome.parser.feed(NEXT[-1:])
    assert summary(outcome.parser.next_request()) == get("/next")
    assert outcome.parser.next_request() is None
    assert outcome.parser.idle


@split_ids
def test_fields_head_and_trailers(split):
    data = CHUNKED.replace(b"\r\n\r\n", b"\r\nX-Obs: caf\xc3\xa9\r\nX-Trim:\t a b \t\r\nX-Empty:\r\n\r\n")
    (request,) = parse(split(data + b"1\r\nz\r\n0\r\nX-Trailer: t\r\n\r\n")).requests
    assert request.headers == [
        ("host", "h"),
        ("transfer-encoding", "chunked"),
        ("x-obs", "caf\xc3\xa9"),  # obs-text kept as latin-1, as WSGI does
        ("x-trim", "a b"),
        ("x-empty", ""),
    ]  # trailers are validated but not merged into the header fields
    assert request.header("host") == "h" and request.header("x-missing") is None
    assert request.head == data  # the raw head, for the echo workload
    assert request.body == b"z"


@split_ids
def test_chunk_line_at_limit(split):
    # a chunk-size line may be 1024 bytes with its CRLF, however it arrives; 1025 is a 400
    data = CHUNKED + b"5;" + b"e" * 1020 + b"\r\nhello\r\n0\r\n\r\n"
    assert [summary(r) for r in parse(split(data)).requests] == [post(b"hello")]
    assert parse(split(data.replace(b";", b";e"))).status == 400


# -- errors: the same status however the bytes arrive ------------------------------------------

FRAMING = Limits(max_body=1024)
SMALL = Limits(max_request_line=64, max_header_line=64, max_header_count=4, max_header_bytes=256, max_body=16)


def head(*fields: bytes, line: bytes = b"GET / HTTP/1.1") -> bytes:
    """A head with `fields`, and a Host field first unless one of them is a Host (a 400 without)."""
    host = [] if any(f.lower().startswith(b"host") for f in fields) else [b"Host: h"]
    return b"\r\n".join([line, *host, *fields]) + b"\r\n\r\n"


def chunked(body: bytes, *fields: bytes) -> bytes:
    return head(b"Transfer-Encoding: chunked", *fields, line=b"POST / HTTP/1.1") + body


ERRORS = [
    # request line
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40, 400, None, id="tls-client-hello"),
    pytest.param(b"GE(T / HTTP/1.1\r\n\r\n", 400, None, id="method-bad-char"),
    pytest.param(b"GET: / HTTP/1.1\r\n\r\n", 400, None, id="method-colon"),
    pytest.param(b"get / HTTP/1.1\r\n\r\n", 400, None, id="method-lower-case"),
    pytest.param(b"G\xc3\x89T / HTTP/1.1\r\n\r\n", 400, None, id="method-non-ascii"),
    pytest.param(b" / HTTP/1.1\r\n\r\n", 400, None, id="method-empty"),
    pytest.param(b"GET  / HTTP/1.1\r\n\r\n", 400, None, id="double-space"),
    pytest.param(b"GET HTTP/1.1\r\n\r\n", 400, None, id="no-target"),
    pytest.param(b"GET foo/bar HTTP/1.1\r\n\r\n", 400, None, id="relative-target"),
    pytest.param(b"GET * HTTP/1.1\r\n\r\n", 400, None, id="asterisk-with-get"),
    pytest.param(b"GET example.com:443 HTTP/1.1\r\n\r\n", 400, None, id="authority-with-get"),
    pytest.param(b"CONNECT / HTTP/1.1\r\n\r\n", 400, None, id="connect-origin-form"),
    pytest.param(b"CONNECT * HTTP/1.1\r\n\r\n", 400, None, id="connect-asterisk-form"),
    pytest.param(b"CONNECT http://a:1/ HTTP/1.1\r\n\r\n", 400, None, id="connect-absolute-form"),
    pytest.param(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501, None, id="connect"),
    pytest.param(b"CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\n\r\n", 501, None, id="connect-ipv6"),
    pytest.param(b"OPTIONS example.com:443 HTTP/1.1\r\n\r\n", 400, None, id="authority-with-options"),
    pytest.param(b"POST * HTTP/1.1\r\n\r\n", 400, None, id="asterisk-with-post"),
    pytest.param(b"GET ftp://a/ HTTP/1.1\r\n\r\n", 400, None, id="absolute-not-http"),
    pytest.param(b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 400, None, id="target-non-ascii"),
    pytest.param(b"GET / HTTP/2.0\r\n\r\n", 505, None, id="http-2.0"),
    pytest.param(b"GET / HTTP/0.9\r\n\r\n", 505, None, id="http-0.9"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, None, id="h2-preface"),
    pytest.param(b"GET / HTTP/0.99\r\n\r\n", 400, None, id="http-0.99"),
    pytest.param(b"GET / HTTP/111\r\n\r\n", 400, None, id="http-111"),
    pytest.param(b"GET / FTP/1.1\r\n\r\n", 400, None, id="ftp-1.1"),
    pytest.param(b"GET / HTTP/1.1.1\r\n\r\n", 400, None, id="http-1.1.1"),
    pytest.param(b"GET / http/1.1\r\n\r\n", 400, None, id="http-lower-case"),
    pytest.param(b"GET / HTTP/+1.1\r\n\r\n", 400, None, id="version-sign"),
    pytest.param(b"GET / HTTP/1_1\r\n\r\n", 400, None, id="version-underscore"),
    pytest.param(b"GET / HTTP/1.1 \r\n\r\n", 400, None, id="trailing-space"),
    pytest.param(b"GET /\r\n\r\n", 400, None, id="no-version"),
    pytest.param(b"\r\n" * 5 + b"GET / HTTP/1.1\r\n\r\n", 400, None, id="five-leading-crlfs"),
    pytest.param(b"GET /" + b"a" * 58 + b" HTTP/1.1\r\n\r\n", 414, SMALL, id="request-line-over-limit"),
    # header fields
    pytest.param(head(b"Host : a"), 400, None, id="space-before-colon"),
    pytest.param(head(b"Host\t: a"), 400, None, id="tab-before-colon"),
    pytest.param(head(b"Host a"), 400, None, id="no-colon"),
    pytest.param(head(b": a"), 400, None, id="empty-name"),
    pytest.param(head(b"H\xc3\xb6st: a"), 400, None, id="non-ascii-name"),
    pytest.param(head(b"X\0: a"), 400, None, id="nul-in-name"),
    pytest.param(head(b"X: a\0b"), 400, None, id="nul-in-value"),
    pytest.param(head(b"X: a\x01b"), 400, None, id="ctl-in-value"),
    pytest.param(head(b"X: a\x07"), 400, None, id="bel-in-value"),
    pytest.param(head(b"X: a\x7fb"), 400, None, id="del-in-value"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", 400, None, id="bare-lf-everywhere"),
    pytest.param(head(b"Host: a\nX: b"), 400, None, id="bare-lf-in-head"),
    pytest.param(head(b"Host: a\rX: b"), 400, None, id="bare-cr-in-head"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400, None, id="lf-crlf-end"),
    pytest.param(head(b"X: a", b" b"), 400, None, id="obs-fold"),
    pytest.param(head(b"X: a", b"\tb"), 400, None, id="obs-fold-tab"),
    pytest.param(head(b" X: a"), 400, None, id="first-field-folded"),
    pytest.param(head(b"X: " + b"a" * 60), 431, SMALL, id="header-line-over-limit"),
    pytest.param(head(*[b"X: a"] * 5), 431, SMALL, id="too-many-fields"),
    pytest.param(head(*[b"X: " + b"a" * 55] * 4), 431, SMALL, id="head-over-limit"),
    pytest.param(head(b"Host: a", b"Host: b"), 400, None, id="duplicate-host"),
    pytest.param(head(b"Host: a", b"host: a"), 400, None, id="duplicate-host-same"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, None, id="no-host"),
    pytest.param(b"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, None, id="no-host-but-x-host"),
    pytest.param(b"GET / HTTP/1.1\r\nX: host: a\r\n\r\n", 400, None, id="no-host-but-a-value"),
    pytest.param(b"GET http://a/ HTTP/1.1\r\n\r\n", 400, None, id="no-host-absolute-form"),
    pytest.param(head(b"Host: a b/c@d"), 400, None, id="host-invalid"),
    pytest.param(head(b"Host: a@b"), 400, None, id="host-userinfo"),
    pytest.param(head(b"Host: a:b"), 400, None, id="host-port-not-digits"),
    pytest.param(head(b"Host: [::1"), 400, None, id="host-open-bracket"),
    pytest.param(head(b"Host: a/b", line=b"GET / HTTP/1.0"), 400, None, id="host-invalid-1.0"),
    pytest.param(head(b"Host: caf\xc3\xa9"), 400, None, id="host-non-ascii"),
    pytest.param(head(b"Content-Type: a", b"Content-Type: a"), 400, None, id="duplicate-content-type"),
    # Content-Length
    pytest.param(head(b"Content-Length: -1"), 400, None, id="cl-minus-1"),
    pytest.param(head(b"Content-Length: +1") + b"x", 400, None, id="cl-plus-1"),
    pytest.param(head(b"Content-Length: 0_1") + b"x", 400, None, id="cl-underscore"),
    pytest.param(head(b"Content-Length: 5, 5") + b"hello", 400, None, id="cl-list"),
    pytest.param(head(b"Content-Length: 1 2") + b"xx", 400, None, id="cl-two-numbers"),
    pytest.param(head(b"Content-Length: 0x10"), 400, None, id="cl-hex"),
    pytest.param(head(b"Content-Length:"), 400, None, id="cl-empty"),
    pytest.param(head(b"Content-Length: \xd9\xa1"), 400, None, id="cl-arabic-digit"),
    pytest.param(head(b"Content-Length: 3", b"Content-Length: 2") + b"abc", 400, None, id="cl-two-values"),
    pytest.param(head(b"Content-Length: 3", b"Content-Length: 3") + b"abc", 400, None, id="cl-twice-same"),
    pytest.param(head(b"Content-Length: " + b"1" * 19), 400, None, id="cl-19-digits"),
    pytest.param(head(b"Content-Length: " + b"9" * 18), 413, None, id="cl-18-digits-over-max"),
    pytest.param(head(b"Content-Length: 17") + b"x" * 17, 413, SMALL, id="cl-over-max-body"),
    # Transfer-Encoding: RFC 9112 section 6
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b"gzip, chunked"), 501, None, id="te-gzip-chunked"),
    # identity is no coding we know (RFC 9112 section 6.1: 501); a front end may read its body another way
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b"identity, chunked"), 501, None, id="te-identity-chunked"),
    pytest.param(
        head(b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1") + b"0\r\n\r\n",
        501,
        None,
        id="te-identity-then-chunked-fields",
    ),
    pytest.param(
        head(b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1") + b"0\r\n\r\n",
        501,
        None,
        id="te-gzip-then-chunked-fields",
    ),
    pytest.param(chunked(b"0\r\n\r\n", b"Content-Length: 5"), 400, None, id="cl-and-te"),
    pytest.param(
        head(b"Content-Length: 5", b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1"), 400, None, id="cl-then-te"
    ),
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b"chunked, gzip"), 400, None, id="te-chunked-not-last"),
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b"chunked, chunked"), 400, None, id="te-chunked-twice"),
    pytest.param(chunked(b"0\r\n\r\n", b"Transfer-Encoding: chunked"), 400, None, id="te-chunked-two-fields"),
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b"gzip"), 400, None, id="te-no-chunked"),
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b", chunked"), 400, None, id="te-empty-coding"),
    pytest.param(chunked(b"0\r\n\r\n").replace(b"chunked", b"a b, chunked"), 400, None, id="te-bad-coding"),
    pytest.param(chunked(b"0\r\n\r\n").replace(b"HTTP/1.1", b"HTTP/1.0"), 400, None, id="te-on-http-1.0"),
    # chunked framing
    pytest.param(chunked(b"6_0\r\n" + b"x" * 96 + b"\r\n0\r\n\r\n"), 400, None, id="chunk-size-underscore"),
    pytest.param(chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-minus"),
    pytest.param(chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-plus"),
    pytest.param(chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-leading-space"),
    pytest.param(chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-trailing-space"),
    pytest.param(chunked(b"0 \r\n\r\n"), 400, None, id="last-chunk-trailing-space"),
    pytest.param(chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-0x"),
    pytest.param(chunked(b"\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-empty"),
    pytest.param(chunked(b";a=b\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-ext-without-size"),
    pytest.param(chunked(b"1" + b"0" * 16 + b"\r\n"), 413, None, id="chunk-size-over-max-body"),
    pytest.param(chunked(b"0" * 1100 + b"5\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-over-line-limit"),
    pytest.param(chunked(b"5\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-size-bare-lf"),
    pytest.param(chunked(b"5;a=\rb\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-ext-bare-cr"),
    pytest.param(chunked(b"5;a=b c\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-ext-bad-value"),
    pytest.param(chunked(b"5;" + b"e" * 1100 + b"\r\nhello\r\n0\r\n\r\n"), 400, None, id="chunk-line-over-limit"),
    pytest.param(chunked(b"5\r\nhelloXX0\r\n\r\n"), 400, None, id="chunk-data-no-crlf"),
    pytest.param(chunked(b"5\r\nhello\r\n0\r\nX: a\nY: b\r\n\r\n"), 400, None, id="trailer-bare-lf"),
    pytest.param(chunked(b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"), 400, None, id="trailer-obs-fold"),
    pytest.param(chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"), 400, None, id="trailer-content-length"),
    pytest.param(chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: x\r\n\r\n"), 400, None, id="trailer-te"),
    pytest.param(chunked(b"5\r\nhello\r\n0\r\nhost: a\r\n\r\n"), 400, None, id="trailer-host"),
    pytest.param(chunked(b"9\r\n123456789\r\n8\r\n12345678\r\n0\r\n\r\n"), 413, SMALL, id="chunked-over-max-body"),
    pytest.param(chunked(b"11\r\n" + b"x" * 17 + b"\r\n0\r\n\r\n"), 413, SMALL, id="chunk-over-max-body"),
    # framing is bounded as well as the body: at most 64 KiB for a small max_body (70 bytes here)
    pytest.param(chunked((b"1;" + b"e" * 1000 + b"\r\nx\r\n") * 70), 413, FRAMING, id="chunk-framing-over-limit"),
]


@split_ids
@pytest.mark.parametrize(("data", "status", "limits"), ERRORS)
def test_error(split, data, status, limits):
    outcome = parse(split(data), limits)
    assert outcome.requests == []
    assert outcome.status == status, outcome.error


@pytest.mark.parametrize(("data", "status", "limits"), ERRORS)
def test_error_after_a_good_request(data, status, limits):
    # pipelined behind a valid request: that one comes out, then the same error
    for split in SPLITS.values():
        outcome = parse(split(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n" + data), limits)
        assert [r.target for r in outcome.requests] == ["/ok"] and outcome.status == status


# Inputs that never complete the head (or the body): only the early checks can refuse them.
EARLY = [
    pytest.param(b"\x16\x03\x01\x02\x00", 400, None, id="tls-client-hello"),
    pytest.param(b"\x00", 400, None, id="nul"),
    pytest.param(b"GET\x00", 400, None, id="nul-after-method"),
    pytest.param(b"G\xc3", 400, None, id="non-ascii-method"),
    pytest.param(b"get", 400, None, id="lower-case-method"),
    pytest.param(b"GET /" + b"a" * 8995, 414, None, id="request-line-over-limit"),
    pytest.param(b"GET / HTTP/1.1\n", 400, None, id="bare-lf-request-line"),
    # found by test_fuzz.py: fed a byte at a time, these CRs were passed over while the line was incomplete
    pytest.param(b"OPTIONS / HTTP/1.1\r\r\r\n", 400, None, id="bare-crs-then-crlf-request-line"),
    pytest.param(b"GET /a\rb HTTP/1.1", 400, None, id="bare-cr-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX: b", 400, None, id="bare-lf-field"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\rX: b", 400, None, id="bare-cr-field"),
    pytest.param(b"GET / HTTP/1.1\r\nX: " + b"a" * 61, 431, SMALL, id="header-line-over-limit"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 5, 431, SMALL, id="too-many-fields"),
    pytest.param(b"GET / HTTP/1.1\r\n" + (b"X: " + b"a" * 57 + b"\r\n") * 4, 431, SMALL, id="head-over-limit"),
    pytest.param(head(b"Content-Length: 17"), 413, SMALL, id="cl-over-max-body"),
    pytest.param(chunked(b"11\r\n"), 413, SMALL, id="chunk-over-max-body"),
    pytest.param(chunked((b"1;" + b"e" * 1000 + b"\r\nx\r\n") * 70), 413, FRAMING, id="chunk-framing-over-limit"),
    pytest.param(chunked(b"5\r\nhello\r\n5;" + b"e" * 1022), 400, None, id="chunk-line-over-limit"),
    pytest.param(chunked(b"5\n"), 400, None, id="chunk-size-bare-lf"),
    pytest.param(chunked(b"0\r\nX: a\nY"), 400, None, id="trailer-bare-lf"),
    pytest.param(chunked(b"0\r\n" + b"X: a\r\n" * 30), 431, Limits(max_header_bytes=100), id="trailers-over-limit"),
]


@split_ids
@pytest.mark.parametrize(("data", "status", "limits"), EARLY)
def test_error_before_the_head_is_complete(split, data, status, limits):
    outcome = parse(split(data), limits)
    assert outcome.status == status, outcome.error


def test_client_hello_refused_at_the_first_byte():
    parser = RequestParser()
    parser.feed(b"\x16\x03\x01\x02\x00")
    with pytest.raises(HTTPError) as raised:
        parser.next_request()
    assert raised.value.status == 400
    assert parse(bytewise(b"\x16\x03\x01\x02\x00")).fed == 1


@pytest.mark.parametrize(
    ("data", "limit"),
    [
        (b"GET /" + b"a" * 8995, Limits().max_request_line),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000, 16 + Limits().max_header_line),
        (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 200, 16 + 6 * (Limits().max_header_count + 1)),
    ],
    ids=["request-line", "header-line", "field-count"],
)
def test_limits_refused_without_buffering_past_them(data, limit):
    # fed a byte at a time, the parser gives up by the time the limit is crossed
    outcome = parse(bytewise(data))
    assert outcome.status in (414, 431)
    assert outcome.fed <= limit


def test_request_line_limit_counts_the_crlf():
    line = b"GET /" + b"a" * 48 + b" HTTP/1.1"  # 62 bytes + CRLF = 64 = max_request_line
    for split in SPLITS.values():
        assert parse(split(line + b"\r\nHost: h\r\n\r\n"), SMALL).error is None
        assert parse(split(line.replace(b"/", b"/a") + b"\r\nHost: h\r\n\r\n"), SMALL).status == 414


def test_header_line_limit_counts_the_crlf():
    line = b"X: " + b"a" * 59  # 62 bytes + CRLF = 64 = max_header_line
    for split in SPLITS.values():
        assert parse(split(head(line)), SMALL).error is None
        assert parse(split(head(line + b"a")), SMALL).status == 431


# -- truncation and idle ------------------------------------------------------------------------


@split_ids
@pytest.mark.parametrize(
    "data",
    [
        head(b"Content-Length: 10", line=b"POST / HTTP/1.1") + b"12345",
        chunked(b"5\r\nhello\r\n"),
        chunked(b"5\r\nhel"),
        chunked(b"0\r\n"),  # the last chunk without the final CRLF
        chunked(b"0\r\nX: a\r\n"),
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.0\r\nbaz",
    ],
    ids=["cl-short", "chunked-no-last", "chunk-short", "no-final-crlf", "trailers-open", "head-open", "field-open"],
)
def test_truncated_is_never_complete(split, data):
    outcome = parse(split(data))
    assert outcome.requests == [] and outcome.error is None
    assert outcome.parser.next_request() is None
    assert not outcome.parser.idle


def test_body_completes_when_the_rest_arrives():
    parser = RequestParser()
    parser.feed(head(b"Content-Length: 10", line=b"POST / HTTP/1.1") + b"12345")
    assert parser.next_request() is None and not parser.idle
    parser.feed(b"67890GET")
    assert parser.next_request().body == b"1234567890"
    assert parser.next_request() is None and not parser.idle  # "GET" is the next request's start


def test_idle():
    parser = RequestParser()
    assert parser.idle  # nothing yet
    parser.feed(b"")
    assert parser.next_request() is None and parser.idle
    parser.feed(b"\r")
    assert parser.next_request() is None and not parser.idle  # maybe an empty line, maybe not
    parser.feed(b"\n")
    assert parser.next_request() is None and parser.idle  # an empty line between requests
    parser.feed(b"G")
    assert not parser.idle  # fed but not yet parsed still counts
    parser.feed(b"ET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n")
    assert parser.next_request() is None and not parser.idle  # head parsed, body awaited
    parser.feed(b"ok")
    assert parser.next_request().body == b"ok" and parser.idle
    parser.feed(chunked(b"2\r\nok\r\n"))
    assert parser.next_request() is None and not parser.idle
    parser.feed(b"0\r\n\r\n")
    assert parser.next_request().body == b"ok" and parser.idle


def test_leading_crlf_limit_is_per_request():
    # four empty lines before each request are fine, counted again for the next one
    data = (b"\r\n" * 4 + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") * 3
    for split in SPLITS.values():
        assert len(parse(split(data)).requests) == 3


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(99)) + b"Host: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: " + b"v" * 8180 + b"\r\n" + b"Y: " + b"v" * 8180 + b"\r\n\r\n",
        chunked(b"0\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(100)) + b"\r\n"),
        chunked(b"1\r\nx\r\n" * 5000 + b"0\r\n\r\n"),
    ],
    ids=["head", "long-lines", "trailers", "many-chunks"],
)
def test_byte_at_a_time_is_linear(data):
    # The partial-head checks used to rescan the whole buffer for every byte: 2.7 s for a 30 KB
    # head, ~180 times a Content-Length body of the same size. Linear is within ~10 times.
    def seconds(data: bytes) -> float:
        start = time.perf_counter()
        outcome = parse(bytewise(data))
        assert outcome.error is None and len(outcome.requests) == 1
        return time.perf_counter() - start

    body = head(b"Content-Length: %d" % len(data), line=b"POST / HTTP/1.1") + data
    assert seconds(data) < 30 * min(seconds(body) for _ in range(3))


# -- Expect: 100-continue (RFC 9110 section 10.1.1) --------------------------------------------

EXPECT = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"


def test_continue_is_due_once_while_the_body_is_awaited():
    parser = RequestParser()
    assert parser.interim() == b""
    parser.feed(EXPECT)
    assert parser.next_request() is None
    assert parser.interim() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert parser.interim() == b""  # once
    parser.feed(b"hel")
    assert parser.next_request() is None and parser.interim() == b""
    parser.feed(b"lo" + EXPECT.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked"))
    assert parser.next_request().body == b"hello"
    assert parser.next_request() is None and parser.interim() == http.CONTINUE  # the next one asks too
    parser.feed(b"0\r\n\r\n")
    assert parser.next_request().body == b"" and parser.interim() == b""


@pytest.mark.parametrize(
    "data",
    [
        EXPECT + b"hello",  # the body came with the head: nothing to wait for
        EXPECT.replace(b"Content-Length: 5", b"Content-Length: 0"),  # no body
        EXPECT.replace(b"HTTP/1.1", b"HTTP/1.0"),  # ignored in HTTP/1.0
        EXPECT.replace(b"100-continue", b"200-ok"),  # not an expectation we know
    ],
    ids=["body-with-head", "no-body", "http-1.0", "other-expectation"],
)
def test_continue_not_due(data):
    parser = RequestParser()
    parser.feed(data)
    parser.next_request()
    assert parser.interim() == b""


def test_expect_with_a_body_over_the_limit_is_refused_from_the_head():
    parser = RequestParser(Limits(max_body=4))
    parser.feed(EXPECT)
    with pytest.raises(HTTPError) as raised:
        parser.next_request()
    assert raised.value.status == 413


# -- chunked bodies: memory bounded by what is on the wire, time linear in it --------------------


def test_chunked_body_is_dropped_from_the_buffer_as_it_is_decoded():
    parser = RequestParser()
    parser.feed(CHUNKED)
    assert parser.next_request() is None
    most = 0
    for _ in range(1000):  # chunk lines with long extensions, a byte of data each
        parser.feed(b"1;" + b"e" * 1000 + b"\r\nx\r\n")
        assert parser.next_request() is None
        most = max(most, len(parser._buf))
    assert most == 0  # every complete chunk was decoded and dropped
    parser.feed(b"40000\r\n" + b"y" * 1000)  # a large chunk in pieces: its data is taken as it comes
    assert parser.next_request() is None and len(parser._buf) == 0
    parser.close()  # the connection went away: the body so far goes too
    assert len(parser._body) == 0


def test_chunk_framing_is_bounded_per_body():
    limits = Limits(max_body=1024)  # framing: 64 KiB at least, 8 bytes per byte of max_body
    parser = RequestParser(limits)
    parser.feed(CHUNKED)
    with pytest.raises(HTTPError) as raised:
        for _ in range(100):
            parser.feed(b"1;" + b"e" * 1000 + b"\r\nx\r\n")
            parser.next_request()
    assert raised.value.status == 413
    one_byte_chunks = CHUNKED + b"1\r\nx\r\n" * limits.max_body + b"0\r\n\r\n"  # max_body in 1-byte chunks fits
    assert parse(random_chunks(7)(one_byte_chunks), limits).requests[0].body == b"x" * 1024


def test_many_tiny_chunks_cost_little_more_than_the_same_bytes_as_content_length():
    # 1,048,560 one-byte chunks (6.3 MB) took 1.7 s, ~300 times a Content-Length body of the same
    # size; a run of one-byte chunks is now one slice, and mixed sizes one regex match per chunk.
    body = b"".join(bytes([65 + i % 26]) for i in range(1_048_560))
    tiny = CHUNKED + b"".join(b"1\r\n%c\r\n" % c for c in body) + b"0\r\n\r\n"
    plain = head(b"Content-Length: %d" % len(tiny), line=b"POST / HTTP/1.1") + tiny
    limits = Limits(max_body=len(tiny))

    def seconds(data: bytes, expected: bytes) -> float:
        start = time.perf_counter()
        (request,) = parse([data[i : i + 65536] for i in range(0, len(data), 65536)], limits).requests
        assert request.body == expected
        return time.perf_counter() - start

    assert seconds(tiny, body) < 20 * min(seconds(plain, tiny) for _ in range(3))
    mixed = CHUNKED + b"1\r\nx\r\n01\r\ny\r\n2;e\r\nzz\r\n" * 1000 + b"0\r\n\r\n"  # no run: the general loop
    assert seconds(mixed, b"xyzz" * 1000)


# -- responses ---------------------------------------------------------------------------------

_DATE = re.compile(rb"Date: ([A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT)\r\n")


def without_date(response: bytes) -> bytes:
    """The response with its Date line removed, after checking it is a current IMF-fixdate."""
    match = _DATE.search(response)
    assert match, response
    assert abs(parsedate_to_datetime(match[1].decode()).timestamp() - time.time()) < 5
    return response[: match.start()] + response[match.end() :]


def test_build_response():
    assert without_date(build_response(200, b"Hello\n")) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 6\r\n"
        b"Connection: keep-alive\r\n"
        b"\r\n"
        b"Hello\n"
    )


def test_build_response_close_and_content_type():
    response = build_response(404, b"", content_type="application/json", keep_alive=False)
    assert without_date(response) == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


def test_build_response_head_only():
    # RFC 9110 section 9.3.2: the same header fields as for GET, Content-Length included; no body
    full = build_response(200, b"0123456789")
    head_only = build_response(200, b"0123456789", head_only=True)
    assert without_date(head_only) == without_date(full)[: -len(b"0123456789")]
    assert b"Content-Length: 10\r\n" in head_only and head_only.endswith(b"\r\n\r\n")


def test_build_response_unknown_status():
    assert build_response(299, b"").startswith(b"HTTP/1.1 299 Unknown\r\n")


def test_error_response():
    assert without_date(error_response(HTTPError(431, "header line too long"))) == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 25\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"431 header line too long\n"
    )


@pytest.mark.parametrize("status", [400, 408, 413, 414, 431, 501, 503, 505])
def test_every_error_status_has_a_reason(status):
    assert status in REASONS
    response = error_response(HTTPError(status, "x"))
    assert response.startswith(b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status].encode()))
    assert b"Connection: close\r\n" in response


# -- gunicorn's request corpus (tests/data/http-corpus) ------------------------------------------

VALID_MANIFEST = corpus.manifest("valid")
INVALID_MANIFEST = corpus.manifest("invalid")






def corpus_outcome(kind: str, name: str, limits: Limits | None, *, add_host: bool = False) -> tuple:
    """Parse a corpus case every way; all ways must agree. -> (status, summaries, idle)
    `add_host`: with a Host field added to each HTTP/1.1 request (NO_HOST).

    `idle` is None where it depends on how much was fed: after an error, or after a request
    that closes the connection (the rest of the bytes are never read).
    """
    data = corpus.load(kind, name)
    if add_host:
        data = with_host(data)
    results = set()
    for split in CORPUS_SPLITS:
        outcome = parse(split(data), limits, stop_at_close=True)
        requests = tuple(summary(r) for r in outcome.requests)
        open_ = outcome.error is None and all(r.keep_alive for r in outcome.requests)
        results.add((outcome.status, requests, outcome.parser.idle if open_ else None))
    assert len(results) == 1, results
    return results.pop()


@pytest.mark.parametrize("name", corpus.names("valid"))
def test_corpus_valid(name):
    status, requests, idle = corpus_outcome("valid", name, VALID_LIMITS.get(name))
    if name in VALID_REFUSED:
        assert status == VALID_REFUSED[name][0], VALID_REFUSED[name][1]
        assert requests == () or name in NO_HOST
        if name in NO_HOST:
            status, requests, idle = corpus_outcome("valid", name, VALID_LIMITS.get(name), add_host=True)
            assert status is None
            assert len(requests) == int(VALID_MANIFEST[name]["expected_requests"])
    elif name in VALID_TRUNCATED:
        assert status is None and requests == () and not idle
    else:
        assert status is None
        assert len(requests) == int(VALID_MANIFEST[name]["expected_requests"])


@pytest.mark.parametrize(("name", "status"), [("024", 414), ("026", 431)])
def test_corpus_valid_needs_its_limits(name, status):
    assert corpus_outcome("valid", name, None)[0] == status


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("010", b"all your base are belong to us"),
        ("011", b"hello world"),  # last chunk written "000"
        ("012", b"hello world"),  # with trailers
        ("013", b"hello world"),  # with chunk extensions
        ("023", b"hello world"),  # followed by a second request
        ("rfc9112_chunked_ext_quoted_01", b"hello"),
        ("rfc9112_chunked_size_leading_zeros_01", b"hello"),
        ("rfc9112_chunked_size_uppercase_hex_01", b"0123456789"),
        ("001", b'{"nom": "nom"}'),
        ("020", b"GET /second HTTP/1.1\r\n\r\n"),  # HTTP/1.0 body that looks like a request
        ("040_compat", b"tricked"),
    ],
)
def test_corpus_valid_bodies(name, body):
    assert corpus_outcome("valid", name, None, add_host=name in NO_HOST)[1][0][-1] == body



# Each of these, one byte (or field) more generous, is a valid request: the limits bite exactly.
INVALID_LIMITS_PASS = {
    "006": Limits(max_request_line=4114),
    "010": Limits(max_header_line=13),
    "011": Limits(max_header_count=3),
    "012": Limits(max_header_line=99),
}

# The connection ends before the request does: never a complete request, never idle.
INVALID_TRUNCATED = {"001", "rfc9112_chunked_missing_final_crlf_01"}

STATUS_BY_GUNICORN_ERROR = {"LimitRequestLine": 414, "LimitRequestHeaders": 431}  # the rest: 400
STATUS_OVERRIDES = {
    "version_02": 505,  # HTTP/2.0: a version we do not speak, not a malformed one
    "013": 400,  # obsolete line folding is refused before its length counts
}


@pytest.mark.parametrize("name", corpus.names("invalid"))
def test_corpus_invalid(name):
    if name in GUNICORN_ONLY:
        pytest.skip(f"gunicorn-only: {GUNICORN_ONLY[name]}")
    status, requests, idle = corpus_outcome("invalid", name, INVALID_LIMITS.get(name))
    assert requests == ()
    if name in INVALID_TRUNCATED:
        assert status is None and not idle
    else:
        error = INVALID_MANIFEST[name]["expected_gunicorn_error"]
        assert status == STATUS_OVERRIDES.get(name, STATUS_BY_GUNICORN_ERROR.get(error, 400))


@pytest.mark.parametrize("name", INVALID_LIMITS_PASS)
def test_corpus_invalid_limit_boundaries(name):
    # 010 has no Host field (a 9-byte line with its CRLF, within the 13 that let 010's pass)
    status, requests, _ = corpus_outcome("invalid", name, INVALID_LIMITS_PASS[name], add_host=name == "010")
    assert status is None and len(requests) == 1


def test_corpus_is_complete():
    # every file has a manifest row and the README's counts hold
    assert set(VALID_MANIFEST) == set(corpus.names("valid")) and len(VALID_MANIFEST) == 63
    assert set(INVALID_MANIFEST) == set(corpus.names("invalid")) and len(INVALID_MANIFEST) == 74
    for name in corpus.names("valid"):
        assert len(corpus.load("valid", name)) == int(VALID_MANIFEST[name]["decoded_bytes"])
    exceptions = {*VALID_REFUSED, *VALID_LIMITS, *VALID_TRUNCATED, *GUNICORN_ONLY, *INVALID_LIMITS}
    assert exceptions <= {*VALID_MANIFEST, *INVALID_MANIFEST}


def test_corpus_decode():
    assert corpus.decode(b"a\\r\\nb\r\n\\0\\n\\t\\x41\\x0D\\x0a\\\\") == b"a\r\nb\0\n\tA\r\n\\\\"
