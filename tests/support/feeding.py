"""Feeding bytes to a parser as a server's reads cut them: whole, by line, byte by byte, in seeded random
chunks; `run` collects what comes out (the requests, and the error that ended them) for the parser
tests (test_http, test_fastpath, test_fuzz) to compare."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from servers.http import HTTPError, Request, RequestParser


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def by_line(data: bytes) -> list[bytes]:
    return re.split(rb"(?<=\n)", data)


def random_chunks(seed: int) -> Callable[[bytes], list[bytes]]:
    def split(data: bytes) -> list[bytes]:
        rng, pieces, i = random.Random(seed), [], 0
        while i < len(data):
            n = rng.randint(1, 23)
            pieces.append(data[i : i + n])
            i += n
        return pieces

    return split


@dataclass
class Outcome:
    requests: list[Request]
    error: HTTPError | None
    parser: RequestParser
    fed: int  # bytes fed when the parser stopped (at the error, or all of them)

    @property
    def status(self) -> int | None:
        return self.error.status if self.error else None


def run(parser: RequestParser, pieces: list[bytes], *, whole: bool, stop_at_close: bool) -> Outcome:
    """parse() with a given parser; `whole`: each piece goes through feed_whole() first, as the
    event-loop servers feed each recv() (test_fastpath.py)."""
    requests, fed = [], 0
    try:
        for piece in pieces:
            fed += len(piece)
            request = parser.feed_whole(piece) if whole else parser.feed(piece)
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


def summary(request: Request) -> tuple:
    return request.method, request.target, request.version, request.keep_alive, request.body


CORPUS_SPLITS = [whole, by_line, bytewise, random_chunks(1), random_chunks(2), random_chunks(3)]  # the README's ways
