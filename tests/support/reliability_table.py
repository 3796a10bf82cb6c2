"""docs/reliability.md: every fault and bad-input case the server tests try, and what each model did.

Tests report what they observed through the `record` fixture (conftest.py) as they run; at the end
of the session the table is written, but only if every case below was observed for every model it
applies to, so a run of a subset never replaces the full table with a partial one. A case whose
test failed shows `FAILED:` before what was seen. The expectations are RELIABILITY.md's, in brief.
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runner.result import write_atomic


@dataclass(frozen=True)
class Case:
    title: str
    expected: str
    only: tuple[str, ...] = ()  # the models it applies to; empty: every model
    tally: bool = False  # one observation per input file: the cell counts them


_HEADER_DEADLINE = "2 s header deadline"
_VALID = "200 per request; refusals as documented (test_http.VALID_REFUSED); 099 (body cut short): no answer"
_INVALID = f"4xx/5xx or close, never 200 (but gunicorn-only 040), within the {_HEADER_DEADLINE}"
_FEEDINGS = {"whole": "whole", "lines": "line by line", "bytes": "byte by byte", "random": "random chunks"}

CASES: dict[str, Case] = {
    "vanish": Case(
        "connect then close without a byte; RST mid-request; RST mid-response",
        "no traceback, no leak, keeps serving",
    ),
    "malformed": Case(
        "TLS ClientHello, malformed request line, space before colon", "400 and close, without waiting for CRLF"
    ),
    **{
        f"corpus-{kind}-{feeding}": Case(
            f"corpus {kind} ({files} files), {label}", _VALID if kind == "valid" else _INVALID, tally=True
        )
        for kind, files in (("valid", 63), ("invalid", 74))
        for feeding, label in _FEEDINGS.items()
    },
    "expect-100": Case(
        "`Expect: 100-continue`: Content-Length, chunked, over max_body",
        "100 Continue before the body (200 after it); over max_body: 413 and close, no 100",
    ),
    "host": Case(
        "HTTP/1.1 without Host, invalid Host, two Host; HTTP/1.0 without; IPv6 literal",
        "400 and close for the first three (RFC 9112 3.2); 200 for the others",
    ),
    "connect": Case(
        "CONNECT; each method's request-target forms",
        "CONNECT 501 (never 2xx: no tunnel); authority-form only for CONNECT, * only for OPTIONS: else 400",
    ),
    "chunk-ext-stream": Case(
        "chunked body of 1-byte chunks with 1,000-byte extensions, streamed",
        "413 once the framing passes 8 x max_body (8 MiB); RSS < 50 MB",
    ),
    "tiny-chunks": Case(
        "6.3 MB body in 1,048,560 one-byte chunks; another client meanwhile",
        "200 (epoll < 1 s: benchmarks/http_edges.py); the other client served meanwhile",
    ),
    "reset-before-reply": Case(
        "8 clients reset before their (io workload) reply is due",
        "not counted: SERVED counts replies handed to the socket",
    ),
    "truncated-body": Case("truncated body then EOF", "no crash; the request is not handled (SERVED unchanged)"),
    "pipelined": Case("pipelined requests in one packet", "answered in order"),
    "handler-raises": Case(
        "handler raises (workload `fail`)", "500 for that request only; serves the next; no traceback"
    ),
    "idle": Case("idle connection that never sends", "closed at the header deadline (1 s here; 408 optional)"),
    "idle-others": Case("other clients while one connection idles", "served meanwhile (single: starved, by nature)"),
    "slowloris": Case(
        "slowloris: one byte every 0.2 s, never finishing", "closed at the absolute header deadline (1 s here)"
    ),
    "keepalive-idle": Case(
        "idle keep-alive after a response", "closed after the keep-alive timeout (1 s; header deadline 3 s)"
    ),
    "slowloris-200": Case("200 slowloris connections + one normal client", "normal client's p99 < 100 ms"),
    "flood": Case(
        "60 connections against --max-connections 20",
        "bounded threads/processes/fds; 503-and-close or accept-and-close past the cap; recovers",
    ),
    "out-of-fds": Case(
        "out of fds: RLIMIT_NOFILE 64, 200 connections", "no busy loop (< 0.5 CPU s/s); recovers when fds free up"
    ),
    "no-workers": Case(
        "cannot start a worker: RLIMIT_NPROC 8, 30 connections",
        "no crash; 503-and-close past what it can start; recovers",
    ),
    "fd-setsize": Case(
        "select() at fd >= 1024: 1100 connections",
        "no crash; past the ceiling 503 and close; keeps serving the rest",
        only=("select",),
    ),
    "idle-5000": Case(
        "5,000 idle keep-alive connections (test_models.py)",
        "all held, a new client answered, RSS < 100 MB",
        only=("epoll", "asyncio"),
    ),
    "worker-dies": Case("a worker process is SIGKILLed mid-connection", "reaped (no zombie), reported; keeps serving"),
    "sigterm": Case("SIGTERM with keep-alive clients open", "exit 0, SERVED n, no child left, port closed"),
    "port-in-use": Case("port in use", "clear message, non-zero exit; the first server unharmed"),
}


class Recorder:
    """Observations per (case, model), and which of them came from a test that failed."""

    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.cells: dict[tuple[str, str], list[str]] = {}
        self.nodes: dict[str, set[tuple[str, str]]] = {}  # test node id -> the cells it recorded
        self.failed: set[tuple[str, str]] = set()

    def record(self, case: str, model: str, observed: str, nodeid: str = "") -> None:
        if case not in CASES:
            raise KeyError(f"unknown reliability case {case!r}: add it to CASES in {__name__}")
        self.cells.setdefault((case, model), []).append(observed)
        self.nodes.setdefault(nodeid, set()).add((case, model))

    def test_failed(self, nodeid: str) -> None:
        self.failed |= self.nodes.get(nodeid, set())

    def expected_cells(self) -> list[tuple[str, str]]:
        return [(case, model) for case, spec in CASES.items() for model in (spec.only or self.models)]

    def missing(self) -> list[tuple[str, str]]:
        return [cell for cell in self.expected_cells() if cell not in self.cells]

    def cell(self, case: str, model: str) -> str:
        observations = self.cells.get((case, model))
        if observations is None:
            return "n/a"
        if CASES[case].tally:
            text = ", ".join(f"{what} ×{n}" for what, n in Counter(observations).most_common())
        else:
            text = "; ".join(dict.fromkeys(observations))  # distinct, in order
        return ("FAILED: " if (case, model) in self.failed else "") + text

    def render(self) -> str:
        def row(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [
            "# Faults and bad input: what each server did",
            "",
            "Written by the server tests (`STRESSBENCH_RELIABILITY_TABLE=docs/reliability.md python -m pytest"
            " tests/servers`, see tests/support/reliability_table.py) when every case below ran; do not edit by hand."
            " Each cell is what the test saw; one that starts `FAILED:` comes from a failing test."
            " Deadlines are cut to 1-2 s so that the cases end quickly; ×n counts corpus files.",
            "",
            f"Last run: {datetime.now(UTC):%Y-%m-%d}, {platform.system()} {platform.machine()},"
            f" {os.cpu_count()} CPUs, Python {platform.python_version()}.",
            "",
            row(["case", "expected", *self.models]),
            row(["---"] * (2 + len(self.models))),
        ]
        for case, spec in CASES.items():
            lines.append(row([spec.title, spec.expected, *(self.cell(case, m) for m in self.models)]))
        return "\n".join(lines + ["", *_refusals()]) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: f.write(self.render()))


def _refusals() -> list[str]:
    """The policy behind "documented" in the valid-corpus rows: each refusal of a request gunicorn's
    corpus calls valid, with its status, its reason and the files it applies to (test_http.VALID_REFUSED)."""
    from support.corpus import VALID_REFUSED

    files: dict[tuple[int, str], list[str]] = {}
    for name, (status, reason) in sorted(VALID_REFUSED.items()):
        files.setdefault((status, reason), []).append(name)
    lines = ["## Documented refusals of valid-corpus requests", ""]
    lines += ["Valid for gunicorn (some only with one of its options), refused here by a stated policy:", ""]
    lines += [f"- {status}: {reason} ({', '.join(names)})" for (status, reason), names in sorted(files.items())]
    return lines
