"""The Locust users the runner points Locust at, and an exact record of each phase of the run.

Users: every user requests one path in a closed loop. `fast` (FastHttpUser, geventhttpclient) is
the default because it costs the generator a fraction of HttpUser's CPU per request, so more of
the measurement is the server's. Both keep their connection alive; a server that closes after each
response makes them reconnect. A timeout shorter than the run matters: without one, a hung server
records 0 requests and 0 failures.

Phases: Locust's totals include the ramp-up, and `--reset-stats` would throw the ramp away and with
it the total we check against the server's own count. So every request is also logged into one
locust StatsEntry per phase -- `ramp` (users still starting), `warmup` (load.warmup seconds after
the last user started), `steady` (what the report ranks), `stopping` (after the run time, while
users wind down). Entries are additive (counts, sums, histograms), so the runner gets exact
steady-state numbers and exact totals by summing them, across `--processes` workers too. Each
process writes `<prefix>_<pid>.json` when it quits. Cost: one small function call per request.
"""

from __future__ import annotations

import json
import os
import time

import gevent
from locust import FastHttpUser, HttpUser, between, events, task
from locust.stats import RequestStats, StatsEntry

PHASES = ("ramp", "warmup", "steady", "stopping")


class _Phases:
    def __init__(self) -> None:
        self.stats = RequestStats()
        self.entries = {p: StatsEntry(self.stats, p, "ALL") for p in PHASES}
        self.started = {p: None for p in PHASES}
        self.current = "ramp"
        self.warmup = 0.0
        self.started["ramp"] = time.time()

    def enter(self, phase: str) -> None:
        if PHASES.index(phase) > PHASES.index(self.current):
            self.current = phase
            self.started[phase] = time.time()
            self.entries[phase].reset()  # its start_time is now

    def dump(self, path: str) -> None:
        data = {"pid": os.getpid(), "started": self.started, "ended": time.time()}
        data["phases"] = {p: self.entries[p].serialize() for p in PHASES}
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, default=list)
        os.replace(tmp, path)


_phases = _Phases()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--path", default="/", help="URL path every user requests")
    parser.add_argument("--wait-min", type=float, default=0.0, help="think time lower bound, s")
    parser.add_argument("--wait-max", type=float, default=0.0, help="think time upper bound, s")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="per-request timeout, s")
    parser.add_argument("--warmup", type=float, default=0.0, help="s after spawning before the steady window")
    parser.add_argument("--phases-prefix", default="", help="write per-phase stats to <prefix>_<pid>.json")


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:
        return
    for user in (fast, http):
        user.wait_time = between(options.wait_min, options.wait_max)
        user.path = options.path
        user.timeout = options.request_timeout
    fast.network_timeout = fast.connection_timeout = options.request_timeout
    _phases.warmup = options.warmup


@events.request.add_listener
def _record(response_time, response_length, exception, **_kwargs) -> None:
    entry = _phases.entries[_phases.current]
    entry.log(response_time, response_length or 0)
    if exception is not None:
        entry.log_error(exception)


@events.spawning_complete.add_listener
def _spawned(user_count, **_kwargs) -> None:
    _phases.enter("warmup")
    if _phases.warmup > 0:
        gevent.spawn_later(_phases.warmup, _phases.enter, "steady")
    else:
        _phases.enter("steady")


@events.test_stopping.add_listener
def _stopping(**_kwargs) -> None:
    _phases.enter("stopping")


@events.quitting.add_listener
def _quitting(environment, **_kwargs) -> None:
    prefix = getattr(environment.parsed_options, "phases_prefix", "")
    if prefix and any(e.num_requests for e in _phases.entries.values()):
        _phases.dump(f"{prefix}_{os.getpid()}.json")


class fast(FastHttpUser):  # noqa: N801 -- the class name is the config value (load.user_class)
    path = "/"
    timeout = 5.0
    wait_time = between(0, 0)

    @task
    def get(self) -> None:
        self.client.get(self.path)


class http(HttpUser):  # noqa: N801
    path = "/"
    timeout = 5.0
    wait_time = between(0, 0)

    @task
    def get(self) -> None:
        self.client.get(self.path, timeout=self.timeout)
