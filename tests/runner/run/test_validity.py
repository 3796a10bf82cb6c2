"""The validity flags, on hand-made results: each rule fires on its case and only there."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from runner.config import Config, LoadConfig, ServerConfig, WorkloadConfig
from runner.result import Metrics, RunResult
from runner.run.validity import LEGEND, one_runnable, run_flags


def _cfg(server: str = "select", command: str | None = None, options: dict | None = None, **load):
    return OmegaConf.structured(
        Config(
            server=ServerConfig(name=server, command=command, options=options or {}),
            load=LoadConfig(name="default", users=100, spawn_rate=100, **load),
            workload=WorkloadConfig(name="hello"),
        )
    )


def _result(served=10_000, locust_util=0.5, server_util=0.5, **metrics) -> RunResult:
    # a consistent closed loop: 100 users at 10 ms each -> 10,000 req/s
    values = {"requests": 10_000, "failures": 0, "failure_ratio": 0.0, "rps": 10_000.0, "avg_ms": 10.0}
    values["total_requests"] = 10_000
    values.update(metrics)
    return RunResult(
        outcome="ok",
        server={"served": served},
        metrics=Metrics(**values),
        resources={"server": {"cpu_util": server_util}, "locust": {"cpu_util": locust_util}},
    )


def test_a_consistent_run_has_no_flags():
    assert run_flags(_result(), _cfg()) == []


@pytest.mark.parametrize(
    "result,flag",
    [
        (_result(locust_util=0.97, server_util=0.6), "generator-bound"),
        (_result(failures=200, failure_ratio=0.02), "errors"),
        (_result(requests=500, total_requests=500, served=500, rps=10_000.0), "few-requests"),
        (_result(rps=5_000.0), "littles-law"),  # 5,000/s x 10 ms = 50 users busy of 100
        (_result(served=10_100), "count-mismatch"),  # 1% more than Locust counted
    ],
)
def test_each_rule_fires_on_its_case(result, flag):
    assert flag in run_flags(result, _cfg())


def test_a_saturated_server_is_not_blamed_on_the_generator():
    assert "generator-bound" not in run_flags(_result(locust_util=0.97, server_util=0.95), _cfg())


def test_think_time_counts_in_littles_law():
    # 100 users, each 10 ms of response + 0.5 s of think time -> 196 req/s
    assert "littles-law" not in run_flags(_result(rps=196.0), _cfg(wait_min_s=0.25, wait_max_s=0.75))


def test_every_flag_has_words_in_the_legend():
    for flag in ["generator-bound", "errors", "few-requests", "littles-law", "count-mismatch", "unstable",
                 "users-not-reached", "contended"]:  # fmt: skip
        assert flag in LEGEND


# --- issue 13: littles-law measured on the users' own loop; users that never started -------------


def test_the_generators_time_between_requests_is_not_lost_time():
    """Measured: a 5-user smoke run spent ~20% of each user's cycle between requests, waiting for its turn on the
    generator; by RPS x response time it looked like lost time and was flagged on almost every run."""
    result = _result(rps=6_000.0, loop_users=97.5)  # 6,000/s x 10 ms = 60 users in requests, 97.5 in the loop
    assert "littles-law" not in run_flags(result, _cfg())


def test_time_lost_outside_the_users_loop_is_flagged():
    assert "littles-law" in run_flags(_result(loop_users=70.0), _cfg())  # 30 of 100 users' time unaccounted


def test_without_a_loop_measure_the_response_times_decide():
    assert "littles-law" in run_flags(_result(rps=5_000.0, loop_users=None), _cfg())


def test_users_never_all_started_are_flagged_and_little_uses_those_reached():
    result = _result(rps=4_000.0, users_reached=40, loop_users=39.0)  # 40 users at 10 ms: 4,000/s
    assert run_flags(result, _cfg()) == ["users-not-reached"]
    assert run_flags(_result(users_reached=100, loop_users=99.0), _cfg()) == []


@pytest.mark.parametrize("side", ["server", "locust"])
def test_others_on_either_sides_cores_make_a_run_contended(side):
    result = _result()
    result.resources[side]["others_pct"] = 60.0  # a busy loop took 60% of that side's core
    assert "contended" in run_flags(result, _cfg())
    result.resources[side]["others_pct"] = 3.0  # kernel threads, a shell
    assert "contended" not in run_flags(result, _cfg())


def _pinned(**sides) -> RunResult:
    result = _result()
    result.server["cpus"], result.load["cpus"] = [0], [1]
    for side, wait in sides.items():
        result.resources[side]["wait_pct"] = wait
    return result


@pytest.mark.parametrize("side", ["server", "locust"])
def test_a_one_thread_side_that_waited_for_its_core_is_contended(side):
    """A busy loop the scheduler moves between cores read 20% others' CPU but made select and Locust wait a quarter
    of the window (benchmarks/contention.py): with one runnable thread per core, only someone else does that."""
    assert "contended" in run_flags(_pinned(**{side: 25.0}), _cfg())
    assert "contended" not in run_flags(_pinned(**{side: 4.0}), _cfg())  # quiet: 0-5%


def test_a_model_whose_own_threads_queue_is_not_judged_by_its_wait():
    """The thread and process servers' own threads and children wait for their one core: 8,500-9,200% of a
    quiet window. Only others' CPU can say a neighbour was there."""
    for server in ("thread", "process", "threadpool"):
        assert one_runnable(_pinned(), _cfg(server))["server"] is False
        assert "contended" not in run_flags(_pinned(server=9000.0), _cfg(server))


