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

By rate (load.capacity.by=rate): the open model (runner/locust/arrivals.py) on a pool of load.users
connections, its rate set live between steps. `next_rate` is the whole search: start_rate, then x
rate_growth while every step is "ok" (up to max_rate); after the first failure, the midpoint of the
best "ok" rate and the lowest failed rate above it, until they are within rate_precision; a first
step that fails steps down instead. Each step is judged alone (`rate_verdict`), so bisection may
visit rates in any order -- which is why every step ends with a drain (the locustfile: no new
request until those in flight are answered or time out, unmeasured): the next step starts from an
empty server, not from the queue a failed step left. A step's verdict, in this order:
"slo-failures"; "generator-late" (more than max_late_ratio of the requests due, plus SLACK, were late although a
connection was free: the schedule slipped in Locust, so the step's latencies are Locust's -- a
failure for the bisection, but the stop reason makes the result a lower bound); "slo-p99" (corrected
p99, from each request's intended send time); "slo-throughput" (the server answered fewer than
1 - max_late_ratio of the requests due in the window, less SLACK: it fell behind -- a queue
growing in the server's backlog, which a short step's p99 would show only seconds later: single
under io answered 94/s at 100/s offered with a p99 of 262 ms over a 3 s window, measured here);
"slo-late" (`late_ratio`: late for want of a free connection, plus dropped, above max_late_ratio and SLACK --
fewer than 99% sent on time because every connection was busy; the generator's own lateness is
"generator-late"'s, as in runner/run/validity.py's behind-schedule);
"generator-bound" (the SLO held with Locust at its CPU limit: sustained, and the search ends
there); else "ok". The maximum sustainable rate is the best "ok" or "generator-bound" step's offered
rate; Max RPS beside it is what the server answered per second in that step.
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
from runner.schema import CapacityConfig

STEPS_FILE = "locust_capacity.json"
SUSTAINED = ("ok", "knee", "generator-bound")  # verdicts of steps that met the SLO
LOWER_BOUND = ("generator-bound", "max-users", "generator-late", "max-rate")  # the server could take more
MIN_RATE = 1.0  # requests/s: a rate search stepping down from a failed start_rate stops below this
STOP_REASONS = {
    "slo-failures": "a step failed more requests than the SLO allows",
    "slo-p99": "a step's p99 exceeded the SLO",
    "knee": "RPS stopped growing as users were added",
    "generator-bound": "Locust reached its CPU limit (busy, or waiting for its core) while the SLO still held: "
    "the server's capacity is higher than measured, and the order among such servers is Locust's",
    "max-users": "every step met the SLO up to load.capacity.max_users: the capacity is higher",
    "incomplete": "Locust stopped before the search decided (a crash, a timeout or Ctrl-C)",
    "no-steps": "no step was measured",
    "boundary": "the bisection narrowed the last good and the first failed rate to load.capacity.rate_precision",
    "generator-late": "Locust's schedule slipped (late with a connection free) just above the last good rate: the "
    "server's boundary is at least that",
    "max-rate": "every step met the SLO up to load.capacity.max_rate: the capacity is higher",
    "max-steps": "load.capacity.max_steps ran out before the bisection narrowed the boundary to its precision",
    "no-sustainable-rate": f"every rate down to {MIN_RATE:g} request/s failed the SLO",
}
RATE_SUSTAINED = ("ok", "generator-bound")
RATE_FAILED = ("slo-failures", "generator-late", "slo-p99", "slo-throughput", "slo-late")  # the bisection's upper side
# requests: a step's counts (answered, late) may miss max_late_ratio of its requests due by this many more -- the
# window's edges (one due just before it answered in it, one due at its end answered after) move the answers by about
# one, and one descheduling of Locust on a shared core makes a request or two late at any rate: at 50/s that was 2 of
# 150 (1.3%), and the search stepped select down to 12/s (measured here, load average 38 on 2 cores)
SLACK = 2

