"""Every model against slow clients, overload, resource exhaustion and faults (RELIABILITY.md).

Each test runs once per model and records what it saw in docs/reliability.md (see
reliability_table.py). Resource limits are set in the server's own process before exec; the
resources a server holds are read with psutil from outside. Idle keep-alive and idle-connection
deadlines, pipelining and vanishing clients are test_servers.py's; this file has the rest.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import statistics
import threading
import time
from typing import TYPE_CHECKING

import psutil
import pytest
from support.rawhttp import (
    LONG_DEADLINE,
    Reader,
    close_all,
    connect,
    get_ok,
    is_closed,
    open_connections,
    parse_all,
    read_to_close,
    readable,
    request,
    reset,
    sort_out,
)

from runner.run import resources

if TYPE_CHECKING:
    from conftest import Server

HELLO = b"Hello, World!\n"


def wait_until_serving(server: Server, within: float) -> float:
    """Seconds until a normal request is answered again; fails after `within`."""
    started = time.monotonic()
    while not get_ok(server):
        assert time.monotonic() - started < within, f"{server.model} not serving {within} s later"
        time.sleep(0.05)
    return time.monotonic() - started


def refusals(answers: list[int | None]) -> str:
    statuses = sorted({"close" if a is None else str(a) for a in answers})
    return f"{'/'.join(statuses)} ×{len(answers)}" if answers else "none refused"


# -- faults in a request --------------------------------------------------------------------------


def test_handler_that_raises_costs_only_its_request(model: str, start_server, record) -> None:
    server = start_server(model, "--workload", "fail")
    with connect(server.host, server.port) as sock:
        reader = Reader(sock)
        sock.sendall(request("GET", "/ok"))
        assert reader.read().status == 200
        sock.sendall(request("GET", "/fail"))
        failed = reader.read()
        closed = is_closed(sock)
        if not closed:  # kept alive: the next request on it must be fine
            sock.sendall(request("GET", "/after"))
            assert reader.read().status == 200
    for i in range(20):  # one failure after another: still no trace of them on stderr
        with connect(server.host, server.port) as sock:
            sock.sendall(request("GET", f"/fail/{i}"))
            assert Reader(sock).read().status == 500
    next_ok = get_ok(server)
    code, served = server.stop()
    quiet = server.stderr == ""
    record(
        "handler-raises",
        model,
        f"{failed.status}{' + close' if closed else ', kept alive'}; next request {'200' if next_ok else 'FAILED'};"
        f" stderr {'empty' if quiet else 'not empty'}",
    )
    assert failed.status == 500
    assert next_ok
    assert code == 0 and served == 23 + (not closed)  # /ok, /fail (, /after), 20 more, /next
    assert quiet, server.stderr


def test_truncated_body_then_eof_is_not_handled(model: str, start_server, record) -> None:
    server = start_server(model)
    with connect(server.host, server.port) as sock:
        # a complete request, then one whose body stops 97 bytes short, then the client's EOF
        sock.sendall(request("GET", "/whole") + b"POST /cut HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(3.0)
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    statuses = [r.status for r in parse_all(bytes(received))]
    next_ok = get_ok(server)
    code, served = server.stop()
    record("truncated-body", model, f"answers {statuses}, then close; SERVED {served} (the 2 complete requests)")
    assert statuses == [200]  # the complete one only; the cut one is dropped unanswered
    assert next_ok
    assert (code, served) == (0, 2)
    assert "Traceback" not in server.stderr


def test_reply_to_a_reset_connection_is_not_counted(model: str, start_server, record) -> None:
    # SERVED counts replies handed to the socket: a client that reset its connection while its reply
    # waited (the io workload) is not counted, in any model
    server = start_server(model, "--workload", "io", "--workload-param", "io_ms=200")
    socks = open_connections(server, RESET_CLIENTS)
    for sock in socks:
        sock.sendall(request("GET", "/slow"))
    time.sleep(0.1)  # read, and waiting for their replies
    for sock in socks:
        reset(sock)
    time.sleep(0.5)  # the replies fall due (single: one after another)
    next_ok = get_ok(server)
    code, served = server.stop()
    record("reset-before-reply", model, f"SERVED {served} (the one request after them); next request {next_ok}")
    assert next_ok
    assert (code, served) == (0, 1)


RESET_CLIENTS = 8
CHUNKED_HEAD = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


def largest_rss(server: Server) -> int:
    return resources.largest_rss(server.pid)


@pytest.mark.slow
def test_chunk_extension_stream_is_cut_off(model: str, start_server, record) -> None:
    # one-byte chunks behind 1,000-byte extensions: the parser used to keep every chunk line until
    # the last chunk (340 MB for 315 MB sent); framing now counts against 8 x max_body
    server = start_server(model)
    block = (b"1;" + b"e" * 1000 + b"\r\nx\r\n") * 1000  # 1 MB of wire, 1,000 bytes of body
    peak, stop = [largest_rss(server)], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], largest_rss(server))

    sampler = threading.Thread(target=sample)
    sampler.start()
    sent = 0
    try:
        with connect(server.host, server.port) as sock:
            try:
                sock.sendall(CHUNKED_HEAD)
                while sent < 200_000_000 and not select.select([sock], [], [], 0)[0]:
                    sock.sendall(block)
                    sent += len(block)
            except OSError:
                pass  # closed under us: its answer is still there to read
            responses = parse_all(read_to_close(sock, 3.0))
    finally:
        stop.set()
        sampler.join()
    statuses = [r.status for r in responses]
    record(
        "chunk-ext-stream",
        model,
        f"{statuses or 'closed'} after {sent / 1e6:.0f} MB sent; largest process {peak[0] / 2**20:.0f} MB RSS",
    )
    assert statuses == [413]
    assert peak[0] < 50 * 2**20
    assert get_ok(server)


TINY_CHUNKS = 1_048_560  # the body just under max_body (1 MiB), 6.3 MB on the wire


@pytest.mark.slow
def test_many_tiny_chunks(model: str, start_server, record) -> None:
    # decoded in time linear in the input, and the other clients of an event loop served meanwhile
    # (numbers and the < 1 s bound for epoll: benchmarks/http_edges.py; here generous bounds)
    server = start_server(model)
    upload = CHUNKED_HEAD + b"1\r\nx\r\n" * TINY_CHUNKS + b"0\r\n\r\n"
    latencies: list[float] = []
    done = threading.Event()

    def other_client() -> None:
        with connect(server.host, server.port, timeout=10.0) as sock:
            reader = Reader(sock)
            while not done.is_set():
                started = time.perf_counter()
                sock.sendall(request("GET", "/other"))
                assert reader.read().status == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.005)

    other = threading.Thread(target=other_client) if model != "single" else None  # single: one at a time
    with connect(server.host, server.port, timeout=30.0) as sock:
        if other is not None:
            other.start()
            time.sleep(0.1)
        started = time.perf_counter()
        sock.sendall(upload)
        response = Reader(sock).read()
        elapsed = time.perf_counter() - started
    done.set()
    if other is not None:
        other.join()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else float("nan")
    others = "n/a (one connection at a time)" if other is None else f"other client p99 {p99 * 1000:.0f} ms"
    record("tiny-chunks", model, f"{response.status} in {elapsed:.2f} s; {others}")
    assert response.status == 200
    assert elapsed < 10.0
    assert other is None or (len(latencies) >= 2 and p99 < 1.0)


# -- slow clients ---------------------------------------------------------------------------------


def test_slowloris_closed_at_the_absolute_header_deadline(model: str, start_server, record) -> None:
    server = start_server(model, "--header-timeout", "1")
    trickle = request("GET", "/", "X-Slow: " + "a" * 100)[:-4]  # never the blank line
    received = bytearray()
    with connect(server.host, server.port) as sock:
        started = time.monotonic()
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # closed under us; what it sent before is still there to read
            if select.select([sock], [], [], 0.2)[0]:  # a byte every 0.2 s, unless it answers
                break
            if time.monotonic() - started > 3.0:
                break  # still open long past the deadline: the assertion below says so
        elapsed = time.monotonic() - started
        received += read_to_close(sock, 1.0)
    responses = parse_all(bytes(received))
    answer = f"{responses[0].status} + close" if responses else "closed"
    record("slowloris", model, f"{answer} at {elapsed:.1f} s, {int(elapsed / 0.2)} bytes in")
    # 1 s from the first byte, not from the last one; select checks deadlines twice a second
    assert 0.8 <= elapsed < 1.8, f"closed after {elapsed:.1f} s"
    assert [r.status for r in responses] == [408]  # half a request came: every model says why
    assert get_ok(server)


SLOWLORIS = 200
MEASURED = 200


@pytest.mark.slow
def test_normal_client_unhurt_by_200_slowloris(model: str, start_server, record) -> None:
    # The single model serves one connection at a time: the first slowloris holds it until its
    # header deadline, which test_idle_connection_does_not_block_other_clients documents. Process
    # copes (200 idle children cost memory, not time), so it is measured with thread and select.
    if model == "single":
        record("slowloris-200", model, "n/a: one connection at a time")
        pytest.skip("single serves one connection at a time")
    if model == "threadpool":
        # each worker is held by its connection for the connection's life, so 200 slowloris hold
        # all 128 workers and the normal client waits in the queue until their deadline: the
        # model's nature (Apache's prefork and worker MPMs share it), documented in its docstring
        record("slowloris-200", model, "n/a: 200 slowloris hold every worker; the rest queue (by nature)")
        pytest.skip("threadpool: a blocking worker per connection, by design")
    server = start_server(model, *LONG_DEADLINE)
    slow = open_connections(server, SLOWLORIS)
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
    stop = threading.Event()
    send_errors: list[OSError] = []

    def trickle() -> None:  # every connection gets one more byte every 0.2 s
        while not stop.wait(0.2):
            for sock in slow:
                try:
                    sock.send(b"a")
                except OSError as exc:
                    send_errors.append(exc)

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        server.settle()  # every slowloris taken in (200 threads, fds or children)
        latencies = []
        with connect(server.host, server.port) as sock:
            reader = Reader(sock)
            for i in range(MEASURED):
                started = time.perf_counter()
                sock.sendall(request("GET", f"/{i}"))
                response = reader.read()
                latencies.append(time.perf_counter() - started)
                assert (response.status, response.body) == (200, HELLO)
    finally:
        stop.set()
        sender.join()
    still_open = not readable(slow, 0) and not send_errors  # none answered or closed
    close_all(slow)
    p99 = statistics.quantiles(latencies, n=100)[98]
    record(
        "slowloris-200",
        model,
        f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms;"
        f" {'all 200 held open' if still_open else 'SLOWLORIS DROPPED'}",
    )
    assert still_open, "the server dropped slowloris connections before their deadline"
    assert p99 < 0.100


# -- overload ---------------------------------------------------------------------------------------

CAP = 20
FLOOD = 60


@pytest.mark.slow
def test_connection_flood_past_the_cap(model: str, start_server, record) -> None:
    server = start_server(model, "--max-connections", str(CAP), *LONG_DEADLINE)
    base_threads, base_fds, base_children = server.settle()  # a pool's threads, a prefork's workers
    socks = open_connections(server, FLOOD)
    try:
        threads, fds, children = server.settle()
        held, answers = sort_out(socks)
    finally:
        close_all(socks)
    recovered = wait_until_serving(server, within=5.0)
    after = server.settle()
    # single takes one connection at a time: the rest wait, unrefused, in the listen backlog
    taken = f"1 taken, {FLOOD - 1} wait in the backlog" if model == "single" else f"{len(held)} held"
    record(
        "flood",
        model,
        f"{taken}, {refusals(answers)}; peak +{threads - base_threads} threads, +{fds - base_fds} fds,"
        f" {children} children; serving {recovered:.1f} s after",
    )
    # bounded: at most one thread, fd or child per connection under the cap
    assert threads - base_threads <= CAP
    assert fds - base_fds <= CAP
    assert children - base_children <= CAP
    assert all(a in (503, None) for a in answers)
    if model == "single":
        assert len(held) == FLOOD  # one served, the rest wait their turn in the listen backlog
    else:
        assert len(held) == CAP and len(answers) == FLOOD - CAP
    assert after == (base_threads, base_fds, base_children), "resources not given back"


@pytest.mark.slow
def test_out_of_fds_pauses_accept_without_spinning(model: str, start_server, record) -> None:
    # soft and hard: the server raises its soft limit to the hard one at start
    server = start_server(
        model, *LONG_DEADLINE, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    )
    socks = open_connections(server, 200)
    try:
        threads, fds, children = server.settle()
        cpu, started = server.cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        rate = (server.cpu_seconds() - cpu) / (time.monotonic() - started)
        alive = server.proc.poll() is None
    finally:
        close_all(socks)
    recovered = wait_until_serving(server, within=10.0)
    peak = f"{children} children" if children else f"{fds} fds"
    record("out-of-fds", model, f"CPU {rate:.2f} s/s at {peak}; serving {recovered:.1f} s after")
    assert alive
    assert rate < 0.5, f"{rate:.2f} CPU seconds per second while out of fds: a busy loop"
    assert "Traceback" not in server.stderr


THROWAWAY_UID = 54_321  # owns no other process, so RLIMIT_NPROC counts only the server's
NPROC = 8
# Runs the server under a uid of its own with RLIMIT_NPROC, so it can start only a few threads or
# processes. root is exempt from RLIMIT_NPROC, and /root may be closed to other uids, so everything
# is imported (and argparse's lazy imports done) before the uid changes, not through an exec.
AS_THROWAWAY_USER = f"""
import importlib, os, resource, sys
model, argv = sys.argv[1], sys.argv[2:]
module = importlib.import_module("servers." + model)
options = getattr(module, "options", None)
module.base.parse_args(model, argv, options)
resource.setrlimit(resource.RLIMIT_NPROC, ({NPROC}, {NPROC}))
os.setgroups([]); os.setgid({THROWAWAY_UID}); os.setuid({THROWAWAY_UID})
module.base.run(model, module.serve, argv, options)
"""


@pytest.mark.slow
def test_cannot_start_a_worker(model: str, start_server, record) -> None:
    if os.geteuid() != 0:
        record("no-workers", model, "not run: needs root (a uid of its own)")
        pytest.skip("needs root to run the server under a uid of its own")
    server = start_server(model, *LONG_DEADLINE, entry=("-c", AS_THROWAWAY_USER, model))
    base_threads, _, _ = server.settle()
    socks = open_connections(server, 30)
    try:
        threads, _, children = server.settle()
        held, answers = sort_out(socks)
        alive = server.proc.poll() is None
    finally:
        close_all(socks)
    recovered = wait_until_serving(server, within=5.0) if alive else float("nan")
    workers = (
        "needs no worker" if threads == base_threads and not children else f"{threads - base_threads} workers started"
    )
    record(
        "no-workers",
        model,
        f"{workers}; {len(held)} held, {refusals(answers)}; {'serving' if alive else 'DIED, not serving'}"
        f" {recovered:.1f} s after",
    )
    assert alive, server.output()
    assert all(a in (503, None) for a in answers)
    assert "Traceback" not in server.stderr


@pytest.mark.slow
def test_select_past_fd_setsize(start_server, record) -> None:
    # select() cannot watch fd >= 1024; servers/select.py documents the ceiling and refuses past it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:  # this test's own sockets
        pytest.skip(f"open-files hard limit {hard} is too low for 1100 connections")
    server = start_server("select", "--max-connections", "2000", *LONG_DEADLINE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    socks: list[socket.socket] = []
    try:
        socks = open_connections(server, 1100)
        server.settle()
        held, answers = sort_out(socks, wait=2.0)
        alive = server.proc.poll() is None
        answered = 0
        for sock in held[:5] + held[-5:]:  # the first and the last it took still get answers
            sock.sendall(request("GET"))
            answered += Reader(sock).read().status == 200
    finally:
        close_all(socks)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    record("fd-setsize", "select", f"{len(held)} held, {refusals(answers)}; held ones answered {answered}/10")
    assert alive
    assert all(a in (503, None) for a in answers)
    assert 1000 <= len(held) <= 1024
    assert answered == 10
    assert get_ok(server)


# -- lifecycle ----------------------------------------------------------------------------------------


def _holding(processes: list[psutil.Process], sock: socket.socket) -> psutil.Process | None:
    """The process whose socket is the other end of `sock` (a pre-forked pool has several)."""
    for proc in processes:
        try:
            if any(c.raddr and tuple(c.raddr) == sock.getsockname() for c in proc.net_connections("tcp")):
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


def test_worker_process_killed_mid_connection(model: str, start_server, record) -> None:
    server = start_server(model)
    parent = psutil.Process(server.pid)
    with connect(server.host, server.port) as sock:
        reader = Reader(sock)
        sock.sendall(request("GET"))
        assert reader.read().status == 200
        workers = parent.children()
        if not workers:
            record("worker-dies", model, "n/a: no worker processes")
            pytest.skip(f"{model} has no worker processes")
        victim = _holding(workers, sock) or workers[0]  # the one serving this connection
        victim.kill()  # SIGKILL
        killed = time.monotonic()
        sock.settimeout(3.0)
        try:
            dropped = sock.recv(1) == b""
        except ConnectionResetError:
            dropped = True

    def zombie(child: psutil.Process) -> bool:
        try:
            return child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False  # reaped between the listing and the look

    def unreaped() -> bool:  # the victim is still there (a zombie), or another child is one
        return psutil.pid_exists(victim.pid) or any(zombie(child) for child in parent.children())

    while unreaped() and time.monotonic() - killed < 3.0:
        time.sleep(0.01)
    reaped = time.monotonic() - killed
    respawned = len(parent.children()) >= len(workers)  # a pool would start a replacement
    next_ok = get_ok(server)
    code, served = server.stop()
    reported = "died" in server.stderr
    record(
        "worker-dies",
        model,
        f"client sees {'close' if dropped else 'nothing'}; reaped in {reaped * 1000:.0f} ms;"
        f" next request {'200' if next_ok else 'FAILED'}; exit {code}, SERVED {served},"
        f" {'reported on stderr' if reported else 'not reported'}{', respawned' if respawned else ''}",
    )
    assert dropped
    assert reaped < 3.0, "not reaped"
    assert next_ok
    assert code == 0
    assert reported or respawned, server.stderr  # the report says what the death means for SERVED
