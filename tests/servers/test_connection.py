"""servers/connection.py alone: bytes in, actions out, a fake clock for the deadlines. No sockets.

Every model runs this state machine (tests/servers/test_servers.py and test_reliability.py check it
through real sockets); here each rule is checked on its own, at exact times.
"""

from __future__ import annotations

import re

import pytest

from servers import base
from servers.connection import Connection
from servers.http import CONTINUE, Limits

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
LIMITS = Limits()
HEADER, IDLE = LIMITS.header_timeout, LIMITS.keepalive_timeout


def app(*argv: str) -> base.App:
    return base.make_app(base.parse_args("test", list(argv)))


def responses(out: bytes) -> list[int]:
    """The status of every response in `out`, in order (100 Continue included)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]


def feed(conn: Connection, data: bytes, now: float) -> None:
    """receive(), with the hot path's reply handed back unsent, as a blocking model does: then all
    there is to send is in `out`."""
    reply = conn.receive(data, now)
    if reply:
        conn.unsent(reply, now)


def drain(conn: Connection, now: float) -> bytes:
    """What a model does with `out` when the socket takes all of it."""
    out = conn.out
    assert conn.sent(len(out), now)
    return out


def test_the_hot_path_returns_the_reply_with_its_keepalive_deadline_set() -> None:
    conn = Connection(app(), 0.0)
    reply = conn.receive(GET, 1.0)
    assert responses(reply) == [200] and conn.out == b"" and conn.owed == 0 and not conn.closing
    assert conn.deadline == 1.0 + IDLE  # sent at once, nothing more to do
    assert conn.receive(GET[:5], 2.0) == b""  # anything else: answers go to `out`
    conn.unsent(b"", 2.5)  # a transport that holds part of it: the client must read in time
    assert conn.deadline == 2.5 + HEADER
    assert conn.receive(GET[5:], 3.0) == b"" and responses(conn.out) == [200]  # the general path
    conn = Connection(app(), 0.0)
    reply = conn.receive(CLOSE, 1.0)
    assert responses(reply) == [200] and conn.closing
    conn = Connection(app(), 0.0)
    reply = conn.receive(GET, 1.0)
    conn.unsent(reply[10:], 1.0)  # the socket took 10 bytes
    assert conn.out == reply[10:] and conn.owed == 1 and conn.deadline == 1.0 + HEADER
    assert conn.sent(len(conn.out), 2.0) and conn.deadline == 2.0 + IDLE


def test_one_whole_request_is_answered_at_once_and_the_connection_then_idles() -> None:
    conn = Connection(app(), 0.0)
    assert conn.deadline == HEADER
    feed(conn, GET, 1.0)
    assert responses(conn.out) == [200] and conn.owed == 1 and not conn.closing and not conn.waiting
    drain(conn, 2.0)
    assert conn.out == b"" and conn.owed == 0
    assert conn.deadline == 2.0 + IDLE  # the keep-alive idle deadline starts once all is sent


def test_pipelined_requests_are_answered_in_one_piece_in_order() -> None:
    conn = Connection(app("--workload", "echo"), 0.0)
    a, b, c = GET.replace(b"GET /", b"GET /a"), GET.replace(b"GET /", b"GET /b"), CLOSE.replace(b"GET /", b"GET /c")
    feed(conn, a + b + c, 0.0)
    assert conn.owed == 3 and conn.closing
    out = conn.out
    assert out.index(b"GET /a") < out.index(b"GET /b") < out.index(b"GET /c")


def test_a_request_split_over_reads_is_answered_when_whole() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, GET[:10], 0.0)
    assert conn.out == b""
    feed(conn, GET[10:], 0.1)
    assert responses(conn.out) == [200]


def test_connection_close_and_no_keepalive_close_after_the_reply() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, CLOSE + GET, 0.0)
    assert conn.owed == 1 and conn.closing and b"Connection: close" in conn.out  # nothing after a close
    conn = Connection(app("--no-keepalive"), 0.0)
    feed(conn, GET, 0.0)
    assert conn.closing and conn.owed == 1


def test_a_malformed_request_gets_its_error_and_a_close_not_counted_as_a_reply() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, GET + b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n" + GET, 0.0)
    assert responses(conn.out) == [200, 400] and conn.owed == 1 and conn.closing
    feed(conn, GET, 0.1)  # after an error, nothing more is read
    assert responses(conn.out) == [200, 400]


def test_header_deadline_runs_from_the_first_byte_and_a_trickle_does_not_extend_it() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, b"G", 1.0)
    assert conn.deadline == 1.0 + HEADER
    for t in range(2, 10):
        feed(conn, b"E", float(t))  # slowloris
    assert conn.deadline == 1.0 + HEADER
    assert conn.expire(1.0 + HEADER - 0.01) is None
    refusal = conn.expire(1.0 + HEADER)
    assert responses(refusal) == [408] and b"Connection: close" in refusal


def test_an_idle_keepalive_connection_expires_silently() -> None:
    conn = Connection(app(), 0.0)
    assert conn.expire(HEADER) == b""  # never sent a byte: closed without a word
    conn = Connection(app(), 0.0)
    feed(conn, GET, 0.0)
    drain(conn, 1.0)
    assert conn.expire(1.0 + IDLE - 0.01) is None
    assert conn.expire(1.0 + IDLE) == b""


def test_a_request_begun_after_a_reply_gets_the_header_deadline_again() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, GET, 0.0)
    drain(conn, 0.0)
    feed(conn, b"GET / HT", 3.0)
    assert conn.deadline == 3.0 + HEADER
    assert responses(conn.expire(3.0 + HEADER)) == [408]


def test_a_reader_that_stops_reading_is_cut_off_silently() -> None:
    conn = Connection(app("--workload", "size", "--workload-param", "size_bytes=100000"), 0.0)
    feed(conn, GET, 0.0)
    size = len(conn.out)
    assert not conn.sent(1000, 2.0)  # the socket took part of it
    assert len(conn.out) == size - 1000 and conn.owed == 1
    assert conn.deadline == 2.0 + HEADER  # the client must read it in time
    assert conn.expire(2.0 + HEADER) == b""  # no 408 behind a response it is not reading
    assert conn.sent(size - 1000, 3.0) and conn.owed == 0


def test_a_transport_that_still_holds_output_keeps_the_header_deadline() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, GET, 0.0)
    assert conn.sent(len(conn.out), 1.0, unsent=10)
    assert conn.deadline == 1.0 + HEADER
    assert conn.expire(1.0 + HEADER, unsent=True) == b""


def test_a_delayed_reply_waits_and_what_is_pipelined_behind_it_comes_after_it() -> None:
    conn = Connection(app("--workload", "io", "--workload-param", "io_ms=50"), 0.0)
    feed(conn, GET.replace(b"GET /", b"GET /first"), 1.0)
    assert conn.waiting and conn.out == b"" and conn.delay == pytest.approx(0.05) and conn.due == pytest.approx(1.05)
    feed(conn, GET, 1.01)  # pipelined behind the waiting one: buffered, not answered yet
    assert conn.out == b"" and conn.owed == 0
    assert conn.expire(1000.0) is None  # a reply on its timer does not expire
    conn.fire(1.05)
    # the second request is answered in the same piece, then waits in turn
    assert responses(conn.out) == [200] and conn.owed == 1 and conn.waiting
    drain(conn, 1.06)
    conn.fire(1.1)
    assert responses(conn.out) == [200] and not conn.waiting
    drain(conn, 1.1)
    assert conn.deadline == 1.1 + IDLE


def test_a_delayed_reply_does_not_shield_a_reader_that_stopped_reading() -> None:
    conn = Connection(app("--workload", "io"), 0.0)
    feed(conn, GET, 0.0)
    conn.fire(0.01)
    feed(conn, GET, 0.02)  # the next request waits on its timer in turn
    assert conn.waiting
    assert not conn.sent(1, 0.03)  # part of the first reply still unsent, the second on its timer
    assert conn.expire(0.03 + HEADER) == b""


def test_100_continue_goes_out_once_before_the_body_and_is_not_a_reply() -> None:
    conn = Connection(app(), 0.0)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    feed(conn, head, 0.0)
    assert conn.out == CONTINUE and conn.owed == 0
    drain(conn, 0.1)
    assert conn.deadline == HEADER  # still inside a request: its header deadline holds
    feed(conn, b"bo", 0.2)
    assert conn.out == b""  # once only
    feed(conn, b"dy", 0.3)
    assert responses(conn.out) == [200] and conn.owed == 1


def test_requests_buffered_while_output_was_pending_are_answered_once_it_drains() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, GET + GET[:5], 0.0)
    feed(conn, GET[5:], 0.1)  # a blocked model would not read; a transport may already have
    assert conn.owed == 2
    assert not conn.sent(3, 0.2)
    assert conn.sent(len(conn.out), 0.3)
    assert conn.out == b"" and conn.deadline == 0.3 + IDLE


def test_close_lets_go_of_the_buffers_and_ignores_what_comes_after() -> None:
    conn = Connection(app(), 0.0)
    feed(conn, GET + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 50, 0.0)
    conn.close()
    assert conn.out == b"" and conn.parser.idle and conn.closing
    feed(conn, GET, 0.1)
    assert conn.out == b""
