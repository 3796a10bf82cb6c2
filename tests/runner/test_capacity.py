"""The capacity search: its pure decision on tables of real-looking step numbers, its record built
from real Locust StatsEntry objects, its report sections, and (slow) a real search against a real
server next to a fixed-users run that the search's shape must leave alone."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from support.locust_stats import in_locust, stats_entry
from support.runs import compose

from runner import capacity
from runner.config import CapacityConfig
from runner.record import Run
from runner.report import capacity as capacity_report
from runner.report.document import write_report
from runner.report.runs import to_frame
from runner.result import Metrics, RunResult, write_result
from runner.run import capacity as capacity_record
from runner.run.load import locust_argv, told
from runner.run.sweep import check

PLAN = CapacityConfig(enabled=True, start_users=10, step_users=20, step_s=4, ramp_s=1, max_users=70,
                      max_failure_ratio=0.01, max_p99_ms=500, min_growth=0.05, generator_cpu_pct=90)  # fmt: skip


def step(
    users: int, rps: float, p99: float = 50.0, failure_ratio: float = 0.0, cpu: float | None = 30.0, wait: float = 0.0
) -> dict:
    return {"users": users, "start": 0.0, "end": 3.0, "requests": round(rps * 3), "rps": rps, "goodput": rps,
            "failure_ratio": failure_ratio, "p50_ms": p99 / 3, "p95_ms": p99 / 1.5, "p99_ms": p99,
            "locust_cpu_pct": cpu, "locust_wait_pct": wait, "server_cpu_pct": None, "verdict": None}  # fmt: skip



# --- the decision -------------------------------------------------------------------------------


def test_the_schedule_steps_from_start_to_max_users():
    assert capacity.users_schedule(PLAN) == [10, 30, 50, 70]
    assert capacity.users_schedule(CapacityConfig(start_users=10, step_users=20, max_users=200))[-1] == 190
    # four steps of 4 s, each rounded up to Locust's one-second tick, plus one
    assert capacity.schedule_s(PLAN) == 4 * 5 + 1


def test_a_single_process_server_stops_at_the_knee_with_its_plateau_as_capacity():
    # single under 10 ms io: ~95 req/s whatever the users; queueing shows in p99 only
    block = capacity.decide([step(10, 95.2, p99=120), step(30, 96.1, p99=330)], PLAN)
    assert [s["verdict"] for s in block["steps"]] == ["ok", "knee"]
    assert (block["stop_reason"], block["max_rps"], block["users_at_max"]) == ("knee", 96.1, 30)
    assert "from 95 to 96 (+0.9%)" in block["stop_detail"]


def test_a_falling_rps_is_a_knee_and_the_capacity_is_the_step_before():
    block = capacity.decide([step(10, 900), step(30, 2500), step(50, 2300)], PLAN)
    assert [s["verdict"] for s in block["steps"]] == ["ok", "ok", "knee"]
    assert (block["max_rps"], block["users_at_max"]) == (2500, 30)


def test_a_saturated_locust_ends_the_search_with_a_lower_bound_not_a_capacity():
    steps = [step(10, 950, cpu=30), step(30, 2800, cpu=75), step(50, 3900, cpu=97), step(70, 4000, cpu=99)]
    block = capacity.decide(steps, PLAN)
    assert [s["verdict"] for s in block["steps"]] == ["ok", "ok", "generator-bound"]  # the 4th is never judged
    # the server met the SLO at 3900 req/s: that much it sustains, maybe more (the report prints ">= 3900")
    assert (block["stop_reason"], block["max_rps"], block["users_at_max"]) == ("generator-bound", 3900, 50)
    assert "Locust used 97% of its core and waited for it 0%" in block["stop_detail"]
    assert "3900 req/s" in block["stop_detail"]


@pytest.mark.parametrize(
    "last,expected",
    [
        (step(30, 2000, failure_ratio=0.05), "slo-failures"),
        (step(30, 2000, failure_ratio=0.011), "slo-failures"),
        (step(30, 2000, failure_ratio=0.01), "ok"),  # at the limit still meets it
        (step(30, 2000, p99=510), "slo-p99"),
        (step(30, 2000, p99=500), "ok"),
        (step(30, 2000, p99=900, cpu=99), "slo-p99"),  # the SLO is checked before the generator
        (step(30, 2000, failure_ratio=0.2, p99=900), "slo-failures"),  # failures before p99
        (step(30, 1000, cpu=99), "generator-bound"),  # before the knee: 1000 vs 950 would be one
        (step(30, 1000, cpu=34, wait=60), "generator-bound"),  # starved by other processes: wanted its core 94%
        (step(30, 1000, cpu=34, wait=40), "ok"),
        (step(30, 980), "knee"),  # +3.2% < 5%
        (step(30, 1000), "ok"),  # +5.3%
        ({**step(30, 0), "requests": 0, "failure_ratio": None, "p99_ms": None}, "slo-failures"),
    ],
)
def test_verdicts_are_checked_in_order(last, expected):
    verdict, why = capacity.verdict(last, step(10, 950), PLAN)
    assert verdict == expected
    assert bool(why) == (expected != "ok")


def test_the_first_step_is_never_a_knee_and_an_unknown_cpu_is_not_generator_bound():
    assert capacity.verdict(step(10, 5.0, cpu=None), None, PLAN) == ("ok", "")


def test_a_breach_at_the_first_step_leaves_no_sustainable_rps():
    block = capacity.decide([step(10, 80, p99=900)], PLAN)
    assert (block["max_rps"], block["users_at_max"], block["stop_reason"]) == (None, None, "slo-p99")


def test_every_step_within_the_slo_stops_at_max_users_and_fewer_is_incomplete():
    steps = [step(10, 900), step(30, 2600), step(50, 3500), step(70, 3900)]
    assert capacity.decide(steps, PLAN)["stop_reason"] == "max-users"
    assert capacity.decide(steps, PLAN)["max_rps"] == 3900
    assert capacity.decide(steps[:2], PLAN)["stop_reason"] == "incomplete"
    assert capacity.decide([], PLAN)["stop_reason"] == "no-steps"


# --- the record, from real StatsEntry objects ---------------------------------------------------


def test_step_numbers_match_locusts_own_percentiles_and_rates():
    times = [10.0] * 900 + [40.0] * 90 + [400.0] * 10  # p99 at the 990th of 1000
    entry, percentiles = in_locust(f"""
