"""Capacity search (load=capacity): the rule that decides it, shared by the two programs that apply it.

The most requests/s a server sustains within its service-level objective, found by raising users in
steps. One rule, used twice: Locust's shape (runner/locust/locustfile.py) measures each step over
its window (the step after its ramp), calls `decide` after every step and stops at the first step
that is not "ok"; the orchestrator (runner/run/capacity.py) reads the step file afterwards,
recomputes every number from the same raw StatsEntry and window and calls `decide` again for the
record. Same inputs, same pure function: the two agree, and if they ever do not, the record says so
in `stop_detail`. The report's sections are runner/report/capacity.py.

- A step's verdict, checked in this order: "slo-failures" (failure ratio above the SLO, or no
  request answered), "slo-p99" (p99 above the SLO), "generator-bound" (the SLO held but Locust
  wanted its core >= generator_cpu_pct of the window: running on it, or runnable and waiting for it
  behind other processes -- on a shared machine Locust starved at 34% CPU was as much the limit as
  one busy at 100%: the step measured Locust, so the search ends there instead of calling it the
  server's capacity), "knee" (the SLO held but RPS grew less than min_growth over the
  previous step: more users only queue), else "ok". All but "ok" end the search; so does the last
  step of the schedule ("max-users").
- Maximum sustainable RPS: the best step that met the SLO ("ok", "knee" or "generator-bound").
  When the search stopped at "generator-bound" or "max-users" it is a lower bound, not the server's
  capacity: the stop reason says so and the report prints it as "≥ N".
Locust's process imports this module, so it imports nothing heavy.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from runner import result
from runner.config import CapacityConfig

STEPS_FILE = "locust_capacity.json"
SUSTAINED = ("ok", "knee", "generator-bound")  # verdicts of steps that met the SLO
LOWER_BOUND = ("generator-bound", "max-users")  # stop reasons after which the server could take more
STOP_REASONS = {
    "slo-failures": "a step failed more requests than the SLO allows",
    "slo-p99": "a step's p99 exceeded the SLO",
    "knee": "RPS stopped growing as users were added",
    "generator-bound": "Locust reached its CPU limit (busy, or waiting for its core) while the SLO still held: "
    "the server's capacity is higher than measured, and the order among such servers is Locust's",
    "max-users": "every step met the SLO up to load.capacity.max_users: the capacity is higher",
    "incomplete": "Locust stopped before the search decided (a crash, a timeout or Ctrl-C)",
    "no-steps": "no step was measured",
}
STEP_KEYS = ("users", "start", "end", "requests", "rps", "goodput", "failure_ratio", "p50_ms", "p95_ms", "p99_ms",
             "locust_cpu_pct", "locust_wait_pct", "server_cpu_pct", "verdict")  # fmt: skip


# --- the schedule and the decision (pure) -------------------------------------------------------


def plan_from(section: Any) -> CapacityConfig:
    """A CapacityConfig from the config's load.capacity (DictConfig, dataclass or dict)."""
    get = section.get if isinstance(section, dict) else lambda key, default: getattr(section, key, default)
    return CapacityConfig(**{f.name: get(f.name, f.default) for f in fields(CapacityConfig)})


def plan_json(section: Any) -> str:
    """The plan as Locust's --capacity argument."""
    plan = plan_from(section)
    return json.dumps({f.name: getattr(plan, f.name) for f in fields(CapacityConfig)}, sort_keys=True)


def users_schedule(plan: CapacityConfig) -> list[int]:
    """Users of each step: start_users, + step_users, ... up to max_users."""
    return list(range(int(plan.start_users), int(plan.max_users) + 1, int(plan.step_users)))


def schedule_s(plan: CapacityConfig) -> float:
    """The longest the search can take: every step, each rounded up to Locust's one-second shape tick."""
    return len(users_schedule(plan)) * (math.ceil(plan.step_s) + 1) + 1


