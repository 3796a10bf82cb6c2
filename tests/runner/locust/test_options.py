"""The crossing into Locust (runner/locust/options.py): what the runner tells a Locust process is what the
process reads back -- the runner's argv parsed by Locust's own parser with the locustfile's options added,
in a Python of its own (importing locust patches the process with gevent: tests/runner/test_capacity.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
from support.runs import compose

from runner.run.load import locust_argv, told

READ_BACK = """
import json, sys
from dataclasses import asdict
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments
from runner.locust.options import add_arguments, read

parser = get_empty_argument_parser()
setup_parser_arguments(parser)
add_arguments(parser)
parser.add_argument("--progress-file")  # runner/locust/progress.py's
print(json.dumps([asdict(read(parser.parse_known_args(argv)[0])) for argv in json.loads(sys.stdin.read())]))
"""

CASES = [
    pytest.param(("load=default",), 1, id="closed-loop"),
    pytest.param(("load.arrival_rate=300", "load.arrival=poisson", "load.users=20"), 2, id="open-model-2-processes"),
    pytest.param(("load=capacity",), 1, id="search-by-users"),
    pytest.param(("load=capacity", "load.capacity.by=rate", "load.users=20"), 3, id="search-by-rate-3-processes"),
    pytest.param(("load=smoke", "workload=echo", "load.wait_max_s=0.5", "load.run_time=1m30s"), 1, id="echo"),
]


@pytest.fixture(scope="module")
def read_back():
    """Each argv (Locust's arguments) as the Told a Locust process reads from it; one Python for all of them."""

    def parse(argvs: list[list[str]]) -> list[dict]:
        done = subprocess.run([sys.executable, "-c", READ_BACK], input=json.dumps(argvs), capture_output=True,
                              text=True, timeout=120, check=True)  # fmt: skip
        return json.loads(done.stdout)

    return parse


@pytest.mark.parametrize("overrides, shares", CASES)
def test_what_locust_reads_back_is_what_the_runner_told_it(overrides, shares, read_back, tmp_path):
    sent = told(compose(*overrides), tmp_path, shares)
    argv = locust_argv(sent, "127.0.0.1", 8000, tmp_path)
    assert argv[1:3] == ["-m", "locust"]
    (got,) = read_back([argv[3:]])
    assert got == json.loads(json.dumps(asdict(sent)))  # every value, the plan and None included


def test_off_is_none_on_both_sides_and_a_rate_crosses_once(read_back, tmp_path):
    closed = told(compose("load=default"), tmp_path, 1)
    search = told(compose("load=capacity", "load.capacity.by=rate", "load.users=20"), tmp_path, 4)
    closed_argv, search_argv = locust_argv(closed, "::1", 1, tmp_path), locust_argv(search, "::1", 1, tmp_path)
    got_closed, got_search = read_back([closed_argv[3:], search_argv[3:]])
    assert closed.arrival_rate is None and got_closed["arrival_rate"] is None and closed.process_rate() is None
    assert "--arrival-rate" not in closed_argv and "--rate-shares" not in closed_argv
    # a search by rate: start_rate travels in the plan only, each of the 4 processes starts at its share
    assert "--arrival-rate" not in search_argv and got_search["arrival_rate"] is None
    assert got_search["capacity"]["start_rate"] == 50 and search.process_rate() == 50 / 4


def test_a_capacity_run_is_told_its_schedule_and_its_ramp_up_is_locusts(tmp_path):
    from runner.capacity import schedule_s
    from runner.schema import spawn_s

    searched = told(compose("load=capacity"), tmp_path, 1)
    assert searched.run_time_s == schedule_s(searched.capacity, searched.request_timeout_s)
    fixed = told(compose("load=default", "load.run_time=1m30s", "load.users=1000", "load.spawn_rate=100"), tmp_path, 1)
    assert (fixed.run_time_s, fixed.ramp_s()) == (90.0, spawn_s(1000, 100.0)) == (90.0, 9.0)