RATE_STEP_KEYS = ("rate", "users", "start", "end", "requests", "rps", "goodput", "sent_rate", "failure_ratio", "p50_ms",
                  "p99_ms", "p99_uncorrected_ms", "intended", "sent", "late", "dropped", "generator_late",
                  "late_ratio", "drain_s", "locust_cpu_pct", "locust_wait_pct", "server_cpu_pct",
                  "verdict")  # fmt: skip
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


def schedule_s(plan: CapacityConfig, drain_s: float = 0.0) -> float:
    """The longest the search can take: every step, each rounded up to Locust's one-second shape tick
    (by rate: max_steps steps, each followed by a drain of at most `drain_s`, the request timeout)."""
    if plan.by == "rate":
        return plan.max_steps * (math.ceil(plan.step_s) + math.ceil(drain_s) + 1) + 1
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
        "by": "users",
        "steps": judged,
        "max_rps": best["rps"] if best else None,
        "users_at_max": best["users"] if best else None,
        "stop_reason": reason,
        "stop_detail": detail,
    }


# --- by rate ------------------------------------------------------------------------------------


def rate_step_numbers(
    entry: dict,
    start: float,
    end: float,
    rate: float,
    users: int,
    counts: dict,
    cpu_pct: float | None,
    wait_pct: float | None,
) -> dict:
    """A rate step's numbers from its window's StatsEntry (with "hdr" and "hdr_uncorrected"), the
    schedule's counts over the window (runner/locust/arrivals.py's Counts), and Locust's CPU."""
    from runner import latency

    numbers = step_numbers(entry, start, end, users, cpu_pct, wait_pct)
    late, generator_late = int(counts.get("late", 0)), int(counts.get("generator_late", 0))
    raw = latency.merged([entry["hdr_uncorrected"]]) if entry.get("hdr_uncorrected") else None
    span, due = end - start, int(counts.get("intended", 0))
    numbers.update(
        rate=rate, sent_rate=counts.get("sent", 0) / span if span > 0 else None,
        p99_uncorrected_ms=latency.percentile_ms(raw, 0.99) if raw is not None and raw.get_total_count() else None,
        intended=due, sent=int(counts.get("sent", 0)), late=late, dropped=int(counts.get("dropped", 0)),
        generator_late=generator_late,
        late_ratio=(late - generator_late + int(counts.get("dropped", 0))) / due if due else None, drain_s=None,
    )  # fmt: skip
    return {key: numbers.get(key) for key in RATE_STEP_KEYS}


def rate_verdict(step: dict, plan: CapacityConfig) -> tuple[str, str]:
    """(verdict, the reason in words) of one rate step; the order is the module docstring's."""
    rate, due = step["rate"], step.get("intended") or 0
    at = f"at {rate:g} requests/s"
    if not step["requests"]:
        return "slo-failures", f"no request was answered {at}"
    if step["failure_ratio"] > plan.max_failure_ratio:
        return (
            "slo-failures",
            f"{step['failure_ratio']:.1%} of requests failed {at} (SLO: {plan.max_failure_ratio:.1%})",
        )
    allowed = due * plan.max_late_ratio + SLACK
    if due and step["generator_late"] > allowed:
        return "generator-late", (
            f"{step['generator_late'] / due:.1%} of the requests due {at} went out late with a connection free: "
            "Locust fell behind its schedule"
        )
    if step["p99_ms"] is not None and step["p99_ms"] > plan.max_p99_ms:
        return "slo-p99", f"corrected p99 was {step['p99_ms']:g} ms {at} (SLO: at most {plan.max_p99_ms:g} ms)"
    if due and step["requests"] < due - allowed:
        return "slo-throughput", (
            f"the server answered {step['requests']} of the {due} requests due {at} ({step['rps']:.1f}/s): it fell "
            f"behind (SLO: at least {1 - plan.max_late_ratio:.0%}, less {SLACK})"
        )
    if due and step.get("late_ratio") is not None and step["late_ratio"] * due > allowed:
        return "slo-late", (
            f"{step['late_ratio']:.1%} of the requests due {at} were late or dropped (SLO: at most "
            f"{plan.max_late_ratio:.1%}; every one of load.users connections was busy)"
        )
    cpu, wait = step["locust_cpu_pct"], step.get("locust_wait_pct") or 0.0
    if cpu is not None and cpu + wait >= plan.generator_cpu_pct:
        return "generator-bound", (
            f"the SLO held {at} with Locust on its core {cpu:.0f}% and waiting for it {wait:.0f}% (limit "
            f"{plan.generator_cpu_pct:g}% together): the server can take more than Locust could send"
        )
    return "ok", ""


