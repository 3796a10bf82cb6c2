"""A capacity search's record: Locust's step file -> result.json's `capacity` block.

The rule is runner/capacity.py's `decide`, applied again here to numbers recomputed from the raw
step windows Locust wrote; each step's server CPU comes from the Sampler's series. The block keeps
the search's numbers to itself: the run's `metrics` and `load.users` stay what was measured over the
whole run, as for any run (runner/result.py, schema 2), and the report takes the search's from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.capacity import STEPS_FILE, decide_any, plan_from, rate_step_numbers, step_numbers
from runner.run.resources import summarize


def collect(result: Any, job_dir: Path, section: Any, server_series: Any = None) -> None:
    """Set `result.capacity` from Locust's step file; server CPU per step from the Sampler's `server_series`."""
    plan = plan_from(section)
    try:
        data = json.loads((Path(job_dir) / STEPS_FILE).read_text())
        raw = list(data["steps"])
        steps = [_numbers(s, plan) for s in raw]
    except (OSError, ValueError, TypeError, KeyError):
        result.capacity = decide_any([], plan)
        result.capacity["stop_detail"] = f"Locust left no readable {STEPS_FILE}"
        return
    for step in steps:
        if server_series is not None:
            step["server_cpu_pct"] = summarize(server_series, step["start"], step["end"], 1)["cpu_pct"]
    block = decide_any(steps, plan)
    live = [s.get("verdict") for s in raw[: len(block["steps"])]], data.get("stop_reason")
    if live != ([s["verdict"] for s in block["steps"]], block["stop_reason"]):
        block["stop_detail"] += f" (the live search decided differently: {live[1]}, verdicts {live[0]})"
    result.capacity = block


def _numbers(raw: dict, plan: Any) -> dict:
    """A step's numbers recomputed from the raw window Locust wrote (the same functions Locust used live)."""
    cpu, wait = raw.get("locust_cpu_pct"), raw.get("locust_wait_pct")
    if plan.by != "rate":
        return step_numbers(raw["entry"], raw["start"], raw["end"], raw["users"], cpu, wait)
    numbers = rate_step_numbers(
        raw["entry"], raw["start"], raw["end"], raw["rate"], raw["users"], raw["counts"], cpu, wait
    )
    numbers["drain_s"] = raw.get("drain_s")
    return numbers
