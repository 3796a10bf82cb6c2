"""Launch a server under test, wait until it is ready, and tear it down.

Our servers follow the contract in servers/base.py: they print `READY <host> <port>` once bound
(we pass --port 0 so the kernel picks a free port and two runs never collide) and `SERVED <n>`
when they stop. Readiness is that line, not a guess with sleep(). Until start() returns, the
server is start()'s to tear down, whatever interrupts it (Ctrl-C while waiting for READY).
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runner import procs
from runner.config import Config
from servers import workload

SERVER_LOG = "server.log"
_SERVED = re.compile(r"SERVED (\d+)")


class ServerFailedToStart(Exception):
    """The server exited or stayed silent before READY; the message says what it printed."""


@dataclass
class RunningServer:
    proc: subprocess.Popen
    argv: list[str]
    host: str
    port: int
    log: Path


@functools.cache
def _workload_params(name: str, params: tuple) -> dict:
    """Once per runner process (a sweep): e.g. the cpu workload's loop count, calibrated here
    rather than in each server, so every server in the sweep does exactly the same work."""
    return workload.resolve(name, dict(params))


def server_argv(cfg: Config) -> list[str]:
    argv = [sys.executable, "-m", f"servers.{cfg.server.name}", "--host", cfg.run.host, "--port", "0"]
    argv += ["--workload", cfg.workload.name, "--backlog", str(cfg.server.backlog), "--grace", str(cfg.server.grace_s)]
    for key, value in _workload_params(cfg.workload.name, tuple(sorted(cfg.workload.params.items()))).items():
        argv += ["--workload-param", f"{key}={value}"]
    if not cfg.server.keepalive:
        argv.append("--no-keepalive")
    return argv + option_flags(cfg.server.options)


def option_flags(options: dict) -> list[str]:
    """server.options -> command-line flags: {reuse_port: true, workers: 2} -> --reuse-port --workers 2."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not None and value is not False:
            flags += [flag, str(value)]
    return flags


def start(cfg: Config, job_dir: Path, cpus: set[int] | None) -> RunningServer:
    argv = server_argv(cfg)
    log = job_dir / SERVER_LOG
    proc = None
    try:
        with procs.interrupts_held():  # a Ctrl-C during the spawn waits until `proc` is assigned
            proc = procs.spawn(argv, log, cpus=cpus)
        line = procs.wait_for_line(log, "READY ", proc, cfg.server.ready_timeout_s)
    except BaseException:  # Ctrl-C while starting: the caller never got a handle to stop it with
        if proc is not None:
            procs.terminate(proc, 1.0)
        raise
    if line is None:
        early = proc.poll()
        procs.terminate(proc, 1.0)
        why = (
            f"exited with status {early} before printing READY"
            if early is not None
            else f"did not print READY within {cfg.server.ready_timeout_s:g} s"
        )
        raise ServerFailedToStart(f"server {why}; log tail: {procs.tail(log, 600) or '(empty)'}")
    _, host, port = line.split()
    return RunningServer(proc, argv, host, int(port), log)


def stop(server: RunningServer, grace: float) -> tuple[int | None, int | None]:
    """SIGTERM, grace, SIGKILL to the group; returns (exit code, requests the server says it served)."""
    code = procs.terminate(server.proc, grace)
    line = procs.find_line(server.log, "SERVED ")
    match = _SERVED.match(line or "")
    return code, int(match.group(1)) if match else None
