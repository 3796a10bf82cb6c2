"""The one crossing between the run's config and a Locust process's command line, both ways.

Strategy: `Told` is what a Locust process is told, as typed values: Locust's own options (users, spawn
rate, run time, stop timeout, the user class) and the locustfile's (the workload's request, think time,
timeout, warm-up, an open model, a capacity plan). Durations are seconds, a capacity plan is a
CapacityConfig, and None is "off" on both sides. The runner makes one per run from the config (`told`:
where the run parses load.run_time -- runner/config.py only checks that it parses -- and where a capacity
run's run time becomes the search's schedule) and writes it as argv (`locust_args`, `locustfile_args`,
`capacity_args`); a Locust process declares the same options (`add_arguments`) and reads them back into
a Told (`read`; a plan's JSON is parsed by `read_plan` alone). Nothing else encodes or decodes them.
An open model's rate crosses whole, with how many Locust processes share it (`rate_shares`); `share` is
the one division of a rate among processes. Imports neither Locust nor gevent: the orchestrator
(runner/run/load.py) imports it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from runner.capacity import STEPS_FILE, plan_from, plan_json, schedule_s
from runner.schema import ARRIVALS, CapacityConfig, LoadConfig, WorkloadConfig, parse_duration, spawn_s


@dataclass(frozen=True)
class Told:
    """What a Locust process is told (the defaults: what a remote worker holds until its master's options arrive,
    runner/locust/workers.py)."""

    users: int | None = LoadConfig.users  # Locust's --users: the users, or an open model's connection pool
    spawn_rate: float | None = LoadConfig.spawn_rate
    run_time_s: float | None = None  # Locust's --run-time; None: until stopped (a worker's: its master's)
    stop_timeout_s: float = LoadConfig.stop_timeout_s
    user_class: str = LoadConfig.user_class.value
    path: str = WorkloadConfig.path
    method: str = WorkloadConfig.method
    body: str = WorkloadConfig.body
    wait_min_s: float = LoadConfig.wait_min_s
    wait_max_s: float = LoadConfig.wait_max_s
    request_timeout_s: float = LoadConfig.request_timeout_s
    warmup_s: float = LoadConfig.warmup_s
    phases_prefix: str = ""  # "": no per-phase file
    arrival_rate: float | None = None  # the open model's whole rate, requests/s; None: the closed loop
    arrival: str = LoadConfig.arrival
    rate_shares: int = 1  # how many Locust processes share an open model's rate
    capacity: CapacityConfig | None = None  # a capacity search's plan; None: fixed users for the run time
    capacity_file: str = STEPS_FILE  # where the search writes its steps

    @property
    def open_model(self) -> bool:
        """Requests at a rate (an arrival rate, or a capacity search by rate), not a closed loop."""
        return self.arrival_rate is not None or (self.capacity is not None and self.capacity.by == "rate")

    def process_rate(self) -> float | None:
        """This process's share of the open model's (first) rate: load.arrival_rate, or a rate search's start
        rate (the search then sets it step by step); None: the closed loop."""
        if self.arrival_rate is not None:
            return share(self.arrival_rate, self.rate_shares)
        return share(self.capacity.start_rate, self.rate_shares) if self.open_model else None

    def ramp_s(self) -> float:
        """When Locust has started the last of its users (runner/schema.py spawn_s)."""
        return spawn_s(self.users or 0, self.spawn_rate or 1.0)


def share(rate: float, processes: int) -> float:
    """Each Locust process's part of `rate` requests/s kept by `processes` of them (each on its own users)."""
    return rate / max(processes, 1)


# --- the runner's side: config -> Told -> argv ------------------------------------------------------


def told(load: Any, workload: Any, rate_shares: int, phases_prefix: str, capacity_file: str) -> Told:
    """What every Locust process of a run is told, from the config's load and workload (DictConfig or schema
    dataclasses): the one place load.run_time is parsed (a capacity search runs for its whole schedule instead,
    which the search normally ends sooner)."""
    plan = plan_from(load.capacity) if load.capacity.enabled else None
    run_time = schedule_s(plan, load.request_timeout_s) if plan else parse_duration(load.run_time)
    user_class = load.user_class.value if isinstance(load.user_class, Enum) else str(load.user_class)
    return Told(
        users=int(load.users), spawn_rate=float(load.spawn_rate), run_time_s=float(run_time),
        stop_timeout_s=float(load.stop_timeout_s), user_class=user_class,
        path=workload.path, method=workload.method, body=workload.body,
        wait_min_s=float(load.wait_min_s), wait_max_s=float(load.wait_max_s),
        request_timeout_s=float(load.request_timeout_s), warmup_s=float(load.warmup_s), phases_prefix=phases_prefix,
        arrival_rate=None if load.arrival_rate is None else float(load.arrival_rate), arrival=load.arrival,
        rate_shares=int(rate_shares), capacity=plan, capacity_file=capacity_file if plan else STEPS_FILE,
    )  # fmt: skip


