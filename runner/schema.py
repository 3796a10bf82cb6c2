"""The schema of a run: every key the runner reads, its type and its one default, and what a duration's
text means (parse_duration) and how long Locust takes to start load.users (spawn_s).

Plain dataclasses with nothing to import, so that Locust's processes (which take their options'
defaults from here) do not load Hydra and OmegaConf (190 ms of each Locust's start). runner/config.py
registers them with Hydra as `base_config`, which makes OmegaConf check every YAML file and
command-line override against them, and checks what types cannot say. A YAML file names only what
its option changes from these defaults (tests/test_configs.py checks it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

MISSING = "???"  # omegaconf.MISSING: a value each config group's file must give
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """'90', '90s', '1m30s', '1h' -> seconds; ValueError for anything else or zero."""
    match = _DURATION.fullmatch(str(text).strip())
    if not match or not any(match.groups()):
        raise ValueError(f"cannot parse {text!r} as a duration (use e.g. 20s, 1m, 1m30s)")
    hours, minutes, seconds = match.groups()
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    if total <= 0:
        raise ValueError(f"duration {text!r} must be > 0")
    return total


def spawn_s(users: int, spawn_rate: float) -> float:
    """When Locust has started the last of `users`: it starts max(1, floor(rate)) users at once, a
    batch every batch/rate seconds, the first at 0 (locust/dispatch.py), so 1000 users at 100/s are
    all running after 9 s, and 100 at 100/s at once."""
    batch = max(1, math.floor(spawn_rate))
    return (math.ceil(users / batch) - 1) * batch / spawn_rate


ARRIVALS = ("constant", "poisson")  # load.arrival: even gaps, or exponential ones (runner/locust/arrivals.py)
SEARCHES = ("users", "rate")  # load.capacity.by: raise users (a closed loop) or the arrival rate (an open model)


class UserClass(Enum):
    loop = "loop"  # one connection per user, one engine per Locust process does all I/O: ~10x fast
    fast = "fast"  # locust FastHttpUser (geventhttpclient): ~4x the requests/s of HttpUser
    http = "http"  # locust HttpUser (requests): what most locustfiles use


@dataclass
class ServerConfig:
    name: str = MISSING  # ours: the module servers.<name>; an external server: its label in the report
    # An external server (anything that listens on a port): a command template, run without a shell,
    # with PLACEHOLDERS ({port} or {address} required, in it or in one of `files`). null: ours,
    # `python -m servers.<name>`; "" (conf/server/external.yaml): external, refused until given one
    command: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # external: run-dir files written first, same placeholders
    workloads: list[str] | None = None  # external: the workloads it can do (null: every one)
    reference: bool = False  # a production server to compare against (uvicorn, nginx): marked in reports
    keepalive: bool = True  # false: close after every response, as the original servers did
    backlog: int = 1024  # listen backlog; 5 (the original) turns bursts into 1 s SYN retries
    ready_timeout_s: float = 10.0  # READY (ours), or an answer to the readiness probe (external), within this
    # external: the readiness probe -- null: the workload's request; "/path": GET that path; "tcp": a connect only
    ready_probe: str | None = None
    grace_s: float = 5.0  # after SIGTERM, before SIGKILL to the process group
    # the port it listens on (ours: --port; external: {port}); 0: a free one per run. Fix it for a
    # firewall rule or a client that expects one; a port already in use is refused before Locust starts
    port: int = 0
    # model-specific flags, passed as `--key value` (true: `--key`; false/null: left out), e.g.
    # prefork's workers; the module's --help lists what it takes
    options: dict[str, Any] = field(default_factory=dict)
    # a server already running elsewhere (conf/server/remote.yaml, runner/run/remote.py): nothing is
    # started, readiness is a TCP connect; needs run.allow_remote=true unless it is loopback
    target_host: str | None = None
    target_port: int | None = None


@dataclass
class CapacityConfig:
    """load=capacity: raise users (or the arrival rate) in steps and find the most requests/s a server
    sustains within the service-level objective (runner/capacity.py decides; conf/load/capacity.yaml explains)."""

    enabled: bool = False  # false: a fixed number of users (load.users) for load.run_time
    by: str = "users"  # users: closed-loop users in steps; rate: an open model's rate, load.users its connection pool
    start_users: int = 10  # users of the first step
    step_users: int = 20  # users added per step
    step_s: float = 4.0  # each step's length (Locust's shape ticks once a second: rounded up to ticks)
    ramp_s: float = 1.0  # the start of each step, not measured: users starting, queues settling
    max_users: int = 200  # the last step has at most this many users
    max_failure_ratio: float = 0.01  # SLO: failed / requests in a step above this breaches it
    max_p99_ms: float = 500.0  # SLO: a step's p99 above this breaches it
    min_growth: float = 0.05  # knee: RPS grew less than this fraction over the previous step
    generator_cpu_pct: float = 90.0  # Locust on its core or waiting for it >= this % of a step: generator-bound
    # by=rate: start_rate, x rate_growth per step while the SLO holds (up to max_rate), then bisect between the last
    # good and the first bad rate until they are within rate_precision of each other; at most max_steps steps
    start_rate: float = 50.0  # requests/s of the first step
    rate_growth: float = 2.0  # each step's rate over the previous one's, until one fails
    max_rate: float = 51200.0  # the search ends here ("max-rate") if nothing else stopped it
    rate_precision: float = 0.05  # bisect until (first bad - last good) / last good is at most this
    max_steps: int = 20  # steps in all (stepping up, then bisecting): bounds the run
    max_late_ratio: float = 0.01  # SLO: (late + dropped) / requests due above this: fewer than 99% sent on time


@dataclass
class LoadConfig:
    name: str = MISSING
    users: int = 100
    spawn_rate: float = 100.0  # users started per second ("hatch rate")
    run_time: str = "10s"  # locust -t: 30s, 1m, 1m30s
    user_class: UserClass = UserClass.loop
    wait_min_s: float = 0.0  # think time between a user's requests, uniform in [min, max]
    wait_max_s: float = 0.0
    request_timeout_s: float = 5.0  # shorter than the run, or a hung server records nothing
    stop_timeout_s: float = 1.0  # let in-flight requests finish when the run time is up
    warmup_s: float = 1.0  # after the last user started, before the steady window the report ranks
    # Locust's processes: auto (one per core Locust was given: runner/run/cores.py), or a count (locust --processes)
    processes: Any = "auto"
    capacity: CapacityConfig = field(default_factory=CapacityConfig)  # a step search instead of fixed users
    # an open model (runner/locust/arrivals.py): requests/s at intended send times on a pool of at most `users`
    # connections, latency corrected for coordinated omission; null: the closed loop (each user sends its next
    # request when its response came). The `loop` user only; split evenly over load.processes.
    arrival_rate: float | None = None
    arrival: str = "constant"  # constant (evenly spaced) | poisson (exponential gaps)
    # distributed Locust (runner/run/distributed.py): a master and `workers` local worker processes
    mode: str = "local"  # local | distributed
    workers: int = 2  # local workers the runner starts (distributed mode)
    expect_workers: int | None = None  # all workers, local + remote, the run waits for; null: `workers`
    expect_workers_timeout_s: float = 30.0  # fewer joined by then: outcome loadgen_failed
    master_bind_host: str = "127.0.0.1"  # not loopback (for remote workers): load.allow_remote_workers=true
    master_bind_port: int = 0  # 0: a free port per run; fix it (e.g. 5557) for remote workers
    allow_remote_workers: bool = False  # let the master listen on a non-loopback interface


@dataclass
class WorkloadConfig:
    name: str = MISSING  # servers/workload.py: hello, echo, cpu, io, size
    path: str = "/"  # the URL path every simulated user requests
    method: str = "GET"  # the request's method
    body: str = ""  # the request's body (sent with a Content-Length), e.g. for echo to send back
    params: dict[str, Any] = field(default_factory=dict)  # passed to the server: io_ms, cpu_us, size_bytes


@dataclass
class ValidityConfig:
    """Thresholds of the report's flags (runner/run/validity.py says what each means)."""

    cpu_bound: float = 0.9  # generator-bound: Locust at >= this share of its cores, the server below it
    max_error_ratio: float = 0.01  # errors: failed / requests above this
    min_requests: int = 2000  # few-requests: fewer in the measured window
    littles_tolerance: float = 0.2  # littles-law: |users - users' loop time / window| / users above this
    # generator-late, behind-schedule (an open model): late or dropped requests / requests due above this; 1% is
    # the objective for a sustainable rate (99% of requests sent on time)
    max_late_ratio: float = 0.01
    count_tolerance: float = 0.005  # count-mismatch: |SERVED - Locust's total| / total above this
    unstable_spread: float = 0.1  # unstable: (max - min) / median of repeats at or above this
    # contended: other processes used more than this % of the server's or Locust's cores over the window
    # (runner/run/resources.py others_pct); docs/design.md has the measurements behind it
    max_others_pct: float = 15.0
    # contended, for a side with one runnable thread per core (runner/run/validity.py one_runnable): its threads'
    # run-queue wait above this % of the window (docs/design.md has the measurements behind both thresholds)
    max_wait_pct: float = 15.0


