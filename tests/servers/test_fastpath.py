"""The parser's fast path (one regex over a simple head, RequestParser.feed_whole for a whole request
alone in a read) and its opt-in parse memo, against the general code: the same bytes must give the
same requests (headers and raw head included), or the same error, whichever path reads them.

A server feeds each recv() through feed_whole() and drains the rest with next_request(), as
servers/epoll.py and servers/asyncio.py do; `parse_fast` below does the same. Every corpus case,
split every way, is read by the general code alone (fast=False), by the fast path with feed(), by
feed_whole(), and twice with the memo (cold, then warm); all must agree. Then seeded random streams
and seeded mutations of simple heads (the bytes the regex cares about: CR, LF, SP, HTAB, colon,
controls, obs-text, case) must agree too.
"""

from __future__ import annotations

import random

import pytest
from support import corpus
from support.corpus import INVALID_LIMITS, VALID_LIMITS
from support.feeding import CORPUS_SPLITS, Outcome, random_chunks, run, summary

from servers import base, http
from servers.http import HTTPError, Limits, RequestParser, build_response


def parse_general(pieces: list[bytes], limits: Limits | None = None, *, stop_at_close: bool = False) -> Outcome:
    return run(RequestParser(limits, fast=False), pieces, whole=False, stop_at_close=stop_at_close)


def parse_fed(pieces: list[bytes], limits: Limits | None = None, *, stop_at_close: bool = False) -> Outcome:
    return run(RequestParser(limits), pieces, whole=False, stop_at_close=stop_at_close)


def parse_fast(
    pieces: list[bytes], limits: Limits | None = None, *, stop_at_close: bool = False, memo: bool = False
) -> Outcome:
    return run(RequestParser(limits, memo=memo), pieces, whole=True, stop_at_close=stop_at_close)


def outcome_key(outcome: Outcome) -> tuple:
    requests = tuple((*summary(r), tuple(r.headers), r.head) for r in outcome.requests)
    return outcome.status, requests, outcome.parser.idle, outcome.fed


def all_paths(pieces: list[bytes], limits: Limits | None, *, stop_at_close: bool = False) -> list[tuple]:
    return [
        outcome_key(parse_general(pieces, limits, stop_at_close=stop_at_close)),
        outcome_key(parse_fed(pieces, limits, stop_at_close=stop_at_close)),
        outcome_key(parse_fast(pieces, limits, stop_at_close=stop_at_close)),
        outcome_key(parse_fast(pieces, limits, stop_at_close=stop_at_close, memo=True)),  # cold memo
        outcome_key(parse_fast(pieces, limits, stop_at_close=stop_at_close, memo=True)),  # warm memo
    ]


@pytest.fixture(autouse=True)
def cold_memo():
    http._MEMOS.clear()
    yield
    http._MEMOS.clear()


CASES = [("valid", name, VALID_LIMITS.get(name)) for name in corpus.names("valid")] + [
    ("invalid", name, INVALID_LIMITS.get(name)) for name in corpus.names("invalid")
]


@pytest.mark.parametrize(("kind", "name", "limits"), CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_corpus_same_outcome_on_every_path(kind: str, name: str, limits: Limits | None) -> None:
    data = corpus.load(kind, name)
    for split in CORPUS_SPLITS:
        general, *others = all_paths(split(data), limits, stop_at_close=True)
        assert all(other == general for other in others), (split, general, others)


GOOD = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Forwarded-Host: b\r\nHost: a\r\n\r\n",
]
BAD = [
    b"GET / HTTP/1.1\r\nX-Bad : 1\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"\x16\x03\x01\x02\x00",
    b"GET / HTTP/1.1\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
]
EXTRA = [b"\r\n", b"\r\n\r\n\r\n\r\n", b"GET /partial HTTP/1.1\r\nHo"]


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_same_outcome_on_every_path(seed: int) -> None:
    rng = random.Random(seed)
    limits = rng.choice([None, Limits(max_header_count=1, max_body=3)])
    stream = b"".join(rng.choice(GOOD * 4 + BAD + EXTRA) for _ in range(rng.randint(1, 12)))
    pieces = rng.choice([[stream], random_chunks(seed)(stream), [m for m in GOOD if stream.startswith(m)] or [stream]])
    for message in GOOD:  # warm the memo with every good request alone, so replays are possible everywhere
        parse_fast([message], limits, memo=True)
    general, *others = all_paths(pieces, limits)
    assert all(other == general for other in others)


# Heads at the edges of what the fast path's regex accepts; each must fare the same on every path.
EDGES = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",  # wrk's request
    b"GET / HTTP/1.1\r\nX-Trim: \t a b \t\r\nX-Empty:\r\nX-Blank: \t \r\nX-Obs: caf\xc3\xa9\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \t[::1]:80 \t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",  # empty: allowed
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",  # invalid: 400
    b"GET / HTTP/1.1\r\nHost: a\r\nX: host: b\r\n\r\n",  # "host:" twice, once in a value
    b"GET / HTTP/1.1\r\nXhost: a\r\n\r\n",  # no Host: 400
    b"GET / HTTP/1.1\r\n\r\n",  # no Host: 400
    b"GET / HTTP/1.0\r\n\r\n",  # none needed
    b"GET / HTTP/1.1\r\nX: host:\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # duplicate Host: 400
    b"GET / HTTP/1.1\r\nX-Host: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHOST: a\r\nhost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: connection, content-length\r\n\r\n",  # framing words in a value
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.7\r\n\r\n",
    b"GET / HTTP/0.9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
    b"GET / HTTP/1.1\r\nContent-Length: +2\r\n\r\nab",
    b"GET / HTTP/1.1\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"CONNECT / HTTP/1.1\r\n\r\n",  # CONNECT needs authority-form: 400
    b"CONNECTX / HTTP/1.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n",  # 501
    b"get / HTTP/1.1\r\n\r\n",
    b"GET /\x80 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  # obs-fold: 400
    b"GET / HTTP/1.1\r\n: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nX\r\n\r\n",
    b"GET / HTTP/1.1\r\nX(: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
]
LIMITS = [None, Limits(max_header_count=2), Limits(max_request_line=20), Limits(max_header_line=20)]


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
@pytest.mark.parametrize("limits", LIMITS, ids=["default", "count-2", "line-20", "field-20"])
def test_edges_same_outcome_on_every_path(data: bytes, limits: Limits | None) -> None:
    for pieces in ([data], [data, data], random_chunks(len(data))(data + data)):
        general, *others = all_paths(pieces, limits)
        assert all(other == general for other in others), (general, others)


