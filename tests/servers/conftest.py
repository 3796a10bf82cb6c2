"""Real server processes for the tests: started as the runner starts them, torn down whatever happens.

Every server module in servers/ except the shared ones is a concurrency model, and every test
that takes the `model` fixture runs once per model, so a new model is tested by adding its module.
A server runs in its own process group with its output in files (never an undrained pipe); the
fixture's finalizer SIGKILLs the whole group, so a failing test cannot leave a process behind.
`server_pool` shares servers across a module for suites of many small cases (the corpus).

Tests also record what they saw through `record`; at the end of a session that observed every case
(reliability_table.py), the table is written where STRESSBENCH_RELIABILITY_TABLE says, and only then:
`STRESSBENCH_RELIABILITY_TABLE=docs/reliability.md python -m pytest tests/servers` renews the committed
one. A plain `pytest` writes nothing into the checkout.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest
from support import REPO
from support.reliability_table import Recorder

import servers

# `servers` is the package at the root (a regular package wins over the namespace tests/servers, wherever
# each stands on sys.path), as in every test module here
SERVERS = servers.models()
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_READY = re.compile(r"READY (\S+) ([0-9]+)\n")
_SERVED = re.compile(r"^SERVED ([0-9]+)$", re.MULTILINE)


def server_argv(model: str, *args: str, entry: Sequence[str] = ()) -> list[str]:
    """The runner's command line for a server; `entry` replaces `-m servers.<model>` (a wrapper)."""
    return [sys.executable, *(entry or ("-m", f"servers.{model}")), "--host", "127.0.0.1", "--port", "0", *args]


class Server:
    """A running server: where it listens, its output, and stop() for the SIGTERM contract."""

    def __init__(self, model: str, argv: list[str], proc: subprocess.Popen, stdout: Path, stderr: Path) -> None:
        self.model = model
        self.argv = argv  # how it was started (with --port 0)
        self.proc = proc
        self.pid = proc.pid
        self.stdout_path = stdout
        self.stderr_path = stderr
        self.host = ""
        self.port = 0

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while (match := _READY.match(self.stdout)) is None:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.model} exited {self.proc.returncode} before READY\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.model} printed no READY line within {timeout} s\n{self.output()}")
            time.sleep(0.01)
        self.host, self.port = match[1], int(match[2])

    def stop(self, timeout: float = STOP_TIMEOUT) -> tuple[int, int | None]:
        """SIGTERM, wait for the exit; (exit code, the n of `SERVED n`, or None if not printed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            state = _signal_state(self.pid)
            pytest.fail(f"{self.model} still running {timeout} s after SIGTERM ({state})\n{self.output()}")
        served = _SERVED.findall(self.stdout)
        return code, int(served[-1]) if served else None

    # -- what it holds, read from outside with psutil ----------------------------------------------

    def footprint(self) -> tuple[int, int, int]:
        """(threads, open fds, child processes): threads of the children included, fds of the
        server process alone (each child has a table of its own)."""
        proc = psutil.Process(self.pid)
        children = proc.children(recursive=True)
        threads = proc.num_threads()
        for child in children:
            try:
                threads += child.num_threads()
            except psutil.NoSuchProcess:
                pass
        return threads, proc.num_fds(), len(children)

    def settle(self, within: float = 10.0) -> tuple[int, int, int]:
        """Wait until the footprint has not changed for 0.3 s (the server has taken in, or let go
        of, what it will); return it."""
        deadline = time.monotonic() + within
        last, still = self.footprint(), 0
        while still < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.footprint()
            still = still + 1 if now == last else 0
            last = now
        return last

    def cpu_seconds(self) -> float:
        """CPU time of the server and all its children, the reaped ones included."""
        proc = psutil.Process(self.pid)
        times = proc.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
        return total

    def kill_group(self) -> None:
        """SIGKILL everything left in the server's process group (its children included)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing of the group is alive
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass  # unkillable (D state): nothing more a test can do