def step_numbers(
    entry: dict, start: float, end: float, users: int, locust_cpu_pct: float | None, locust_wait_pct: float | None
) -> dict:
    """A step's numbers (result.json's step shape, verdict not yet given) from one locust-serialized
    StatsEntry of its window [start, end] (with "hdr": its HDR histogram, for the percentiles) and
    Locust's CPU over it: used, and waited for (run queue)."""
    m = result.aggregate([entry], end - start, [entry["hdr"]] if entry.get("hdr") else None)
    return {
        "users": users, "start": start, "end": end, "requests": m.requests, "rps": m.rps, "goodput": m.goodput,
        "failure_ratio": m.failure_ratio, "p50_ms": m.median_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms,
        "locust_cpu_pct": locust_cpu_pct, "locust_wait_pct": locust_wait_pct, "server_cpu_pct": None, "verdict": None,
    }  # fmt: skip


def verdict(step: dict, previous: dict | None, plan: CapacityConfig) -> tuple[str, str]:
    """(verdict, the reason in words) of one step, given the step before it (None for the first)."""
    users = step["users"]
    if not step["requests"]:
        return "slo-failures", f"no request was answered at {users} users"
    if step["failure_ratio"] > plan.max_failure_ratio:
        return "slo-failures", (
            f"{step['failure_ratio']:.1%} of requests failed at {users} users "
            f"(SLO: at most {plan.max_failure_ratio:.1%})"
        )
    if step["p99_ms"] is not None and step["p99_ms"] > plan.max_p99_ms:
        return "slo-p99", f"p99 was {step['p99_ms']:g} ms at {users} users (SLO: at most {plan.max_p99_ms:g} ms)"
    cpu, wait = step["locust_cpu_pct"], step.get("locust_wait_pct") or 0.0
    if cpu is not None and cpu + wait >= plan.generator_cpu_pct:
        return "generator-bound", (
            f"Locust used {cpu:.0f}% of its core and waited for it {wait:.0f}% of the time at {users} users "
            f"(limit {plan.generator_cpu_pct:g}% together): the server answered {step['rps']:.0f} req/s within the "
            "SLO and can take more than Locust could send"
        )
    if previous is not None and previous["rps"]:
        growth = step["rps"] / previous["rps"] - 1
        if growth < plan.min_growth:
            return "knee", (
                f"RPS went from {previous['rps']:.0f} to {step['rps']:.0f} ({growth:+.1%}) as users went from "
                f"{previous['users']} to {users} (knee: less than {plan.min_growth:.0%})"
                + (f"; Locust used {cpu:.0f}% of its core, waited {wait:.0f}%" if cpu is not None else "")
            )
    return "ok", ""


def decide(steps: list[dict], plan: CapacityConfig) -> dict:
    """result.json's `capacity` block from the measured steps, in order: a verdict per step, the
    maximum sustainable RPS, the users at it, and why the search stopped. Steps after the first that
    is not "ok" are not judged (the search never runs them)."""
    judged: list[dict] = []
    reason, detail = None, ""
    for step in steps:
        v, why = verdict(step, judged[-1] if judged else None, plan)
        judged.append({**step, "verdict": v})
        if v != "ok":
            reason, detail = v, why
            break
    if reason is None:
        planned = users_schedule(plan)
        if not judged:
            reason, detail = "no-steps", "Locust measured no step"
        elif len(judged) >= len(planned):
            reason, detail = "max-users", f"every step met the SLO up to {judged[-1]['users']} users (max_users)"
        else:
            reason = "incomplete"
            detail = f"Locust stopped after {len(judged)} of {len(planned)} steps, before the search decided"
    sustained = [s for s in judged if s["verdict"] in SUSTAINED and s["rps"] is not None]
    best = max(sustained, key=lambda s: s["rps"], default=None)
    return {
        "steps": judged,
        "max_rps": best["rps"] if best else None,
        "users_at_max": best["users"] if best else None,
        "stop_reason": reason,
        "stop_detail": detail,
    }


def write_steps(path: Path, steps: list[dict], block: dict) -> None:
    """Locust's step file: the raw steps (StatsEntry per window) and the live decision; atomic."""
    data = {
        "pid": os.getpid(),
        "steps": steps,
        "stop_reason": block["stop_reason"],
        "stop_detail": block["stop_detail"],
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, default=list)
    os.replace(tmp, path)
