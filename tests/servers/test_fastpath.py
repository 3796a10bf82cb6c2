"""The parser's fast path (RequestParser.feed_whole, its memo of whole requests) against the full
parser: the same bytes must give the same requests, or the same error, whichever path reads them.

A server feeds each recv() through feed_whole() and drains the rest with next_request(), as
servers/epoll.py and servers/asyncio.py do; `parse_fast` below does the same. Every corpus case,
split every way, is read twice that way (a cold memo, then a warm one) and once by the full parser
alone, and all three must agree; then seeded random streams mix memoized requests with the inputs
that must not be replayed (after skipped empty lines, mid-request, after an error).
"""

from __future__ import annotations

import random

import corpus
import pytest
from test_http import CORPUS_SPLITS, INVALID_LIMITS, VALID_LIMITS, Outcome, parse, random_chunks, summary

from servers import base, http
from servers.http import HTTPError, Limits, RequestParser, build_response


def parse_fast(pieces: list[bytes], limits: Limits | None = None, *, stop_at_close: bool = False) -> Outcome:
    """test_http.parse, but each piece goes through feed_whole() first, as a server does."""
    parser, requests, fed = RequestParser(limits), [], 0
    try:
        for piece in pieces:
            fed += len(piece)
            request = parser.feed_whole(piece)
            if request is not None:
                requests.append(request)
                if stop_at_close and not request.keep_alive:
                    return Outcome(requests, None, parser, fed)
                continue
            while (request := parser.next_request()) is not None:
                requests.append(request)
                if stop_at_close and not request.keep_alive:
                    return Outcome(requests, None, parser, fed)
    except HTTPError as error:
        return Outcome(requests, error, parser, fed)
    return Outcome(requests, None, parser, fed)


def outcome_key(outcome: Outcome) -> tuple:
    return outcome.status, tuple(summary(r) for r in outcome.requests), outcome.parser.idle, outcome.fed


@pytest.fixture(autouse=True)
def cold_memo():
    http._MEMOS.clear()
    yield
    http._MEMOS.clear()


CASES = [("valid", name, VALID_LIMITS.get(name)) for name in corpus.names("valid")] + [
    ("invalid", name, INVALID_LIMITS.get(name)) for name in corpus.names("invalid")
]


@pytest.mark.parametrize(("kind", "name", "limits"), CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_corpus_same_outcome_on_both_paths(kind: str, name: str, limits: Limits | None) -> None:
    data = corpus.load(kind, name)
    for split in CORPUS_SPLITS:
        pieces = split(data)
        slow = outcome_key(parse(pieces, limits, stop_at_close=True))
        cold = outcome_key(parse_fast(pieces, limits, stop_at_close=True))
        warm = outcome_key(parse_fast(pieces, limits, stop_at_close=True))
        assert slow == cold == warm, (split, slow, cold, warm)


GOOD = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"\r\nGET /after-crlf HTTP/1.1\r\n\r\n",
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
def test_random_streams_same_outcome_on_both_paths(seed: int) -> None:
    rng = random.Random(seed)
    limits = rng.choice([None, Limits(max_header_count=1, max_body=3)])
    stream = b"".join(rng.choice(GOOD * 4 + BAD + EXTRA) for _ in range(rng.randint(1, 12)))
    pieces = rng.choice([[stream], random_chunks(seed)(stream), [m for m in GOOD if stream.startswith(m)] or [stream]])
    # warm the memo with every good request alone first, so replays are possible everywhere
    for message in GOOD:
        parse_fast([message], limits)
    assert outcome_key(parse(pieces, limits)) == outcome_key(parse_fast(pieces, limits))


def test_a_repeated_request_comes_from_the_memo_without_feeding() -> None:
    message = GOOD[3]
    first = parse_fast([message]).requests[0]
    parser = RequestParser()
    again = parser.feed_whole(message)
    assert again is first
    assert parser.idle and parser.next_request() is None


def test_not_replayed_unless_the_parser_is_fresh() -> None:
    message = b"\r\n" + GOOD[0]  # from a fresh parser: one empty line skipped, then a request
    assert parse_fast([message]).status is None
    assert message in http._MEMOS[Limits()]
    parser = RequestParser(Limits())
    parser.feed(b"\r\n" * 4)
    assert parser.next_request() is None and parser.idle  # four empty lines skipped: idle, not fresh
    assert parser.feed_whole(message) is None  # a fifth empty line: the full parser must see it
    with pytest.raises(HTTPError) as error:
        parser.next_request()
    assert error.value.status == 400


def test_each_limits_has_its_own_memo() -> None:
    message = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
    assert parse_fast([message]).status is None
    assert parse_fast([message], Limits(max_header_count=1)).status == 431


def test_errors_are_not_memoized_and_the_memo_is_bounded() -> None:
    parse_fast([BAD[0]])
    assert BAD[0] not in http._MEMOS[Limits()]
    for i in range(http.MEMO_ENTRIES + 10):
        parse_fast([b"GET /%d HTTP/1.1\r\n\r\n" % i])
    assert 0 < len(http._MEMOS[Limits()]) <= http.MEMO_ENTRIES


# -- App.respond's cached response -------------------------------------------------------------------


def respond_all(workload: str, messages: list[bytes]) -> list[bytes]:
    app = base.make_app(base.parse_args("test", ["--workload", workload]))
    return [app.respond(parse([m]).requests[0])[0] for m in messages]


def test_cached_response_is_what_build_response_makes(monkeypatch) -> None:
    monkeypatch.setattr("time.time", lambda: 1_000_000_000.5)  # one Date for the expected and the served
    get, head, close = GOOD[0], GOOD[2], b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
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
    request = parse([GOOD[0]]).requests[0]
    monkeypatch.setattr("time.time", lambda: 1_000_000_000.2)
    first = app.respond(request)[0]
    assert app.respond(request)[0] is first  # same second: the same bytes
    monkeypatch.setattr("time.time", lambda: 1_000_000_001.2)
    later = app.respond(request)[0]
    assert b"Date: Sun, 09 Sep 2001 01:46:40 GMT" in first
    assert b"Date: Sun, 09 Sep 2001 01:46:41 GMT" in later


def test_echo_is_never_answered_from_the_cache() -> None:
    a, b = b"GET /a HTTP/1.1\r\n\r\n", b"GET /b HTTP/1.1\r\n\r\n"
    answers = respond_all("echo", [a, b, a])
    assert [x.endswith(m) for x, m in zip(answers, [a, b, a], strict=True)] == [True] * 3
