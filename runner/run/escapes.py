"""What an external server's command started outside its process group: found, stopped, described.

A command may daemonize: start `setsid sleep 300 &` and then exec the server, or be a launcher that
starts the real server in a session of its own and exits 0. Killing the command's process group
misses both, and they stayed running (listening, in the launcher's case) after the run.

How they are found: every process the command starts inherits its environment, and the runner
puts one variable in it, TOKEN_ENV, with a value unique to the run. After the group is stopped,
any live process carrying the token escaped it: it is stopped by pid (SIGTERM, the grace, SIGKILL)
and described in the result (pid, command line, session, whether it listened on the run's port).
Why not the session or the process tree: a daemon leaves both (setsid, its parent exits), and a
session id can be a reused pid by the time the run ends. A process on the run's port that does not
carry the token (a daemon that cleared its environment, or a stranger) is named but left alone:
the runner stops only what it can tell it started.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid

import psutil

TOKEN_ENV = "STRESSBENCH_RUN_TOKEN"
POLL_S = 0.05


def new_token() -> str:
    return uuid.uuid4().hex


def find(token: str, since: float) -> list[psutil.Process]:
    """Live processes started at or after `since` (epoch s) that carry `token`, this one excepted."""
    found = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if proc.pid == os.getpid() or (proc.info["create_time"] or 0) < since - 1:  # create_time: 10 ms ticks
                continue
            if proc.environ().get(TOKEN_ENV) == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:  # gone, or another user's: not ours either way
            continue
    return found


def stop(token: str, since: float, port: int, grace: float) -> list[dict]:
    """Stop every process carrying `token` (started since `since`); return what was found, described."""
    found = find(token, since)
    described = [describe(proc, port) for proc in found]
    for proc in found:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    for proc in _wait_gone(found, grace):
        try:
            proc.kill()
        except psutil.Error:
            pass
    _wait_gone(found, 5.0)
    return described


def listeners(port: int) -> list[psutil.Process]:
    """The processes listening on TCP `port`, as far as this user may see (root: every one)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return []
    pids = {c.pid for c in connections if c.pid and c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    found = []
    for pid in sorted(pids):
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def describe(proc: psutil.Process, port: int | None = None) -> dict:
    """pid, command, session and, given the run's port, whether it listened there."""
    try:
        command = shlex.join(proc.cmdline()) or proc.name()
        session = os.getsid(proc.pid)
        listening = port is not None and any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in proc.net_connections("tcp")
        )
    except (psutil.Error, OSError):
        return {"pid": proc.pid, "command": "?", "session": None, "listening": False}
    return {"pid": proc.pid, "command": command, "session": session, "listening": listening}


def sentence(found: list[dict], port: int) -> str:
    """One clause for a result's detail, e.g. "it left pid 12 (`sleep 300`, session 12) outside its
    process group: stopped"."""
    if not found:
        return ""
    each = ", ".join(
        f"pid {p['pid']} (`{p['command'][:80]}`, session {p['session']}"
        + (f", listening on port {port})" if p["listening"] else ")")
        for p in found
    )
    return f"the server's command left {each} outside its process group (it daemonized): stopped"


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each is dead or a zombie (an orphan's zombie is init's to reap); return the others."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left:
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    return left


def alive(proc: psutil.Process) -> bool:
    """Whether `proc` still runs: a zombie has ended (its parent has yet to reap it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
