"""A remote target: a server already running somewhere, named in YAML, that the runner only loads.

    python -m runner server=remote server.target_host=10.0.0.7 server.target_port=8080 run.allow_remote=true

RemoteTarget stands where a server this run starts would (runner/run/experiment.py's Target), but
nothing is started and nothing is stopped: readiness is a TCP connect within
server.ready_timeout_s, the server's CPU and memory are not sampled (it is not ours to watch), and
its count of answered requests is unknown (`served` null), so the count check against Locust's
total is skipped (validity.py skips a null count). The result says so: `server.remote` true,
`server.started_by_runner` false, and the target in the provenance.

Load goes to a non-loopback target only with run.allow_remote=true: a stress test is
indistinguishable from an attack to whoever owns the target, so the switch says you own it.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from runner.config import Config, is_loopback
from runner.result import RunResult
from runner.run.procs import READY_POLL_S
from runner.run.server import SERVER_LOG, ServerFailedToStart

CONNECT_TIMEOUT_S = 1.0


def is_remote(cfg: Config) -> bool:
    return cfg.server.target_host is not None or cfg.server.name == "remote"


def check(cfg: Config) -> list[str]:
    """Remote-target checks (config.check calls this)."""
    if not is_remote(cfg):
        return []
    server, errors = cfg.server, []
    if not server.target_host or server.target_port is None:
        return ["server.target_host/target_port: a remote target needs both (server=remote server.target_host=H "
                "server.target_port=P)"]  # fmt: skip
    if not 0 < server.target_port <= 65535:
        errors.append(f"server.target_port: must be 1..65535, got {server.target_port}")
    if not is_loopback(server.target_host) and not cfg.run.allow_remote:
        errors.append(
            f"server.target_host: {server.target_host!r} is not a loopback address; load goes to 127.0.0.1/::1 only "
            "unless run.allow_remote=true says you own the target"
        )
    return errors


def _connects(host: str, port: int) -> str | None:
    """None if a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return str(exc)


class RemoteTarget:
    """The Target of runner/run/experiment.py for a server already running elsewhere: started means
    reachable, it is never ours to stop, and no process of it is here to watch or sample."""

    def __init__(self, cfg: Config, job_dir: Path) -> None:
        self.cfg, self.log = cfg, Path(job_dir) / SERVER_LOG
        self.host, self.port = cfg.server.target_host, int(cfg.server.target_port)

    def start(self) -> None:
        """Wait until the target accepts a TCP connection; ServerFailedToStart if it never does."""
        host, port, timeout = self.host, self.port, self.cfg.server.ready_timeout_s
        began = time.monotonic()
        while (why := _connects(host, port)) is not None and time.monotonic() < began + timeout:
            time.sleep(READY_POLL_S)
        with open(self.log, "a") as f:
            f.write(f"remote target {host}:{port}, not started by the runner: ")
            f.write(f"connected after {time.monotonic() - began:.2f} s\n" if why is None else f"unreachable: {why}\n")
        if why is not None:
            raise ServerFailedToStart(
                f"remote target {host}:{port} did not accept a connection within {timeout:g} s: {why}"
            )

    def pids(self) -> dict[str, int]:
        return {}

    def exited(self) -> None:
        return None  # as far as we can see: a target that stops answering shows in Locust's failures

    def stop(self) -> None:
        pass

    def collect(self, result: RunResult) -> None:
        """What result.server and result.provenance say of a remote target, whether it was reached or not."""
        whose = {"remote": True, "started_by_runner": False}
        result.server.update(whose, served=None, exit_code=None, cpus=None, command_line="", listen_port=self.port)
        result.provenance["target"] = {"host": self.host, "port": self.port, **whose}
