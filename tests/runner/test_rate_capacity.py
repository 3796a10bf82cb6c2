"""Capacity by rate: the pure search (runner/capacity.py's next_rate, rate_verdict, decide_rate) over simulated
time, and (slow) a real search against single under io, whose boundary is known (10 ms a request, one at a time).

The simulation: runner/locust/arrivals.py's own OpenLoop on a pool of connections against one FIFO server that
answers each request `service_s` after it starts on it (a single-threaded server with a backlog); a step is
ramp + window as the locustfile runs it, and a drain ends it as the locustfile's does (the arrivals stop,
what is queued is dropped, the server finishes what it has).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support.locust_stats import stats_entry
from support.runs import compose

from runner import capacity
from runner.config import CapacityConfig
from runner.locust.arrivals import OpenLoop
from runner.record import Run
from runner.report import capacity as capacity_report
from runner.report.document import write_report
from runner.result import Metrics, RunResult, write_result

TICK = 0.001
PLAN = CapacityConfig(enabled=True, by="rate", step_s=4, ramp_s=1, max_p99_ms=500, start_rate=50, rate_growth=2,
                      max_rate=51200, rate_precision=0.05, max_steps=20, max_late_ratio=0.01)  # fmt: skip


class Server:
    """One request at a time, in arrival order; what waits is the listen backlog. Time is the caller's."""

    def __init__(self, service_s: float) -> None:
        self.service_s = service_s
        self.free_at = 0.0  # when the request now being served is done
        self.done: list[tuple[float, float]] = []  # (answered at, intended): not yet seen by the generator

    def send(self, now: float, intended: float) -> None:
        self.free_at = max(self.free_at, now) + self.service_s
        self.done.append((self.free_at, intended))

    def answered(self, now: float) -> list[float]:
        """The intended times of the requests answered by now."""
        out = [i for t, i in self.done if t <= now]
        self.done = [(t, i) for t, i in self.done if t > now]
        return out


