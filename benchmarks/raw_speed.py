"""Raw speed: what each server takes when the load generator is not the limit, beside uvicorn and nginx.

Locust costs more per request than most of our servers do (see generator_ceiling.py), so this
drives them with wrk instead: every project server (each conf/server/*.yaml without a command, so a
new model joins by its file alone), uvicorn (1 worker, uvloop + httptools) and nginx (1 worker), each
started exactly as the runner starts it (runner/run/server.py), hello workload, each config's own
keep-alive setting (on for all but `single`, which serves one connection at a time). The server
runs on one core and wrk on another (`wrk -t1 -c100 -d5s --latency`); rounds interleave (every server
once, then again, in a rotated order) so that a shared machine's drift spreads over all of them.

A variant row runs a server with server.options set: `epoll+memo` is epoll with `--parse-memo`
(servers/http.py: replaying the parse of byte-identical requests, which wrk sends; off by default),
beside plain epoll, which parses every request.

Second table: memory of the event-loop servers (`epoll`, `asyncio`, and the references) holding N idle
keep-alive connections that this script opened and used for one request each, and whether a new
client is still answered while they are held. For those runs the server's connection cap and idle
timeout are raised (server.options; printed under the table), since the defaults (1,000 and 5 s)
exist to shed exactly this.

`--compare DIR` runs every named project server twice a round, from this tree and from the source
tree DIR (say a `git worktree add /tmp/old e6488eb` of an older commit: its servers/ is what runs
as `NAME@old`), interleaved like the rest, and adds a table of new/old per model: the median over
rounds of the ratio within a round, beside each side's median, for req/s and for the server's CPU
time per request (steadier when the machine is shared: below 1 is cheaper). A change that makes a model slower
shows there; the rest of the machine's drift cancels out.

A performance claim, so it lives here and not in a timed test. Whatever is not installed (wrk,
uvicorn, nginx, a server) is skipped with the reason; every process is started in its own process
group and torn down in a `finally`.

    python benchmarks/raw_speed.py [--servers select,uvicorn] [--rounds 3] [--duration 5]
                                   [--connections 100] [--idle 5000] [--idle-servers epoll,asyncio,...]
                                   [--compare OLD_TREE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from runner.config import CONF_DIR, available_choices, own_servers  # noqa: E402
from runner.run import procs  # noqa: E402
from runner.run import server as server_mod  # noqa: E402
from runner.run.provenance import collect  # noqa: E402
from runner.run.sweep import check  # noqa: E402
from servers.base import raise_nofile_limit  # noqa: E402

HOST = "127.0.0.1"
REFERENCES = ("uvicorn", "nginx")
IDLE_SERVERS = ("epoll", "asyncio", *REFERENCES)
# idle connections must outlive the measurement: raise what sheds them (ours: servers/http.py Limits)
IDLE_TIMEOUT_S = 120
EXTERNAL_IDLE_OPTIONS = {"uvicorn": {"timeout_keep_alive": IDLE_TIMEOUT_S}, "nginx": {}}
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# name -> (server config, server.options, row label): a server run with options, in its own row
VARIANTS = {"epoll+memo": ("epoll", {"parse_memo": True}, "epoll (parse memo)")}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
OLD = "@old"  # the suffix of a server run from the --compare tree


# -- servers ---------------------------------------------------------------------------------------


def config_of(name: str) -> tuple[str, dict | None]:
    """The server config and server.options behind a name of --servers (a config or a variant)."""
    name = name.removesuffix(OLD)
    return VARIANTS[name][:2] if name in VARIANTS else (name, None)


@contextlib.contextmanager
def source_tree(tree: Path | None) -> Iterator[None]:
    """Servers started inside this block run from `tree`'s servers/ package (None: this tree's).
    The runner starts `python -m servers.NAME` with our working directory and environment, and -m puts
    the working directory first on sys.path, so both move to `tree` for the start and come back."""
    if tree is None:
        yield
        return
    cwd, pythonpath = os.getcwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        os.chdir(cwd)
        if pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = pythonpath


def compose(name: str, options: dict | None = None):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"server={name}", "workload=hello"]
    overrides += [f"++server.options.{key}={value}" for key, value in (options or {}).items()]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


class Started:
    """A server started as the runner starts it; stopped (its whole group) on leaving the block."""

    def __init__(
        self, name: str, directory: Path, cpu: int | None, options: dict | None = None, tree: Path | None = None
    ) -> None:
        self.cfg = compose(name, options)
        self.directory, self.cpu, self.tree = directory, cpu, tree
        self.server: server_mod.RunningServer | None = None

    def __enter__(self) -> server_mod.RunningServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        with source_tree(self.tree):
            self.server = server_mod.start(self.cfg, self.directory, {self.cpu} if self.cpu is not None else None)
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            server_mod.stop(self.server, self.cfg.server.grace_s)


def tree(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of the server and its children, reaped ones included."""
    total = 0.0
    for i, proc in enumerate(tree(pid)):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0)
    return total