def _bracket(judged: list[dict]) -> tuple[dict | None, dict | None]:
    """(the best sustained step, the lowest failed step above it): the interval the boundary is in."""
    good = max((s for s in judged if s["verdict"] in RATE_SUSTAINED), key=lambda s: s["rate"], default=None)
    above = [s for s in judged if s["verdict"] in RATE_FAILED and (good is None or s["rate"] > good["rate"])]
    return good, min(above, key=lambda s: s["rate"], default=None)


def next_rate(judged: list[dict], plan: CapacityConfig) -> float | None:
    """The next step's rate given the judged steps so far, or None: the search is over."""
    if not judged:
        return float(plan.start_rate)
    if len(judged) >= plan.max_steps or any(s["verdict"] == "generator-bound" for s in judged):
        return None
    good, bad = _bracket(judged)
    if bad is None:  # every step met the SLO: step up
        return None if good["rate"] >= plan.max_rate else min(good["rate"] * plan.rate_growth, plan.max_rate)
    if good is None:  # even the lowest failed: step down
        lower = bad["rate"] / plan.rate_growth
        return lower if lower >= MIN_RATE else None
    if (bad["rate"] - good["rate"]) / good["rate"] <= plan.rate_precision:
        return None
    return (good["rate"] + bad["rate"]) / 2


def decide_rate(steps: list[dict], plan: CapacityConfig) -> dict:
    """result.json's `capacity` block of a rate search from its measured steps, in order."""
    judged = []
    for step in steps:
        v, _ = rate_verdict(step, plan)
        judged.append({**step, "verdict": v})
    good, bad = _bracket(judged)
    if not judged:
        reason, detail = "no-steps", "Locust measured no step"
    elif next_rate(judged, plan) is not None:
        reason = "incomplete"
        detail = f"Locust stopped after {len(judged)} steps, before the search decided"
    elif any(s["verdict"] == "generator-bound" for s in judged):
        reason, detail = (
            "generator-bound",
            rate_verdict(next(s for s in judged if s["verdict"] == "generator-bound"), plan)[1],
        )
    elif bad is None:
        reason, detail = "max-rate", f"every step met the SLO up to {good['rate']:g} requests/s (max_rate)"
    elif good is None:
        reason = "no-sustainable-rate" if bad["rate"] / plan.rate_growth < MIN_RATE else "max-steps"
        detail = f"no rate met the SLO, down to {bad['rate']:g} requests/s: {rate_verdict(bad, plan)[1]}"
    else:
        narrowed = (bad["rate"] - good["rate"]) / good["rate"] <= plan.rate_precision
        reason = ("generator-late" if bad["verdict"] == "generator-late" else "boundary") if narrowed else "max-steps"
        detail = f"between {good['rate']:g} (met the SLO) and {bad['rate']:g} requests/s: {rate_verdict(bad, plan)[1]}"
    return {
        "by": "rate",
        "steps": judged,
        "max_rate": good["rate"] if good else None,
        "max_rps": good["rps"] if good else None,
        "users_at_max": good["users"] if good else None,
        "bracket": [good["rate"] if good else None, bad["rate"] if bad else None],
        "stop_reason": reason,
        "stop_detail": detail,
    }


def decide_any(steps: list[dict], plan: CapacityConfig) -> dict:
    """The block of either search, by plan.by."""
    return decide_rate(steps, plan) if plan.by == "rate" else decide(steps, plan)


def write_steps(path: Path, steps: list[dict], block: dict) -> None:
    """Locust's step file: the raw steps (StatsEntry per window) and the live decision; atomic."""
    data = {
        "pid": os.getpid(),
        "steps": steps,
        "stop_reason": block["stop_reason"],
        "stop_detail": block["stop_detail"],
    }
    result.write_atomic(path, lambda f: json.dump(data, f, default=list), sync=False)
