"""Every concurrency model against the server contract, through real sockets on 127.0.0.1.

The parser's corner cases are test_http.py's business; here each case checks what only a running
server can get wrong: framing on the wire, when a connection closes, deadlines, many clients at
once, teardown. Every test that takes `server` or `model` runs once per model in servers/.
"""

from __future__ import annotations

import http.client
import importlib
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
from support.rawhttp import TIMEOUT, Reader, connect, exchange, is_closed, request, reset, wait_closed

from servers import base

if TYPE_CHECKING:  # the fixtures come from conftest.py; a test module never imports it
    from conftest import Server

HELLO = b"Hello, World!\n"


def http_get(server: Server, conn: http.client.HTTPConnection | None = None, path: str = "/"):
    """GET with http.client; returns (response, body)."""
    conn = conn or http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    conn.request("GET", path)
    response = conn.getresponse()
    return response, response.read()


def assert_served_normally(server: Server, *, echo: bool = False) -> None:
    response, body = http_get(server, path="/next")
    assert response.status == 200
    assert body.startswith(b"GET /next HTTP/1.1\r\n") if echo else body == HELLO


# -- one request, its headers, keep-alive -----------------------------------------------------


def test_get_hello(server: Server) -> None:
    response, body = http_get(server)
    assert response.status == 200
    assert response.version == 11
    assert body == HELLO
    assert response.getheader("Content-Length") == str(len(HELLO))
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert response.getheader("Connection") == "keep-alive"
    date = response.getheader("Date", "")
    assert date.endswith(" GMT")
    assert abs((parsedate_to_datetime(date) - datetime.now(UTC)).total_seconds()) < 5


def test_keepalive_reuses_one_connection(server: Server) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    conn.connect()
    first = conn.sock
    for _ in range(5):
        response, body = http_get(server, conn)
        assert (response.status, body) == (200, HELLO)
        assert conn.sock is first  # http.client would have reconnected silently had the server closed
    conn.close()


def test_no_keepalive_closes_after_each_response(model: str, start_server) -> None:
    server = start_server(model, "--no-keepalive")
    response, body = http_get(server)
    assert (response.status, body) == (200, HELLO)
    assert response.getheader("Connection") == "close"
    response, closed = exchange(server.host, server.port, request("GET"))
    assert response.headers["connection"] == "close"
    assert closed


@pytest.mark.parametrize(
    ("version", "headers", "stays_open"),
    [
        ("1.1", (), True),
        ("1.1", ("Connection: close",), False),
        ("1.0", (), False),
        ("1.0", ("Connection: keep-alive",), True),
    ],
    ids=["1.1", "1.1-close", "1.0", "1.0-keep-alive"],
)
def test_connection_persistence(server: Server, version: str, headers: tuple[str, ...], stays_open: bool) -> None:
    with connect(server.host, server.port) as sock:
        reader = Reader(sock)
        sock.sendall(request("GET", "/", *headers, version=version))
        response = reader.read()
        assert (response.status, response.body) == (200, HELLO)
        assert response.headers["connection"] == ("keep-alive" if stays_open else "close")
        assert is_closed(sock) is not stays_open
        if stays_open:  # and it is still usable
            sock.sendall(request("GET", "/", *headers, version=version))
            assert reader.read().status == 200


# -- framing: pipelining, bodies, HEAD, bad input ---------------------------------------------


def test_pipelined_requests_answered_in_order(model: str, start_server, record) -> None:
    server = start_server(model, "--workload", "echo")
    paths = ["/first", "/second", "/third"]
    with connect(server.host, server.port) as sock:
        sock.sendall(b"".join(request("GET", path) for path in paths))
        reader = Reader(sock)
        answered = [reader.read() for _ in paths]
        in_order = [r.body.split(b" ")[1].decode() for r in answered] == paths
        open_ = not is_closed(sock)
    record(
        "pipelined",
        model,
        f"{[r.status for r in answered]}, {'in order' if in_order else 'OUT OF ORDER'},"
        f" {'kept open' if open_ else 'closed'}",
    )
    assert [r.status for r in answered] == [200] * 3
    assert in_order
    assert open_