def run_step(server: Server, schedule: OpenLoop, start: float, rate: float, pool: int = 200, drain: bool = True):
    """One step at `rate` from `start`: (its numbers as the locustfile measures them, when the next step starts)."""
    schedule.start(start, rate)
    window, end = start + PLAN.ramp_s, start + PLAN.step_s
    in_flight, latencies, before = 0, [], None
    now = start
    while now < end:
        if before is None and now >= window:
            schedule.arrive(now)
            before = {k: getattr(schedule.counts, k) for k in schedule.counts.as_dict()}
        for intended in server.answered(now):
            in_flight -= 1
            if now >= window:
                latencies.append((now - intended) * 1000)
        for intended in schedule.dispatch(now, pool - in_flight):
            in_flight += 1
            server.send(now, intended)
        now += TICK
    schedule.arrive(end)
    schedule.stop()  # Engine.retune(None): the drain sends nothing new, drops the queue
    counts = {k: v - before[k] for k, v in schedule.counts.as_dict().items()}
    latencies.sort()
    span = end - window
    step = {"rate": rate, "users": pool, "start": window, "end": end, "requests": len(latencies),
            "rps": len(latencies) / span, "goodput": len(latencies) / span, "failure_ratio": 0.0,
            "p50_ms": latencies[len(latencies) // 2] if latencies else None,
            "p99_ms": latencies[max(math.ceil(0.99 * len(latencies)) - 1, 0)] if latencies else None,
            "p99_uncorrected_ms": None, "intended": counts["intended"], "sent": counts["sent"], "late": counts["late"],
            "dropped": counts["dropped"], "generator_late": counts["generator_late"],
            "late_ratio": (counts["late"] + counts["dropped"]) / counts["intended"], "drain_s": 0.0,
            "locust_cpu_pct": 10.0, "locust_wait_pct": 0.0, "server_cpu_pct": None, "verdict": None}  # fmt: skip
    if drain:  # until the server has answered what it was sent; not measured
        step["drain_s"] = max(server.free_at - end, 0.0)
        server.answered(server.free_at)
        return step, max(server.free_at, end)
    return step, end


def search(service_s: float, plan: CapacityConfig = PLAN, drain: bool = True) -> dict:
    """The whole search against a simulated server, as the locustfile's _RateSearch runs it."""
    server, schedule = Server(service_s), OpenLoop(plan.start_rate)
    steps, now, rate = [], 0.0, capacity.next_rate([], plan)
    while rate is not None:
        step, now = run_step(server, schedule, now, rate, drain=drain)
        steps.append(step)
        rate = capacity.next_rate(capacity.decide_rate(steps, plan)["steps"], plan)
    return capacity.decide_rate(steps, plan)


def test_the_search_steps_up_by_the_growth_factor_then_bisects_to_the_boundary():
    block = search(service_s=0.0105)  # 95.2 requests/s: single under io as measured here (94-95/s)
    rates = [s["rate"] for s in block["steps"]]
    assert rates == [50, 100, 75, 87.5, 93.75, 96.875]  # x2 until 100 fails, then midpoints
    assert [s["verdict"] for s in block["steps"]] == ["ok", "slo-throughput", "ok", "ok", "ok", "slo-throughput"]
    assert (block["stop_reason"], block["max_rate"], block["bracket"]) == ("boundary", 93.75, [93.75, 96.875])
    assert abs(block["max_rate"] - 1 / 0.0105) / (1 / 0.0105) < 0.05
    assert block["max_rps"] == pytest.approx(93.75, rel=0.02)  # at that rate the server answered all it was sent
    assert "96.875" in block["stop_detail"] and "fell behind" in block["stop_detail"]


def test_a_fast_server_is_searched_up_to_max_rate_and_that_is_a_lower_bound():
    plan = CapacityConfig(**{**PLAN.__dict__, "max_rate": 400})
    block = search(service_s=0.0001, plan=plan)
    assert [s["rate"] for s in block["steps"]] == [50, 100, 200, 400]
    assert (block["stop_reason"], block["max_rate"]) == ("max-rate", 400)
    assert "max-rate" in capacity.LOWER_BOUND


def test_a_failed_step_is_drained_so_the_next_one_starts_from_an_empty_server():
    # 200/s against 95/s fills the pool of 200 (2 s of the server's work) and queues the rest in the generator:
    # drained, 75/s then meets the SLO; carried over, the same 75/s step measures the backlog of the step before
    server, schedule = Server(0.0105), OpenLoop(50.0)
    failed, now = run_step(server, schedule, 0.0, 200.0)
    assert capacity.rate_verdict(failed, PLAN)[0] != "ok"
    assert failed["dropped"] > 0 and failed["drain_s"] > 1.5  # the queue dropped, the server's backlog answered
    after, _ = run_step(server, schedule, now, 75.0)
    assert capacity.rate_verdict(after, PLAN) == ("ok", "") and after["p99_ms"] < 30
    server, schedule = Server(0.0105), OpenLoop(50.0)
    _, now = run_step(server, schedule, 0.0, 200.0, drain=False)
    polluted, _ = run_step(server, schedule, now, 75.0, drain=False)
    assert capacity.rate_verdict(polluted, PLAN)[0] != "ok" and polluted["p99_ms"] > 1000


def test_a_drain_drops_what_the_generator_still_queued_and_counts_it_in_the_step():
    # a pool of 5 connections at 200/s on a 95/s server: requests wait in the generator's queue; the drain drops them
    server, schedule = Server(0.0105), OpenLoop(50.0)
    step, _ = run_step(server, schedule, 0.0, 200.0, pool=5)
    assert step["dropped"] > 0 and step["late"] > 0
    assert not schedule.queue and schedule.next_at == math.inf
    assert capacity.rate_verdict(step, PLAN)[0] in ("slo-p99", "slo-throughput", "slo-late")


def rate_step(rate: float = 100.0, **kw) -> dict:
    """A step's numbers that meet the SLO, with `kw` changed."""
    step = {"rate": rate, "users": 200, "requests": 300, "rps": rate, "goodput": rate, "failure_ratio": 0.0,
            "p50_ms": 12.0, "p99_ms": 20.0, "p99_uncorrected_ms": 18.0, "intended": 300, "sent": 300, "late": 0,
            "dropped": 0, "generator_late": 0, "late_ratio": 0.0, "locust_cpu_pct": 20.0,
            "locust_wait_pct": 0.0, "sent_rate": rate, "drain_s": 0.1, "server_cpu_pct": 30.0}  # fmt: skip
    return {**step, **kw}


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({}, "ok"),
        ({"requests": 0, "failure_ratio": None, "p99_ms": None}, "slo-failures"),
        ({"failure_ratio": 0.02}, "slo-failures"),
        ({"generator_late": 6}, "generator-late"),  # late with a connection free: the generator's
        ({"generator_late": 6, "failure_ratio": 0.5}, "slo-failures"),  # failures first
        ({"generator_late": 5}, "ok"),  # 1% of 300, and SLACK (2) for one descheduling on a shared core
        ({"p99_ms": 501.0}, "slo-p99"),
        ({"p99_ms": 501.0, "generator_late": 30}, "generator-late"),  # the p99 is Locust's then
        ({"requests": 294}, "slo-throughput"),  # 300 - (1% of 300 + 2) = 295 answered at least
        ({"requests": 295}, "ok"),
        ({"late_ratio": 6 / 300}, "slo-late"),
        ({"late_ratio": 5 / 300}, "ok"),
        ({"locust_cpu_pct": 85.0, "locust_wait_pct": 6.0}, "generator-bound"),
        ({"locust_cpu_pct": 99.0, "p99_ms": 900.0}, "slo-p99"),  # the SLO before Locust's CPU
    ],
)
def test_each_verdict_in_order(changes, expected):
    verdict, why = capacity.rate_verdict(rate_step(**changes), PLAN)
    assert verdict == expected
    assert bool(why) == (expected != "ok")