def tree_memory_mb(pid: int) -> tuple[float, float | None]:
    """(RSS, PSS) of the whole process tree in MB; PSS None where /proc does not have it."""
    rss, pss, pss_known = 0, 0, True
    for proc in tree(pid):
        try:
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        try:
            with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                pss += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pss_known = False
    return rss / 2**20, pss / 2**20 if pss_known else None


# -- wrk -------------------------------------------------------------------------------------------


def parse_wrk(text: str) -> dict:
    """wrk's summary -> requests/s, p99 (ms), requests, errors (socket errors + non-2xx/3xx)."""
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    total = re.search(r"(\d+) requests in", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not rps or not total:
        raise ValueError(f"no summary in wrk's output: {text[-300:]!r}")
    return {
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else None,
        "requests": int(total.group(1)),
        "errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_wrk(port: int, args: argparse.Namespace, seconds: int, cpu: int | None, log: Path) -> dict:
    """One wrk run; its numbers plus wrk's own CPU use (from the rusage of reaped children: the servers
    are still running, so wrk is the only child reaped in between)."""
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--latency", "--timeout", "2s"]
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    proc = procs.spawn([*argv, f"http://{HOST}:{port}/"], log, cpus={cpu} if cpu is not None else None)
    try:
        proc.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {seconds + 30} s") from None
    finally:
        procs.terminate(proc, 1.0)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - started
    result = parse_wrk(log.read_text(errors="replace"))
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {**result, "wrk_cpu_pct": 100 * cpu_s / wall}


def speed(names: list[str], args: argparse.Namespace, cpus: tuple, out: Path) -> tuple[dict, dict]:
    """Interleaved rounds; returns ({server: [per-round results]}, {server: why it was skipped})."""
    results: dict[str, list[dict]] = {name: [] for name in names}
    skipped: dict[str, str] = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            # --compare: every other round the old tree takes the new one's turn (ABBA), so that a
            # load rising or falling over the run favours neither
            order = [_other_tree(name, names) for name in order]
        for name in order:
            if name in skipped:
                continue
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr)
            directory = out / f"r{r}_{name}"
            try:
                config, options = config_of(name)
                tree = args.compare if name.endswith(OLD) else None
                with Started(config, directory, cpus[0], options, tree) as server:
                    if args.warmup > 0:
                        run_wrk(server.port, args, args.warmup, cpus[1], directory / "wrk-warmup.log")
                    cpu_before, wall_before = tree_cpu_s(server.proc.pid), time.monotonic()
                    result = run_wrk(server.port, args, args.duration, cpus[1], directory / "wrk.log")
                    wall = time.monotonic() - wall_before
                    result["server_cpu_pct"] = 100 * (tree_cpu_s(server.proc.pid) - cpu_before) / wall
                    result["round"] = r
                    results[name].append(result)
            except server_mod.ServerFailedToStart as exc:
                skipped[name] = f"did not start: {str(exc)[:200]}"
            except (RuntimeError, ValueError) as exc:
                skipped[name] = f"wrk failed: {exc}"
    return results, skipped


def _other_tree(name: str, names: list[str]) -> str:
    """NAME <-> NAME@old, where both are run (--compare); any other name as it is."""
    other = name.removesuffix(OLD) if name.endswith(OLD) else name + OLD
    return other if other in names else name


def _range(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}" if len(values) > 1 else ""


def _rps(result: dict) -> float:
    return result["rps"]


def _cpu_per_request(result: dict) -> float:
    """The server's CPU time per request: steadier than req/s on a shared machine, where a server
    often waits for its core (server CPU % well under 100) and req/s then measures the neighbours."""
    return result["server_cpu_pct"] / max(result["rps"], 1e-9)


def _ratios(rounds: list[dict], reference: list[dict], measure=_rps) -> list[float]:
    theirs = {r["round"]: measure(r) for r in reference}
    return [measure(r) / theirs[r["round"]] for r in rounds if theirs.get(r["round"])]


def _ratio(rounds: list[dict], reference: list[dict], fmt: str = "{:.2f}", measure=_rps) -> str:
    """Median over rounds of this server's req/s (or another `measure`) over the reference's in the
    same round: the two ran seconds apart, so a shared machine's slow drift cancels out."""
    ratios = _ratios(rounds, reference, measure)
    return fmt.format(statistics.median(ratios)) if ratios else "—"


def compare_table(results: dict) -> str:
    """Per model run from both trees: each side's median req/s and new/old (see _ratio)."""
    rows = []
    for old, rounds in results.items():
        new = old.removesuffix(OLD)
        if not old.endswith(OLD) or not rounds or not results.get(new):
            continue
        rows.append(
            {
                "server": new,
                "old req/s (median)": f"{statistics.median(r['rps'] for r in rounds):,.0f}",
                "new req/s (median)": f"{statistics.median(r['rps'] for r in results[new]):,.0f}",
                "new/old (median of rounds)": _ratio(results[new], rounds, "{:.3f}"),
                "new/old (min–max)": _range(_ratios(results[new], rounds), "{:.3f}"),
                "CPU us/req new/old": _ratio(results[new], rounds, "{:.3f}", _cpu_per_request),
                "rounds": len(_ratios(results[new], rounds)),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(nothing to compare)"


def speed_table(results: dict, keepalive: dict) -> str:
    medians = {name: statistics.median(r["rps"] for r in rounds) for name, rounds in results.items() if rounds}
    rows = []
    for name, rounds in sorted(results.items(), key=lambda item: -medians.get(item[0], -1)):
        if not rounds:
            continue
        rps = [r["rps"] for r in rounds]
        p99 = [r["p99_ms"] for r in rounds if r["p99_ms"] is not None]
        base_name = name.removesuffix(OLD)
        label = VARIANTS[base_name][2] if base_name in VARIANTS else base_name
        row = {
            "server": label
            + (" (reference)" if name in REFERENCES else "")
            + (" (old tree)" if name != base_name else ""),
            "keep-alive": "yes" if keepalive[name] else "no",
            "req/s (median)": f"{medians[name]:,.0f}",
            "req/s (min–max)": _range(rps, "{:,.0f}"),
            "p99 ms": f"{statistics.median(p99):.2f}" if p99 else "—",
            "server CPU %": f"{statistics.median(r['server_cpu_pct'] for r in rounds):.0f}",
            "wrk CPU %": f"{statistics.median(r['wrk_cpu_pct'] for r in rounds):.0f}",
            "errors": sum(r["errors"] + r["non2xx"] for r in rounds),
        }
        for ref in REFERENCES:
            row[f"x {ref}"] = _ratio(rounds, results.get(ref) or [])
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(no server ran)"


# -- idle connections ------------------------------------------------------------------------------


def _complete(buffer: bytes) -> bool | None:
    """True: a whole 200 response; False: a whole other one; None: not yet."""
    head, sep, body = buffer.partition(b"\r\n\r\n")
    if not sep:
        return None
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if length and len(body) < int(length.group(1)):
        return None
    return head.startswith(b"HTTP/1.1 200")


def open_idle(port: int, n: int, batch: int = 500, timeout: float = 30.0) -> tuple[list[socket.socket], int]:
    """`n` connections that have each had one request answered and stay open (keep-alive), opened
    `batch` at a time (well under the listen backlog); returns (the open sockets, how many failed)."""
    held: list[socket.socket] = []
    failed = 0
    for start in range(0, n, batch):
        with selectors.DefaultSelector() as sel:
            for _ in range(min(batch, n - start)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex((HOST, port))
                sel.register(sock, selectors.EVENT_WRITE, b"")
            deadline = time.monotonic() + timeout
            while sel.get_map() and time.monotonic() < deadline:
                for key, events in sel.select(timeout=0.5):
                    sock = key.fileobj
                    try:
                        if events & selectors.EVENT_WRITE:
                            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                                raise OSError("connect failed")
                            sock.send(REQUEST)
                            sel.modify(sock, selectors.EVENT_READ, b"")
                            continue
                        data = sock.recv(65536)
                        if not data:
                            raise OSError("closed")
                        done = _complete(key.data + data)
                        if done is None:
                            sel.modify(sock, selectors.EVENT_READ, key.data + data)
                            continue
                        sel.unregister(sock)
                        if not done:
                            raise OSError("not 200")
                        held.append(sock)
                    except BlockingIOError:
                        continue
                    except OSError:
                        if key.fd in sel.get_map():
                            sel.unregister(sock)
                        sock.close()
                        failed += 1
            for key in list(sel.get_map().values()):  # no answer in time
                sel.unregister(key.fileobj)
                key.fileobj.close()
                failed += 1
    return held, failed


def still_open(socks: list[socket.socket]) -> int:
    """How many of `socks` the server has not closed (a closed one reads as EOF or an error)."""
    closed = 0
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        for key, _ in sel.select(timeout=0):
            try:
                closed += key.fileobj.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
    return len(socks) - closed


def answers(port: int, timeout: float = 5.0) -> str:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            started = time.monotonic()
            sock.sendall(REQUEST)
            buffer = b""
            while (done := _complete(buffer)) is None:
                chunk = sock.recv(65536)
                if not chunk:
                    return "no (closed)"
                buffer += chunk
            return f"yes ({(time.monotonic() - started) * 1000:.1f} ms)" if done else "no (not 200)"
    except OSError as exc:
        return f"no ({exc.__class__.__name__})"


def idle(names: list[str], n: int, cpus: tuple, out: Path) -> tuple[str, list[str]]:
    rows, notes = [], []
    ours = set(own_servers())
    for name in names:
        if name not in available_choices("server"):
            notes.append(f"{name}: no such server here (conf/server/{name}.yaml), skipped")
            continue
        options = {"max_connections": n + 1000, "keepalive_timeout": IDLE_TIMEOUT_S} if name in ours else {}
        options = EXTERNAL_IDLE_OPTIONS.get(name, options)
        print(f"idle: {name} with {n} connections", file=sys.stderr)
        held: list[socket.socket] = []
        try:
            with Started(name, out / f"idle_{name}", cpus[0], options) as server:
                if answers(server.port).startswith("no"):
                    notes.append(f"{name}: did not answer a first request, skipped")
                    continue
                before = tree_memory_mb(server.proc.pid)
                held, failed = open_idle(server.port, n)
                time.sleep(0.5)  # let the server settle what it allocated for them
                during = tree_memory_mb(server.proc.pid)
                new = answers(server.port)
                open_now = still_open(held)
                rows.append(
                    {
                        "server": name + (" (reference)" if name in REFERENCES else ""),
                        "idle connections held": f"{open_now:,} of {n:,}" + (f" ({failed} failed)" if failed else ""),
                        "RSS MB before": f"{before[0]:.1f}",
                        "RSS MB held": f"{during[0]:.1f}",
                        "PSS MB held": f"{during[1]:.1f}" if during[1] else "—",
                        "KB per connection": f"{(during[0] - before[0]) * 1024 / max(open_now, 1):.1f}",
                        "answers a new client": new,
                    }
                )
                if options:
                    notes.append(f"{name}: server.options {options}")
        except server_mod.ServerFailedToStart as exc:
            notes.append(f"{name}: did not start: {str(exc)[:200]}")
        finally:
            for sock in held:
                sock.close()
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "(no server ran)"
    return table, notes


# -- report ----------------------------------------------------------------------------------------


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else None


def machine(cpus: tuple) -> str:
    p = collect()
    nginx = shutil.which("nginx") or shutil.which("nginx", path=os.pathsep.join(server_mod.SBIN))
    wrk, nginx_version = _version(["wrk", "-v"]), _version([nginx, "-v"]) if nginx else None
    versions = {  # "wrk debian/4.1.0-3+b2 [epoll] ...", "nginx version: nginx/1.22.1"
        "wrk": wrk.split()[1] if wrk and len(wrk.split()) > 1 else None,
        "nginx": nginx_version.rsplit("/", 1)[-1] if nginx_version else None,
    }
    for package in ("uvicorn", "uvloop", "httptools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    where = f"server on CPU {cpus[0]}, wrk on CPU {cpus[1]}" if cpus[0] is not None else "not pinned (one core)"
    installed = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "none"
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {p['cpu_model']}, {p['cores']} cores, "
        f"Linux {p['kernel']}, Python {p['python']}; git {p['git_commit']}{' (dirty)' if p['git_dirty'] else ''}; "
        f"{where}; {installed}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = f"every project server, {', '.join(VARIANTS)}, uvicorn, nginx"
    parser.add_argument("--servers", help=f"comma list (default: {default})")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per round (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measured run (default 1)")
    parser.add_argument("--connections", type=int, default=100, help="wrk -c (default 100)")
    parser.add_argument("--idle", type=int, default=5000, help="idle keep-alive connections (0: no idle table)")
    parser.add_argument("--idle-servers", default=",".join(IDLE_SERVERS), help=f"default: {','.join(IDLE_SERVERS)}")
    parser.add_argument("--out", type=Path, help="where server and wrk logs go (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    parser.add_argument(
        "--compare", type=Path, metavar="TREE", help="also run each project server from TREE's servers/ (NAME@old)"
    )
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="raw-speed-"))).resolve()  # absolute: --compare moves the cwd
    names = args.servers.split(",") if args.servers else [*own_servers(), *VARIANTS, *REFERENCES]
    if args.compare is not None:
        args.compare = args.compare.resolve()
        if not (args.compare / "servers" / "base.py").is_file():
            parser.error(f"--compare {args.compare}: no servers/base.py there")
        ours = set(own_servers())
        names = [n for name in names for n in ((name, name + OLD) if config_of(name)[0] in ours else (name,))]
    valid = [*available_choices("server"), *VARIANTS]
    unknown = [n for n in names if n.removesuffix(OLD) not in valid]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    refused = [f"{n}: {e}" for n in names for e in check(compose(*config_of(n)))]  # e.g. external without a command
    if refused:
        parser.error("; ".join(refused))
    available = sorted(os.sched_getaffinity(0))
    cpus = (available[0], available[1]) if len(available) >= 2 else (None, None)
    if cpus[1] is not None:
        os.sched_setaffinity(0, {cpus[1]})  # this script's own work (the idle client) stays off the server's core
    limit = raise_nofile_limit()
    print(f"Machine: {machine(cpus)}\n")
    if shutil.which("wrk") is None:
        print("## Requests/s\n\nskipped: wrk is not installed (Debian: apt-get install wrk)\n")
    else:
        results, skipped = speed(names, args, cpus, out)
        keepalive = {name: bool(compose(*config_of(name)).server.keepalive) for name in names}
        print(f"## Requests/s (wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, hello)\n")
        print(speed_table(results, keepalive))
        for name, why in skipped.items():
            print(f"- {name}: skipped, {why}")
        if args.compare is not None:
            print(f"\n## This tree against {args.compare} (new/old, req/s)\n")
            print(compare_table(results))
        print(
            "\nx uvicorn, x nginx: the median over rounds of the ratio within a round. Server CPU % (100 = its one "
            "core) well under 100 means the server waited or did not have its core to itself (a shared machine); "
            "wrk CPU % near 100: wrk, not the server, was the limit. Errors: wrk's socket errors and non-2xx "
            "answers, all rounds.\n"
        )
        if args.json:
            data = {"machine": machine(cpus), "rounds": results, "skipped": skipped}
            args.json.write_text(json.dumps(data, indent=2))
    if args.idle > 0:
        n = min(args.idle, limit - 200)
        table, notes = idle(args.idle_servers.split(","), n, cpus, out)
        print(f"## Memory with {n:,} idle keep-alive connections (each used for one request)\n")
        print(table)
        for note in notes:
            print(f"- {note}")
    print(f"\nlogs: {out}")


if __name__ == "__main__":
    main()
