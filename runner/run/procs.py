"""Child processes the runner starts: each in its own process group, output to a file, and
always torn down -- SIGTERM to the leader, a grace period, then SIGKILL to the whole group, so
grandchildren (fork-per-connection servers, locust --processes) die with it. A stopped
(SIGSTOPped) process cannot act on SIGTERM, so the group also gets SIGCONT: a stopped Locust then
still writes its statistics, and the grace is not spent waiting on a process that cannot move.

Output goes to a file in the run directory, never to a pipe nobody drains (a chatty child would
block on a full pipe and distort the measurement).
The ports they listen on are found here too (`free_port`), one way for a server's and a Locust
master's.

A run is watched with `Exits`: one pidfd per process, so the runner wakes the moment Locust finishes
or the server dies instead of at its next look (a look every 0.1 s cost each job 50 ms on average).

SIGTERM and SIGHUP (timeout, scancel, a CI cancel button, docker stop, a dropped SSH session) stop the
runner as Ctrl-C does: `stop_on_signals` makes them raise `Stopped`, a KeyboardInterrupt, so one
path stops the children, records the run `interrupted` and reports the runs so far. A signal the
runner was started with ignored stays ignored (nohup ignores SIGHUP on purpose).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
READY_POLL_S = 0.02  # how often a starting server is looked at (a file read or a connect): each job waits half of it


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP raise Stopped from now on (main thread), unless they are ignored."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _raise_stopped)


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT unless it is a Stopped."""
    return getattr(interrupt, "signum", signal.SIGINT)


def stopped_by(interrupt: KeyboardInterrupt) -> str:
    """'the user (Ctrl-C)' or 'SIGTERM', for a result's detail and the console."""
    signum = signal_of(interrupt)
    return "the user (Ctrl-C)" if signum == signal.SIGINT else signal.Signals(signum).name


def spawn(argv: Sequence[str], log_path: Path, *, cpus: set[int] | None = None, env=None) -> subprocess.Popen:
    """Start `argv` as the leader of a new session; stdout and stderr both go to `log_path`."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C at the terminal is ours to relay
            env=env,
        )
    if cpus:
        try:
            os.sched_setaffinity(proc.pid, cpus)  # children it forks later inherit it
        except OSError:
            pass
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(proc: subprocess.Popen, grace: float, sig: int = signal.SIGTERM) -> int | None:
    """Ask the leader to stop, wait up to `grace`, then SIGKILL the group; returns the leader's
    exit code (negative: killed by that signal). Safe to call on a process that already exited."""
    return stop(proc, grace, sig)[0]


def stop(proc: subprocess.Popen, grace: float, sig: int = signal.SIGTERM) -> tuple[int | None, bool]:
    """terminate(), and whether the leader outlived the grace (ignored `sig`) and had to be killed."""
    outlived = False
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            os.killpg(proc.pid, signal.SIGCONT)  # after `sig`, as systemd does: it is acted on at once
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            outlived = True
    kill_group(proc)  # whatever of the group is still alive, the leader included
    try:
        return proc.wait(5), outlived
    except subprocess.TimeoutExpired:  # unkillable (D state): report, don't hang the sweep
        return None, outlived


class Exits:
    """`with Exits(pids) as exits: ... exits.wait(timeout)`: sleeps until one of `pids` exits (each
    one wakes it once) or `timeout` passes. Without pidfds (not Linux, or before 5.3) it just sleeps
    the timeout, so the caller's own look (Popen.poll) stays the truth either way."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._poll = select.poll()  # not select.select: it refuses a descriptor above 1023
        self._fds: set[int] = set()
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):  # no pidfds here, or it is gone already (the caller sees that)
                continue
            self._fds.add(fd)
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> None:
        if not self._fds:
            time.sleep(timeout)
            return
        for fd, _ in self._poll.poll(max(timeout, 0.0) * 1000):
            self._poll.unregister(fd)  # exited: readable from now on, it would wake every wait
            self._fds.discard(fd)
            os.close(fd)

    def __enter__(self) -> Exits:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def tail(path: Path, max_bytes: int = 2000) -> str:
    """The end of a log file, for a result's `detail`."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def wait_for_line(path: Path, prefix: str, proc: subprocess.Popen, timeout: float) -> str | None:
    """Poll `path` until a line starting with `prefix` appears; None if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = find_line(path, prefix)
        if line is not None:
            return line
        if proc.poll() is not None:
            return find_line(path, prefix)
        time.sleep(READY_POLL_S)
    return None


def find_line(path: Path, prefix: str) -> str | None:
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.startswith(prefix.encode()):
                    return raw.decode("utf-8", "replace").strip()
    except OSError:
        pass
    return None


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """A Ctrl-C (or SIGTERM, SIGHUP) inside the block is held and raised when it ends: a teardown is
    never cut short, and a child is never left without a handle (spawn inside it, assign the handle,
    then let the interrupt go up to the code that stops the child)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # KeyboardInterrupt only ever arrives in the main thread
        return
    held: list[int] = []
    # only signals that raise (Ctrl-C's default, stop_on_signals'): an ignored or fatal one stays so
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    raising = {signum: handler for signum, handler in previous.items() if callable(handler)}
    for signum in raising:
        signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for signum, handler in raising.items():
            signal.signal(signum, handler)
    if held:
        raising[held[0]](held[0], None)  # raises what the signal raises outside the block


def free_port(host: str) -> int:
    """A port nothing listens on (a server's, a Locust master's), preferably below the ephemeral range: a
    port from bind(0) is one the kernel may hand to any outgoing connection (Locust's, another run's)
    before the process we start binds it. OSError when there is none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = random.sample(range(10000, low), min(50, max(0, low - 10000))) if low > 10000 else []
    for port in [*candidates, 0]:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT is not free either
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError(f"no free port on {host}")
