"""Real server processes for the tests: started as the runner starts them, torn down whatever happens.

Every server module in servers/ except the shared ones is a concurrency model, and every test
that takes the `model` fixture runs once per model, so a new model is tested by adding its module.
A server runs in its own process group with its output in files (never an undrained pipe); the
fixture's finalizer SIGKILLs the whole group, so a failing test cannot leave a process behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Found by path, not by importing `servers`: with tests/ on sys.path that name can resolve to
# tests/servers (a namespace package) instead of the real one.
SHARED_MODULES = frozenset({"__init__", "http", "base", "workload"})
SERVERS = sorted(p.stem for p in (REPO / "servers").glob("*.py") if p.stem not in SHARED_MODULES)
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_READY = re.compile(r"READY (\S+) ([0-9]+)\n")
_SERVED = re.compile(r"^SERVED ([0-9]+)$", re.MULTILINE)


def server_argv(model: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"servers.{model}", "--host", "127.0.0.1", "--port", "0", *args]


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
            pytest.fail(f"{self.model} still running {timeout} s after SIGTERM\n{self.output()}")
        served = _SERVED.findall(self.stdout)
        return code, int(served[-1]) if served else None

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


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Factory: start_server(model, *extra_args) -> a READY Server; all are killed at teardown."""
    started: list[Server] = []

    def start(model: str, *args: str) -> Server:
        n = len(started)
        stdout, stderr = tmp_path / f"{model}-{n}.stdout", tmp_path / f"{model}-{n}.stderr"
        argv = server_argv(model, *args)
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=REPO,
                start_new_session=True,
            )
        server = Server(model, argv, proc, stdout, stderr)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.kill_group()


@pytest.fixture
def server(model: str, start_server) -> Server:
    """A server of each model with the default options (hello workload, keep-alive on)."""
    return start_server(model)