@pytest.mark.parametrize(
    "cfg,result,expected",
    [
        (_cfg("select"), _pinned(), {"server": True, "locust": True}),
        (_cfg("epoll"), _pinned(), {"server": True, "locust": True}),
        (_cfg("prefork"), _pinned(), {"server": True, "locust": True}),  # a worker per core
        (_cfg("prefork", options={"workers": 2}), _pinned(), {"server": False, "locust": True}),  # 2 on 1 core
        (_cfg("mine", command="x {port}"), _pinned(), {"server": False, "locust": True}),  # not seen into
        (_cfg("select", processes=2), _pinned(), {"server": True, "locust": False}),  # 2 Locusts on 1 core
        (_cfg("select", mode="distributed"), _pinned(), {"server": True, "locust": False}),
        (_cfg("select"), _result(), {"server": False, "locust": False}),  # unpinned: they wait for each other
    ],
)
def test_which_sides_run_one_thread_per_core(cfg, result, expected):
    assert one_runnable(result, cfg) == expected


def _open(**metrics) -> RunResult:
    """An open model at 1,000/s over a 10 s window: 10,000 requests due."""
    values = {"intended_rps": 1000.0, "sent_rps": 1000.0, "window_s": 10.0, "late": 0, "queued": 0}
    values |= {"generator_late": 0, "dropped": 0, "rps": 1000.0}
    return _result(**(values | metrics))


def test_an_open_model_on_schedule_has_no_flags_and_no_littles_law():
    # 1,000/s x 10 ms = 10 connections busy of 100: a closed loop's Little's law would flag it, a pool is not a loop
    assert run_flags(_open(), _cfg(arrival_rate=1000.0)) == []


@pytest.mark.parametrize(
    "metrics, server_util, flags",
    [
        ({"late": 150, "generator_late": 150}, 0.5, ["generator-bound"]),  # late with a connection free
        ({"late": 150, "generator_late": 150}, 0.95, []),  # ... but the server was saturated: not the generator
        ({"late": 150, "queued": 150}, 0.5, ["behind-schedule"]),  # waited for a connection
        ({"dropped": 101}, 0.95, ["behind-schedule"]),
        ({"late": 50, "queued": 50, "dropped": 40}, 0.5, []),  # 0.9%: within the 1% tolerance
    ],
)
def test_an_open_model_that_could_not_keep_its_schedule_says_whose_fault(metrics, server_util, flags):
    assert run_flags(_open(server_util=server_util, **metrics), _cfg(arrival_rate=1000.0)) == flags


def test_the_runs_line_says_whether_an_open_model_kept_its_rate():
    from runner.run.experiment import summary

    line = summary(_open(sent_rps=76.3, intended_rps=150.1, late=261, rps=88.9, avg_ms=1083.5))
    assert "88.9 req/s, avg 1083.5 ms (corrected), sent 76.3/s of 150.1/s due, 261 late, 0 dropped" in line
    assert "corrected" not in summary(_result())  # a closed loop's line as before


def test_the_runs_line_leaves_out_a_cpu_share_it_does_not_know():
    """A tree with no samples over the window (a starved sampler) has no CPU share: the line says the other's
    and goes on (it used to raise, and with it the whole sweep)."""
    from runner.run.experiment import summary

    result = _result()
    result.resources["server"]["cpu_pct"], result.resources["locust"]["cpu_pct"] = 97.4, None
    assert summary(result).endswith(", server CPU 97%")
    result.resources["server"]["cpu_pct"], result.resources["locust"]["cpu_pct"] = None, 51.0
    assert summary(result).endswith(", locust CPU 51%")