def test_post_bodies_are_echoed(model: str, start_server) -> None:
    server = start_server(model, "--workload", "echo")
    with connect(server.host, server.port) as sock:
        reader = Reader(sock)
        sized = request("POST", "/sized", body=b"name=value&x=1")
        sock.sendall(sized)
        response = reader.read()
        assert (response.status, response.body) == (200, sized)  # echo = request head + body

        head = request("POST", "/chunked", "Transfer-Encoding: chunked")
        sock.sendall(head + b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
        response = reader.read()
        assert (response.status, response.body) == (200, head + b"hello world")
        assert not is_closed(sock)


def test_head_has_content_length_but_no_body(server: Server) -> None:
    with connect(server.host, server.port) as sock:
        reader = Reader(sock)
        sock.sendall(request("HEAD"))
        response = reader.read(head_only=True)
        assert response.status == 200
        assert response.headers["content-length"] == str(len(HELLO))
        assert not is_closed(sock)  # fails on any body byte after the head
        sock.sendall(request("GET"))
        assert reader.read().body == HELLO


MALFORMED = {
    "space-before-colon": b"GET / HTTP/1.1\r\nHost: test\r\nX-Bad : 1\r\n\r\n",
    "bad-request-line": b"GET  / HTTP/1.1\r\nHost: test\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400_and_close(server: Server, data: bytes, record) -> None:
    response, closed = exchange(server.host, server.port, data)
    record("malformed", server.model, f"{response.status} + {'close' if closed else 'left open'}")
    assert response.status == 400
    assert response.headers["connection"] == "close"
    assert closed


BYTEWISE = {
    "post": request("POST", "/bytewise", "Connection: close", body=b"0123456789"),
    # refused only once its head is complete, so every byte is read before the 400
    "malformed": MALFORMED["space-before-colon"],
}


@pytest.mark.parametrize("data", BYTEWISE.values(), ids=BYTEWISE.keys())
def test_request_sent_byte_by_byte_gets_the_same_answer(model: str, start_server, data: bytes) -> None:
    server = start_server(model, "--workload", "echo")
    whole, whole_closed = exchange(server.host, server.port, data)
    bytewise, bytewise_closed = exchange(server.host, server.port, data, bytewise=True)
    assert bytewise.without_date() == whole.without_date()
    assert bytewise_closed == whole_closed


# -- many clients -------------------------------------------------------------------------------

CLIENTS = 50
REQUESTS_PER_CLIENT = 20


def test_concurrent_keepalive_clients_all_served_and_counted(server: Server) -> None:
    # The single-process model serves one connection at a time: the others wait in the backlog,
    # which is why each client closes its connection as soon as it is done.
    def client(_: int) -> int:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=15)
        conn.connect()
        sock = conn.sock
        try:
            for _ in range(REQUESTS_PER_CLIENT):
                response, body = http_get(server, conn)
                assert (response.status, body) == (200, HELLO)
                assert conn.sock is sock
        finally:
            conn.close()
        return REQUESTS_PER_CLIENT

    with ThreadPoolExecutor(CLIENTS) as pool:
        made = sum(pool.map(client, range(CLIENTS)))
    assert made == CLIENTS * REQUESTS_PER_CLIENT
    assert server.stop() == (0, made)


# -- clients that misbehave ---------------------------------------------------------------------


def test_clients_that_vanish_do_not_hurt_the_server(model: str, start_server, record) -> None:
    server = start_server(model, "--workload", "echo")
    before = server.settle()

    connect(server.host, server.port).close()  # connect, then close without a byte
    assert_served_normally(server, echo=True)

    sock = connect(server.host, server.port)
    sock.sendall(b"GET /half HTTP/1.1\r\nHost: te")  # half a request, then a RST
    time.sleep(0.05)
    reset(sock)
    assert_served_normally(server, echo=True)

    # a RST in the middle of a response: a tiny receive window keeps the server blocked on send
    sock = connect(server.host, server.port, rcvbuf=4096)
    sock.sendall(request("POST", "/big", body=b"x" * 900_000))
    assert sock.recv(1) == b"H"  # the response has started
    time.sleep(0.05)
    reset(sock)
    assert_served_normally(server, echo=True)

    after = server.settle()  # threads, fds, children: all given back
    code, _ = server.stop()
    traceback = "Traceback" in server.output()
    record(
        "vanish",
        model,
        f"kept serving; {'TRACEBACK' if traceback else 'no traceback'};"
        f" {'nothing leaked' if after == before else f'(threads, fds, children) {before} -> {after}'}",
    )
    assert after == before
    assert code == 0
    assert not traceback


# -- deadlines ----------------------------------------------------------------------------------

SHORT_DEADLINES = ("--header-timeout", "1", "--keepalive-timeout", "1")


def test_idle_connection_closed_at_header_deadline(model: str, start_server, record) -> None:
    server = start_server(model, *SHORT_DEADLINES)
    with connect(server.host, server.port) as idle:
        elapsed, sent = wait_closed(idle, within=3.0)
    record("idle", model, f"{'408 + ' if sent else ''}closed at {elapsed:.1f} s")
    assert sent == b"" or sent.startswith(b"HTTP/1.1 408 "), sent
    assert elapsed >= 0.5, "closed long before the 1 s deadline"
    assert_served_normally(server)  # and the server goes on


def test_idle_connection_does_not_block_other_clients(model: str, start_server, record) -> None:
    server = start_server(model, *SHORT_DEADLINES)
    with connect(server.host, server.port) as idle:
        started = time.monotonic()
        conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
        response, body = http_get(server, conn)
        waited = time.monotonic() - started
        conn.close()
        idle_open = not is_closed(idle, wait=0.05)
    assert (response.status, body) == (200, HELLO)
    if model == "single":
        # one connection at a time: an idle client starves the rest, which is the model's nature,
        # until its header deadline frees the server
        record("idle-others", model, f"served after {waited:.1f} s: starved until the idle one's deadline")
        assert 0.5 <= waited < 2.0
        return
    record("idle-others", model, f"served in {waited * 1000:.0f} ms, the idle one still open")
    assert waited < 0.5  # served well before the idle one's deadline
    assert idle_open  # so the two really were open at the same time


def test_idle_keepalive_connection_closed_after_keepalive_timeout(model: str, start_server, record) -> None:
    # a header deadline three times as long: the connection must close at the keep-alive timeout
    server = start_server(model, "--header-timeout", "3", "--keepalive-timeout", "1")
    with connect(server.host, server.port) as sock:
        sock.sendall(request("GET"))
        assert Reader(sock).read().headers["connection"] == "keep-alive"
        elapsed, sent = wait_closed(sock, within=4.0)
    record("keepalive-idle", model, f"{'408 + ' if sent else ''}closed at {elapsed:.1f} s")
    assert sent == b""  # nothing of a next request arrived, so no 408 either
    assert 0.5 <= elapsed < 2.0  # select checks deadlines twice a second


# -- lifecycle ------------------------------------------------------------------------------------


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _zombie_children(pid: int) -> list[int]:
    zombies = []
    for child in psutil.Process(pid).children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
        except psutil.NoSuchProcess:
            pass  # reaped between the listing and the look
    return zombies


def _group(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != pgid and os.getpgid(proc.pid) == pgid and _alive(proc):
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members


def test_sigterm_right_after_ready(server: Server) -> None:
    assert server.stop() == (0, 0)
    assert server.stderr == ""


def test_sigterm_exits_0_reports_served_and_leaves_nothing(server: Server, record) -> None:
    # single serves one connection at a time: a second kept-alive client would wait in the backlog
    held = 1 if server.model == "single" else 3
    clients = [http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT) for _ in range(held)]
    for conn in clients:
        for _ in range(2):
            assert http_get(server, conn)[0].status == 200
    children = psutil.Process(server.pid).children(recursive=True)  # while the keep-alives are open
    if server.model == "process":
        assert len(children) >= held

    started = time.monotonic()
    code, served = server.stop()
    took = time.monotonic() - started
    left = [c.pid for c in children if _alive(c)] + [p.pid for p in _group(server.pid)]
    with pytest.raises(ConnectionRefusedError):
        connect(server.host, server.port).close()
    record(
        "sigterm",
        server.model,
        f"exit {code} in {took:.2f} s with {held} keep-alive open, SERVED {served};"
        f" {f'{len(left)} processes left' if left else 'nothing left'}, port closed",
    )
    assert (code, served) == (0, 2 * len(clients))
    assert took < 3.0, "idle keep-alive connections held up the shutdown"
    assert server.stdout == f"READY {server.host} {server.port}\nSERVED {2 * len(clients)}\n"
    assert not left
    for conn in clients:
        conn.close()


def _churn(server: Server, stop: threading.Event) -> None:
    """Short connections, one after another, until told to stop."""
    while not stop.is_set():
        try:
            exchange(server.host, server.port, request("GET", "/", "Connection: close"))
        except (OSError, AssertionError):
            pass  # refused or cut off by the shutdown: expected once SIGTERM is out


def test_sigterm_while_clients_keep_connecting(model: str, start_server) -> None:
    # SIGTERM lands wherever the accept loop happens to be (mid-fork, mid-thread-start, inside
    # the SIGCHLD handler); a few rounds make an unlucky spot likely to be hit at least once.
    for _ in range(3):
        server = start_server(model)
        stop = threading.Event()
        clients = [threading.Thread(target=_churn, args=(server, stop)) for _ in range(6)]
        for client in clients:
            client.start()
        try:
            time.sleep(0.15)
            started = time.monotonic()
            code, served = server.stop()
            took = time.monotonic() - started
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert code == 0 and served is not None
        assert took < 2.0, f"shutdown took {took:.1f} s: it waited out the grace period for something"
        assert server.stdout.count("SERVED") == 1
        assert "Traceback" not in server.stderr
        assert not _group(server.pid)


# Runs a blocking model with its first handoff traced: the server sends itself SIGTERM at line AT of
# what the main thread runs while handing that connection over (the model's hand() and all it calls,
# Python's queue and threading included), counting only lines where the stop signals are not held back:
# a SIGTERM at a held-back line lands where they are let go, another line of the count.
SIGTERM_AT_A_LINE_OF_THE_HANDOFF = """
import importlib, os, signal, sys
from servers import base
model, at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
module = importlib.import_module("servers." + model)
serve_blocking = base.serve_blocking
def traced(sock, app, handoff):
    hand = handoff.hand
    def first_hand(conn):
        del handoff.hand
        lines, tracing = 0, os.getpid()
        def tracer(frame, event, arg):
            nonlocal lines
            if os.getpid() != tracing:  # a forked child inherits the trace: not its to count
                sys.settrace(None)
                return None
            if event == "line" and signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, ()):
                lines += 1
                if lines == at:
                    sys.settrace(None)
                    where = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
                    print(f"SIGTERM at {where}", file=sys.stderr, flush=True)
                    os.kill(os.getpid(), signal.SIGTERM)
            return tracer
        sys.settrace(tracer)
        try:
            return hand(conn)
        finally:
            sys.settrace(None)
            if lines < at:
                print(f"HANDED over in {lines} lines", file=sys.stderr, flush=True)
    handoff.hand = first_hand
    return serve_blocking(sock, app, handoff)
base.serve_blocking = traced
base.run(model, module.serve, argv, getattr(module, "options", None))
"""
_SAID = re.compile(r"SIGTERM at \S+|HANDED over in ([0-9]+) lines")


def _hands_over(model: str) -> bool:
    """A blocking model whose accept loop hands each connection to a worker (not single, which serves it)."""
    module = importlib.import_module(f"servers.{model}")
    return any(isinstance(v, type) and issubclass(v, base.Handoff) and "hand" in vars(v) for v in vars(module).values())


@pytest.mark.slow
def test_sigterm_at_any_line_of_a_handoff(model: str, start_server) -> None:
    # Python's queue and threading are not safe against an exception from a signal handler: the
    # threadpool's wind-down once waited out its grace period for a worker whose wakeup a Shutdown
    # inside queue.put() had spent (1 stop in ~30 of test_sigterm_while_clients_keep_connecting).
    # A SIGTERM can land on any line; here it lands on each in turn, at a moment no outside sender can choose.
    if not _hands_over(model):
        pytest.skip(f"{model} hands no connection over")
    at = 0
    while True:
        at += 1
        server = start_server(model, "--grace", "5", entry=("-c", SIGTERM_AT_A_LINE_OF_THE_HANDOFF, model, str(at)))
        with connect(server.host, server.port) as sock:
            sock.sendall(request("GET", "/", "Connection: close"))
            deadline = time.monotonic() + TIMEOUT
            while (said := _SAID.search(server.stderr)) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert said, f"the connection was never handed over\n{server.output()}"
            if said[1] is not None:  # past the last line: every one has had its SIGTERM
                assert server.stop()[0] == 0
                assert int(said[1]) == at - 1
                break
            try:
                code = server.proc.wait(2.0)  # the grace is 5 s: a stop that took it waited for a lost worker
            except subprocess.TimeoutExpired:
                pytest.fail(f"{said[0]}: still running 2 s later\n{server.output()}")
        assert code == 0 and server.stdout.splitlines()[-1].startswith("SERVED "), server.output()
        assert "Traceback" not in server.stderr, server.output()
    assert at > 2, "no line of the handoff could take a SIGTERM: is the trace seeing it?"


# Runs a model whose workers are forked with SIGTERM sent by each worker to itself as it begins its
# last words (base.child_life), the moment its own client has left and the parent's stop can reach it.
SIGTERM_IN_THE_LAST_WORDS = """
import importlib, os, signal, sys
from servers import base
model, argv = sys.argv[1], sys.argv[2:]
module = importlib.import_module("servers." + model)
child_life = base.child_life
def sigterm_in_the_last_words(body, last_words):
    def interrupted():
        print("SIGTERM in the last words", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        last_words()
    child_life(body, interrupted)
base.child_life = sigterm_in_the_last_words
base.run(model, module.serve, argv, getattr(module, "options", None))
"""


def test_a_sigterm_in_a_workers_last_words_loses_no_count(model: str, start_server) -> None:
    # A process-model child whose client left says its count as the parent's stop comes: a Shutdown
    # there lost the count (1 stop in ~50 of test_truncated_body_then_eof_is_not_handled).
    module = importlib.import_module(f"servers.{model}")
    if "child_life" not in Path(module.__file__).read_text():
        pytest.skip(f"{model} forks no worker")
    server = start_server(model, entry=("-c", SIGTERM_IN_THE_LAST_WORDS, model))
    with connect(server.host, server.port) as sock:
        sock.sendall(request("GET", "/a") + request("GET", "/b", "Connection: close"))
        reader = Reader(sock)
        assert [reader.read().status for _ in range(2)] == [200, 200]
        assert wait_closed(sock, TIMEOUT)[1] == b""
    assert server.stop() == (0, 2), server.output()
    assert "SIGTERM in the last words" in server.stderr, server.output()


def test_short_connections_leave_no_zombies(server: Server) -> None:
    for i in range(30):
        response, closed = exchange(server.host, server.port, request("GET", f"/{i}", "Connection: close"))
        assert response.status == 200 and closed
    deadline = time.monotonic() + 3.0  # a child that just exited is a zombie until SIGCHLD is handled
    while (zombies := _zombie_children(server.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not zombies, f"children never reaped: {zombies}"
    assert server.proc.poll() is None
    assert server.stop() == (0, 30)


def test_port_in_use_is_a_clear_quick_failure(server: Server, record) -> None:
    argv = list(server.argv)
    argv[argv.index("--port") + 1] = str(server.port)
    started = time.monotonic()
    second = subprocess.run(argv, capture_output=True, text=True, timeout=10, start_new_session=True)
    message = second.stderr.strip().replace(f":{server.port}", ":PORT")
    record("port-in-use", server.model, f"exit {second.returncode}: `{message}`")
    assert time.monotonic() - started < 5.0
    assert second.returncode != 0
    assert "READY" not in second.stdout
    assert str(server.port) in second.stderr
    assert "in use" in second.stderr.lower()
    assert "Traceback" not in second.stderr
    assert_served_normally(server)  # the first one is unharmed