def judged(*pairs: tuple[float, str]) -> list[dict]:
    return [rate_step(rate, verdict=v) for rate, v in pairs]


def test_next_rate_steps_down_from_a_failed_start_and_gives_up_below_one_per_second():
    assert capacity.next_rate([], PLAN) == 50
    assert capacity.next_rate(judged((50, "slo-p99")), PLAN) == 25
    assert capacity.next_rate(judged((50, "slo-p99"), (25, "ok")), PLAN) == 37.5
    low = [rate_step(50 / 2**k, failure_ratio=0.5) for k in range(6)]  # 50 ... 1.5625
    block = capacity.decide_rate(low, PLAN)
    assert capacity.next_rate(block["steps"], PLAN) is None
    assert (block["stop_reason"], block["max_rate"]) == ("no-sustainable-rate", None)


def test_a_noisy_failure_below_a_good_rate_does_not_bracket_the_boundary():
    steps = judged((50, "ok"), (100, "slo-p99"), (75, "ok"), (87.5, "slo-p99"), (81.25, "ok"))
    steps.insert(3, rate_step(60, verdict="slo-p99"))  # below the best good rate: ignored
    assert capacity.next_rate(steps, PLAN) == pytest.approx((81.25 + 87.5) / 2)


def test_generator_bound_ends_the_search_with_a_lower_bound_and_generator_late_bounds_it_from_above():
    bound = capacity.decide_rate([rate_step(50), rate_step(100, locust_cpu_pct=95.0)], PLAN)
    assert (bound["stop_reason"], bound["max_rate"]) == ("generator-bound", 100)
    assert capacity.next_rate(bound["steps"], PLAN) is None
    slipped = {"generator_late": 30}
    steps = [rate_step(50), rate_step(100, **slipped), rate_step(75), rate_step(87.5), rate_step(93.75)]
    late = capacity.decide_rate([*steps, rate_step(96.875, **slipped)], PLAN)
    assert (late["stop_reason"], late["max_rate"]) == ("generator-late", 93.75)
    assert {"generator-bound", "generator-late", "max-rate"} <= set(capacity.LOWER_BOUND)


