"""A Locust plugin (loaded beside locustfile.py: `-f locustfile.py,workers.py`) that makes
the master keep a ledger of its workers: who joined, from which host and pid, how many requests
each one made, and whether it was still alive at the end. The runner reads it
(`locust_workers.json`) to record each worker's share and to tell "2 of 3 workers joined" or "a
worker went missing" from a clean run.

Why the master's side: a worker on another machine leaves no file in the run directory, but every
worker sends the master a stats report every few seconds (`worker_report`) and a final one before
it quits, each with the requests made since the previous report, so their sum is the worker's
exact total (up to its last report, if it died). The worker adds its host and pid to each report
(`report_to_master`), which lets the runner match a report to a local worker process.

Written atomically on every join (so a master that gave up waiting still leaves the count) and
when the master quits.

On a worker it does two more things, so that a worker started by hand on another machine needs no
options but the master's address: it applies the master's locustfile options (path, think time,
timeouts) when the run starts, and it skips the phase file when the master's run directory does
not exist on this machine.

This file must not import runner.locustfile: Locust loads that file as its own module, and a
second import would register every listener twice.
"""

from __future__ import annotations

import json
import os
import socket
import time

from locust import events

from runner.result import write_atomic

_ledger: dict[str, dict] = {}
_master: list = []  # [(environment, ledger path)] on the master; empty on workers


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--workers-ledger", default="", help="master: write the workers' ledger to this path")


@events.init.add_listener
def _init(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is not None and getattr(options, "master", False) and options.workers_ledger:
        _master.append((environment, options.workers_ledger))


def _write() -> None:
    if not _master:
        return
    environment, path = _master[0]
    runner = environment.runner
    clients = getattr(runner, "clients", None)
    for worker_id, entry in _ledger.items():
        node = clients.get(worker_id) if clients is not None else None
        if node is not None and node.state == "missing":
            entry["state"] = "missing"
    data = {"written": time.time(), "workers": _ledger}
    write_atomic(path, lambda f: json.dump(data, f, indent=1), sync=False)


@events.worker_connect.add_listener
def _joined(client_id, **_kwargs) -> None:
    _ledger.setdefault(client_id, {"joined": time.time(), "requests": 0, "failures": 0, "state": "joined"})
    _write()


@events.test_start.add_listener
def _reconfigure(environment, **_kwargs) -> None:
    """On a worker: apply the locustfile's options again, now with the master's values. A worker
    applies them at start-up (locustfile.py's `init` listener) from its own command line, and
    receives the master's (path, think time, timeouts, warmup) only with the first spawn, just
    before this event; so a worker started by hand with no options runs exactly what the master
    was configured with."""
    options = environment.parsed_options
    if options is None or not getattr(options, "worker", False):
        return
    for handler in list(environment.events.init._handlers):
        if getattr(handler, "__name__", "") == "_configure":  # locustfile.py's
            handler(environment=environment)


@events.report_to_master.add_listener
def _identify(client_id, data, **_kwargs) -> None:
    data["stressbench_worker"] = {"host": socket.gethostname(), "pid": os.getpid()}


@events.worker_report.add_listener
def _counted(client_id, data, **_kwargs) -> None:
    entry = _ledger.setdefault(client_id, {"joined": None, "requests": 0, "failures": 0, "state": "joined"})
    total = data.get("stats_total") or {}
    entry["requests"] += int(total.get("num_requests", 0))
    entry["failures"] += int(total.get("num_failures", 0))
    entry["last_report"] = time.time()
    entry.update(data.get("stressbench_worker") or {})


@events.quitting.add_listener
def _quitting(environment, **_kwargs) -> None:
    _write()
    # A worker gets the master's --phases-prefix with the master's options. On another machine its
    # directory may not exist (no shared file system): then the worker writes no phase file (the
    # master's ledger counts its requests) instead of a traceback. Quitting listeners run in reverse
    # order of registration, and this file is loaded after locustfile.py, so this runs first.
    options = environment.parsed_options
    prefix = getattr(options, "phases_prefix", "")
    if prefix and not os.path.isdir(os.path.dirname(prefix)):
        options.phases_prefix = ""
