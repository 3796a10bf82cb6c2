"""What only some models promise: prefork's supervision and counting, the thread pool's bounded
queue, the event loops' many idle connections, asyncio's loop choice.

The contract every model shares is test_servers.py's and test_reliability.py's, which run on these
models too; here are the promises of their docstrings.
"""

from __future__ import annotations

import http.client
import os
import resource
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import psutil
import pytest
from support import REPO
from support.rawhttp import (
    LONG_DEADLINE,
    TIMEOUT,
    Reader,
    close_all,
    connect,
    exchange,
    get_ok,
    open_connections,
    request,
    sort_out,
)

if TYPE_CHECKING:
    from conftest import Server

HELLO = b"Hello, World!\n"


def get_closing(server: Server, n: int) -> int:
    """n requests, each on a connection of its own (so a pool spreads them); returns the 200s."""
    ok = 0
    for i in range(n):
        response, _ = exchange(server.host, server.port, request("GET", f"/{i}", "Connection: close"))
        ok += response.status == 200
    return ok


def workers(server: Server, n: int, within: float = 5.0) -> list[psutil.Process]:
    """The server's n worker processes, once it has n."""
    deadline = time.monotonic() + within
    while len(children := psutil.Process(server.pid).children()) != n:
        assert time.monotonic() < deadline, f"{len(children)} workers, expected {n}"
        time.sleep(0.02)
    return children


# -- prefork ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [(), ("--reuse-port",)], ids=["shared", "reuse-port"])
def test_prefork_respawns_a_killed_worker_and_served_sums_all_workers(start_server, mode) -> None:
    server = start_server("prefork", "--workers", "2", *mode)
    first = workers(server, 2)
    assert get_closing(server, 20) == 20
    time.sleep(0.2)  # a worker books its count at the end of each pass of its loop
    victim = first[0]
    victim.kill()
    victim.wait(3)
    replaced = workers(server, 2)
    assert victim not in replaced
    assert get_closing(server, 20) == 20
    code, served = server.stop()
    assert (code, served) == (0, 40)  # the killed worker's 20-odd requests included
    assert "died (killed by SIGKILL); starting another" in server.stderr
    for child in replaced:
        assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE


def test_prefork_workers_default_to_the_cpus_it_may_use(start_server) -> None:
    server = start_server("prefork")
    workers(server, len(os.sched_getaffinity(0)))


def test_prefork_reuse_port_gives_each_worker_a_socket(start_server) -> None:
    server = start_server("prefork", "--workers", "3", "--reuse-port")
    children = workers(server, 3)
    listening = set()
    for child in children:
        for conn in child.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == server.port:
                listening.add((child.pid, conn.fd))
    assert len({pid for pid, _ in listening}) == 3  # every worker listens, on the same port
    assert get_closing(server, 30) == 30
    assert server.stop() == (0, 30)


def test_prefork_refuses_a_bad_worker_count() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "servers.prefork", "--port", "0", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=10,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "--workers: must be >= 1" in proc.stderr


# -- threadpool -------------------------------------------------------------------------------------


def test_threadpool_answers_503_past_its_queue(start_server) -> None:
    server = start_server("threadpool", "--threads", "2", "--queue", "3", *LONG_DEADLINE)
    threads_before, _, _ = server.settle()  # the pool starts as serving begins, just after READY
    # each worker takes a keep-alive connection first, answering on it proves it has: otherwise a
    # busy machine can deliver the flood before a worker empties the queue (seen in CI: 4 held)
    socks = open_connections(server, 2)
    for sock in socks:
        sock.sendall(request("GET", "/"))
        assert Reader(sock).read().status == 200
    socks += open_connections(server, 8)
    try:
        held, answers = sort_out(socks)
        threads = psutil.Process(server.pid).num_threads()
    finally:
        close_all(socks)
    assert len(held) == 2 + 3  # two served by the workers, three waiting in the queue
    assert answers == [503] * 5
    assert threads == threads_before == 2 + 1  # no thread started for the flood
    deadline = time.monotonic() + 5
    while not get_ok(server):  # the workers come free once the idle ones are gone
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_threadpool_queued_connection_is_served_when_a_worker_frees(start_server) -> None:
    server = start_server("threadpool", "--threads", "1", "--queue", "4")
    first = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    first.request("GET", "/")
    assert first.getresponse().read() == HELLO
    with connect(server.host, server.port) as queued:  # waits: the only worker holds `first`
        queued.sendall(request("GET", "/queued"))
        time.sleep(0.2)
        first.close()  # the worker is free: it takes the queued connection
        assert Reader(queued).read().status == 200