def test_max_steps_bounds_the_search_and_a_short_record_is_incomplete():
    plan = CapacityConfig(**{**PLAN.__dict__, "max_steps": 3})
    steps = [rate_step(50), rate_step(100, p99_ms=900.0), rate_step(75)]
    assert capacity.decide_rate(steps, plan)["stop_reason"] == "max-steps"
    assert capacity.decide_rate(steps[:2], PLAN)["stop_reason"] == "incomplete"
    assert capacity.decide_rate([], PLAN)["stop_reason"] == "no-steps"
    # the run's time bound: every step, each with its drain (the request timeout), rounded up to whole seconds
    assert capacity.schedule_s(plan, drain_s=2) == 3 * (4 + 2 + 1) + 1


# --- a real search ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "spread",
    [
        pytest.param((), id="one-process"),
        # the master runs the search, every process or worker its share of each step (runner/locust/locustfile.py);
        # a coarser bisection (15%: 50, 100, 75, 87.5) is enough to show the shares add up, in 4 steps instead of 6
        pytest.param(("load.processes=2", "load.capacity.rate_precision=0.15"), id="two-processes"),
        pytest.param(("load.mode=distributed", "load.workers=2", "load.capacity.rate_precision=0.15"),
                     id="two-workers"),  # fmt: skip
    ],
)
def test_a_real_rate_search_finds_single_under_io_near_100_per_s(tmp_path, spread):
    from runner.run.experiment import run_experiment
    result = run_experiment(
        compose("server=single", "load=capacity", "load.capacity.by=rate", "workload=io", *spread), tmp_path
    )
    assert len(list(tmp_path.glob("locust_phases_*.json"))) == (2 if spread else 1)
    block = result.capacity
    assert block["by"] == "rate" and block["stop_reason"] == "boundary", block["stop_detail"]
    assert abs(block["max_rate"] - 100) <= 15  # 10 ms a request, one at a time (94-95/s measured: the overhead)
    steps = block["steps"]
    assert [s["rate"] for s in steps[:2]] == [50, 100] and steps[0]["verdict"] == "ok"
    for s in steps:
        assert list(s) == list(capacity.RATE_STEP_KEYS)
        assert s["drain_s"] is not None and s["drain_s"] < 5
        assert s["p99_ms"] >= s["p99_uncorrected_ms"] - 1  # corrected runs from the intended time: never less
    assert "decided differently" not in block["stop_detail"]  # the live search and the record agree
    assert result.outcome in ("ok", "completed_with_errors"), result.detail  # an overloaded step may time out
    assert json.loads((tmp_path / "result.json").read_text())["capacity"] == json.loads(json.dumps(block))


# --- the report -----------------------------------------------------------------------------------


def searched(name: str, steps: list[dict]) -> Run:
    config = {"server": {"name": name}, "load": {"users": 200, "capacity": {**PLAN.__dict__}},
              "workload": {"name": "io"}}  # fmt: skip
    result = RunResult(outcome="ok", config=config)
    result.capacity = capacity.decide_rate(steps, PLAN)
    return Run(run=name, outcome="ok", result=result)


SEARCHES = [
    ("single", [rate_step(50), rate_step(100, requests=285, rps=95.0, p99_ms=220.0), rate_step(75), rate_step(87.5),
                rate_step(93.75), rate_step(96.875, requests=285, rps=95.0, p99_ms=115.0)]),
    ("select", [rate_step(50 * 2**k, p99_ms=2.0 * (k + 1)) for k in range(7)]
               + [rate_step(6400, locust_cpu_pct=97.0, p99_ms=30.0)]),
    ("broken", [rate_step(50 / 2**k, failure_ratio=0.5) for k in range(6)]),
]  # fmt: skip
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "rate_capacity_section.md"  # the section as written