@pytest.fixture(params=SERVERS)
def model(request: pytest.FixtureRequest) -> str:
    """The name of a concurrency model (a module of servers/); tests taking it run for each."""
    return request.param


def launch(
    directory: Path,
    model: str,
    *args: str,
    preexec_fn: Callable[[], None] | None = None,
    entry: Sequence[str] = (),
) -> Server:
    """Start `python -m servers.<model> --port 0 *args` in its own session, output to files in
    `directory`; returns it READY. `preexec_fn` runs in the child before the exec (resource
    limits); `entry` replaces `-m servers.<model>` (see server_argv)."""
    n = len(list(directory.glob(f"{model}-*.stdout")))
    stdout, stderr = directory / f"{model}-{n}.stdout", directory / f"{model}-{n}.stderr"
    argv = server_argv(model, *args, entry=entry)
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    server = Server(model, argv, proc, stdout, stderr)
    try:
        server.wait_ready()
    except BaseException:
        server.kill_group()
        raise
    return server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: start_server(model, *extra_args, preexec_fn=None, entry=()) -> a READY Server (see
    launch); all are killed at teardown."""
    started: list[Server] = []

    def start(
        model: str, *args: str, preexec_fn: Callable[[], None] | None = None, entry: Sequence[str] = ()
    ) -> Server:
        server = launch(tmp_path, model, *args, preexec_fn=preexec_fn, entry=entry)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_group()


class ServerPool:
    """Servers of one model, started on first use and reused by every later test that asks for
    the same arguments; one that died is replaced (its test has already failed)."""

    def __init__(self, model: str, directory: Path) -> None:
        self.model = model
        self.directory = directory
        self._servers: dict[tuple[str, ...], Server] = {}

    def __call__(self, *args: str) -> Server:
        server = self._servers.get(args)
        if server is not None and server.proc.poll() is not None:
            server.kill_group()  # and whatever it left behind
            server = None
        if server is None:
            server = self._servers[args] = launch(self.directory, self.model, *args)
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.kill_group()


@pytest.fixture(scope="module", params=SERVERS)
def server_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """A ServerPool per model, shared by a module's tests: for suites of many small cases, where a
    server per case would cost more than the cases. pytest groups the tests by model, so one
    model's servers are gone before the next model's start."""
    pool = ServerPool(request.param, tmp_path_factory.mktemp(request.param))
    yield pool
    pool.close()


@pytest.fixture
def server(model: str, start_server) -> Server:
    """A server of each model with the default options (hello workload, keep-alive on)."""
    return start_server(model)


# -- the reliability table (docs/reliability.md) ---------------------------------------------------

RECORDER = Recorder(SERVERS)
TABLE_ENV = "STRESSBENCH_RELIABILITY_TABLE"  # where to write the table (docs/reliability.md); unset: nowhere


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[str, str, str], None]:
    """record(case, model, observed): one cell of docs/reliability.md; the cases and what is
    expected of them are listed in reliability_table.CASES. Record before asserting, so that the
    table shows what a failing test saw."""
    return lambda case, model, observed: RECORDER.record(case, model, observed, request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        RECORDER.test_failed(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not RECORDER.cells:
        return  # no reliability test ran
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    table, missing = os.environ.get(TABLE_ENV), RECORDER.missing()
    if not table:
        message = f"reliability table not written ({TABLE_ENV}=docs/reliability.md to renew it)"
    elif missing:
        message = f"{table} not written: {len(missing)} cells not observed in this run"
    else:
        RECORDER.write(Path(table))
        message = f"{table} written"
    if reporter is not None:
        reporter.write_line(message)


def _signal_state(pid: int) -> str:
    """Blocked, pending, ignored and caught signal masks, for a server that ignored SIGTERM."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "no /proc status"
    keep = ("State", "SigBlk", "SigPnd", "ShdPnd", "SigIgn", "SigCgt", "wchan")
    return "; ".join(line for line in lines if line.split(":")[0] in keep)
