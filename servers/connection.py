"""One HTTP/1.1 connection as a state machine without I/O: bytes in, what to send and when to close out.

Strategy: h11's Connection, cut to what these servers need, so that every model (blocking or event
loop) runs the same connection semantics and keeps only how it waits and blocks. A model reads
bytes from its socket and hands them to receive(); the Connection parses them (RequestParser),
asks the App for each complete request's response and queues the bytes in `out`. The model sends
what its socket takes of `out` and says how much with sent(). It owns no socket and no clock:
every call takes `now` (time.monotonic()), so the tests drive it with bytes and a fake clock.

What a model reads after each call (the actions):
- receive()'s result: the reply to a lone whole request (the hot path), for the model to send at
  once; what the socket does not take goes back with unsent().
- `out`, `owed`: bytes to send now, and how many whole replies they hold (SERVED counts a reply once
  the socket has taken all of it; `out` may also hold a `100 Continue`, which is not a reply).
- `closing`: close once `out` is sent (after an error answer, or a reply that did not keep alive).
- `waiting`: a reply must wait until `due` (`delay` seconds after it was made: the io workload).
  The model reads nothing from the connection meanwhile and calls fire(now) when it is due; requests
  pipelined behind it are answered after it, in order.
- `deadline`: when the model must call expire(now), which says what to send before closing.

The deadline policy, here and nowhere else:
- a request must arrive whole within limits.header_timeout of its first byte (the first one, of the
  accept); a trickle of bytes does not extend it (slowloris);
- between requests, once every answer is sent, the connection may idle for limits.keepalive_timeout;
- a client that does not read what we send must take it within limits.header_timeout;
- when a deadline passes: a 408 if part of a request came and no answer is waiting to be read,
  nothing if the connection was idle or its reader stopped reading; then close. A connection whose
  reply waits on a timer, with nothing else unsent, does not expire (its timer decides).

The hot path (one whole request, alone in a read, on an idle connection) is receive() taking the
parser's fast path (RequestParser.feed_whole) and App.respond's cached response and returning it,
its keep-alive deadline already set: no buffering, no list, no join, and when the socket takes the
whole reply at once (as it nearly always does) no second call -- about the cost of the code each
model had inline before this module existed.
"""

from __future__ import annotations

from servers.app import App
from servers.http import HTTPError, RequestParser, error_response

__all__ = ["Connection"]


class Connection:
    __slots__ = (
        "parser",
        "out",
        "owed",
        "closing",
        "waiting",
        "delay",
        "due",
        "deadline",
        "_respond",
        "_delayed",
        "_header_timeout",
        "_keepalive_timeout",
    )

    def __init__(self, app: App, now: float, *, memo: bool = False) -> None:
        """`memo`: the parser may replay whole requests seen before (servers/http.py, `--parse-memo`)."""
        limits = app.limits
        self.parser = RequestParser(limits, memo=memo)
        self.out = b""
        self.owed = 0
        self.closing = False
        self.waiting = False
        self.delay = 0.0
        self.due = 0.0
        self._respond = app.respond
        self._delayed: tuple[bytes, bool] | None = None
        self._header_timeout = limits.header_timeout
        self._keepalive_timeout = limits.keepalive_timeout
        self.deadline = now + limits.header_timeout

    def receive(self, data: bytes, now: float) -> bytes:
        """Bytes from the client: answer every request they complete. Returns the hot path's reply
        (one whole request alone in `data`, answered at once on an idle connection), which is not
        put in `out`: the model sends it itself and, if the socket did not take all of it, hands
        the rest back with unsent(). Otherwise b"", and the answers, if any, are in `out`."""
        if self.closing or self.waiting:
            if not self.closing:
                self.parser.feed(data)  # answered once the waiting reply is out, in order
            return b""
        parser = self.parser
        request = parser.feed_whole(data)
        if request is None:
            if parser.began:
                self.deadline = now + self._header_timeout
            self.handle(now)
            return b""
        out, keep, delay = self._respond(request)  # the fast path: one whole request, nothing buffered
        if delay:
            self._wait(now, delay, out, keep)
            return b""
        self.closing = not keep
        if self.out:  # output still pending (a model that reads meanwhile): the reply queues behind it
            self.out += out
            self.owed += 1
            return b""
        self.deadline = now + self._keepalive_timeout  # idle once it is sent (nothing else is buffered)
        return out

    def unsent(self, rest: bytes, now: float) -> None:
        """Of the reply receive() returned, the socket has not taken `rest` (b"": a transport took it
        all but still holds some): the client must read it in time, and it is owed until sent."""
        if rest:
            self.out = rest
            self.owed = 1
        self.deadline = now + self._header_timeout

    def handle(self, now: float) -> None:
        """Answer every complete request buffered, in one piece of `out`; stop at an error (then
        close), at a reply that must wait, or at a reply that closes."""
        parser = self.parser
        answers = []
        replies = 0
        while not self.closing:
            try:
                request = parser.next_request()
            except HTTPError as exc:
                answers.append(error_response(exc))
                self.closing = True
                break
            if request is None:
                interim = parser.interim()  # 100 Continue, if the request being read asked for it
                if interim:
                    answers.append(interim)
                break
            data, keep, delay = self._respond(request)
            if delay:
                self._wait(now, delay, data, keep)
                break
            answers.append(data)
            replies += 1
            self.closing = not keep
        if answers:
            self.out += b"".join(answers)
            self.owed += replies
        elif not self.waiting and not self.out and parser.idle:
            self.deadline = now + self._keepalive_timeout

    def sent(self, n: int, now: float, *, unsent: int = 0) -> bool:
        """The socket took `n` bytes of `out`; True once all of it is gone (its `owed` replies then
        count). `unsent`: of those, how many still wait in a transport's own buffer (asyncio), which
        holds the client to the same deadline as `out`. Once all is sent, requests that arrived
        meanwhile are answered (so `out` may fill again)."""
        out = self.out
        if n < len(out):
            self.out = out[n:]
            self.deadline = now + self._header_timeout  # the client must read it in time
            return False
        self.out = b""
        self.owed = 0
        if self.closing or self.waiting:
            return True
        if unsent:
            self.deadline = now + self._header_timeout
        elif self.parser.idle:
            self.deadline = now + self._keepalive_timeout
        else:
            self.handle(now)  # requests that came while the output was blocked, or the rest of one
        return True

    def fire(self, now: float) -> None:
        """The waiting reply is due: into `out`, with the answers to what was pipelined behind it."""
        out, keep = self._delayed or (b"", True)
        self._delayed = None
        self.waiting = False
        self.out += out
        self.owed += 1
        self.closing = not keep
        self.handle(now)

    def expire(self, now: float, *, unsent: bool = False) -> bytes | None:
        """None while the deadline has not passed (or a reply waits on its timer, all else sent); else
        what to send before closing: a 408, or b"" (`unsent`: a transport still holds output that
        the client has not read)."""
        if now < self.deadline or (self.waiting and not self.out and not unsent):
            return None
        if self.parser.idle or self.out or unsent:
            return b""
        return error_response(HTTPError(408, "request not received in time"))  # its Date is now

    def close(self) -> None:
        """The connection is gone: let go of what it buffers now, not when the model drops it."""
        self.parser.close()
        self.out = b""
        self._delayed = None
        self.closing = True

    def _wait(self, now: float, delay: float, data: bytes, keep: bool) -> None:
        self.waiting = True
        self.delay = delay
        self.due = now + delay
        self._delayed = (data, keep)
