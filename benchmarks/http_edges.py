"""HTTP/1.1 at its edges, timed: 100 Continue, many tiny chunks, a stream of chunk extensions.

The tests (tests/servers/test_conformance.py, test_reliability.py) check what each server answers;
how fast it answers, and how much memory it takes meanwhile, is measured here (a busy machine makes
timed assertions flaky). For every project server model (servers/*.py), started as the tests start
it (`python -m servers.<model> --port 0`, hello workload, default limits):

- 100 Continue: a 2,048-byte upload with `Expect: 100-continue`, by curl (Content-Length, and
  chunked from stdin as `curl -T -` sends it) and by aiohttp (`expect100=True`): median seconds per
  upload over --uploads. A server that never answers the expectation costs curl its 1 s wait.
- tiny chunks: a 1,048,560-byte body in one-byte chunks (6.3 MB on the wire), uploaded --repeats
  times one after another; the median seconds to the response, and the p99 latency of a second
  client's requests sent meanwhile on its own connection (single: none, one connection at a time).
  `mixed` alternates chunk-size lines `1` and `01` (no run of identical lines: one regex match per
  chunk, the parser's slow path).
- chunk extensions: `1;` + 1,000 x `e` + CRLF + `x` CRLF, repeated, for --stream-s seconds on one
  connection after another (each is cut off with a 413 once its framing passes 8 x max_body): the
  answers, and the peak RSS of the server's largest process.

    python benchmarks/http_edges.py [--models epoll,select] [--uploads 10] [--repeats 5] [--stream-s 10]

Needs curl and aiohttp (`pip install aiohttp`); a part whose tool is missing is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere
import servers  # noqa: E402
from runner.run import resources  # noqa: E402

MODELS = servers.models()
UPLOAD = b"u" * 2048
CHUNKED_HEAD = b"POST /up HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n"
TINY = CHUNKED_HEAD + b"1\r\nx\r\n" * 1_048_560 + b"0\r\n\r\n"
MIXED = CHUNKED_HEAD + b"1\r\nx\r\n01\r\ny\r\n" * 524_280 + b"0\r\n\r\n"
EXTENSIONS = (b"1;" + b"e" * 1000 + b"\r\nx\r\n") * 1000  # 1 MB of wire per send
GET = b"GET /other HTTP/1.1\r\nHost: bench\r\n\r\n"
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


class Server:
    """`python -m servers.<model>` on a free port, in its own process group."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"servers.{model}", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )
        self.port = int(self.proc.stdout.readline().split()[2])

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def largest_rss(self) -> int:
        return resources.largest_rss(self.proc.pid)


def read_response(sock: socket.socket) -> int:
    """The status of the next response (a hello-sized one: head and body in a few recv())."""
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    match = _STATUS.match(data)
    return int(match[1]) if match else 0


# -- 100 Continue ------------------------------------------------------------------------------------


def curl_continue(port: int, uploads: int, chunked: bool) -> float | None:
    if shutil.which("curl") is None:
        return None
    url = f"http://127.0.0.1:{port}/up"
    with tempfile.NamedTemporaryFile() as body:
        body.write(UPLOAD)
        body.flush()
        if chunked:  # what the issue reported: curl waits 1 s for the 100 Continue it asked for
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-H", "Transfer-Encoding: chunked"]
            argv += ["-T", "-", url]
        else:
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-H", "Expect: 100-continue"]
            argv += ["--data-binary", f"@{body.name}", url]
        times = []
        for _ in range(uploads):
            out = subprocess.run(argv, input=UPLOAD if chunked else None, capture_output=True, timeout=30, check=True)
            times.append(float(out.stdout))
    return statistics.median(times)


def aiohttp_continue(port: int, uploads: int) -> float | None:
    try:
        import aiohttp
    except ImportError:
        return None

    async def run() -> float:
        times = []
        async with aiohttp.ClientSession() as session:
            for _ in range(uploads):
                started = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}/up", data=UPLOAD, expect100=True) as response:
                    await response.read()
                    assert response.status == 200, response.status
                times.append(time.perf_counter() - started)
        return statistics.median(times)

    return asyncio.run(run())


# -- tiny chunks -----------------------------------------------------------------------------------------


def tiny_chunks(server: Server, body: bytes, repeats: int) -> tuple[float, float | None]:
    """Median seconds per upload, and the p99 of a second client's requests meanwhile."""
    latencies: list[float] = []
    done = threading.Event()

    def other_client() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            while not done.is_set():
                started = time.perf_counter()
                sock.sendall(GET)
                read_response(sock)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.002)

    other = None if server.model == "single" else threading.Thread(target=other_client)
    if other is not None:
        other.start()
        time.sleep(0.2)
    times = []
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            for _ in range(repeats):
                started = time.perf_counter()
                sock.sendall(body)
                assert read_response(sock) == 200
                times.append(time.perf_counter() - started)
    finally:
        done.set()
        if other is not None:
            other.join()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else None
    return statistics.median(times), p99


# -- a stream of chunk extensions -----------------------------------------------------------------------------


def extension_stream(server: Server, seconds: float) -> tuple[dict[int, int], float, float]:
    """Answers by status, MB sent and peak RSS (MB) of the largest process over `seconds`."""
    answers: dict[int, int] = {}
    peak, sent = server.largest_rss(), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            try:
                sock.sendall(CHUNKED_HEAD)
                while time.monotonic() < deadline and not select.select([sock], [], [], 0)[0]:
                    sock.sendall(EXTENSIONS)
                    sent += len(EXTENSIONS)
                    peak = max(peak, server.largest_rss())
            except OSError:
                pass  # cut off: its answer is still there to read
            try:
                status = read_response(sock)
            except OSError:
                status = 0
        answers[status] = answers.get(status, 0) + 1
        peak = max(peak, server.largest_rss())
    return answers, sent / 1e6, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream-s", type=float, default=10.0)
    args = parser.parse_args()
    header = (
        "| server | curl 100-continue (ms) | curl -T - chunked (ms) | aiohttp expect100 (ms) | tiny chunks (s) |"
        " other client p99 (ms) | mixed chunks (s) | extension stream: answers | MB sent | peak RSS (MB) |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for model in args.models.split(","):
        server = Server(model)
        try:
            curl = curl_continue(server.port, args.uploads, chunked=False)
            curl_chunked = curl_continue(server.port, args.uploads, chunked=True)
            aio = aiohttp_continue(server.port, args.uploads)
            tiny, p99 = tiny_chunks(server, TINY, args.repeats)
            mixed, _ = tiny_chunks(server, MIXED, max(1, args.repeats // 2))
            answers, mb, peak = extension_stream(server, args.stream_s)
        finally:
            server.stop()

        def ms(value: float | None) -> str:
            return "skipped" if value is None else f"{value * 1000:.1f}"

        statuses = ", ".join(f"{status or 'none'} x{n}" for status, n in sorted(answers.items()))
        print(
            f"| {model} | {ms(curl)} | {ms(curl_chunked)} | {ms(aio)} | {tiny:.3f} | {ms(p99) if p99 else 'n/a'}"
            f" | {mixed:.3f} | {statuses} | {mb:.0f} | {peak:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