def locust_args(told: Told) -> list[str]:
    """Locust's own options (the user class goes last on the command line: `user_class`)."""
    return [
        "--users", str(told.users),
        "--spawn-rate", str(told.spawn_rate),
        "--run-time", f"{told.run_time_s:g}s",
        "--stop-timeout", f"{told.stop_timeout_s:g}",
    ]  # fmt: skip


def locustfile_args(told: Told) -> list[str]:
    """The options runner/locust/locustfile.py adds (add_arguments), but for a capacity search's: those of every
    Locust process, the workers of a distributed run included."""
    return [
        "--path", told.path,
        "--method", told.method,
        "--body", told.body,
        "--wait-min", f"{told.wait_min_s:g}",
        "--wait-max", f"{told.wait_max_s:g}",
        "--request-timeout", f"{told.request_timeout_s:g}",
        "--warmup", f"{told.warmup_s:g}",
        "--phases-prefix", told.phases_prefix,
        *(_open_args(told) if told.arrival_rate is not None else []),
    ]  # fmt: skip


def capacity_args(told: Told) -> list[str]:
    """A capacity search's options, for the process that runs the search (its workers get them from it); by rate,
    the engine is an open model from the start (at its share of the plan's start_rate: Told.process_rate)."""
    if told.capacity is None:
        return []
    args = ["--capacity", plan_json(told.capacity), "--capacity-file", told.capacity_file]
    return args + (_open_args(told) if told.open_model else [])


def _open_args(told: Told) -> list[str]:
    rate = [] if told.arrival_rate is None else ["--arrival-rate", repr(told.arrival_rate)]
    return [*rate, "--arrival", told.arrival, "--rate-shares", str(told.rate_shares)]


# --- Locust's side: argv -> Told --------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """The locustfile's options on Locust's parser (locustfile.py's init_command_line_parser listener)."""
    d = Told()
    parser.add_argument("--path", default=d.path, help="URL path every user requests")
    parser.add_argument("--method", default=d.method, help="the request's method")
    parser.add_argument("--body", default=d.body, help="the request's body")
    parser.add_argument("--wait-min", type=float, default=d.wait_min_s, help="think time lower bound, s")
    parser.add_argument("--wait-max", type=float, default=d.wait_max_s, help="think time upper bound, s")
    parser.add_argument("--request-timeout", type=float, default=d.request_timeout_s, help="per request, s")
    parser.add_argument("--warmup", type=float, default=d.warmup_s, help="s after spawning, then measured")
    parser.add_argument("--phases-prefix", default=d.phases_prefix, help="write per-phase stats to <prefix>_<pid>.json")
    parser.add_argument("--capacity", default="", help="a capacity search: load.capacity as JSON (runner/capacity.py)")
    parser.add_argument("--capacity-file", default=d.capacity_file, help="where the search writes its steps")
    parser.add_argument("--arrival-rate", type=float, default=None, help="the open model's requests/s (none: closed)")
    parser.add_argument("--arrival", default=d.arrival, choices=ARRIVALS, help="how requests arrive")
    parser.add_argument("--rate-shares", type=int, default=d.rate_shares, help="Locust processes sharing the rate")


def read(options: Any) -> Told:
    """A Locust process's parsed options (Locust's and add_arguments') as a Told."""
    classes = getattr(options, "user_classes", None) or [Told.user_class]
    return Told(
        users=options.num_users, spawn_rate=options.spawn_rate, run_time_s=options.run_time,
        stop_timeout_s=float(options.stop_timeout or 0), user_class=classes[0],
        path=options.path, method=options.method, body=options.body,
        wait_min_s=options.wait_min, wait_max_s=options.wait_max, request_timeout_s=options.request_timeout,
        warmup_s=options.warmup, phases_prefix=options.phases_prefix,
        arrival_rate=options.arrival_rate, arrival=options.arrival, rate_shares=options.rate_shares,
        capacity=read_plan(options.capacity) if options.capacity else None, capacity_file=options.capacity_file,
    )  # fmt: skip


def read_plan(text: str) -> CapacityConfig:
    """A plan as it crosses (runner/capacity.py plan_json): --capacity, or a rate search's message to a worker."""
    return plan_from(json.loads(text))
