"""The loop user's HTTP/1.1 framing (runner/locust/wire.py), byte by byte: no sockets, no locust."""

from __future__ import annotations

import pytest

from runner.locust import wire

HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n"


def feed_bytewise(reader: wire.Reader, data: bytes) -> list[wire.Response]:
    """Every byte in a read of its own: the slowest path must frame the same way as one read."""
    out = [reader.feed(data[i : i + 1]) for i in range(len(data))]
    return [r for r in out if r is not None]


def test_the_request_is_a_keep_alive_get_with_host_and_no_body():
    request = wire.build_request("GET", "/echo", "127.0.0.1:8080")
    assert request.startswith(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert request.endswith(b"\r\n\r\n") and b"Connection" not in request and b"Content-Length" not in request
    post = wire.build_request("POST", "/", "h", body=b"abc", keep_alive=False)
    assert b"Content-Length: 3\r\n" in post and b"Connection: close\r\n" in post and post.endswith(b"\r\n\r\nabc")


def test_content_length_frames_a_response_read_at_once_or_byte_by_byte():
    assert wire.Reader().feed(HELLO) == wire.Response(200, True, len(HELLO))
    assert feed_bytewise(wire.Reader(), HELLO) == [wire.Response(200, True, len(HELLO))]


def test_one_reader_frames_response_after_response_and_the_head_cache_changes_nothing():
    reader = wire.Reader()
    for _ in range(3):
        assert reader.feed(HELLO) == wire.Response(200, True, len(HELLO))
    assert reader.feed(HELLO[:30]) is None and reader.feed(HELLO[30:]) == wire.Response(200, True, len(HELLO))


def test_chunked_with_extensions_and_trailers_at_any_split():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = head + b"5;ext=1\r\nHello\r\n0a\r\n, World!!\n\r\n0\r\nX-T: 1\r\n\r\n"
    assert wire.Reader().feed(body) == wire.Response(200, True, len(body))
    assert feed_bytewise(wire.Reader(), body) == [wire.Response(200, True, len(body))]
    for cut in range(1, len(body)):
        reader = wire.Reader()
        assert reader.feed(body[:cut]) is None, cut
        assert reader.feed(body[cut:]) == wire.Response(200, True, len(body)), cut


def test_a_body_without_length_ends_at_the_close_and_the_connection_does_not_stay():
    reader, head = wire.Reader(), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    assert reader.feed(head + b"some") is None
    assert reader.feed(b" more") is None
    assert reader.eof() == wire.Response(200, False, len(head) + 9, wire.UNTIL_CLOSE)


@pytest.mark.parametrize(
    "head, closing",
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0", wire.HTTP10),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", ""),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", wire.CLOSE),
        (b"HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 0", wire.CLOSE),
        (b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, Upgrade\r\ncontent-length: 0", ""),
    ],
)
def test_http_1_0_and_connection_close_say_whether_the_connection_stays_and_why_not(head, closing):
    response = wire.Reader().feed(head + b"\r\n\r\n")
    assert response.keep_alive is not bool(closing) and response.closing == closing


def test_a_malformed_head_is_quoted_in_the_failure():
    with pytest.raises(wire.MalformedResponse, match=r"bad header line: b'Hello, World!'$"):
        wire.Reader().feed(b"HTTP/1.1 200 OK\r\nHello, World!\r\n\r\n")
    with pytest.raises(wire.MalformedResponse, match=r"not an HTTP/1.x status line: b'<html>'$"):
        wire.Reader().feed(b"<html>\r\n")
    with pytest.raises(wire.MalformedResponse, match=r"line: b'x{60}'\.\.\.$"):
        wire.Reader().feed(b"HTTP/1.1 200 OK\r\n" + b"x" * 100 + b"\r\n\r\n")


def test_no_body_for_204_304_and_head_requests_and_1xx_is_skipped():
    assert wire.Reader().feed(b"HTTP/1.1 204 No Content\r\n\r\n").status == 204
    assert wire.Reader().feed(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n").status == 304
    assert wire.Reader(expect_body=False).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n").status == 200
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + HELLO
    assert wire.Reader().feed(interim) == wire.Response(200, True, len(interim))
    assert feed_bytewise(wire.Reader(), interim) == [wire.Response(200, True, len(interim))]


def test_a_non_2xx_status_is_framed_like_any_other():
    response = wire.Reader().feed(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")
    assert response.status == 503 and response.keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n",  # not HTTP at all: refused at once, not after 64 KiB
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000,
    ],
)
def test_malformed_responses_raise(data):
    with pytest.raises(wire.MalformedResponse):
        wire.Reader().feed(data)


def test_a_close_mid_response_is_connection_closed_and_an_idle_close_is_nothing():
    reader = wire.Reader()
    assert reader.eof() is None
    assert reader.feed(HELLO[:-3]) is None
    with pytest.raises(wire.ConnectionClosed):
        reader.eof()
    chunked = wire.Reader()
    assert chunked.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab") is None
    with pytest.raises(wire.ConnectionClosed):
        chunked.eof()


def test_failure_names_are_one_row_each_in_locusts_table():
    # Locust groups failures by repr: a message that varied per request would make a row per request
    assert repr(wire.BadStatus(503)) == "BadStatus(503)"
    assert repr(OSError(111, "Connection refused")) == "ConnectionRefusedError(111, 'Connection refused')"
