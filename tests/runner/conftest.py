"""Real smoke sweeps shared by the report tests (figures, comparison, progress): made once per session."""

from __future__ import annotations

from typing import Any

import pytest
from support.runs import Sweep, run_sweep


@pytest.fixture(scope="session")
def smoke_sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sweep, Sweep]:
    """Two real sweeps of two servers, each run twice: (baseline select+thread, new select+single). 3 s runs:
    the shortest that leave two whole seconds of samples for the over-time figure."""
    root = tmp_path_factory.mktemp("sweeps")
    return (
        run_sweep(root / "old", "server=select,thread", "run.repeats=2", "load.run_time=3s"),
        run_sweep(root / "new", "server=select,single", "run.repeats=2", "load.run_time=3s"),
    )


def _made(run: str = ".", server: str = "?", outcome: str = "ok", **values: Any) -> Any:
    """A report record (runner/record.py) as if loaded from a result.json holding `values`, named as
    the frame's columns (rps=..., p50_ms=..., server_cpus="0"): what a test of the report starts from."""
    from runner.record import Run
    from runner.result import Metrics, RunResult

    config: dict[str, dict[str, Any]] = {"server": {"name": server}, "load": {}, "workload": {}}
    sections: dict[str, dict[str, Any]] = {"server": {}, "load": {}, "resources": {}}
    places = {"keepalive": ("server", "keepalive"), "workload": ("workload", "name"), "users": ("load", "users"),
              "spawn_rate": ("load", "spawn_rate"), "arrival_rate": ("load", "arrival_rate")}  # fmt: skip
    for name, (section, key) in places.items():
        if name in values:
            config[section][key] = values.pop(name)
    for name, section in (("server_cpus", "server"), ("locust_cpus", "load")):
        if name in values:
            cpus = values.pop(name)
            sections[section]["cpus"] = None if cpus == "any" else [int(c) for c in cpus.split(",")]
    for name, (side, key) in {"requests_per_cpu_s": ("server", "requests_per_cpu_s")}.items():
        if name in values:
            sections["resources"].setdefault(side, {})[key] = values.pop(name)
    if "p50_ms" in values:
        values["median_ms"] = values.pop("p50_ms")
    flags, rerun = list(values.pop("flags", [])), values.pop("rerun", "")
    resources = sections.pop("resources")
    result = RunResult(outcome, **sections, config=config, resources=resources, metrics=Metrics(**values), flags=flags,
                       rerun=rerun)  # fmt: skip
    return Run(run=run, outcome=outcome, result=result, rerun=rerun)


@pytest.fixture
def made() -> Any:
    """_made, for tests that build report records without files."""
    return _made
