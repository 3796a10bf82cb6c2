"""Launch a server under test, wait until it is ready, and tear it down (LocalTarget: the Target of
runner/run/experiment.py for every server this run starts, ours or external).

Our servers follow the contract in servers/base.py: they print `READY <host> <port>` once bound
(we pass --port 0 so the kernel picks a free port and two runs never collide, unless server.port
names one) and `SERVED <n>` when they stop. Readiness is that line, not a guess with sleep().
Until start() returns, the server is start()'s to tear down, whatever interrupts it (Ctrl-C while
waiting for READY). A named port that something already holds is refused before the server
starts, naming the port and, where it can be seen, who holds it.

An external server (server.command: uvicorn, nginx, yours) knows none of that. We pick its port
(free, and below the kernel's ephemeral range, so that no outgoing connection of a load generator
on this machine can take it before the server binds it), fill in the command's placeholders, write
its server.files into the run directory, and wait until it answers an HTTP request: the workload's
own (or GET server.ready_probe), with `Connection: close`, its response read and the server left to
close first. A bare connect-and-close is what killed a first server that parsed whatever recv()
returned (`server.ready_probe=tcp` asks for it all the same). A server that exits meanwhile is
reported as having exited, with its status; a port answered by a program outside the server's
process tree (it took the port between our pick and the server's bind) is not "ready". It runs in
its own process group and is torn down exactly like ours, and then whatever it started outside that
group (it daemonized: runner/run/escapes.py) is stopped too; it reports no SERVED count, so its
`served` is None (unknown, and so never compared).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from runner.config import Config, own_servers
from runner.locust import wire
from runner.result import RunResult
from runner.run import escapes, procs
from servers import workload
from servers.http import Limits
from servers.reference.asgi import KEEPALIVE_ENV, PARAMS_ENV, WORKLOAD_ENV

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
    external: bool = False  # started from server.command: no READY line, no SERVED count
    killed: bool = False  # set by stop(): it outlived the grace after SIGTERM and was SIGKILLed
    token: str = ""  # external: runner/run/escapes.py's mark on every process the command started
    since: float = 0.0  # external: when the command was started (epoch s)
    escaped: list[dict] = field(default_factory=list)  # set by stop(): what had left the group, stopped
    strangers: list[dict] = field(default_factory=list)  # set by stop(): on its port after, not ours: left alone


@functools.cache
def _workload_params(name: str, params: tuple) -> dict:
    """Once per runner process (a sweep): e.g. the cpu workload's loop count, calibrated here
    rather than in each server, so every server in the sweep does exactly the same work."""
    return workload.resolve(name, dict(params))


def server_argv(cfg: Config) -> list[str]:
    argv = [sys.executable, "-m", f"servers.{cfg.server.name}", "--host", cfg.run.host, "--port", str(cfg.server.port)]
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
    if cfg.server.port:
        check_port_free(cfg.run.host, cfg.server.port)
    if cfg.server.command is not None:
        return _start_external(cfg, job_dir, cpus)
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
    """SIGTERM, grace, SIGKILL to the group; returns (exit code, requests the server says it served),
    the count None for an external server (whatever it printed is not our contract). `server.killed`
    says whether it ignored SIGTERM until the grace ran out."""
    code, server.killed = procs.stop(server.proc, grace)
    if server.external:
        server.escaped = escapes.stop(server.token, server.since, server.port, grace)
        if _accepts(server.host, server.port):  # net_connections() reads every fd of every process: only then
            server.strangers = [escapes.describe(p, server.port) for p in escapes.listeners(server.port)]
        return code, None
    line = procs.find_line(server.log, "SERVED ")
    match = _SERVED.match(line or "")
    return code, int(match.group(1)) if match else None


class LocalTarget:
    """A server this run starts (ours, or an external command), watches and stops with its group: the
    Target of runner/run/experiment.py -- start, exited, stop, collect."""

    def __init__(self, cfg: Config, job_dir: Path, cpus: set[int] | None) -> None:
        self.cfg, self.job_dir, self.cpus = cfg, Path(job_dir), cpus
        self.server: RunningServer | None = None
        self.stopped: tuple[int | None, int | None] = (None, None)  # exit code, requests served

    def start(self) -> None:
        """Start it and wait until it is ready; ServerFailedToStart (after tearing it down) if it never is."""
        self.server = start(self.cfg, self.job_dir, self.cpus)

    @property
    def host(self) -> str:
        return self.server.host if self.server else self.cfg.run.host

    @property
    def port(self) -> int | None:
        return self.server.port if self.server else None

    @property
    def log(self) -> Path:
        return self.job_dir / SERVER_LOG

    def pids(self) -> dict[str, int]:
        """The process tree to sample and watch."""
        return {"server": self.server.proc.pid} if self.server else {}

    def exited(self) -> int | None:
        """Its exit code if it is gone (it crashed: only the runner stops it), else None."""
        return self.server.proc.poll() if self.server else None

    def stop(self) -> None:
        if self.server is not None:
            self.stopped = stop(self.server, self.cfg.server.grace_s)

    def collect(self, result: RunResult) -> None:
        """Its command, port, exit code and count, and what stopping it took (after the outcome's own detail)."""
        if self.server is None:
            return
        result.server.update(command_line=shlex.join(self.server.argv), listen_port=self.server.port)
        result.server["exit_code"], result.server["served"] = self.stopped
        _note_stop(result, self.server, self.cfg.server.grace_s)


def _note_stop(result: RunResult, server: RunningServer, grace: float) -> None:
    """What stopping the server took, in the result and its detail (the run may still be ok): SIGKILL
    after the grace; processes that had left its group (runner/run/escapes.py); someone else on its port."""
    result.server["killed_at_stop"] = server.killed
    notes = []
    if server.killed:
        notes.append(f"the server ignored SIGTERM for server.grace_s={grace:g} s and was killed (SIGKILL)")
    if server.external:
        result.server["escaped"], result.server["strangers"] = server.escaped, server.strangers
        notes.append(escapes.sentence(server.escaped, server.port))
    for other in server.strangers:
        notes.append(
            f"pid {other['pid']} (`{other['command'][:80]}`) still listens on port {server.port}; it does not carry "
            "this run's mark (it cleared its environment, or is not ours): left alone"
        )
    result.detail = "; ".join(filter(None, [result.detail, *notes]))


# -- external servers (server.command) ------------------------------------------------------------

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # nginx lives here, often off a user's PATH


def check_port_free(host: str, port: int) -> None:
    """Raise ServerFailedToStart when something holds `port` (server.port): the probe binds as our
    servers do, with SO_REUSEADDR, so a port left in TIME_WAIT by the previous run still counts as free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError as exc:
            why = exc.strerror
    holders = ", ".join(
        f"pid {d['pid']} (`{d['command'][:60]}`)" for d in map(escapes.describe, escapes.listeners(port))
    )
    raise ServerFailedToStart(
        f"port {port} on {host} (server.port={port}): {why}{f', held by {holders}' if holders else ''}; "
        "nothing was started: free it, pick another, or server.port=0 for a free one"
    )


def fill(text: str, values: dict[str, str]) -> str:
    """Replace each {name} of `values` in `text`; everything else (nginx's braces) stays as it is."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def find_program(name: str) -> str | None:
    """Where an external command's program is: a path, on PATH, or in SBIN; None if nowhere."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def no_program(name: str) -> str:
    """Why `name` cannot run: a file that is there but not executable is not "no such program"."""
    if "/" in name and Path(name).is_file():
        return f"cannot run {name!r}: the file is there but not executable (chmod +x {name})"
    return f"cannot run {name!r}: no such program on PATH" + (f" or in {', '.join(SBIN)}" if SBIN else "")


def external_argv(cfg: Config, values: dict[str, str]) -> list[str]:
    argv = [fill(arg, values) for arg in shlex.split(cfg.server.command)] + option_flags(cfg.server.options)
    found = find_program(argv[0])
    if found is None:
        raise ServerFailedToStart(no_program(argv[0]))
    return [found, *argv[1:]]


def _environment(cfg: Config) -> dict[str, str]:
    """The workload, for a server that wants to know it (servers/reference/asgi.py does)."""
    params = _workload_params(cfg.workload.name, tuple(sorted(cfg.workload.params.items())))
    return {
        **os.environ,
        WORKLOAD_ENV: cfg.workload.name,
        PARAMS_ENV: json.dumps(params),
        KEEPALIVE_ENV: "1" if cfg.server.keepalive else "0",
    }


def _start_external(cfg: Config, job_dir: Path, cpus: set[int] | None) -> RunningServer:
    host = cfg.run.host
    try:
        port = cfg.server.port or procs.free_port(host)
    except OSError as exc:
        raise ServerFailedToStart(str(exc)) from exc
    values = {
        "port": str(port),
        "host": host,
        "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "run_dir": str(Path(job_dir).resolve()),
        "python": sys.executable,
        "backlog": str(cfg.server.backlog),
        "keepalive_s": f"{Limits.keepalive_timeout:g}" if cfg.server.keepalive else "0",
    }
    for name, text in cfg.server.files.items():
        (Path(job_dir) / name).write_text(fill(text, values))
    argv = external_argv(cfg, values)
    log = job_dir / SERVER_LOG
    proc = None
    token, since = escapes.new_token(), time.time()
    try:
        with procs.interrupts_held():
            proc = procs.spawn(argv, log, cpus=cpus, env={**_environment(cfg), escapes.TOKEN_ENV: token})
        why = wait_ready(proc, host, port, cfg.server.ready_timeout_s, probe_request(cfg, values["address"]))
    except BaseException:
        if proc is not None:
            procs.terminate(proc, 1.0)
            escapes.stop(token, since, port, 1.0)
        raise
    if why:
        procs.terminate(proc, 1.0)
        left = escapes.sentence(escapes.stop(token, since, port, 1.0), port)
        raise ServerFailedToStart(f"{why}{'; ' + left if left else ''}; log tail: {procs.tail(log, 600) or '(empty)'}")
    if cpus:
        pin_tree(proc.pid, cpus)  # workers it forked before spawn() pinned the leader
    return RunningServer(proc, argv, host, port, log, external=True, token=token, since=since)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


PROBE_S = 2.0  # how long one readiness probe waits for an answer before it tries again
CLOSE_FIRST_S = 0.5  # how long, after its answer, the server is left to close the probe's connection first


def probe_request(cfg: Config, address: str) -> bytes | None:
    """The readiness probe's bytes: the workload's request (or GET server.ready_probe), asking the server to
    close after it; None for server.ready_probe=tcp (a connect is enough)."""
    probe = cfg.server.ready_probe
    if probe == "tcp":
        return None
    if probe:
        return wire.build_request("GET", probe, address, keep_alive=False)
    return wire.build_request(cfg.workload.method, cfg.workload.path, address, cfg.workload.body.encode(), False)


def wait_ready(proc: subprocess.Popen, host: str, port: int, timeout: float, probe: bytes | None) -> str:
    """Wait until the server answers `probe` on `port` (probe None: accepts a connection) and a process of
    its tree is the one listening there; "" when it does, else why not."""
    deadline = time.monotonic() + timeout
    why_not = f"external server did not listen on port {port} within {timeout:g} s"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return _exited(proc, f"before it answered on port {port}")
        answer = _probe(host, port, probe, deadline)
        if answer is None or answer:  # refused (not listening yet), or not answered: try again
            why_not = answer or why_not
            time.sleep(procs.READY_POLL_S)
            continue
        if _exited_after_probe(proc):
            what = "the readiness probe's request, answered" if probe else "the readiness check's connect and close"
            return _exited(proc, f"just after {what}: a server must expect a client to close its connection")
        if _group_listens(proc.pid, port) is False and (others := _other_listeners(proc.pid, port)):
            return f"port {port} answered, but {others} listens on it, not the server: another program took it"
        return ""
    return why_not


def _probe(host: str, port: int, probe: bytes | None, deadline: float) -> str | None:
    """One try: None when nothing accepts on the port; "" when it answered (any bytes of a response: one
    that is malformed still comes from a server that is up, and the run will say what was wrong); else why
    it did not."""
    try:
        sock = socket.create_connection((host, port), timeout=1.0)
    except OSError:
        return None
    with sock:
        if probe is None:
            return ""
        line = probe.split(b"\r\n", 1)[0].decode("latin-1")
        sock.settimeout(max(0.05, min(PROBE_S, deadline - time.monotonic())))
        reader, answered = wire.Reader(expect_body=not probe.startswith(b"HEAD ")), False
        try:
            sock.sendall(probe)
            while True:
                data = sock.recv(65536)
                if not data:
                    break  # its close: after an answer, as the probe asked; else before one
                answered = True
                if reader.feed(data) is not None:
                    _close_second(sock)
                    break
        except wire.MalformedResponse:
            pass  # it answered: the load will show what is wrong with the answer
        except TimeoutError:
            if not answered:
                return f"port {port} accepted connections, but the server did not answer `{line}` (the readiness probe)"
        except OSError as exc:
            if not answered:
                return f"port {port} accepted the readiness probe's connection, then {exc.strerror or exc}"
    if not answered:
        return f"port {port} accepted connections, but the server closed them without answering `{line}`"
    return ""


def _close_second(sock: socket.socket) -> None:
    """Leave the server a moment to close first, as the probe's `Connection: close` asked: a server that takes
    a client's close for a request (recv() returned b"", parsed anyway) is not killed by the probe."""
    sock.settimeout(CLOSE_FIRST_S)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _exited_after_probe(proc: subprocess.Popen) -> bool:
    """Whether the server died of the probe's close: it is given a moment to."""
    try:
        proc.wait(0.05)
    except subprocess.TimeoutExpired:
        return False
    return True


def _exited(proc: subprocess.Popen, when: str) -> str:
    hint = " (it must stay in the foreground, not daemonize)" if proc.returncode == 0 else ""
    return f"external server exited with status {proc.returncode} {when}{hint}"


def _other_listeners(pid: int, port: int) -> str:
    """Who listens on `port` outside `pid`'s tree, in words ("" when nobody can be seen)."""
    try:
        leader = psutil.Process(pid)
        tree = {pid, *(p.pid for p in leader.children(recursive=True))}
    except psutil.NoSuchProcess:
        tree = {pid}
    others = [escapes.describe(p) for p in escapes.listeners(port) if p.pid not in tree]
    return ", ".join(f"pid {d['pid']} (`{d['command'][:60]}`)" for d in others)


def _group_listens(pid: int, port: int) -> bool | None:
    """Whether a process of `pid`'s tree listens on `port`; None when that cannot be seen."""
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in tree:
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue  # a short-lived child
        except psutil.AccessDenied:
            return None
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections):
            return True
    return False


def pin_tree(pid: int, cpus: set[int]) -> None:
    try:
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            p.cpu_affinity(sorted(cpus))
    except (psutil.Error, OSError):
        pass


# --- checks before anything starts (runner/run/sweep.py runs them over every sweep point) ---------


# What an external server's command and files may contain; runner/run/server.py fills them in.
PLACEHOLDERS = {
    "port": "the free port the runner picked (required)",
    "host": "the address to listen on (run.host)",
    "address": "host:port, [host]:port for IPv6",
    "run_dir": "the run's directory (for config, pid and log files)",
    "python": "the runner's own Python (sys.executable)",
    "backlog": "server.backlog",
    "keepalive_s": "seconds an idle keep-alive connection is kept open; 0 when server.keepalive=false",
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # it names run directories too


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def check(cfg: Config) -> list[str]:
    """The server section's own checks: its workloads, a model's options, an external command."""
    server = cfg.server
    if server.command is not None and not server.command.strip():  # conf/server/external.yaml: "", to be given
        return [
            "server.command: an external server needs a command template with {port}, e.g. "
            "'server.command=\"python -m http.server {port} --bind {host}\"' (to sweep every other server: "
            "server='glob(*,exclude=[external,remote])')"
        ]
    errors = []
    from servers.workload import WORKLOADS

    for name in server.workloads or []:
        if name not in WORKLOADS:
            errors.append(f"server.workloads: unknown workload {name!r}; valid choices: {', '.join(WORKLOADS)}")
    if server.workloads is not None and cfg.workload.name not in server.workloads:
        errors.append(
            f"workload={cfg.workload.name}: server {server.name} can do only {', '.join(server.workloads)} "
            "(server.workloads)"
        )
    if server.target_host is not None:  # a remote target: runner/run/remote.py checks it
        return errors
    if (probe := server.get("ready_probe") if hasattr(server, "get") else server.ready_probe) is not None:
        if probe != "tcp" and not str(probe).startswith("/"):
            errors.append(f"server.ready_probe: {probe!r} is not a path (/health) or tcp (a connect only)")
    errors += _command_on_another_server(cfg)
    if server.command is None:
        ours = own_servers()
        if server.name not in ours:
            errors.append(
                f"server.name: unknown server {server.name!r}; valid choices: {', '.join(ours)} "
                "(or give server.command to run any other)"
            )
        if server.files:
            errors.append("server.files: only an external server (one with server.command) takes files")
        if server.name in ours:
            errors += _check_options(server.name, server.options)
        return errors
    if not LABEL.fullmatch(server.name):
        errors.append(
            f"server.name: {server.name!r} labels the external server in reports and directory names: "
            "use letters, digits, '_', '.' and '-'"
        )
    try:
        shlex.split(server.command)
    except ValueError as exc:
        errors.append(f"server.command: cannot split {server.command!r} into arguments: {exc}")
    else:
        if missing := missing_program(cfg):
            errors.append(f"server.command: {missing}")
    texts = {"server.command": server.command, **{f"server.files.{k}": v for k, v in server.files.items()}}
    for key, text in texts.items():
        unknown = sorted(placeholders(text) - PLACEHOLDERS.keys())
        if unknown:
            errors.append(
                f"{key}: unknown placeholder {', '.join('{' + u + '}' for u in unknown)}; "
                f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
    if not any({"port", "address"} & placeholders(text) for text in texts.values()):
        errors.append(
            f"server.command: {server.command!r} has no {{port}}: the runner picks the port and must tell the "
            "server (in the command or in one of server.files)"
        )
    for filename in server.files:
        if not LABEL.fullmatch(str(filename)):
            errors.append(f"server.files: {filename!r} must be a plain file name (it is written in the run directory)")
    return errors


def _command_on_another_server(cfg: Config) -> list[str]:
    """server.command given to a server option that is not `external`, or an external server named as one of
    ours: the command would run under that name (`-m server=select,external server.command=...` made both
    points the user's server, and `select` was no longer ours). Refused, saying where one's own server goes."""
    hydra = cfg.get("hydra") if hasattr(cfg, "get") else None
    choice = hydra.runtime.choices.get("server") if hydra is not None else None
    given = any(o.lstrip("+~").startswith("server.command=") for o in (hydra.overrides.task if hydra else []))
    yours = ("give your server a name of its own: server=external server.name=mine 'server.command=\"...\"', or a "
             "file server/mine.yaml in a config directory of yours (python -m runner -cd DIR -m server=select,mine)")
    if given and choice not in (None, "external"):
        return [f"server.command: the command line gives server={choice} a command, which would run under that "
                f"name; {yours}"]  # fmt: skip
    if cfg.server.command is not None and cfg.server.name in own_servers():
        return [f"server.name: {cfg.server.name!r} is this project's servers/{cfg.server.name}.py; {yours}"]
    return []


def missing_program(cfg: Config) -> str | None:
    """Why an external server's program cannot run on this machine (not installed: nginx without Debian's
    package), else None. A program the run writes first (`{run_dir}/x`, from server.files) is not looked for."""
    if not cfg.server.command or cfg.server.target_host is not None:
        return None
    try:
        program = shlex.split(cfg.server.command)[0].replace("{python}", sys.executable)
    except ValueError:
        return None
    return None if placeholders(program) or find_program(program) else no_program(program)


def _check_options(name: str, options: dict[str, Any]) -> list[str]:
    """A model's server.options, parsed by the model's own command line (servers/base.py
    make_parser): an unknown option or a bad value is refused in its words, before anything starts."""
    import importlib

    from servers import base

    parser = base.make_parser(name, getattr(importlib.import_module(f"servers.{name}"), "options", None))

    def refuse(message: str) -> typing.NoReturn:
        raise ValueError(message)

    parser.error = refuse  # type: ignore[method-assign]  # argparse would print and exit
    try:
        parser.parse_args(option_flags(options))
    except ValueError as exc:
        ours = {"host", "port", "workload", "workload_param", "keepalive", "backlog", "grace", "help"}
        takes = sorted(a.dest for a in parser._actions if a.dest not in ours)  # set by the runner, not options
        return [f"server.options: servers.{name} says {exc}; it takes {', '.join(takes)}"]
    return []