MUTATIONS = b"\r\n \t:;,/\x00\x01\x7f\x80\xffaZ0-_("


@pytest.mark.parametrize("seed", range(30))
def test_mutated_heads_same_outcome_on_every_path(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        data = bytearray(rng.choice(EDGES[:9] + GOOD[:3]))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.6:
                data[i] = rng.choice(MUTATIONS)
            elif choice < 0.8:
                data.insert(i, rng.choice(MUTATIONS))
            else:
                del data[i]
        limits = rng.choice(LIMITS)
        general, *others = all_paths([bytes(data)], limits)
        assert all(other == general for other in others), (bytes(data), limits, general, others)


def test_the_common_request_takes_the_fast_path() -> None:
    """wrk's request is parsed by the regex, straight from the received bytes: nothing is buffered."""
    parser = RequestParser()
    request = parser.feed_whole(EDGES[0])
    assert request is not None and parser.idle
    assert (request.method, request.target, request.version, request.keep_alive) == ("GET", "/", "HTTP/1.1", True)
    assert request._headers is None  # the regex's work: fields are split when first asked for
    assert request.headers == [("host", "127.0.0.1:8080")] and request.head == EDGES[0]
    assert parser.feed_whole(EDGES[0]) is not request  # parsed again: no memo unless asked for
    parser.feed(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")  # and heads from the buffer too
    buffered = parser.next_request()
    assert buffered._headers is None and buffered.headers == [("host", "a")]


def test_general_only_parser_never_takes_the_fast_path() -> None:
    parser = RequestParser(fast=False)
    assert parser.feed_whole(EDGES[0]) is None and not parser.idle
    assert parser.next_request().headers == [("host", "127.0.0.1:8080")]


def test_memo_replays_a_repeated_request_without_feeding() -> None:
    message = EDGES[0]
    first = parse_fast([message], memo=True).requests[0]
    parser = RequestParser(memo=True)
    again = parser.feed_whole(message)
    assert again is first
    assert parser.idle and parser.next_request() is None


def test_memo_not_replayed_unless_the_parser_is_fresh() -> None:
    message = GOOD[0]
    assert parse_fast([message], memo=True).status is None
    assert message in http._MEMOS[Limits()]
    parser = RequestParser(Limits(), memo=True)
    parser.feed(b"\r\n" * 4)
    assert parser.next_request() is None and parser.idle  # four empty lines skipped: idle, not fresh
    assert parser.feed_whole(b"\r\n" + message) is None  # a fifth empty line: the general code must see it
    with pytest.raises(HTTPError) as error:
        parser.next_request()
    assert error.value.status == 400


def test_each_limits_has_its_own_memo() -> None:
    message = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
    assert parse_fast([message], memo=True).status is None
    assert parse_fast([message], Limits(max_header_count=1), memo=True).status == 431


def test_errors_are_not_memoized_and_the_memo_is_bounded() -> None:
    parse_fast([BAD[0]], memo=True)
    assert BAD[0] not in http._MEMOS.get(Limits(), {})
    for i in range(http.MEMO_ENTRIES + 10):
        parse_fast([b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i], memo=True)
    assert 0 < len(http._MEMOS[Limits()]) <= http.MEMO_ENTRIES


# -- App.respond's cached response -------------------------------------------------------------------


def respond_all(workload: str, messages: list[bytes]) -> list[bytes]:
    app = base.make_app(base.parse_args("test", ["--workload", workload]))
    return [app.respond(parse_general([m]).requests[0])[0] for m in messages]


def test_cached_response_is_what_build_response_makes(monkeypatch) -> None:
    monkeypatch.setattr("time.time", lambda: 1_000_000_000.5)  # one Date for the expected and the served
    get, head, close = GOOD[0], GOOD[2], b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    hello = b"Hello, World!\n"
    expected = {
        get: build_response(200, hello),
        head: build_response(200, hello, head_only=True),
        close: build_response(200, hello, keep_alive=False),
    }
    order = [get, get, head, get, close, close, get, head]
    assert respond_all("hello", order) == [expected[m] for m in order]


def test_cached_response_gets_a_new_date_each_second(monkeypatch) -> None:
    app = base.make_app(base.parse_args("test", []))
    request = parse_general([GOOD[0]]).requests[0]
    monkeypatch.setattr("time.time", lambda: 1_000_000_000.2)
    first = app.respond(request)[0]
    assert app.respond(request)[0] is first  # same second: the same bytes
    monkeypatch.setattr("time.time", lambda: 1_000_000_001.2)
    later = app.respond(request)[0]
    assert b"Date: Sun, 09 Sep 2001 01:46:40 GMT" in first
    assert b"Date: Sun, 09 Sep 2001 01:46:41 GMT" in later


def test_echo_is_never_answered_from_the_cache() -> None:
    a, b = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    answers = respond_all("echo", [a, b, a])
    assert [x.endswith(m) for x, m in zip(answers, [a, b, a], strict=True)] == [True] * 3