# -- many idle keep-alive connections on the event loops ----------------------------------------------

IDLE = 5000


@pytest.mark.slow
@pytest.mark.parametrize("model", ["epoll", "asyncio"])
def test_event_loop_holds_5000_idle_keepalive_connections(start_server, record, model: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE + 500:
        record("idle-5000", model, f"not run: open-files hard limit {hard}")
        pytest.skip(f"open-files hard limit {hard} is too low for {IDLE} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = start_server(model, "--max-connections", str(IDLE + 100), "--keepalive-timeout", "60", *LONG_DEADLINE)
    base_rss = psutil.Process(server.pid).memory_info().rss
    socks = []
    try:
        for _ in range(IDLE):
            sock = connect(server.host, server.port)
            socks.append(sock)
            sock.sendall(request("GET"))
        statuses = [Reader(sock).read().status for sock in socks]  # now each is an idle keep-alive
        server.settle()
        rss = psutil.Process(server.pid).memory_info().rss
        started = time.monotonic()
        fresh_ok = get_ok(server)
        took = time.monotonic() - started
        reused = 0
        for sock in socks[:: IDLE // 10]:  # and the idle ones are still usable
            sock.sendall(request("GET"))
            reused += Reader(sock).read().status == 200
    finally:
        close_all(socks)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    record(
        "idle-5000",
        model,
        f"RSS {rss / 2**20:.0f} MB (+{(rss - base_rss) / 2**20:.0f} MB); a new client answered in {took * 1000:.0f} ms",
    )
    assert statuses == [200] * IDLE
    assert fresh_ok and reused == 10
    assert rss < 100 * 2**20, f"{rss / 2**20:.0f} MB with {IDLE} idle connections"


# -- asyncio's loop ---------------------------------------------------------------------------------------


def test_asyncio_on_uvloop_serves_and_pipelines(start_server) -> None:
    pytest.importorskip("uvloop")
    server = start_server("asyncio", "--loop", "uvloop", "--workload", "echo")
    with connect(server.host, server.port) as sock:
        sock.sendall(request("GET", "/a") + request("GET", "/b"))
        reader = Reader(sock)
        assert [reader.read().body.split(b" ")[1] for _ in range(2)] == [b"/a", b"/b"]
    assert server.stop() == (0, 2)


# Runs the asyncio model with its loop's methods wrapped so that the server sends itself SIGTERM
# right after the loop call numbered AFTER (0: as soon as the loop exists), a moment no outside
# sender can choose. The calls of a start: add_signal_handler, create_server, call_later, ...
SIGTERM_AFTER_LOOP_CALL = """
import os, signal, sys
from servers import asyncio as model
after, argv = int(sys.argv[1]), sys.argv[2:]
calls, made = [], model.new_loop
def sigterm(what):
    print(f"SIGTERM after {what}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
def counted(method):
    def call(*args, **kwargs):
        result = method(*args, **kwargs)
        calls.append(method.__name__)
        if len(calls) == after:
            sigterm(method.__name__)
        return result
    return call
def new_loop(name):
    loop = made(name)
    for method in ("run_until_complete", "run_forever", "add_signal_handler", "create_server", "call_later"):
        setattr(loop, method, counted(getattr(loop, method)))
    if after == 0:
        sigterm("new_loop")
    return loop
model.new_loop = new_loop
model.base.run("asyncio", model.serve, argv, model.options)
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_stops_on_a_sigterm_at_any_step_of_its_start(loop: str, start_server) -> None:
    # uvloop listens for signals only while it runs: one that landed between two runs, or base's
    # Shutdown raised inside a loop callback, was lost and the server ran on (1 stop in ~200)
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    for after in range(6):  # the sixth call is the first deadline sweep's, half a second in
        server = start_server("asyncio", "--loop", loop, entry=("-c", SIGTERM_AFTER_LOOP_CALL, str(after)))
        try:
            code = server.proc.wait(5.0)  # on its own: a SIGTERM from here would hide a lost one
        except subprocess.TimeoutExpired:
            pytest.fail(f"{server.stderr.strip()}: still running 5 s later\n{server.output()}")
        assert server.stderr.startswith("SIGTERM after"), server.output()
        assert (code, server.stdout.splitlines()[-1]) == (0, "SERVED 0"), server.output()


def test_asyncio_refuses_an_unknown_loop() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "servers.asyncio", "--port", "0", "--loop", "tornado"],
        capture_output=True,
        text=True,
        timeout=10,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "unknown loop 'tornado'" in proc.stderr