@dataclass
class SloConfig:
    """Service-level objectives, checked on every run after it ends (runner/run/objectives.py); one broken makes
    the command exit 5. null: not checked."""

    p99_ms: float | None = None  # p99 at most this (an open model's: the corrected p99)
    min_rps: float | None = None  # goodput (successful requests per second) at least this
    max_failure_ratio: float = 0.01  # failed / requests in the measured window at most this (the errors flag's 1%)


@dataclass
class RunConfig:
    host: str = "127.0.0.1"  # where servers bind and locust sends load
    allow_remote: bool = False  # a non-loopback host is refused unless this is true
    pin: bool = True  # on >= 2 cores: the server on run.server_cores, Locust on the others (runner/run/cores.py)
    # the server's cores: a count (the first N), a list of core ids, or all (Locust then shares them)
    server_cores: Any = 1
    deadline_slack_s: float = 30.0  # locust is killed after run_time + ramp-up + this
    repeat: int = 0  # which repetition this run is; `run.repeats=N` on the command line sweeps 0..N-1
    validity: ValidityConfig = field(default_factory=ValidityConfig)
    slo: SloConfig = field(default_factory=SloConfig)  # objectives the exit status follows


@dataclass
class Config:
    server: ServerConfig = MISSING
    load: LoadConfig = MISSING
    workload: WorkloadConfig = MISSING
    run: RunConfig = field(default_factory=RunConfig)
