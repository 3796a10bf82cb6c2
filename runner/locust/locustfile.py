"""The Locust users the runner points Locust at, and an exact record of each phase of the run.

Users: every user sends one request (the workload's method, path and body) in a closed loop.
`loop` (the default) is one connection whose I/O one engine per process performs for every user
(runner/locust/engine.py): no greenlet switch and no HTTP client object per request, so one core
makes 10x FastHttpUser's requests.
`fast` (FastHttpUser, geventhttpclient) and `http` (HttpUser, requests) are Locust's own clients.
All keep their connection alive; a server that closes after each response makes them reconnect. A
timeout shorter than the run matters: without one, a hung server records 0 requests and 0 failures.

Phases: Locust's totals include the ramp-up, and `--reset-stats` would throw the ramp away and with
it the total we check against the server's own count. So every request is also logged into one
locust StatsEntry per phase -- `ramp` (users still starting), `warmup` (load.warmup seconds after
the last user started), `steady` (what the report ranks), `stopping` (after the run time, while
users wind down). Entries are additive (counts, sums, histograms), so the runner gets exact
steady-state numbers and exact totals by summing them, across `--processes` workers too. Each
process writes `<prefix>_<pid>.json` when it quits. Cost: one small function call per request.
Each phase also has an HDR histogram of response times in microseconds (runner/latency.py: Locust's
own rounds to whole milliseconds), for every user class, and so does each second of the run
(`seconds`, by each second's end: the report's timeline, merged over processes); the file says how
often the `loop` engine reconnected.
Open model (--arrival-rate, or a search by rate: runner/locust/options.py; the `loop` user only): the
response times logged are the corrected ones (from each request's intended send time,
runner/locust/arrivals.py), so Locust's numbers and the HDR
histogram above are corrected; each phase gets a second HDR histogram of the uncorrected ones (from
the actual send: a failure's travels in the request event's context, a success's in the batch) and
the schedule's counts over the phase (`arrivals`: intended, sent, late, queued, generator_late,
dropped) of the requests whose intended time fell in it (runner/locust/arrivals.py's epochs), however late
the engine sent them: Locust's stop runs inspect.stack() before test_stopping, which kept the
engine's loop from running for ~60 ms (measured here), and counting by the time a request was
handled cut the steady window's achieved rate by 2% at 500/s. For the same reason the steady window
ends at the engine's last turn before test_stopping (what came due while Locust's stop held the hub is
the stop's), and test_stopping then sends what is due (Engine.catch_up) before the users drain.
Beside each phase's entry: `loop_s`, the users' time in their request loop -- per user, from one
request's end to the next one's, summed -- and `loopers`, how many users logged one (a user is its
greenlet, or the request context's "user"); and `users`, how many users this process ran when the
run time ended. Little's law is checked against these (runner/run/validity.py): a user's cycle is the
request, its think time, and the generator's own time between requests, timed here with one clock
whatever the resolution of Locust's response times.

Capacity search (`--capacity PLAN`, load=capacity): the shape below raises users step by step and
logs each step's window (the step after its ramp) into a StatsEntry of its own, with this process's
CPU over the window (psutil) and the time it waited for a CPU (/proc schedstat); after each step
runner/capacity.py decides whether to go on, and the steps go to `--capacity-file` for the runner
to check. Locust uses any LoadTestShape it finds in a locustfile, so without --capacity the init
listener removes the shape from the environment before the run starts, and the fixed-users run
(--users, --run-time) goes on as if it were not here.
By rate (the plan's "by": "rate": the engine is an open model, at its share of start_rate): the shape opens
the whole pool (--users connections) at once and one greenlet runs the steps (_RateSearch): the
engine's rate set live (Engine.retune), the window measured as above plus its uncorrected times and
the schedule's counts, then a drain -- no arrivals until nothing is in flight, unmeasured -- so that
the next step, whichever rate the bisection picks, starts from an empty server.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from urllib.parse import urlsplit

import gevent
import psutil
from gevent.monkey import get_original
from locust import FastHttpUser, HttpUser, LoadTestShape, User, between, constant, events, task
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import RequestStats, StatsEntry, bucket_response_time

from runner import latency
from runner.locust import CRASHED, arrivals, wire
from runner.locust.engine import SWEEP_S, Engine
from runner.locust.options import Told, add_arguments, read, read_plan, share
from runner.result import write_atomic
from runner.schema import CapacityConfig, LoadConfig, WorkloadConfig

PHASES = ("ramp", "warmup", "steady", "stopping")


class _Phases:
    def __init__(self) -> None:
        self.stats = RequestStats()
        self.entries = {p: StatsEntry(self.stats, p, "ALL") for p in PHASES}
        self.tap: dict[int, int] = {}  # this second's response times (us -> count), from every phase's recorder
        self.latencies = {p: latency.Recorder(self.tap) for p in PHASES}
        self.uncorrected = {p: latency.Recorder() for p in PHASES}  # open model only
        self.seconds: dict[str, str] = {}  # each second's encoded histogram, by its end (epoch s, 3 decimals)
        self.epochs: dict[str, int] = {}  # open model: each phase's epoch of the schedule (OpenLoop.mark)
        self.started = {p: None for p in PHASES}
        self.current = "ramp"
        self.warmup = 0.0
        self.started["ramp"] = time.time()
        self.loop_s = {p: 0.0 for p in PHASES}
        self.loopers: dict[str, set[object]] = {p: set() for p in PHASES}
        self.last_end: dict[object, float] = {}  # a user -> when its last request ended
        self.users: int | None = None

    def loop(self, phase: str, *users: object) -> None:
        """A request of each of `users` ended (the loop engine logs a batch at once): add each user's
        cycle since its last one."""
        now = time.perf_counter()
        last_end, loopers = self.last_end, self.loopers[phase]
        for user in users:
            last = last_end.get(user)
            if last is not None:
                self.loop_s[phase] += now - last
                loopers.add(user)
            last_end[user] = now

    def enter(self, phase: str, at: float | None = None) -> None:
        """The run is in `phase` from now, or from `at` (perf_counter, in the past: the schedule's epoch and
        the phase's start both move back to it)."""
        if PHASES.index(phase) > PHASES.index(self.current):
            self.current = phase
            now = time.perf_counter()
            at = now if at is None else min(at, now)
            self.started[phase] = time.time() - (now - at)
            self.entries[phase].reset()  # its start_time is now
            self.latencies[phase].reset()
            self.uncorrected[phase].reset()
            if _engine is not None and _engine.arrivals is not None:
                self.epochs[phase] = _engine.arrivals.mark(at)

    def second(self) -> None:
        """A second is over: its response times, taken from the recorders (latency.Recorder's tap), as one
        encoded histogram -- the timeline's p50 and p99 at the tables' resolution, merged over processes by the
        report. The flush records what each recorder holds into its own histogram too, so a second costs what
        those responses would cost later (a few hundred distinct microsecond values a second)."""
        for recorder in self.latencies.values():
            recorder.flush()
        if self.tap:
            self.seconds[f"{time.time():.3f}"] = latency.encode_counts(self.tap)
            self.tap.clear()

    def every_second(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.second()

    def _arrivals(self, schedule: arrivals.OpenLoop) -> dict[str, dict[str, int]]:
        """Each phase's counts; a phase entered before the engine existed (the users' on_start makes it, which
        can come after spawning_complete) had none."""
        none = arrivals.Counts().as_dict()
        return {p: schedule.epochs[self.epochs[p]].as_dict() if p in self.epochs else none for p in PHASES}

    def dump(self, path: str) -> None:
        self.second()  # the last, partial one
        data = {"pid": os.getpid(), "started": self.started, "ended": time.time(), "users": self.users}
        data["phases"] = {p: self.entries[p].serialize() for p in PHASES}
        data["hdr"] = {p: self.latencies[p].encode() for p in PHASES}
        data["seconds"] = self.seconds
        data["reconnects"] = _engine.reconnects if _engine is not None else None
        data["retries"] = _engine.retries if _engine is not None else None
        data["evidence"] = _engine.evidence.as_dict() if _engine is not None else None
        if _engine is not None and _engine.arrivals is not None:
            data["hdr_uncorrected"] = {p: self.uncorrected[p].encode() for p in PHASES}
            data["arrivals"] = self._arrivals(_engine.arrivals)
        data["loop_s"], data["loopers"] = self.loop_s, {p: len(self.loopers[p]) for p in PHASES}
        write_atomic(path, lambda f: json.dump(data, f, default=list), sync=False)


_phases = _Phases()


class _Search:
    """The live capacity search: which step runs, its measured window, the steps so far."""

    def __init__(self, plan: CapacityConfig, spawn_rate: float, path: str) -> None:
        from runner import capacity, schedstat  # only in capacity mode: the fixed-users run does not pay for it

        self.capacity, self.schedstat = capacity, schedstat
        self.plan = plan
        self.schedule = capacity.users_schedule(self.plan)
        self.spawn_rate, self.path = spawn_rate, path
        self.stats = RequestStats()
        self.process = psutil.Process()
        self.steps: list[dict] = []  # users, start, end, entry (serialized), locust_cpu/wait_pct, verdict
        self.judged: list[dict] = []  # capacity.step_numbers of each step, for the decision
        self.index = -1  # the step running now
        self.began = 0.0  # when it began (time.time())
        self.window: StatsEntry | None = None  # open from ramp_s into the step until it ends
        self.latencies = latency.Recorder()  # the window's response times, microseconds
        self.uncorrected = latency.Recorder()  # an open model's: from the actual send
        self.opened, self.cpu0 = 0.0, (0.0, None)
        self.done = False

    def _cpu(self) -> tuple[float, float | None]:
        """(CPU seconds used, seconds spent runnable but waiting for a CPU -- main thread, Linux only)."""
        t = self.process.cpu_times()
        return t.user + t.system, self.schedstat.wait_s("/proc/thread-self/schedstat")

    def _usage(self, now: float) -> tuple[float | None, float | None]:
        """(% of the window since it opened that this process was on a CPU, % it waited for one)."""
        (cpu0, wait0), (cpu1, wait1), span = self.cpu0, self._cpu(), now - self.opened
        cpu = 100.0 * (cpu1 - cpu0) / span if span > 0 else None
        wait = 100.0 * (wait1 - wait0) / span if span > 0 and wait0 is not None and wait1 is not None else None
        return cpu, wait

    def tick(self) -> tuple[int, float] | None:
        if self.done:
            return None
        now = time.time()
        if self.index < 0:
            self._begin(now)
        elif now >= self.began + self.plan.step_s:
            self._close(now)
            if self.done:
                return None
            self._begin(now)
        return self.schedule[self.index], self.spawn_rate

    def _begin(self, now: float) -> None:
        self.index += 1
        self.began = now
        gevent.spawn_later(self.plan.ramp_s, self._open, self.index)

    def _open(self, index: int) -> None:
        if index == self.index and not self.done:
            self.window = StatsEntry(self.stats, f"step{index}", "ALL")
            self.latencies.reset()
            self.uncorrected.reset()
            self.opened, self.cpu0 = time.time(), self._cpu()

    def _close(self, now: float) -> None:
        window, self.window = self.window, None
        if window is None:  # its timer never fired (a starved event loop): stop, the record says "incomplete"
            self.done = True
            return
        cpu, wait = self._usage(now)
        entry = window.serialize()
        entry["hdr"] = self.latencies.encode()  # capacity.step_numbers takes the percentiles from it
        users = self.schedule[self.index]
        self.steps.append({"users": users, "start": self.opened, "end": now, "entry": entry,
                           "locust_cpu_pct": cpu, "locust_wait_pct": wait})  # fmt: skip
        self.judged.append(self.capacity.step_numbers(entry, self.opened, now, users, cpu, wait))
        block = self.capacity.decide(self.judged, self.plan)
        for recorded, judged in zip(self.steps, block["steps"], strict=False):
            recorded["verdict"] = judged["verdict"]
        self.done = block["stop_reason"] != "incomplete"
        self.capacity.write_steps(self.path, self.steps, block)

    def log(self, response_time, response_length, exception, uncorrected_ms=None) -> None:
        if self.window is not None:
            self.window.log(response_time, response_length or 0)
            self.latencies.record(response_time)
            if uncorrected_ms is not None:
                self.uncorrected.record(uncorrected_ms)
            if exception is not None:
                self.window.log_error(exception)


class _RateSearch(_Search):
    """The live capacity search by rate: the pool of load.users connections opens at once, then one greenlet
    runs the steps -- set the engine's rate, wait ramp_s, measure until step_s, stop the arrivals and drain
    (no new request until those in flight end, or time out: unmeasured), judge, and ask runner/capacity.py's
    next_rate for the next step's rate, until it says the search is over.
    Over several Locust processes (--processes, or a master and workers) the master runs the search and the
    workers the steps: each step is a message to every worker with its share of the rate ("capacity-step");
    each worker measures it on its own engine as above and sends back its raw step ("capacity-result"); the
    master merges them (counts added, histograms merged, the busiest process's CPU) and judges the whole."""

    def __init__(self, plan: CapacityConfig, pool: int, timeout_s: float, path: str, environment=None) -> None:
        super().__init__(plan, float(pool), path)
        self.pool, self.timeout_s, self.environment = pool, timeout_s, environment
        self.greenlet: gevent.Greenlet | None = None
        self.results: list[dict] = []  # the master's: this step's raw steps from the workers

    def tick(self) -> tuple[int, float] | None:
        if self.done:
            return None
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)
        return self.pool, float(self.pool)  # every connection of the pool in the first second

    def _run(self) -> None:
        try:
            runner = self.environment.runner if self.environment is not None else None
            over = isinstance(runner, MasterRunner)  # the steps run on the workers
            engine = self._spawned(runner) if over else self._engine()
            rate = self.capacity.next_rate([], self.plan)
            while rate is not None and engine is not None:
                self.index += 1
                if not (self._step_over(runner, rate) if over else self._step(engine, rate)):
                    break  # a worker did not answer: the search stops undecided ("incomplete")
                block = self.capacity.decide_rate(self.judged, self.plan)
                for recorded, judged in zip(self.steps, block["steps"], strict=True):
                    recorded["verdict"] = judged["verdict"]
                self.capacity.write_steps(self.path, self.steps, block)
                rate = self.capacity.next_rate(block["steps"], self.plan)
        finally:
            self.done = True

    def _engine(self) -> Engine | None:
        """The engine, once the whole pool has registered (the users' on_start), within 10 s."""
        for _ in range(200):
            if _engine is not None and _engine.arrivals is not None and len(_engine.conns) >= self.pool:
                return _engine
            gevent.sleep(0.05)
        return _engine if _engine is not None and _engine.arrivals is not None else None

    def _spawned(self, runner) -> object | None:
        """The master's go-ahead: every worker's share of the pool running, within 10 s."""
        for _ in range(200):
            if runner.user_count >= self.pool:
                return runner
            gevent.sleep(0.05)
        return runner if runner.user_count else None

    def _step_over(self, runner, rate: float) -> bool:
        """One step on every worker, each at its share of `rate`; False when one did not answer in time."""
        workers = max(runner.worker_count, 1)
        self.results = []
        runner.send_message("capacity-step", {"index": self.index, "rate": share(rate, workers),
                                              "plan": self.capacity.plan_json(self.plan),
                                              "timeout_s": self.timeout_s})  # fmt: skip
        deadline = time.time() + self.plan.step_s + self.timeout_s + 10.0
        while len(self.results) < workers and time.time() < deadline:
            gevent.sleep(0.05)
        if len(self.results) < workers:
            return False
        step = _merged_steps(self.results)
        numbers = self.capacity.rate_step_numbers(step["entry"], step["start"], step["end"], rate, self.pool,
                                                  step["counts"], step["locust_cpu_pct"], step["locust_wait_pct"])
        numbers["drain_s"] = step["drain_s"]
        self.steps.append({**step, "rate": rate, "users": self.pool, "workers": workers})
        self.judged.append(numbers)
        return True

    def _step(self, engine: Engine, rate: float) -> bool:
        engine.retune(rate)
        gevent.sleep(self.plan.ramp_s)
        engine.arrivals.arrive(time.perf_counter())  # what came due in the ramp is the ramp's
        counts0 = dataclasses.replace(engine.arrivals.counts)
        self._open(self.index)
        gevent.sleep(self.plan.step_s - self.plan.ramp_s)
        engine.retune(None)  # the drain: what is still queued is dropped, counted in this step
        window, self.window, now = self.window, None, time.time()
        cpu, wait = self._usage(now)
        counts = engine.arrivals.counts.since(counts0)
        entry = window.serialize()
        entry["hdr"], entry["hdr_uncorrected"] = self.latencies.encode(), self.uncorrected.encode()
        numbers = self.capacity.rate_step_numbers(entry, self.opened, now, rate, self.pool, counts, cpu, wait)
        began = time.perf_counter()
        deadline = began + self.timeout_s + 2 * SWEEP_S  # a request in flight times out by then
        while engine.in_flight() and time.perf_counter() < deadline:
            gevent.sleep(0.02)
        numbers["drain_s"] = time.perf_counter() - began
        self.steps.append({"rate": rate, "users": self.pool, "start": self.opened, "end": now, "entry": entry,
                           "counts": counts, "locust_cpu_pct": cpu, "locust_wait_pct": wait,
                           "drain_s": numbers["drain_s"]})  # fmt: skip
        self.judged.append(numbers)
        return True


def _merged_steps(parts: list[dict]) -> dict:
    """The workers' raw steps of one rate step as one: StatsEntries extended, histograms merged, the schedules'
    counts added, the window from the first start to the last end, the busiest process's CPU and wait."""
    stats = RequestStats()
    entry = StatsEntry.unserialize(parts[0]["entry"], stats)
    for part in parts[1:]:
        entry.extend(StatsEntry.unserialize(part["entry"], stats))
    merged = entry.serialize()
    for key in ("hdr", "hdr_uncorrected"):
        histogram = latency.merged([part["entry"][key] for part in parts])
        merged[key] = histogram.encode().decode("ascii") if histogram is not None else None
    counts: dict[str, int] = {}
    for part in parts:
        for key, n in part["counts"].items():
            counts[key] = counts.get(key, 0) + int(n)

    def busiest(key: str) -> float | None:
        values = [part[key] for part in parts if part.get(key) is not None]
        return max(values) if values else None

    return {"start": min(p["start"] for p in parts), "end": max(p["end"] for p in parts), "entry": merged,
            "counts": counts, "locust_cpu_pct": busiest("locust_cpu_pct"),
            "locust_wait_pct": busiest("locust_wait_pct"), "drain_s": busiest("drain_s")}  # fmt: skip


def _on_step(environment, msg, **_kwargs) -> None:
    """A worker: the master asks for one rate step at this worker's share of the rate (see _RateSearch)."""
    gevent.spawn(_measure_step, environment, msg.data)


def _measure_step(environment, data: dict) -> None:
    global _search
    if not isinstance(_search, _RateSearch):  # a local worker is started without --capacity
        _search = _RateSearch(read_plan(data["plan"]), 0, data["timeout_s"], "", environment)
    _search.pool, _search.index = environment.runner.user_count, data["index"]
    engine = _search._engine()
    if engine is not None:
        _search._step(engine, data["rate"])
        environment.runner.send_message("capacity-result", {"index": data["index"], **_search.steps[-1]})


def _on_result(environment, msg, **_kwargs) -> None:
    """The master: a worker's raw step, for the step under way."""
    if isinstance(_search, _RateSearch) and msg.data.get("index") == _search.index:
        _search.results.append(msg.data)


_search: _Search | None = None


class CapacitySearch(LoadTestShape):
    """Locust's handle on the capacity search; removed from the run unless --capacity is given."""

    use_common_options = True  # without --capacity, --users and --run-time apply (and Locust must not warn)

    def tick(self) -> tuple[int, float] | None:
        return _search.tick() if _search is not None else None


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    add_arguments(parser)  # the runner passes them all (runner/locust/options.py is both sides)


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:
    # Locust arms its --run-time timer just after this event on gevent's cached loop clock, which has
    # not moved since the hub was made during the imports: runs ended 0.35-1.4 s before their run time.
    gevent.get_hub().loop.update_now()
    if environment.parsed_options is None:
        return
    _once(environment)
    told = loop.told = read(environment.parsed_options)
    for user in (fast, http):
        user.wait_time = between(told.wait_min_s, told.wait_max_s)
        user.path, user.method, user.body = told.path, told.method, told.body.encode() or None
        user.timeout = told.request_timeout_s
    fast.network_timeout = fast.connection_timeout = told.request_timeout_s
    _phases.warmup = told.warmup_s
    global _search
    if told.capacity is not None and told.capacity.by == "rate":
        _search = _RateSearch(told.capacity, told.users or 1, told.request_timeout_s, told.capacity_file, environment)
    elif told.capacity is not None:
        _search = _Search(told.capacity, told.spawn_rate or 1.0, told.capacity_file)
    else:
        environment.shape_class = None  # a fixed-users run: Locust would otherwise run the shape


_started = False


def _once(environment) -> None:
    """What the process starts once, however often _configure runs (a remote worker runs it again when its
    master's options arrive: runner/locust/workers.py): the timeline's second by second histograms, and the
    messages of a rate search over several processes (_RateSearch)."""
    global _started
    if _started:
        return
    _started = True
    gevent.spawn(_phases.every_second)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("capacity-result", _on_result)
    elif isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message("capacity-step", _on_step)


@events.request.add_listener
def _record(response_time, response_length, exception, context=None, **_kwargs) -> None:
    # a user: its greenlet (Locust's users each have one), or what a user class that runs several users in
    # one greenlet names in the request's context (context={"user": ...}: the loop user's connection)
    current, context = _phases.current, context or {}
    _phases.loop(current, context.get("user") or id(gevent.getcurrent()))
    entry = _phases.entries[current]
    entry.log(response_time, response_length or 0)
    _phases.latencies[current].record(response_time)
    if "uncorrected_ms" in context:
        _phases.uncorrected[current].record(context["uncorrected_ms"])
    if exception is not None:
        entry.log_error(exception)
    if _search is not None:
        _search.log(response_time, response_length, exception, context.get("uncorrected_ms"))


@events.spawning_complete.add_listener
def _spawned(user_count, **_kwargs) -> None:
    _phases.enter("warmup")
    if _phases.warmup > 0:
        gevent.spawn_later(_phases.warmup, _phases.enter, "steady")
    else:
        _phases.enter("steady")


@events.test_stopping.add_listener
def _stopping(environment, **_kwargs) -> None:
    if _engine is not None:
        # The window ends at the engine's last turn: from then on Locust's stop held the hub (its inspect.stack(),
        # 60 ms here, more on a busy machine), and what came due meanwhile is the stop's, not the steady state's:
        # counted in the window it was 1-3% of an open model's requests dropped at 300/s, and a false
        # behind-schedule. Then what is due is sent (catch_up), before the users drain.
        _phases.enter("stopping", at=_engine.ran or None)
        _engine.catch_up()
    else:
        _phases.enter("stopping")
    if environment.runner is not None:  # this process's users, before they stop (a worker: its share)
        _phases.users = environment.runner.user_count


@events.quitting.add_listener
def _quitting(environment, **_kwargs) -> None:
    prefix = getattr(environment.parsed_options, "phases_prefix", "")
    if prefix and any(e.num_requests for e in _phases.entries.values()):
        _phases.dump(f"{prefix}_{os.getpid()}.json")


class fast(FastHttpUser):  # noqa: N801 -- the class name is the config value (load.user_class)
    path, method, body = WorkloadConfig.path, WorkloadConfig.method, None  # _configure sets all four
    timeout = LoadConfig.request_timeout_s
    wait_time = between(0, 0)

    @task
    def get(self) -> None:
        self.client.request(self.method, self.path, data=self.body)


class http(HttpUser):  # noqa: N801
    path, method, body = WorkloadConfig.path, WorkloadConfig.method, None  # _configure sets all four
    timeout = LoadConfig.request_timeout_s
    wait_time = between(0, 0)

    @task
    def get(self) -> None:
        self.client.request(self.method, self.path, data=self.body, timeout=self.timeout)


_engine: Engine | None = None  # the one engine of this process, made by the first `loop` user
_getaddrinfo = get_original("socket", "getaddrinfo")


def _the_engine(user: User) -> Engine:
    global _engine
    if _engine is None:
        told, url = user.told, urlsplit(user.host)
        if url.scheme != "http":
            raise ValueError(f"the loop user speaks plain HTTP only, not {url.scheme!r}: use load.user_class=fast")
        port = url.port or 80
        # gevent's getaddrinfo would yield, and the next user's on_start would make a second engine
        family, _, _, _, address = _getaddrinfo(url.hostname, port, type=socket.SOCK_STREAM)[0]
        request = wire.build_request(told.method, told.path, url.netloc, told.body.encode())
        fire, stats = user.environment.events.request.fire, user.environment.stats

        rate = told.process_rate()
        schedule = None if rate is None else arrivals.OpenLoop(rate, told.arrival, drop_after_s=told.request_timeout_s)
        open_model = schedule is not None

        def context(conn: object, raw: float) -> dict:  # an open model's failures carry their uncorrected time
            return {"user": conn, "uncorrected_ms": raw} if open_model else {"user": conn}

        def log(conn: object, ms: float, raw: float, length: int, exception: Exception) -> None:
            fire(request_type=told.method, name=told.path, response_time=ms, response_length=length,
                 exception=exception, context=context(conn, raw))  # fmt: skip

        def log_many(conns: list[object], times: list[float], raw: list[float] | None, length: int) -> None:
            _log_successes([stats.total, stats.get(told.path, told.method)], conns, times, length, raw)

        wait = (told.wait_min_s, told.wait_max_s)
        _engine = Engine(address, family, request, log, log_many, told.request_timeout_s, wait, schedule)
        _engine.greenlet.link_exception(lambda greenlet: _crashed(user.environment, greenlet))
        if schedule is not None:
            _phases.epochs[_phases.current] = 0  # the schedule's first epoch is the phase the engine began in
    return _engine


def _crashed(environment, greenlet: gevent.Greenlet) -> None:
    """The engine's loop died: every request in flight would hang until the run ends and then count as the
    server's failures. End the run now, as a failed generator: exit code 2 (runner/run/load.py)."""
    logging.getLogger(__name__).critical("the loop engine crashed", exc_info=greenlet.exc_info)
    environment.process_exit_code = CRASHED
    gevent.spawn(environment.runner.quit)


def _log_successes(
    entries: list[StatsEntry], users: list[object], times: list[float], length: int, raw: list[float] | None = None
) -> None:
    """What firing Locust's request event once per success would do, for a batch of successes at
    once: StatsEntry.log's updates (Locust 2.4x, stats.py) into Locust's own entries and into what
    our listener (_record) keeps. Request listeners other than Locust's and ours do not see them.
    raw: the uncorrected times of an open model's requests."""
    _phases.loop(_phases.current, *users)
    now = time.time()
    second = int(now)
    buckets: dict[int, int] = {}
    for ms in times:
        bucket = bucket_response_time(ms)
        buckets[bucket] = buckets.get(bucket, 0) + 1
    n, total, low, high = len(times), sum(times), min(times), max(times)
    phase = _phases.current
    targets = [*entries, _phases.entries[phase]]
    searching = _search is not None and _search.window is not None
    if searching:
        targets.append(_search.window)
    for entry in targets:
        last = entry.last_request_timestamp
        if entry.use_response_times_cache and last and second > int(last):
            entry._cache_response_times(second - 1)
        entry.num_requests += n
        entry.num_reqs_per_sec[second] += n
        entry.last_request_timestamp = now
        entry.total_response_time += total
        entry.min_response_time = low if entry.min_response_time is None else min(entry.min_response_time, low)
        entry.max_response_time = max(entry.max_response_time, high)
        counts = entry.response_times
        for bucket, k in buckets.items():
            counts[bucket] += k
        entry.total_content_length += length
    for recorder in (_phases.latencies[phase], _search.latencies) if searching else (_phases.latencies[phase],):
        record = recorder.record
        for ms in times:
            record(ms)
    if raw is not None:
        for recorder in (
            (_phases.uncorrected[phase], _search.uncorrected) if searching else (_phases.uncorrected[phase],)
        ):
            record = recorder.record
            for ms in raw:
                record(ms)


class loop(User):  # noqa: N801
    """One connection in a closed loop, driven by the process's engine; this greenlet only waits.
    Stopping: Locust's graceful stop (stop_timeout) drains the connection -- no new request, the one
    in flight finishes -- and on_stop closes it; a request still in flight then is one failure."""

    told: Told | None = None  # set by _configure: path, think time, timeout, an open model's rate
    wait_time = constant(0)

    def on_start(self) -> None:
        self._conn = _the_engine(self).open()

    @task
    def drive(self) -> None:
        self._conn.idle.wait()  # until drained: Locust then sees the user stopping and calls on_stop

    def stop(self, force: bool = False) -> bool:
        conn = getattr(self, "_conn", None)
        if conn is not None and _engine is not None:
            _engine.drain(conn)
        return super().stop(force)

    def on_stop(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and _engine is not None:
            _engine.close(conn)