import json
from locust.stats import RequestStats, StatsEntry
entry = StatsEntry(RequestStats(), "step", "ALL")
for t in {times!r}:
    entry.log(t, 100)
print(json.dumps([entry.serialize(), [entry.get_response_time_percentile(p) for p in (0.5, 0.95, 0.99)]], default=list))
""")
    numbers = capacity.step_numbers(entry, 100.0, 104.0, 30, 42.0, 7.0)
    assert numbers["requests"] == 1000 and numbers["rps"] == 250.0
    assert [numbers["p50_ms"], numbers["p95_ms"], numbers["p99_ms"]] == percentiles
    assert list(numbers) == list(capacity.STEP_KEYS)


def _write_step_file(job: Path, raw: list[dict], live_reason: str) -> None:
    (job / capacity.STEPS_FILE).write_text(json.dumps({"steps": raw, "stop_reason": live_reason}))


def test_collect_records_the_block_and_leaves_the_runs_own_metrics_as_measured(tmp_path):
    # 10 users: 300 requests in 3 s; 30 users: 900; 50 users: 880, 5 of them failed (RPS fell: the knee)
    raw = [
        {"users": 10, "start": 10.0, "end": 13.0, "entry": stats_entry((12.0,) * 300), "locust_cpu_pct": 20.0},
        {"users": 30, "start": 14.0, "end": 17.0, "entry": stats_entry((15.0,) * 900), "locust_cpu_pct": 50.0},
        {"users": 50, "start": 18.0, "end": 21.0, "entry": stats_entry((30.0,) * 880, failures=5),
         "locust_cpu_pct": 55.0},  # fmt: skip
    ]
    for r, v in zip(raw, ["ok", "ok", "knee"], strict=True):
        r["verdict"] = v
    _write_step_file(tmp_path, raw, "knee")
    measured = Metrics(requests=2080, rps=231.1, window="steady", total_requests=3000, total_failures=5)
    result = RunResult(outcome="ok", config={"load": {"users": 200}}, metrics=measured)
    capacity_record.collect(result, tmp_path, PLAN)
    block = result.capacity
    assert [s["verdict"] for s in block["steps"]] == ["ok", "ok", "knee"]
    assert (block["max_rps"], block["users_at_max"], block["stop_reason"]) == (300.0, 30, "knee")
    assert "decided differently" not in block["stop_detail"]
    assert result.metrics == measured and result.load == {}  # the search's numbers are the block's only
    assert block["steps"][2]["failure_ratio"] == 5 / 880


def test_collect_says_when_the_live_decision_disagrees_or_no_file_was_left(tmp_path):
    raw = [{"users": 10, "start": 0.0, "end": 3.0, "entry": stats_entry((12.0,) * 300), "locust_cpu_pct": 20.0,
            "verdict": "ok"}]  # fmt: skip
    _write_step_file(tmp_path, raw, "max-users")
    result = RunResult(outcome="ok")
    capacity_record.collect(result, tmp_path, PLAN)
    assert result.capacity["stop_reason"] == "incomplete"
    assert "the live search decided differently: max-users" in result.capacity["stop_detail"]
    empty = RunResult(outcome="ok")
    capacity_record.collect(empty, tmp_path / "nowhere", PLAN)
    assert empty.capacity["steps"] == [] and empty.capacity["stop_reason"] == "no-steps"


# --- config and argv ----------------------------------------------------------------------------


def test_only_a_capacity_load_asks_locust_for_the_search(tmp_path):
    argv = locust_argv(told(compose("load=capacity"), tmp_path, 1), "127.0.0.1", 8000, tmp_path)
    plan = json.loads(argv[argv.index("--capacity") + 1])
    assert plan["start_users"] == 10 and plan["max_users"] == 200
    assert argv[argv.index("--run-time") + 1] == f"{capacity.schedule_s(capacity.plan_from(plan)):g}s"
    assert "--capacity" not in locust_argv(told(compose("load=default"), tmp_path, 1), "127.0.0.1", 8000, tmp_path)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("load.processes=2", "load.processes: a capacity search by users runs one Locust process"),
        ("load.capacity.ramp_s=4", "load.capacity.ramp_s: need 0 <= ramp_s <= step_s - 1"),
        ("load.capacity.max_users=5", "load.capacity.max_users: must be >= start_users"),
        ("load.capacity.step_users=0", "load.capacity.step_users: must be > 0"),
        ("load.capacity.max_failure_ratio=2", "load.capacity.max_failure_ratio: must be in [0, 1]"),
    ],
)
def test_a_bad_capacity_plan_is_refused(override, expected):
    assert any(expected in e for e in check(compose("load=capacity", override)))
    assert check(compose("load=default", override.replace("load.processes=2", "load.processes=1"))) == []


# --- report sections ----------------------------------------------------------------------------


def test_capacity_section_ranks_by_max_rps_and_lists_each_runs_steps():
    def searched(name: str, steps: list[dict]) -> Run:
        result = RunResult(outcome="ok", config={"server": {"name": name}, "load": {"capacity": vars(PLAN)}})
        result.capacity = capacity.decide(steps, PLAN)
        return Run(run=name, outcome="ok", result=result)

    text = capacity_report.capacity_section(
        [
            searched("single", [step(10, 95.2, p99=120), step(30, 96.1, p99=330)]),
            searched("select", [step(10, 950), step(30, 2800), step(50, 3900, cpu=97)]),
            searched("broken", [step(10, 50, failure_ratio=0.5)]),
        ]
    )
    ranking = [line.split("|")[1:5] for line in text.split("### ")[0].splitlines() if line.startswith("| ")][1:]
    assert [[c.strip() for c in row] for row in ranking] == [
        ["1", "select", "select", "≥ 3900.0"],
        ["2", "single", "single", "96.1"],
        ["—", "broken", "broken", "—"],
    ]
    assert "**generator-bound**: Locust reached its CPU limit" in text and "**knee**: RPS stopped" in text
    assert text.count("### ") == 3 and "| knee " in text


def test_a_capacity_search_is_ranked_by_its_block_not_in_the_tables_of_fixed_loads(tmp_path):
    """A search's whole-run numbers mix every step (users rising): ranked beside fixed loads, they would rank the
    search's length. results.csv keeps them; the Capacity section ranks the block's."""
    block = capacity.decide([step(10, 950), step(30, 2800)], PLAN)
    searched = RunResult(outcome="ok",
                         metrics=Metrics(requests=9000, failures=0, rps=1500.0, avg_ms=9.0, window="steady"),
                         config={"server": {"name": "select"}, "load": {"users": 200, "capacity": vars(PLAN)},
                                 "workload": {"name": "io"}}, capacity=block)  # fmt: skip
    fixed = RunResult(outcome="ok",
                      metrics=Metrics(requests=7000, failures=0, rps=1234.5, avg_ms=8.0, window="steady"),
                      config={"server": {"name": "thread"}, "load": {"users": 50},
                              "workload": {"name": "io"}})  # fmt: skip
    for name, result in (("0_select", searched), ("1_thread", fixed)):
        (tmp_path / name).mkdir()
        write_result(result, tmp_path / name)
    report = write_report(tmp_path).read_text()
    tables = report.split("## Table 1.")[1].split("## Capacity")[0]
    assert "1234.5" in tables and "1500.0" not in tables and "select" not in tables
    assert "1 of 2 runs are a capacity search (load=capacity), ranked in its Capacity section below" in report
    assert "|    2800.0 |" in report.split("## Capacity")[1]  # the block's
    csv = (tmp_path / "results.csv").read_text()
    assert "1500.0" in csv and "capacity-search" in csv  # the run's own, measured over the search


def _runs(made) -> list[Run]:
    return [
        made(server=server, workload="io", users=users, rps=rps, p99_ms=p99, outcome="ok", run=f"{i}")
        for i, (server, users, rps, p99) in enumerate(
            [
                ("select", 10, 950.0, 15.0),
                ("select", 50, 3900.0, 30.0),
                ("single", 10, 95.0, 120.0),
                ("single", 50, 96.0, 560.0),
                ("single", 50, 94.0, 580.0),
            ]  # fmt: skip
        )
    ]


def test_curves_are_one_row_per_server_and_users_with_medians_of_repeats(made):
    table = capacity_report.curve_table(to_frame(_runs(made)))
    rows = table[["series", "users", "n", "rps", "p99_ms"]].values.tolist()
    assert rows == [["select", 10, 1, 950.0, 15.0], ["select", 50, 1, 3900.0, 30.0],
                    ["single", 10, 1, 95.0, 120.0], ["single", 50, 2, 95.0, 570.0]]  # fmt: skip
    text = capacity_report.curves_section(to_frame(_runs(made)))
    assert "## RPS and p99 vs users" in text and "### single" in text
    assert capacity_report.curves_section(to_frame(_runs(made)[:1])) == ""  # one user count: no curve


# --- end to end (slow): a real search, and the fixed-users run the shape must leave alone -------


@pytest.mark.slow
def test_a_real_capacity_search_records_a_complete_consistent_block(tmp_path):
    from runner.run.experiment import run_experiment

    overrides = ["server=select", "load=capacity", "workload=io", "load.capacity.start_users=5",
                 "load.capacity.step_users=5", "load.capacity.max_users=15", "load.capacity.step_s=2",
                 "load.run_time=30s"]  # fmt: skip  (a search runs for its schedule instead, 10 s)
    cfg = compose(*overrides)
    result = run_experiment(cfg, tmp_path)
    block = result.capacity
    assert result.outcome == "ok", result.detail
    assert 1 <= len(block["steps"]) <= 3
    assert set(block) == {"by", "steps", "max_rps", "users_at_max", "stop_reason", "stop_detail"}
    for s in block["steps"]:
        assert list(s) == list(capacity.STEP_KEYS)
        assert None not in s.values(), s
        assert s["end"] - s["start"] == pytest.approx(1, abs=0.3)  # 2 s steps, the first 1 s not measured
    assert [s["users"] for s in block["steps"]] == [5, 10, 15][: len(block["steps"])]
    assert all(s["verdict"] == "ok" for s in block["steps"][:-1])
    assert block["stop_reason"] in capacity.STOP_REASONS and block["stop_reason"] != "incomplete"
    assert "decided differently" not in block["stop_detail"]
    assert sum(s["requests"] for s in block["steps"]) <= result.metrics.total_requests <= result.server["served"]
    sustained = [s for s in block["steps"] if s["verdict"] in capacity.SUSTAINED]
    assert block["max_rps"] == max(s["rps"] for s in sustained)
    assert result.metrics.window == "steady" and result.metrics.requests >= sum(s["requests"] for s in block["steps"])
    assert result.config["load"]["users"] == cfg.load.users  # the config's: the steps say which users each ran
    argv = shlex.split(result.load["command"])
    assert f"{result.load['run_time_s']:g}s" == argv[argv.index("--run-time") + 1]  # the search's, not load.run_time
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["capacity"] == json.loads(json.dumps(block))


@pytest.mark.slow
def test_a_fixed_users_run_is_untouched_by_the_shape(tmp_path):
    from runner.run.experiment import run_experiment

    result = run_experiment(compose("server=select", "load=smoke"), tmp_path)
    assert result.outcome == "ok", result.detail
    assert result.capacity is None and result.metrics.window == "steady"
    assert not (tmp_path / capacity.STEPS_FILE).exists()
    log = (tmp_path / "locust.log").read_text()
    assert "Shape" not in log and "Ramping to 5 users" in log