def test_the_rate_section_ranks_servers_by_max_sustainable_rate_and_lists_each_searchs_steps():
    text = capacity_report.rate_capacity_section([searched(name, steps) for name, steps in SEARCHES])
    assert text.startswith("## Capacity by rate\n")
    assert "an open model on a pool of 200 connections, from 50 requests/s x2 a step" in text
    assert text == GOLDEN.read_text()  # every number and word: read the file to review a change
    ranking = [[c.strip() for c in line.split("|")[1:9]] for line in text.split("### ")[0].splitlines()[6:9]]
    assert ranking == [
        ["1", "select", "select", "≥ 6400", "6400.0", "6400 – —", "8", "generator-bound"],
        ["2", "single", "single", "93.75", "93.8", "93.75 – 96.875", "6", "boundary"],
        ["—", "broken", "broken", "—", "—", "— – 1.5625", "6", "no-sustainable-rate"],
    ]
    assert "**boundary**: the bisection narrowed" in text and "**no-sustainable-rate**" in text
    single = text.split("### single (single): steps by rate\n")[1].split("###")[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in single.splitlines() if line.startswith("|")][2:]
    assert rows[1][:4] == ["2", "100", "100.0", "95.0"]  # step, offered, sent, answered
    assert [row[-1] for row in rows] == ["ok", "slo-throughput", "ok", "ok", "ok", "slo-throughput"]
    assert capacity_report.rate_capacity_section([]) == ""


def test_the_hockey_stick_is_drawn_with_every_server_and_the_report_has_the_section(tmp_path):
    for name, steps in SEARCHES:
        result = searched(name, steps).result
        result.metrics = Metrics(requests=900, failures=0, rps=90.0, avg_ms=5.0, median_ms=4.0, p99_ms=9.0)
        (tmp_path / name).mkdir()
        write_result(result, tmp_path / name)
    report = write_report(tmp_path).read_text()
    assert "![Capacity by rate: corrected p99 against offered rate](capacity-rate.png)" in report
    assert "## Capacity by rate" in report and "## Capacity\n" not in report  # no search by users here
    data = (tmp_path / "capacity-rate.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_a_rate_sweep_has_its_curves_section_and_figure(tmp_path):
    for server, capacity_rps in (("single", 95.0), ("select", 5000.0)):
        for rate in (50.0, 150.0):
            p99 = 12.0 if rate < capacity_rps else 1500.0
            config = {"server": {"name": server}, "load": {"users": 100, "arrival_rate": rate},
                      "workload": {"name": "io"}}  # fmt: skip
            metrics = Metrics(requests=int(8 * min(rate, capacity_rps)), failures=0, rps=min(rate, capacity_rps),
                              avg_ms=5.0, median_ms=4.0, p99_ms=p99, uncorrected_p99_ms=p99 / 2, intended_rps=rate,
                              sent_rps=rate, late=0, dropped=0)  # fmt: skip
            job = tmp_path / f"{server}_{rate:g}"
            job.mkdir()
            write_result(RunResult(outcome="ok", config=config, metrics=metrics), job)
    report = write_report(tmp_path).read_text()
    section = report.split("## Corrected p99 and achieved rate vs offered rate\n")[1].split("\n## ")[0]
    single = section.split("### single\n")[1].split("###")[0]
    rows = [[c.strip() for c in line.split("|")[1:8]] for line in single.splitlines() if line.startswith("|")][2:]
    assert rows == [["50", "1", "50.0", "50.0", "4", "12", "6"], ["150", "1", "150.0", "95.0", "4", "1500", "750"]]
    assert "![Corrected p99 and achieved rate vs offered rate](rates.png)" in report
    assert "## RPS and p99 vs users" not in report  # one users value: no users curve


def test_a_steps_late_ratio_is_the_servers_share_and_its_uncorrected_p99_comes_from_its_own_histogram():
    from runner import latency

    entry, raw = stats_entry((10.0,) * 300), latency.Recorder()
    for _ in range(300):
        raw.record(4.0)
    entry["hdr_uncorrected"] = raw.encode()
    counts = {"intended": 300, "sent": 297, "late": 9, "queued": 6, "generator_late": 3, "dropped": 3}
    step = capacity.rate_step_numbers(entry, 10.0, 13.0, 100.0, 200, counts, 20.0, 1.0)
    assert list(step) == list(capacity.RATE_STEP_KEYS)
    assert step["late_ratio"] == pytest.approx((9 - 3 + 3) / 300)  # late for want of a connection, plus dropped
    assert (step["sent_rate"], step["rps"], step["p99_uncorrected_ms"]) == (99.0, 100.0, pytest.approx(4.0, rel=0.01))
