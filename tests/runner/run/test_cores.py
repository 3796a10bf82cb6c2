"""Cores: which the server and Locust may run on (read from /proc while they run), how many Locust processes
`auto` makes, what a 16-core machine would get, and the values a machine cannot give, refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.runs import smoke

from runner.run import cores, experiment
from runner.run.sweep import validate_argv

HERE = cores.available()
pytestmark = pytest.mark.skipif(len(HERE) < 2, reason="pinning needs 2 cores")



def _allowed_list(pid: int) -> str:
    """The kernel's own word on where a process may run: /proc/<pid>/status Cpus_allowed_list ("0-1,3")."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def _allowed(pid: int) -> set[int]:
    spans = [part.split("-") for part in _allowed_list(pid).split(",")]
    return {core for span in spans for core in range(int(span[0]), int(span[-1]) + 1)}


@pytest.mark.parametrize(
    "value,server,locust,shared",
    [
        ("1", HERE[:1], HERE[1:], False),
        (str(len(HERE)), HERE, HERE, True),  # every core: Locust shares them
        ("all", HERE, HERE, True),
        (f"[{HERE[-1]}]", HERE[-1:], HERE[:-1], False),  # a list of ids
    ],
)
def test_each_side_runs_on_the_cores_it_was_given(tmp_path, value, server, locust, shared):
    cfg = smoke(f"run.server_cores={value}")
    assert validate_argv([f"run.server_cores={value}"]) == []
    split = cores.split(cfg.run.pin, cfg.run.server_cores, HERE)
    assert split.shared is shared
    target, generator = experiment.resolve(cfg, tmp_path, split)
    target.start()
    try:
        generator.start(target.host, target.port)
        try:
            assert _allowed(target.pids()["server"]) == set(server)
            assert _allowed(generator.pids()["locust"]) == set(locust)
            assert generator.processes == (1 if shared else len(locust))
        finally:
            generator.stop(5)
    finally:
        target.stop()


def test_a_value_the_machine_cannot_give_is_refused_naming_the_cores_there_are():
    there = f"this machine gives {len(HERE)} cores ({_allowed_list(os.getpid())})"  # as the kernel writes it
    assert validate_argv([f"run.server_cores={len(HERE) + 1}"]) == [
        f"run.server_cores: {len(HERE) + 1} cores asked for, {there}"
    ]
    assert validate_argv(["run.server_cores=[99]"]) == [f"run.server_cores: core 99 not available; {there}"]
    assert validate_argv(["run.server_cores=0"]) == [f"run.server_cores: 0 cores asked for, {there}"]
    assert validate_argv(["run.server_cores=many"]) == [
        "run.server_cores: a count, a list of core ids or all, got 'many'"
    ]


def test_on_sixteen_cores_the_server_gets_what_it_asks_and_locust_a_process_per_core_of_the_rest():
    """On paper, with the core count faked: what the tool does on a 16-core machine."""
    sixteen = list(range(16))
    default = cores.split(True, 1, sixteen)
    assert (sorted(default.server), sorted(default.locust)) == ([0], list(range(1, 16)))
    assert cores.locust_processes("auto", default) == 15
    four = cores.split(True, 4, sixteen)
    assert (sorted(four.server), sorted(four.locust), cores.locust_processes("auto", four)) == (
        [0, 1, 2, 3], list(range(4, 16)), 12
    )
    every = cores.split(True, "all", sixteen)
    assert every.shared and sorted(every.locust) == sixteen and cores.locust_processes("auto", every) == 1
    assert cores.locust_processes("auto", default, searching=True) == 1  # a capacity search: one process
    assert cores.locust_processes(3, default) == 3  # a count is a count
    assert cores.split(False, 4, sixteen) == cores.Split(None, None)  # run.pin=false: nothing assigned
    assert cores.split(True, 1, [0]) == cores.Split(None, None)  # one core: nothing to split
